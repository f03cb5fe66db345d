"""darts_search.py --complexity-control end to end on a slice of the embedded digits, and --extract-lambda."""
import numpy as np
import pytest

import darts_search
from models.complexity import architecture_parameters
from models.derivation import derive_by_rule
from models.genotype import load_architecture
from tests.conftest import tiny_search_runner
from tests.helpers import series
from utils.search.variants import VARIANTS

# The network and λ range, which --extract-lambda reads too; the searches add the batch size.
NETWORK = ["--num-cells", "1", "--output-filter", "2", "--complexity-control", "--log10-lambda-min", "-3",
           "--log10-lambda-max", "-1"]
IMAGES = 32


@pytest.fixture
def search(monkeypatch, tmp_path):
    """search(name, *flags): a complexity-controlled search of 32 digits into tmp_path / name."""
    run = tiny_search_runner(monkeypatch, IMAGES)
    return lambda name, *flags: run(tmp_path / name, *NETWORK, "--batch-size", "8", *flags)


def extracted(values, mode):
    return derive_by_rule(values["alpha_normal"], values["alpha_reduction"], mode)


def alphas(path, file_name, epoch=-1):
    history = np.load(path / file_name)
    return {"alpha_normal": history["normal"][epoch], "alpha_reduction": history["reduction"][epoch]}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One second-order search of 2 epochs (module scope: the extraction tests read its checkpoint)."""
    with pytest.MonkeyPatch.context() as patch:
        return tiny_search_runner(patch, IMAGES)(tmp_path_factory.mktemp("complexity") / "run", *NETWORK,
                                                 "--batch-size", "8", "--epoch", "2", "--second-order")


@pytest.mark.slow
def test_search_writes_histories_series_and_the_cell_at_lambda_0(finished):
    for name in ("alpha_history.npz", "alpha_history_lambda_0.5.npz", "alpha_history_lambda_1.npz"):
        history = np.load(finished / name)
        assert history["normal"].shape == (3, 14, 8)
        assert not np.array_equal(history["normal"][0], history["normal"][2])  # the knots learned
    # The hypernetwork gives other alphas at other budgets.
    assert not np.allclose(np.load(finished / "alpha_history.npz")["normal"],
                           np.load(finished / "alpha_history_lambda_1.npz")["normal"])
    for name in darts_search.SERIES + VARIANTS["complexity"].series:
        assert series(finished, name).shape == (2, 2)
    penalty = series(finished, "Complexity penalty")[:, 1]
    at0, at1 = (series(finished, f"Expected parameters at lambda {x}")[:, 1] for x in (0, 1))
    # λ·P with λ in [1e-3, 1e-1]: between the bounds of λ times the expected counts.
    assert np.all(penalty > 1e-3 * np.minimum(at0, at1) * 0.5) and np.all(penalty < 1e-1 * np.maximum(at0, at1) * 2)
    np.testing.assert_allclose(series(finished, "Temperature")[:, 1], [1.0, 1.0 - 0.016], rtol=1e-6)
    expected = extracted(alphas(finished, "alpha_history.npz"), "simple")
    assert load_architecture(str(finished / "DARTS_arch.json")) == expected
    assert load_architecture(str(finished / "arch" / "epoch_002.json")) == expected


@pytest.mark.parametrize("lam_tilde, history", [("0.5", "alpha_history_lambda_0.5.npz"), ("1", "alpha_history_lambda_1.npz")])
@pytest.mark.parametrize("mode", ["simple", "DARTS"])
def test_extraction_reads_the_checkpoint(finished, capsys, lam_tilde, history, mode):
    darts_search.main(NETWORK + ["-m", str(finished), "--extract-lambda", lam_tilde, "--extract-mode", mode])
    out = finished / f"arch_lambda_{lam_tilde}_{mode}.json"
    arch = load_architecture(str(out))
    assert arch == extracted(alphas(finished, history), mode)
    assert f"{architecture_parameters(arch, 2, 1)} weights" in capsys.readouterr().out


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(search):
    whole = search("whole", "--epoch", "2")
    search("parts", "--epoch", "1")
    parts = search("parts", "--epoch", "2", "--resume")
    for name in ("alpha_history.npz", "alpha_history_lambda_1.npz"):
        for key in ("normal", "reduction"):
            np.testing.assert_array_equal(np.load(whole / name)[key], np.load(parts / name)[key])
    for name in ("Training loss", "Validation error", "Complexity penalty"):
        np.testing.assert_array_equal(series(whole, name), series(parts, name))


@pytest.mark.parametrize("extra, message", [
    (["--dadarts"], "cannot be combined with --dadarts"),
    (["--log10-lambda-max", "-2.5"], "at least 1"),
    (["--temperature-delta", "-1", "--epoch", "3"], "must be positive"),
    (["--extract-lambda", "1.5"], "--extract-lambda must be in [0, 1]"),
    (["--fresh-noise-every-pass"], "add --second-order"),
    (["--fresh-noise-every-pass", "--second-order", "--sampling-mode", "softmax"], "needs --sampling-mode gumbel"),
])
def test_impossible_settings_are_one_line_errors(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        darts_search.main(["--dataset", "digits"] + NETWORK + ["-m", str(tmp_path)] + extra)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_extraction_without_a_checkpoint_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        darts_search.main(NETWORK + ["-m", str(tmp_path), "--extract-lambda", "0.5"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "checkpoint" in err and len(err.strip().splitlines()) == 1

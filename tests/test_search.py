"""darts_search.py end to end on a slice of the embedded digits."""
import json

import numpy as np
import pytest

import darts_search
from models.genotype import derive_architecture, load_architecture
from tests.helpers import digits_head, series

TINY = ["--dataset", "digits", "--batch-size", "16", "--num-cells", "3", "--output-filter", "4", "--seed", "3"]


@pytest.fixture(scope="module")
def digits_slice():
    return digits_head(64)


@pytest.fixture(autouse=True)
def small_data(monkeypatch, digits_slice):
    # Two steps an epoch: enough to exercise every part of the loop in a second or two.
    monkeypatch.setattr(darts_search, "load_dataset", lambda name, data_dir: digits_slice)


def search(tmp_path, name, *extra):
    out = tmp_path / name
    darts_search.main(TINY + ["-m", str(out), "--model-arch-name", str(out / "DARTS_arch.json"), *extra])
    return out


def test_search_writes_every_output(tmp_path):
    out = search(tmp_path, "run", "--epoch", "2")
    history = np.load(out / "alpha_history.npz")
    assert history["normal"].shape == (3, 14, 8) and history["reduction"].shape == (3, 14, 8)
    assert not np.array_equal(history["normal"][0], history["normal"][2])  # the alphas learned
    arch = load_architecture(str(out / "DARTS_arch.json"))
    assert arch == derive_architecture(history["normal"][-1], history["reduction"][-1])
    assert load_architecture(str(out / "arch" / "epoch_002.json")) == arch
    assert load_architecture(str(out / "arch" / "epoch_001.json")) == derive_architecture(
        history["normal"][1], history["reduction"][1])
    for name in darts_search.SERIES:
        assert series(out, name).shape == (2, 2)
    assert (out / "config.yaml").exists() and (out / "checkpoint.npz").exists()
    raw = json.loads((out / "DARTS_arch.json").read_text())
    assert set(raw) == {"arch_normal", "arch_reduction"} and set(raw["arch_normal"]) == {"2", "3", "4", "5"}


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    whole = search(tmp_path, "whole", "--epoch", "2", "--second-order")
    search(tmp_path, "parts", "--epoch", "1", "--second-order")
    # An epoch that was interrupted half way leaves lines that resume must drop.
    with open(tmp_path / "parts" / "Training-loss.series.txt", "a") as f:
        f.write("1 99\n")
    parts = search(tmp_path, "parts", "--epoch", "2", "--second-order", "--resume")
    for key in ("normal", "reduction"):
        np.testing.assert_array_equal(np.load(whole / "alpha_history.npz")[key],
                                      np.load(parts / "alpha_history.npz")[key])
    assert (whole / "DARTS_arch.json").read_text() == (parts / "DARTS_arch.json").read_text()
    for name in ("Training loss", "Validation error"):
        np.testing.assert_array_equal(series(whole, name), series(parts, name))


def test_same_seed_gives_identical_alphas_and_json(tmp_path):
    a, b = search(tmp_path, "a", "--epoch", "1"), search(tmp_path, "b", "--epoch", "1")
    np.testing.assert_array_equal(np.load(a / "alpha_history.npz")["normal"], np.load(b / "alpha_history.npz")["normal"])
    assert (a / "DARTS_arch.json").read_text() == (b / "DARTS_arch.json").read_text()


def test_alpha_epoch_derives_the_architecture_of_that_epoch(tmp_path):
    out = search(tmp_path, "run", "--epoch", "2")
    target = tmp_path / "deep" / "er" / "epoch1.json"
    darts_search.main(["-m", str(out), "--alpha-epoch", "1", "--model-arch-name", str(target)])
    assert target.read_text() == (out / "arch" / "epoch_001.json").read_text()


def test_alpha_epoch_out_of_range_is_a_one_line_error(tmp_path, capsys):
    out = search(tmp_path, "run", "--epoch", "1")
    with pytest.raises(SystemExit) as exit_info:
        darts_search.main(["-m", str(out), "--alpha-epoch", "5", "--model-arch-name", str(tmp_path / "x.json")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert "--alpha-epoch 5" in err and "\n" not in err


def cuda_extension_installed():
    try:
        import nnabla_ext.cudnn  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.mark.skipif(cuda_extension_installed(), reason="the error is for machines without nnabla-ext-cuda")
def test_cudnn_without_the_extension_says_what_to_install(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        darts_search.main(TINY + ["-c", "cudnn", "-m", str(tmp_path / "gpu")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert "nnabla-ext-cuda" in err and "\n" not in err


def test_a_batch_larger_than_the_split_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        darts_search.main(TINY + ["--batch-size", "40", "-m", str(tmp_path / "big")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert "--batch-size 40 is larger than the 32 images" in err and "\n" not in err


def test_checkpoints_go_to_a_new_model_save_path(tmp_path):
    out = search(tmp_path, "run", "--epoch", "1", "--model-save-path", str(tmp_path / "new" / "dir"))
    assert (tmp_path / "new" / "dir" / "checkpoint.npz").exists() and not (out / "checkpoint.npz").exists()

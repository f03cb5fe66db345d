"""The contract every registered search variant keeps, end to end through darts_search.py.

Parametrised over utils.search.variants.VARIANTS: a variant that is registered is tested here without
a line of its own. Each run is --variant <name> with the variant's defaults.
"""
import dataclasses
import json

import nnabla as nn
import numpy as np
import pytest
import yaml

import darts_search
from models.genotype import load_architecture
from models.graph import feed, forward_backward
from tests.helpers import series
from utils.search.alpha_history import history_values as recorded_values
from utils.search.bilevel import build_search_graphs
from utils.search.variant import SearchSetup, declared_settings
from utils.search.variants import VARIANTS

NAMES = sorted(VARIANTS)

# The flags a variant needs on top of its defaults for the contract's runs of one or two epochs on 64 images:
# {name: [flags]} (a schedule measured in epochs, such as a warm-up before the first alpha step, must fit in).
SHORT_RUN_FLAGS = {
    # PC-DARTS's 15-epoch warm-up would leave the alphas of a 1-epoch run untrained, which it refuses.
    "pcdarts": ["--pc-warmup-epochs", "0"],
}


def short_run(name, *flags):
    """The flags of a contract run of variant `name`."""
    return ["--variant", name, *SHORT_RUN_FLAGS.get(name, []), *flags]


def history_values(path, epoch):
    with np.load(path) as history:
        return recorded_values(history, epoch)


def flag_of(dest):
    return "--" + dest.replace("_", "-")


def own_settings(name):
    """{flag: default} of the settings a variant declares itself (not inherited from the variant it extends)."""
    return {flag_of(f.name): f.default for f in declared_settings(VARIANTS[name])}


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_a_search_writes_every_output(tiny_search, tmp_path, name):
    out = tiny_search(tmp_path / name, *short_run(name, "--epoch", "2"))
    Variant = VARIANTS[name]
    for series_name in darts_search.SERIES + Variant.series:
        assert series(out, series_name).shape == (2, 2), series_name
    settings = Variant.Settings.from_args(darts_search.parse_args(darts_search.search_parser(), short_run(name)))
    arch = load_architecture(str(out / "DARTS_arch.json"))
    assert arch == Variant.derive(settings, history_values(out / "alpha_history.npz", -1))
    assert load_architecture(str(out / "arch" / "epoch_002.json")) == arch
    assert load_architecture(str(out / "arch" / "epoch_001.json")) == Variant.derive(
        settings, history_values(out / "alpha_history.npz", 1))
    assert load_architecture((out / "genotype.txt").read_text().strip()) == arch
    history = np.load(out / "alpha_history.npz")
    assert history["normal"].shape == (3, 14, 8) and not np.array_equal(history["normal"][0], history["normal"][2])
    summary = json.loads((out / "search_summary.json").read_text())
    assert set(summary) == {"validation_error", "discretized_validation_error"}
    assert (out / "checkpoint.npz").exists()
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["variant"] == name
    # The config holds this variant's settings and no other variant's.
    own = {flag_of(f.name) for f in dataclasses.fields(Variant.Settings)}
    others = {flag for other in NAMES for flag in own_settings(other)} - own
    assert not {flag_of(key) for key in config} & others


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_a_resumed_search_equals_an_uninterrupted_one(tiny_search, tmp_path, name):
    flags = short_run(name, "--second-order")
    whole = tiny_search(tmp_path / "whole", *flags, "--epoch", "2")
    tiny_search(tmp_path / "parts", *flags, "--epoch", "1")
    with open(tmp_path / "parts" / "Training-loss.series.txt", "a") as f:
        f.write("2 99\n")  # an epoch interrupted half way leaves lines that resume must drop
    parts = tiny_search(tmp_path / "parts", *flags, "--epoch", "2", "--resume")
    for history in sorted(p.name for p in whole.glob("*history*.npz")):
        with np.load(whole / history) as expected, np.load(parts / history) as got:
            assert expected.files == got.files
            for key in expected.files:
                np.testing.assert_array_equal(expected[key], got[key])
    for series_name in darts_search.SERIES[:-1] + VARIANTS[name].series:
        np.testing.assert_array_equal(series(whole, series_name), series(parts, series_name))
    assert (whole / "DARTS_arch.json").read_text() == (parts / "DARTS_arch.json").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_the_same_seed_gives_the_same_json(tiny_search, tmp_path, name):
    a = tiny_search(tmp_path / "a", *short_run(name, "--epoch", "1"))
    b = tiny_search(tmp_path / "b", *short_run(name, "--epoch", "1"))
    assert (a / "DARTS_arch.json").read_text() == (b / "DARTS_arch.json").read_text()
    np.testing.assert_array_equal(np.load(a / "alpha_history.npz")["normal"],
                                  np.load(b / "alpha_history.npz")["normal"])


def one_line_error(capsys, argv, code=2):
    with pytest.raises(SystemExit) as exit_info:
        darts_search.main(argv)
    assert exit_info.value.code == code
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(lines) == 1
    return lines[0]


@pytest.mark.parametrize("name", NAMES)
def test_flags_of_the_other_variants_are_refused(tmp_path, capsys, name):
    for other in NAMES:
        for flag, default in own_settings(other).items():
            if flag in {flag_of(f.name) for f in dataclasses.fields(VARIANTS[name].Settings)}:
                continue
            line = one_line_error(capsys, ["--variant", name, flag, str(default), "-m", str(tmp_path / "never")])
            assert f"{flag} is a flag of --variant {other}" in line
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("name", [n for n in NAMES if n != "darts"])
def test_a_variant_under_the_recurrent_space_is_refused(tmp_path, capsys, name):
    line = one_line_error(capsys, ["--space", "recurrent", "--variant", name, "-m", str(tmp_path)])
    assert "--variant applies to --space cnn only" in line


@pytest.mark.parametrize("argv, message", [
    (["--space", "recurrent", "--num-cells", "3"], "--num-cells applies to --space cnn only"),
    (["--space", "recurrent", "--seeds", "0,1"], "--seeds applies to --space cnn only"),
    (["--space", "recurrent", "--dadarts"], "--dadarts applies to --space cnn only"),
    (["--space", "recurrent", "--complexity-control"], "--complexity-control applies to --space cnn only"),
    (["--space", "recurrent", "--select-epochs", "2"], "--select-epochs applies to --space cnn only"),
    (["--nhid", "20"], "--nhid applies to --space recurrent only"),
    (["--hd-on-weights"], "--hd-on-weights is a flag of --variant dadarts, not of --variant darts"),
    (["--complexity-control", "--dadarts"], "--complexity-control cannot be combined with --dadarts"),
    (["--variant", "dadarts", "--complexity-control"], "--complexity-control is --variant complexity"),
    (["--variant", "complexity", "--alpha-epoch", "1", "--extract-lambda", "0.5"], "are two modes: give one"),
    (["--extract-lambda", "0.5"], "--extract-lambda is a flag of --variant complexity"),
    (["--alpha-epoch", "0", "--epoch", "3"], "--epoch does not apply to --alpha-epoch"),
    (["--variant", "complexity", "--extract-lambda", "0.5", "--second-order"],
     "--second-order does not apply to --extract-lambda"),
])
def test_flags_that_do_not_apply_are_one_line_errors(tmp_path, capsys, argv, message):
    assert message in one_line_error(capsys, argv + ["-m", str(tmp_path / "never")])
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("name", NAMES)
def test_only_the_alpha_step_s_graphs_reach_the_alphas_gradient(name):
    """The weight step and the virtual step train the weights: their backward passes leave the alphas' gradient
    as it was (computing it there cost time for nothing), while the alpha step's passes fill it."""
    nn.clear_parameters()
    shape = (4, 1, 8, 8)
    settings = VARIANTS[name].Settings.from_args(
        darts_search.parse_args(darts_search.search_parser(), ["--variant", name]))
    # 3 cells: the first is a normal one (2 would both be reductions, leaving the normal alphas unused)
    variant = VARIANTS[name](settings, SearchSetup(shape, 3, 4, 3, seed=0, rng=np.random.RandomState(0)))
    graphs = build_search_graphs(variant.network, shape, True, variant.alpha_penalty, True)
    variant.start_epoch(0, 10)
    variant.before_alpha_step()
    rng = np.random.default_rng(0)
    batch = (rng.standard_normal(shape), rng.integers(0, 3, (shape[0], 1)))

    def alpha_gradients_after(graph):
        for alpha in variant.alphas.values():
            alpha.grad.fill(7.0)
        feed(graph, batch)
        forward_backward(graph)
        return [alpha.g.copy() for alpha in variant.alphas.values()]
    for graph in (graphs.train, graphs.virtual):
        assert all(np.all(g == 7.0) for g in alpha_gradients_after(graph))
    for graph in (graphs.val, graphs.hessian):
        # Every row (edge) of every array is reached; a column no loss reads may be left (FairDARTS's zero op,
        # which its original's space does not have).
        assert all(np.all((g != 7.0).reshape(len(g), -1).any(axis=1)) for g in alpha_gradients_after(graph))
    nn.clear_parameters()


@pytest.mark.parametrize("name", [n for n in NAMES if VARIANTS[n].recipe])
def test_a_variant_s_recipe_sets_the_shared_flags_unless_they_are_given(name):
    recipe = VARIANTS[name].recipe
    args = darts_search.parse_args(darts_search.search_parser(), ["--variant", name])
    assert {dest: getattr(args, dest) for dest in recipe} == recipe
    plain = darts_search.parse_args(darts_search.search_parser(), [])
    given = [arg for dest in recipe for arg in (flag_of(dest), str(getattr(plain, dest)))]
    args = darts_search.parse_args(darts_search.search_parser(), ["--variant", name, *given])
    assert {dest: getattr(args, dest) for dest in recipe} == {dest: getattr(plain, dest) for dest in recipe}

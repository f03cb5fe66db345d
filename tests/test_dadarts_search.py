"""DADARTS in the search: the discrete graph, the per-pass mixing, DAL in the alpha step, schedules, the preset end to end."""
import json

import nnabla as nn
import numpy as np
import pytest

import darts_search
import darts_train
from args import parse_args, search_parser
from models.discretization import hard_discretization, softmax_rows
from models.genotype import load_architecture
from models.graph import feed, forward_backward
from models.search_network import (ALPHA_NAMES, create_alphas, discrete_search_network, search_network, softmax_weights,
                                   weight_parameters)
from tests.helpers import series
from utils.optim.solvers import SGD
from utils.search.variant import SearchSetup, kept_ops_of
from utils.search.variants.dadarts import Dadarts, DadartsSettings

SHAPE, CLASSES, CHANNELS, CELLS = (4, 1, 8, 8), 3, 4, 3


def kept_ops(alphas):
    return kept_ops_of({name: alpha.d for name, alpha in alphas.items()})


def dadarts(settings, alphas):
    """A Dadarts variant searching `alphas`: the "arch" parameters, which create_alphas creates only once."""
    variant = Dadarts(settings, SearchSetup(SHAPE, CLASSES, CHANNELS, CELLS, seed=0, rng=np.random.RandomState(0)))
    for name in alphas:
        np.testing.assert_array_equal(variant.alphas[name].d, alphas[name].d)
    return variant


@pytest.fixture
def fresh():
    nn.clear_parameters()
    yield
    nn.clear_parameters()


def spread_alphas(seed):
    """Alphas far from uniform, so that every node has a clear hard discretization."""
    alphas = create_alphas(np.random.RandomState(seed))  # the search's own "arch" parameters
    rng = np.random.RandomState(seed + 1)
    for a in alphas.values():
        a.d = rng.randn(*a.shape) * 2
    return alphas


def test_the_discrete_graph_computes_the_supernet_fed_the_one_hot_weights(fresh):
    alphas = spread_alphas(0)
    x = nn.Variable.from_numpy_array(np.random.RandomState(2).randn(*SHAPE).astype(np.float32))
    one_hot = {name: nn.Variable.from_numpy_array(hard_discretization(softmax_rows(alphas[name].d)))
               for name in ALPHA_NAMES}
    supernet = search_network(x, one_hot, CLASSES, CHANNELS, CELLS)
    discrete = discrete_search_network(x, kept_ops(alphas), CLASSES, CHANNELS, CELLS)
    supernet.forward()
    discrete.forward()
    np.testing.assert_allclose(discrete.d, supernet.d, rtol=1e-5, atol=1e-6)
    # The same parameters: the discrete graph created none of its own.
    names = set(nn.get_parameters(grad_only=False))
    assert all(name.startswith(("net/", "arch/")) for name in names)


def test_kept_ops_follow_the_hard_discretization_with_none_included(fresh):
    alphas = spread_alphas(1)
    alphas["alpha_normal"].d[0] = -10.0
    alphas["alpha_normal"].d[0, 7] = 10.0  # edge 0 (0 -> 2) strongly 'none'
    alphas["alpha_normal"].d[1] = -10.0
    alphas["alpha_normal"].d[1, 2] = 5.0  # edge 1 (1 -> 2) a sep_conv_3x3
    kept = kept_ops(alphas)["alpha_normal"]
    assert kept[0] == 7 and kept[1] == 2
    assert sum(1 for edge in kept if edge < 2) == 2 and len(kept) == 2 * 4  # two edges per node


def test_the_discrete_graph_is_rebuilt_only_when_the_choice_changes(fresh):
    weights = dadarts(DadartsSettings(hd_on_weights=True), spread_alphas(2))
    alphas = weights.alphas
    weights.start_epoch(0, 10)
    first = weights.weight_step_graph(None)
    alphas["alpha_normal"].d = alphas["alpha_normal"].d * 1.01  # same argmaxes, same ranking
    assert weights.weight_step_graph(None) is first and weights._discrete[False].builds == 1
    row = alphas["alpha_normal"].d[0]
    row[:] = -10.0
    row[3] = 30.0  # edge 0 now keeps sep_conv_5x5 and wins node 2
    second = weights.weight_step_graph(None)
    assert second is not first and weights._discrete[False].builds == 2
    assert kept_ops(alphas)["alpha_normal"][0] == 3


def test_weight_decay_and_momentum_move_the_unused_ops_weights_as_in_the_dadarts_code(fresh):
    """The DADARTS code trains the supernet fed one-hot weights with torch's SGD over every weight: the ops
    that are not kept get a zero gradient, so weight decay and momentum still move them. Here too."""
    variant = dadarts(DadartsSettings(hd_on_weights=True), spread_alphas(5))
    variant.start_epoch(0, 10)
    search_network(nn.Variable(SHAPE), softmax_weights(variant.alphas), CLASSES, CHANNELS, CELLS)  # every op's weights
    weights = weight_parameters()
    lr, wd = 0.1, 0.01
    optimizer = SGD(weights, lr, 0.9, wd, 5.0)
    graph = variant.weight_step_graph(None)
    rng = np.random.RandomState(6)
    steps = []
    for _ in range(2):
        feed(graph, (rng.randn(*SHAPE), rng.randint(0, CLASSES, (SHAPE[0], 1))))
        optimizer.zero_grad()
        forward_backward(graph)
        steps.append({name: w.d.copy() for name, w in weights.items() if not np.any(w.g)})
        optimizer.step()
    unused = set(steps[0]) & set(steps[1])
    assert len(unused) > len(weights) / 2
    for name in unused:  # torch: buf = momentum * buf + wd * w, w -= lr * buf
        w0, w1, w2 = steps[0][name], steps[1][name], weights[name].d
        np.testing.assert_allclose(w1, w0 - lr * wd * w0, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(w2, w1 - lr * (0.9 * wd * w0 + wd * w1), rtol=1e-6, atol=1e-9)


def test_hd_start_and_topk_on_weights_decide_what_the_weight_step_runs():
    assert not DadartsSettings(hd_on_weights=True, hd_start=3).hard_discretized_weights(2)
    assert DadartsSettings(hd_on_weights=True, hd_start=3).hard_discretized_weights(3)
    # Top-k wins over hard discretization where both are asked for the weights, as in the seed.
    assert not DadartsSettings(hd_on_weights=True, topk_on_weights=True).hard_discretized_weights(5)


def test_schedules_of_the_temperature_and_the_dal_factor():
    linear = DadartsSettings(linear_temperature_increase=True, linear_temperature_max=200)
    assert [linear.temperature(e, 50) for e in (0, 1, 49)] == [0.0, 4.0, 196.0]
    assert DadartsSettings(topk_temperature=3.0).temperature(7, 50) == 3.0
    dal = DadartsSettings(dal_on_alphas=True, dal_factor=0.5, dal_starting_epoch=2)
    assert [dal.dal_weight(e, 10) for e in (0, 1, 2, 9)] == [0.0, 0.0, 0.5, 0.5]
    rising = DadartsSettings(dal_on_alphas=True, linear_dal_factor_increase=True, dal_factor_max=2)
    assert rising.dal_weight(5, 10) == 1.0
    assert DadartsSettings().dal_weight(5, 10) == 0.0


@pytest.mark.parametrize("cells, reduction_moves", [("both", True), ("normal", False)])
def test_dal_in_the_alpha_loss_regularises_the_cells_asked_for(fresh, cells, reduction_moves):
    weights = dadarts(DadartsSettings(dal_on_alphas=True, dal_cells=cells), spread_alphas(3))
    alphas = weights.alphas
    weights.start_epoch(0, 10)
    penalty = weights.alpha_penalty()
    weights.before_alpha_step()
    for a in alphas.values():
        a.grad.zero()
    penalty.forward()
    penalty.backward()
    names = ALPHA_NAMES if cells == "both" else ALPHA_NAMES[:1]
    assert float(penalty.d) == pytest.approx(weights.dal_value(), rel=1e-5)
    assert weights.dal_value() == pytest.approx(
        sum(dal_numpy(softmax_rows(alphas[name].d)) for name in names), rel=1e-6)
    assert np.any(alphas["alpha_normal"].g)
    assert np.any(alphas["alpha_reduction"].g) == reduction_moves


def dal_numpy(w):
    hd = hard_discretization(w)
    starts = np.cumsum([0, 2, 3, 4])
    return np.mean([np.mean((w[s:s + n] - hd[s:s + n]) ** 2) for s, n in zip(starts, (2, 3, 4, 5))])


def test_topk_on_alphas_mixes_the_alpha_step_with_the_transformed_weights(fresh):
    weights = dadarts(DadartsSettings(topk_on_alphas=True), spread_alphas(4))
    alphas = weights.alphas
    weights.start_epoch(0, 10)
    plain = weights.mixing("weights")["alpha_normal"]
    transformed = weights.mixing("alphas")["alpha_normal"]
    plain.forward()
    transformed.forward()
    np.testing.assert_allclose(plain.d, softmax_rows(alphas["alpha_normal"].d), rtol=1e-5)
    assert np.all(transformed.d <= plain.d + 1e-6) and not np.allclose(transformed.d, plain.d)


@pytest.mark.parametrize("flags, second_order, hd_on_weights", [
    ([], True, True),  # the DADARTS code always takes the second-order alpha gradient
    (["--second-order", "False"], False, True),
    (["--hd-on-weights", "no"], True, False),  # every flag of the preset: given wins
])
def test_the_preset_runs_second_order_unless_a_flag_given_says_otherwise(flags, second_order, hd_on_weights):
    args = parse_args(search_parser(), ["--dadarts", *flags])
    assert (args.variant, args.second_order, args.hd_on_weights) == ("dadarts", second_order, hd_on_weights)
    assert args.dal_on_alphas and args.topk_on_alphas and args.linear_temperature_increase
    assert not parse_args(search_parser(), ["--variant", "dadarts"]).second_order  # the preset's, not the variant's


def test_a_config_file_given_value_wins_over_the_preset(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("second_order: false\nhd_on_weights: false\n")
    args = parse_args(search_parser(), ["--dadarts", "--config", str(config)])
    assert not args.second_order and not args.hd_on_weights and args.dal_on_alphas


# ---------------------------------------------------------------- the script


@pytest.mark.slow
def test_the_preset_runs_writes_its_outputs_and_resumes_exactly(tiny_search, tmp_path):
    whole = tiny_search(tmp_path / "whole", "--epoch", "2", "--dadarts", "--second-order", "--finetune-epochs", "1")
    tiny_search(tmp_path / "parts", "--epoch", "1", "--dadarts", "--second-order")
    parts = tiny_search(tmp_path / "parts", "--epoch", "2", "--dadarts", "--second-order", "--resume")
    for history in ("alpha_history.npz", "topk_history.npz"):
        for key in ("normal", "reduction"):
            np.testing.assert_array_equal(np.load(whole / history)[key], np.load(parts / history)[key])
    np.testing.assert_array_equal(series(whole, "Temperature")[:, 1], [0.0, 100.0])
    assert np.all(series(whole, "DAL")[:, 1] > 0)
    for name in ("Discretized validation error", "Validation error", "Alpha-step error"):
        np.testing.assert_array_equal(series(whole, name), series(parts, name))
    # With hard discretization on the weights, the validation is the discretized network's.
    np.testing.assert_array_equal(series(whole, "Validation error"), series(whole, "Discretized validation error"))
    genotype = (whole / "genotype.txt").read_text().strip()
    assert load_architecture(genotype) == load_architecture(str(whole / "DARTS_arch.json"))
    summary = json.loads((whole / "search_summary.json").read_text())
    assert summary["finetune_epochs"] == 1
    assert set(summary) >= {"validation_error", "discretized_validation_error",
                            "finetuned_discretized_validation_error"}


@pytest.mark.slow
def test_a_derivation_with_concat_subsets_trains(tiny_search, tmp_path):
    out = tiny_search(tmp_path / "best", "--epoch", "1", "--derivation", "all")
    arch = load_architecture(str(out / "DARTS_arch.json"))
    assert arch.normal_concat  # whatever nodes the rule kept
    darts_train.main(["--dataset", "digits", "--num-cells", "3", "--output-filter", "4", "-f", "0", "-b", "100",
                      "--epoch", "1", "--model-arch-name", str(out / "DARTS_arch.json"), "-m", str(tmp_path / "t")])
    assert (tmp_path / "t" / "final_params.h5").exists()


@pytest.mark.parametrize("extra, message", [
    (["--topk-on-alphas", "--topk-k-node", "0"], "k_node = 0 does not work with option 1"),
    (["--topk-on-weights", "--topk-k-edge", "8"], "k_edge"),
    (["--topk-on-virtualstep"], "needs --second-order"),
    (["--hd-start", "3"], "--hd-start needs --hd-on-weights"),
])
def test_impossible_combinations_are_one_line_errors_before_any_data(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        darts_search.main(["--dataset", "digits", "--variant", "dadarts", "-m", str(tmp_path / "bad"), *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()

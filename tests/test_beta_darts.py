"""β-DARTS: the beta-decay penalty and its gradient, its weight's schedule, and the penalty in the alpha step's loss.

The expected values are transcribed from Sunshine-Ye/Beta-DARTS optimizers/darts/architect.py: `mlc_loss` is
torch.mean(torch.logsumexp(arch_param, dim=-1)) (here on the two cells' alphas stacked, see the variant's
docstring), and `_backward_step` adds it to the validation loss with the weight `0 + 50*epoch/100`. Its DARTS space
(sota/cnn/spaces.py 's5') has no 'none': its alphas are our columns but the last (the zero op's).
"""
import nnabla as nn
import numpy as np
import pytest

from args import parse_args, search_parser
from models.graph import feed, forward_backward
from models.search_network import ALPHA_NAMES
from ops.operations import ZERO_OP
from utils.search.bilevel import build_search_graphs
from utils.search.variant import SearchSetup
from utils.search.variants.beta_darts import BetaDarts, BetaDartsSettings, beta_decay_value

SHAPE, CLASSES, CHANNELS, CELLS = (4, 1, 8, 8), 3, 4, 3


def original_columns(variant):
    """The two cells' alphas as the original has them: (14, 7), no 'none' (our last column)."""
    return [variant.alphas[name].d[:, :7] for name in ALPHA_NAMES]


def original_mlc_loss(alphas):
    """mean(logsumexp(alpha, dim=-1)) over the (2, 14, ops) stack of the two cells' alphas."""
    stacked = np.stack(alphas).astype(np.float64)
    return np.mean(np.log(np.sum(np.exp(stacked), axis=-1)))


def original_mlc_gradient(alphas):
    """d mlc_loss / d alpha: each edge's softmax over its ops, divided by the number of edges (28)."""
    stacked = np.stack(alphas).astype(np.float64)
    soft = np.exp(stacked) / np.exp(stacked).sum(axis=-1, keepdims=True)
    return soft / (stacked.shape[0] * stacked.shape[1])


def original_weight(epoch):
    return 0 + 50 * epoch / 100


@pytest.fixture
def fresh():
    nn.clear_parameters()
    yield
    nn.clear_parameters()


def beta_darts(*flags):
    settings = BetaDartsSettings.from_args(parse_args(search_parser(), ["--variant", "beta-darts", *flags]))
    return BetaDarts(settings, SearchSetup(SHAPE, CLASSES, CHANNELS, CELLS, seed=0, rng=np.random.RandomState(0)))


def spread_alphas(variant):
    """Alphas far from their 1e-3 initialisation (some large), so that the logsumexp is not log(8) everywhere."""
    rng = np.random.default_rng(1)
    for name in ALPHA_NAMES:
        variant.alphas[name].d = rng.normal(0, 3, variant.alphas[name].shape)
    variant.alphas[ALPHA_NAMES[0]].d[0, 2] = 60.0  # exp(60) overflows float32: the penalty must stay finite


def test_the_penalty_and_its_gradient_are_the_original_s(fresh):
    variant = beta_darts()
    spread_alphas(variant)
    variant.start_epoch(30, 50)
    penalty = variant.alpha_penalty()
    for alpha in variant.alphas.values():
        alpha.grad.zero()
    penalty.forward()
    penalty.backward()
    values = original_columns(variant)
    weight = original_weight(30)
    np.testing.assert_allclose(float(penalty.d), weight * original_mlc_loss(values), rtol=1e-5)
    gradient = weight * original_mlc_gradient(values)
    for i, name in enumerate(ALPHA_NAMES):
        np.testing.assert_allclose(variant.alphas[name].g[:, :7], gradient[i], rtol=1e-4, atol=1e-7)
        assert np.all(variant.alphas[name].g[:, 7] == 0)  # 'none' is not searched
    assert variant.epoch_values()["Beta-decay loss"] == pytest.approx(original_mlc_loss(values), rel=1e-6)


def test_with_the_none_op_the_penalty_reads_all_eight_columns(fresh):
    variant = beta_darts("--beta-decay-none-op")
    spread_alphas(variant)
    variant.start_epoch(10, 50)
    penalty = variant.alpha_penalty()
    penalty.forward()
    values = [variant.alphas[name].d for name in ALPHA_NAMES]
    assert float(penalty.d) == pytest.approx(5.0 * original_mlc_loss(values), rel=1e-5)
    assert beta_decay_value(values) == pytest.approx(original_mlc_loss(values), rel=1e-6)


@pytest.mark.parametrize("none_op", [False, True])
def test_every_pass_mixes_the_softmax_of_the_searched_ops(fresh, none_op):
    """As the original's Network.forward, F.softmax over its 7 ops ('none' gets 0); all 8 with --beta-decay-none-op."""
    variant = beta_darts(*(["--beta-decay-none-op"] if none_op else []))
    spread_alphas(variant)
    ops = 8 if none_op else 7
    for purpose in ("weights", "alphas"):
        for name, weights in variant.mixing(purpose).items():
            weights.forward()
            alpha = variant.alphas[name].d[:, :ops].astype(np.float64)
            expected = np.exp(alpha - alpha.max(axis=1, keepdims=True))
            expected = np.pad(expected / expected.sum(axis=1, keepdims=True), ((0, 0), (0, 8 - ops)))
            np.testing.assert_allclose(weights.d, expected, rtol=1e-5, atol=1e-30)


def test_the_cell_is_derived_from_the_searched_ops(fresh):
    """The original's genotype() ranks each node's edges by their strongest op of a softmax over 7 ops. A 'none'
    alpha that would take most of an edge's softmax over 8 (and so decide DARTS's ranking) plays no part."""
    variant = beta_darts()
    rng = np.random.default_rng(2)
    values = {name: rng.normal(0, 1, (14, 8)) for name in ALPHA_NAMES}
    values["alpha_normal"][0, 7] = 30.0  # node 2's edge from input 0: 'none' dominates its 8-op softmax
    arch = variant.derive(variant.settings, values)
    seven = {name: np.concatenate([v[:, :7], np.full((14, 1), -1e3)], axis=1) for name, v in values.items()}
    eight = beta_darts("--beta-decay-none-op")
    assert arch == eight.derive(eight.settings, seven)
    assert arch != eight.derive(eight.settings, values)


def test_the_weight_follows_the_original_s_schedule_fed_every_epoch(fresh):
    variant = beta_darts()
    for epoch in (0, 1, 17, 49, 99, 120):
        variant.start_epoch(epoch, 50)  # the original divides by 100 whatever the number of epochs
        assert float(variant.weight.d) == pytest.approx(original_weight(epoch))
        assert variant.epoch_values()["Beta-decay weight"] == pytest.approx(original_weight(epoch))


def test_the_schedule_s_maximum_and_length_are_settings(fresh):
    variant = beta_darts("--beta-decay-max", "8", "--beta-decay-epochs", "10")
    variant.start_epoch(5, 10)
    assert float(variant.weight.d) == pytest.approx(8 * 5 / 10)


@pytest.mark.parametrize("second_order", [False, True])
def test_the_alpha_step_s_loss_and_gradient_add_the_weighted_penalty(fresh, second_order):
    """The alpha step's graph, at an epoch where the weight is 20: its loss is the cross-entropy plus
    20 * mlc_loss, and its alpha gradient that of the cross-entropy plus 20 * mlc_loss's."""
    variant = beta_darts()
    spread_alphas(variant)
    graphs = build_search_graphs(variant.network, SHAPE, second_order, variant.alpha_penalty)
    plain = build_search_graphs(variant.network, SHAPE, second_order)  # the same network without the penalty
    variant.start_epoch(40, 50)
    rng = np.random.default_rng(0)
    batch = (rng.standard_normal(SHAPE), rng.integers(0, CLASSES, (SHAPE[0], 1)))

    def loss_and_gradients(graph):
        for alpha in variant.alphas.values():
            alpha.grad.zero()
        feed(graph, batch)
        forward_backward(graph)
        return float(graph.loss.d), [variant.alphas[name].g.copy() for name in ALPHA_NAMES]
    loss, gradients = loss_and_gradients(graphs.val)
    cross_entropy, plain_gradients = loss_and_gradients(plain.val)
    values = original_columns(variant)
    assert loss - cross_entropy == pytest.approx(20.0 * original_mlc_loss(values), rel=1e-5)
    penalty_gradient = 20.0 * original_mlc_gradient(values)
    for i in range(2):
        np.testing.assert_allclose(gradients[i][:, :7] - plain_gradients[i][:, :7], penalty_gradient[i],
                                   rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("none_op", [False, True])
def test_the_discretized_network_keeps_the_searched_ops_unless_none_is_searched(fresh, none_op):
    variant = beta_darts(*(["--beta-decay-none-op"] if none_op else []))
    for alpha in variant.alphas.values():
        alpha.d = np.random.RandomState(3).randn(*alpha.shape)
        alpha.d[:, -1] = 10.0  # 'none' strongest on every edge, untrained in the original's space
    kept = variant.discretized_ops()
    kept_none = {op_id == ZERO_OP for cell in kept.values() for op_id in cell.values()}
    # by hand: each node's two edges, each at its strongest op over the columns searched
    assert kept_none == ({True} if none_op else {False})
    assert all(len(cell) == 8 for cell in kept.values())  # two edges into each of the 4 nodes

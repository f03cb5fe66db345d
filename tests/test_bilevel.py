"""The alpha gradients of the bilevel optimiser against finite differences of the objectives they claim to differentiate."""
import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF
import numpy as np
import pytest

from models.graph import feed, forward_backward
from models.search_network import all_weight_state, create_alphas, search_network, softmax_weights, weight_parameters
from utils.optim.solvers import SGD, Adam
from utils.run.run import seed_everything
from utils.search.bilevel import BilevelOptimizer, PlainSteps, build_search_graphs

BATCH, CLASSES = 8, 4
# Central differences in float32 on a loss near 1.4: a step of 0.01 keeps the rounding error
# of the difference (~1e-7 / 0.02) far below the gradient entries (~1e-2) and the truncation error
# (step^2 times a third derivative of tanh/softmax, ~1e-4) small too.
STEP = 0.01
# Relative error allowed between the analytic and the finite-difference gradient. Measured: about 2e-5
# (first order) and 1e-4 (second order, which also carries the O(eps^2) error of its finite-difference
# Hessian-vector product). The first-order gradient misses the second-order objective by over a
# hundred times this (asserted below), so the check tells the two apart.
TOLERANCE = 1e-3


def smooth_bilevel_problem(rng):
    """A softmax(alpha)-weighted mixture of three tanh layers: smooth in weights and alphas.

    The search network's unrolled objective L_val(w - xi * dL_train/dw, a) is only piecewise smooth:
    dL_train/dw jumps wherever a ReLU or a max pooling switches, so finite differences of it are
    noise. The optimiser's gradient identity is checked on this smooth problem instead.
    """
    alphas = {"alpha": nn.parameter.get_parameter_or_create(
        "arch/alpha", (1, 3), rng.randn(1, 3).astype(np.float32), need_grad=True)}

    def network(x, frozen, purpose):
        with nn.parameter_scope("net"):
            hidden = F.tanh(PF.affine(x, 6, fix_parameters=frozen, name="in"))
            weights = F.split(F.softmax(alphas["alpha"], axis=1), axis=1)
            mixed = sum(F.tanh(PF.affine(hidden, 6, fix_parameters=frozen, name=f"op{k}")) * F.reshape(w, (1, 1))
                        for k, w in enumerate(weights))
            return PF.affine(mixed, CLASSES, fix_parameters=frozen, name="out")
    graphs = build_search_graphs(network, (BATCH, 5), second_order=True)
    with nn.parameter_scope("net"):
        weights = nn.get_parameters()
    return alphas, graphs, weights, weights


def search_network_problem(rng):
    alphas = create_alphas(rng)
    for a in alphas.values():  # away from uniform, so every op matters differently
        a.d = rng.randn(*a.shape) * 0.5

    def network(x, frozen, purpose):
        return search_network(x, softmax_weights(alphas), CLASSES, channels=4, num_cells=3, frozen=frozen)
    graphs = build_search_graphs(network, (BATCH, 1, 8, 8), second_order=True)
    return alphas, graphs, weight_parameters(), all_weight_state()


def make_setup(problem):
    nn.clear_parameters()
    rng = seed_everything(0)
    alphas, graphs, weights, network_state = problem(rng)
    train_graph, _, val_graph, hessian_graph = graphs
    input_shape = train_graph.x.shape
    train_batch, val_batch = [(rng.randn(*input_shape).astype(np.float32), rng.randint(0, CLASSES, (BATCH, 1)))
                              for _ in range(2)]
    feed(train_graph, train_batch)
    feed(hessian_graph, train_batch)
    feed(val_graph, val_batch)

    def optimizer(xi):
        # No momentum history and no weight decay: the virtual step is exactly w - xi * dL_train/dw.
        return BilevelOptimizer(graphs, weights, network_state, alphas,
                                SGD(weights, xi, 0.9, 0.0, 5.0), Adam(alphas, 3e-4, 0.5, 0.999, 0.0))
    return alphas, train_graph, val_graph, weights, optimizer, rng


@pytest.fixture
def smooth():
    yield make_setup(smooth_bilevel_problem)
    nn.clear_parameters()


@pytest.fixture
def setup():
    yield make_setup(search_network_problem)
    nn.clear_parameters()


def val_loss(val_graph):
    val_graph.loss.forward(clear_no_need_grad=True)
    return float(val_graph.loss.d)


def unrolled_val_loss(train_graph, val_graph, weights, xi):
    """L_val(w - xi * dL_train(w, a)/dw, a), leaving w as it was."""
    saved = {k: w.d.copy() for k, w in weights.items()}
    for w in weights.values():
        w.grad.zero()
    forward_backward(train_graph)
    for w in weights.values():
        w.d = w.d - xi * w.g
    loss = val_loss(val_graph)
    for k, w in weights.items():
        w.d = saved[k]
    return loss


def finite_difference(alphas, entries, objective):
    grads = []
    for name, index in entries:
        a = alphas[name]
        original = a.d.copy()
        values = []
        for sign in (1, -1):
            shifted = original.copy()
            shifted[index] += sign * STEP
            a.d = shifted
            values.append(objective())
        a.d = original
        grads.append((values[0] - values[1]) / (2 * STEP))
    return np.array(grads)


def every_entry(alphas):
    return [(name, index) for name, a in alphas.items() for index in np.ndindex(*a.shape)]


def analytic(alphas, entries):
    return np.array([alphas[name].g[index] for name, index in entries])


def relative_error(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def first_order_gradient(alphas, val_graph):
    for a in alphas.values():
        a.grad.zero()
    forward_backward(val_graph)
    return {k: a.g.copy() for k, a in alphas.items()}


def second_order_gradient(alphas, optimizer, xi):
    for a in alphas.values():
        a.grad.zero()
    optimizer(xi).unrolled_alpha_gradient()
    return {k: a.g.copy() for k, a in alphas.items()}


def test_first_order_gradient_matches_finite_differences_of_val_loss(smooth):
    alphas, train_graph, val_graph, weights, optimizer, rng = smooth
    entries = every_entry(alphas)
    first_order_gradient(alphas, val_graph)
    grad = analytic(alphas, entries)
    numeric = finite_difference(alphas, entries, lambda: val_loss(val_graph))
    assert relative_error(grad, numeric) < TOLERANCE


def test_second_order_gradient_matches_finite_differences_of_unrolled_loss(smooth):
    alphas, train_graph, val_graph, weights, optimizer, rng = smooth
    xi = 0.5  # large, so that the second-order term is a large share of the gradient
    entries = every_entry(alphas)
    first = first_order_gradient(alphas, val_graph)
    second_order_gradient(alphas, optimizer, xi)
    grad = analytic(alphas, entries)
    numeric = finite_difference(alphas, entries, lambda: unrolled_val_loss(train_graph, val_graph, weights, xi))
    assert relative_error(grad, numeric) < TOLERANCE
    first_at_entries = np.array([first[name][index] for name, index in entries])
    assert relative_error(first_at_entries, numeric) > 100 * TOLERANCE


def test_second_order_equals_first_order_at_zero_xi_and_differs_otherwise(setup):
    alphas, train_graph, val_graph, weights, optimizer, rng = setup
    first = first_order_gradient(alphas, val_graph)
    at_zero = second_order_gradient(alphas, optimizer, 0.0)
    at_lr = second_order_gradient(alphas, optimizer, 0.025)
    for name in first:
        np.testing.assert_allclose(at_zero[name], first[name], rtol=1e-5, atol=1e-8)
        assert not np.allclose(at_lr[name], first[name], rtol=1e-3, atol=0)


def test_unrolled_gradient_leaves_weights_and_bn_statistics_exactly_as_they_were(setup):
    alphas, train_graph, val_graph, weights, optimizer, rng = setup
    before = {k: v.d.copy() for k, v in all_weight_state().items()}
    second_order_gradient(alphas, optimizer, 0.1)
    for k, v in all_weight_state().items():
        assert np.array_equal(v.d, before[k]), k


def test_a_search_step_moves_alphas_with_the_second_order_gradient(setup):
    alphas, train_graph, val_graph, weights, optimizer, rng = setup
    before = {k: a.d.copy() for k, a in alphas.items()}
    opt = optimizer(0.025)
    batch = (train_graph.x.d.copy(), train_graph.y.d.copy())
    opt.step(batch, (val_graph.x.d.copy(), val_graph.y.d.copy()))
    for k, a in alphas.items():
        assert not np.array_equal(a.d, before[k])


def test_frozen_validation_graph_gives_the_same_alpha_gradient_and_no_weight_gradient(setup):
    alphas, train_graph, val_graph, weights, optimizer, rng = setup
    full = first_order_gradient(alphas, val_graph)
    def network(x, frozen, purpose):
        return search_network(x, softmax_weights(alphas), CLASSES, channels=4, num_cells=3, frozen=frozen)
    _, _, frozen_val, hessian = build_search_graphs(network, val_graph.x.shape, second_order=False)
    assert hessian is None
    feed(frozen_val, (val_graph.x.d.copy(), val_graph.y.d.copy()))
    for w in weights.values():
        w.grad.zero()
    frozen = first_order_gradient(alphas, frozen_val)
    for name in full:
        np.testing.assert_array_equal(frozen[name], full[name])
    assert all(not np.any(w.g) for w in weights.values())


def test_the_weight_step_sees_the_alphas_its_own_alpha_step_just_moved(setup):
    """DARTS alternates: the weight step of a search step runs with the alphas updated by that step."""
    alphas, train_graph, val_graph, weights, optimizer, rng = setup
    train_batch = (train_graph.x.d.copy(), train_graph.y.d.copy())
    weights_before = {k: w.d.copy() for k, w in weights.items()}
    alphas_before = {k: a.d.copy() for k, a in alphas.items()}
    optimizer(0.025).step(train_batch, (val_graph.x.d.copy(), val_graph.y.d.copy()))
    loss_in_step = float(train_graph.loss.d)

    def train_loss_with(alpha_values):
        for k, w in weights.items():
            w.d = weights_before[k]
        for k, a in alphas.items():
            a.d = alpha_values[k]
        train_graph.loss.forward(clear_no_need_grad=True)
        return float(train_graph.loss.d)
    alphas_after = {k: a.d.copy() for k, a in alphas.items()}
    assert train_loss_with(alphas_after) == loss_in_step
    assert train_loss_with(alphas_before) != loss_in_step


class ScheduledSteps(PlainSteps):
    """A variant's step hooks that record what the optimiser hands them and when."""

    def __init__(self, trains_alphas, zero_the_batch=False):
        self.trains_alphas = trains_alphas
        self.zero_the_batch = zero_the_batch
        self.calls = []
        self.optimizer = None

    def before_alpha_step(self):
        self.calls.append("before alpha step")

    def before_weight_step(self, train_batch):
        graph = self.optimizer.weight_graph
        fed = np.array_equal(graph.x.d, train_batch[0]) and np.array_equal(graph.y.d, train_batch[1])
        self.calls.append(("before weight step", fed))
        if self.zero_the_batch:
            graph.x.d = 0.0  # what the weight step then trains on


@pytest.mark.parametrize("second_order", [False, True])
@pytest.mark.parametrize("trains_alphas", [False, True])
def test_a_step_without_alpha_step_leaves_the_alphas_and_still_measures_the_validation_loss(setup, trains_alphas,
                                                                                          second_order):
    alphas, train_graph, val_graph, weights, optimizer, rng = setup
    steps = ScheduledSteps(trains_alphas)
    graphs = (train_graph, train_graph, val_graph, optimizer(0.025).hessian_graph if second_order else None)
    steps.optimizer = opt = BilevelOptimizer(graphs, weights, all_weight_state(), alphas,
                                             SGD(weights, 0.025, 0.9, 3e-4, 5.0), Adam(alphas, 3e-3, 0.5, 0.999, 0.0),
                                             steps=steps)
    alphas_before = {k: a.d.copy() for k, a in alphas.items()}
    weights_before = {k: w.d.copy() for k, w in weights.items()}
    val_batch = (rng.randn(*val_graph.x.shape).astype(np.float32), rng.randint(0, CLASSES, (BATCH, 1)))
    val_graph.loss.d = -1.0
    opt.step((train_graph.x.d.copy(), train_graph.y.d.copy()), val_batch)
    measured = float(val_graph.loss.d)
    assert [not np.array_equal(a.d, alphas_before[k]) for k, a in alphas.items()] == [trains_alphas] * len(alphas)
    assert not np.array_equal(weights["cell0/edge0/sep_conv_3x3/sep0_dw/depthwise_conv/W"].d,
                              weights_before["cell0/edge0/sep_conv_3x3/sep0_dw/depthwise_conv/W"])
    # the validation loss at the step's start: the alpha step's forward pass, or the forward pass alone (a second-order
    # alpha step leaves the loss at the virtual step's weights instead)
    for k, w in weights.items():
        w.d = weights_before[k]
    for k, a in alphas.items():
        a.d = alphas_before[k]
    if not (second_order and trains_alphas):
        assert measured == pytest.approx(val_loss(val_graph), rel=1e-6)
    assert steps.calls == ["before alpha step"] * trains_alphas + [("before weight step", True)]


def test_the_weight_step_trains_on_what_before_weight_step_leaves_in_its_graph(setup):
    alphas, train_graph, val_graph, weights, optimizer, rng = setup
    steps = ScheduledSteps(trains_alphas=False, zero_the_batch=True)
    steps.optimizer = opt = BilevelOptimizer((train_graph, train_graph, val_graph, None), weights, all_weight_state(),
                                             alphas, SGD(weights, 0.025, 0.0, 0.0, 5.0),
                                             Adam(alphas, 3e-3, 0.5, 0.999, 0.0), steps=steps)
    opt.step((train_graph.x.d.copy(), train_graph.y.d.copy()), (val_graph.x.d.copy(), val_graph.y.d.copy()))
    assert not np.any(train_graph.x.d)  # the hook's zeroed batch is what the step's forward pass read

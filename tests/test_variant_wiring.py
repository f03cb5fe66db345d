"""What each pass of a search actually runs with, per variant: a variant's effect on a pass that is
silently dropped fails one of these (the formulas themselves are tested in test_topk, test_discretization,
test_complexity, test_mixing and test_hypernetwork)."""
import nnabla as nn
import numpy as np
import pytest

from models.discretization import hard_discretization, softmax_rows
from models.search_network import ALPHA_NAMES, all_weight_state, alpha_parameters, weight_parameters
from utils.optim.solvers import SGD, Adam
from utils.search.bilevel import BilevelOptimizer, build_search_graphs
from utils.search.variant import SearchSetup
from utils.search.variants.complexity import ComplexityControl, ComplexitySettings
from utils.search.variants.dadarts import Dadarts, DadartsSettings

SHAPE = (4, 1, 8, 8)


@pytest.fixture
def fresh():
    nn.clear_parameters()
    yield
    nn.clear_parameters()


def search_step_machine(Variant, settings, second_order):
    """A variant on a one-cell network, its graphs and its BilevelOptimizer, as darts_search.search wires them."""
    setup = SearchSetup(SHAPE, 3, 2, 1, seed=5, rng=np.random.RandomState(0))
    variant = Variant(settings, setup)
    graphs = build_search_graphs(variant.network, SHAPE, second_order, variant.alpha_penalty, variant.separate_virtual)
    weights = weight_parameters()
    optimizer = BilevelOptimizer(graphs, weights, all_weight_state(), alpha_parameters(),
                                 SGD(weights, 0.025, 0.9, 3e-4, 5.0), Adam(alpha_parameters(), 3e-3, 0.5, 0.999, 1e-3),
                                 steps=variant)
    return variant, graphs, optimizer


def batch(seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=SHAPE).astype(np.float32), rng.integers(0, 3, (SHAPE[0], 1))


def function_count(graph, type_name):
    names = []
    graph.loss.visit(lambda f: names.append(f.info.type_name))
    return names.count(type_name)


def spread(variant, seed=1):
    rng = np.random.RandomState(seed)
    for alpha in variant.alphas.values():
        alpha.d = rng.randn(*alpha.shape) * 2


# The top-k masks are sigmoids of the bisection; no other part of the search network has one.
@pytest.mark.parametrize("flags, expected", [
    ({"topk_on_alphas": True}, {"train": False, "virtual": False, "val": True, "hessian": True}),
    # The virtual step has its own flag: with top-k on the weights only, it mixes without.
    ({"topk_on_weights": True}, {"train": True, "virtual": False, "val": False, "hessian": False}),
    ({"topk_on_weights": True, "topk_on_virtualstep": True},
     {"train": True, "virtual": True, "val": False, "hessian": False}),
    ({"topk_on_virtualstep": True}, {"train": False, "virtual": True, "val": False, "hessian": False}),
])
def test_each_pass_of_dadarts_mixes_with_top_k_where_asked(fresh, flags, expected):
    _, graphs, _ = search_step_machine(Dadarts, DadartsSettings(**flags), second_order=True)
    for pass_name, topk in expected.items():
        assert (function_count(getattr(graphs, pass_name), "Sigmoid") > 0) == topk, pass_name


def test_the_weight_step_trains_the_hard_discretized_network(fresh):
    variant, graphs, optimizer = search_step_machine(Dadarts, DadartsSettings(hd_on_weights=True), False)
    spread(variant)
    variant.start_epoch(0, 10)
    optimizer.step(batch(0), batch(1))
    trained = {name for name, w in weight_parameters().items() if np.any(w.g)}
    # Only the kept ops' weights (and the stem, preprocessing and classifier) get a gradient.
    assert optimizer.weight_graph is variant.discretized_graph(test=False)
    assert 0 < len(trained) < len(weight_parameters()) // 2
    assert variant.validation_graph() is variant.discretized_graph(test=True)

    variant.settings = DadartsSettings()  # the supernet: every op's weights move
    variant.start_epoch(0, 10)
    optimizer.step(batch(0), batch(1))
    assert optimizer.weight_graph is graphs.train
    assert len({name for name, w in weight_parameters().items() if np.any(w.g)}) > 2 * len(trained)


def test_the_dal_targets_are_the_hard_discretization_before_each_alpha_step(fresh):
    variant, graphs, optimizer = search_step_machine(Dadarts, DadartsSettings(dal_on_alphas=True), False)
    variant.start_epoch(0, 10)
    assert float(variant.dal_factor.d) == 1.0
    for step in range(3):
        spread(variant, seed=step)  # a new hard discretization every step
        before = {name: variant.alphas[name].d.copy() for name in ALPHA_NAMES}
        optimizer.step(batch(2 * step), batch(2 * step + 1))
        for name in ALPHA_NAMES:
            np.testing.assert_array_equal(variant._dal_targets[name].d, hard_discretization(softmax_rows(before[name])))
    # ... and the alpha step's loss carries the DAL of those targets.
    penalty = variant.alpha_penalty()
    penalty.forward()
    assert float(penalty.d) == pytest.approx(variant.dal_value(), rel=1e-5) and float(penalty.d) > 0


def test_complexity_control_draws_a_new_lambda_and_noise_every_step(fresh):
    variant, graphs, optimizer = search_step_machine(ComplexityControl, ComplexitySettings(-3, -1), False)
    variant.start_epoch(0, 10)
    lambdas, noises = [], []
    for step in range(3):
        optimizer.step(batch(2 * step), batch(2 * step + 1))
        # The weight step ran with the λ the alpha step drew: it is still in the input.
        lambdas.append(float(variant.lambda_input.lam.d[0]))
        noises.append(variant.sampler.noise[0].d.copy())
    assert len(set(lambdas)) == 3 and all(1e-3 <= lam <= 1e-1 for lam in lambdas)
    assert not np.array_equal(noises[0], noises[1]) and not np.array_equal(noises[1], noises[2])
    assert variant.penalty_mean.count == 3 and variant.penalty_mean.mean > 0
    # The val graph (alpha step) carries λ·P; the training graph does not.
    assert function_count(graphs.val, "Mul2") > function_count(graphs.train, "Mul2")

    # The draws depend on (seed, epoch, step) only: a new run in the same epoch draws the same λ.
    again, _, optimizer = search_step_machine(ComplexityControl, ComplexitySettings(-3, -1), False)
    again.start_epoch(0, 10)
    optimizer.step(batch(0), batch(1))
    assert float(again.lambda_input.lam.d[0]) == lambdas[0]


def test_complexity_control_validates_with_the_expected_weights_at_lambda_0(fresh):
    variant, graphs, _ = search_step_machine(ComplexityControl, ComplexitySettings(-3, -1), False)
    variant.lambda_input.set_normalised(0.7)
    graph = variant.validation_graph()
    assert float(variant.lambda_input.lam_tilde.d[0]) == 0.0
    # Deterministic: no Gumbel sample (a log-softmax plus noise) in it, unlike the training graph.
    assert function_count(graph, "LogSoftmax") == 0 and function_count(graphs.train, "LogSoftmax") > 0

"""The var_nas pieces drive today's bilevel optimizer unchanged: hypernetwork alphas, Gumbel mixing, λ classifier, λ·P."""
import nnabla as nn
import nnabla.functions as F
import numpy as np
import pytest

from models.complexity import complexity_penalty, parameter_table
from models.hypernetwork import Hypernetwork, LambdaInput, piecewise_linear_classifier
from models.mixing import Mixing
from models.search_network import all_weight_state, alpha_parameters, search_network, weight_parameters
from utils.optim.solvers import SGD, Adam
from utils.search.bilevel import BilevelOptimizer, build_search_graphs


@pytest.mark.parametrize("second_order", [False, True])
def test_one_complexity_controlled_search_step(second_order):
    nn.clear_parameters()
    rng = np.random.RandomState(0)
    lam = LambdaInput(-8, -4)
    hypernet = Hypernetwork(lam, rng)
    mixing = Mixing("gumbel", temperature_start=1.0, temperature_delta=-0.016)
    classifier = piecewise_linear_classifier(lam, rng)
    channels, cells = 2, 1  # one (reduction) cell: graph building dominates the time

    def network(x, frozen, purpose):
        return search_network(x, mixing.sampled(hypernet.alphas, x.shape[0]), 10, channels, cells, frozen,
                              classifier=classifier)
    penalty = complexity_penalty(hypernet.alphas, lam.lam, parameter_table(channels, cells))
    graphs = build_search_graphs(network, (4, 1, 8, 8), second_order, alpha_penalty=lambda: F.reshape(penalty, ()))
    val = graphs.val
    weights = weight_parameters()
    optimizer = BilevelOptimizer(graphs, weights, all_weight_state(), alpha_parameters(),
                                 SGD(weights, 0.025, 0.9, 3e-4, 5.0), Adam(alpha_parameters(), 1e-3, 0.5, 0.999, 1e-3))
    assert "classifier/W/knots" in weights and all(name.startswith("hypernet_") for name in alpha_parameters())
    assert len(mixing.noise) == 2 * (3 if second_order else 2)

    before = {name: p.d.copy() for name, p in alpha_parameters().items()}
    data = np.random.default_rng(0)
    batch = (data.normal(size=(4, 1, 8, 8)), data.integers(0, 10, (4, 1)))
    lam.draw(np.random.default_rng(1))  # one λ for the alpha and the weight step
    mixing.set_epoch(0)
    mixing.resample(seed=0, epoch=0, step=0)
    optimizer.step(batch, batch)
    assert np.isfinite(float(val.loss.d)) and float(val.loss.d) > float(penalty.d[0]) > 0
    moved = [name for name, p in alpha_parameters().items() if not np.array_equal(p.d, before[name])]
    assert any(name.endswith("knots") for name in moved)
    nn.clear_parameters()

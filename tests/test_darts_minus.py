"""DARTS−: every edge adds β times an auxiliary skip to its mixed op, β decaying linearly per epoch.

The expected values are transcribed from Meituan-AutoML/DARTS- src/search/model_search.py (MixedOp.forward:
`res += self.auxiliary_op(x) * beta_decay_scheduler.decay_rate`, the auxiliary op the identity, or at stride 2
FactorizedReduce(C, C, affine=False)), src/operations.py (FactorizedReduce) and src/utils.py (DecayScheduler).
"""
import math

import nnabla as nn
import numpy as np
import pytest

import darts_search
from args import parse_args, search_parser
from models.graph import build_graph, feed, forward_backward
from models.search_network import mixed_op
from ops.operations import OpMode
from utils.search.variant import SearchSetup
from utils.search.variants.darts_minus import DartsMinus, DartsMinusSettings

SHAPE, CLASSES, CHANNELS, CELLS = (4, 1, 8, 8), 3, 4, 3


class OriginalDecayScheduler:
    """src/utils.py DecayScheduler, 'linear' (stateful: past T_stop it keeps its last rate)."""

    def __init__(self, base_lr=1.0, T_max=50, T_start=0, T_stop=50):
        self.base_lr, self.T_max, self.T_start, self.T_stop = base_lr, T_max, T_start, T_stop
        self.decay_rate = 1.0

    def step(self, epoch):
        if epoch >= self.T_start:
            if epoch <= self.T_stop:
                self.decay_rate = self.base_lr * (self.T_max - epoch) / (self.T_max - self.T_start)
        else:
            self.decay_rate = self.base_lr


def original_factorized_reduce(x, w1, w2):
    """ReLU, two 1x1 stride-2 convolutions (the second on x[:, :, 1:, 1:]), concatenated, batch-normalised
    with the batch's statistics and no affine (eps 1e-5)."""
    x = np.maximum(x, 0)
    even = np.einsum("oc,bchw->bohw", w1[:, :, 0, 0], x[:, :, ::2, ::2])
    odd = np.einsum("oc,bchw->bohw", w2[:, :, 0, 0], x[:, :, 1::2, 1::2])
    out = np.concatenate([even, odd], axis=1)
    mean, var = out.mean(axis=(0, 2, 3), keepdims=True), out.var(axis=(0, 2, 3), keepdims=True)
    return (out - mean) / np.sqrt(var + 1e-5)


@pytest.fixture
def fresh():
    nn.clear_parameters()
    yield
    nn.clear_parameters()


def darts_minus(*flags):
    settings = DartsMinusSettings.from_args(parse_args(search_parser(), ["--variant", "darts-minus", *flags]))
    return DartsMinus(settings, SearchSetup(SHAPE, CLASSES, CHANNELS, CELLS, seed=0, rng=np.random.RandomState(0)))


@pytest.mark.parametrize("stride", [1, 2])
def test_an_edge_is_its_mixed_op_plus_beta_times_the_auxiliary_skip(fresh, stride):
    """At epoch 20 of the original's schedule β = (50 - 20) / 50 = 0.6; at stride 2 the auxiliary skip is a
    FactorizedReduce of its own weights, not the mixture's skip_connect's."""
    variant = darts_minus()
    variant.start_epoch(20, 50)
    rng = np.random.default_rng(0)
    x = nn.Variable.from_numpy_array(rng.standard_normal((4, 6, 8, 8)).astype(np.float32))
    row = nn.Variable.from_numpy_array(rng.dirichlet(np.ones(7))[None].astype(np.float32))
    mode = OpMode(affine=False, test=False)
    with nn.parameter_scope("edge"):
        edge = variant.edge(x, row, 6, stride, mode)
        mixture = mixed_op(x, row, 6, stride, mode)  # the same weights, shared through the scope
    edge.forward()
    mixture.forward()
    if stride == 1:
        skip = x.d
    else:
        params = nn.get_parameters(grad_only=False)
        own = [params[f"edge/auxiliary_skip/conv_{i}/conv/W"].d for i in (1, 2)]
        mixture_skip = [params[f"edge/skip_connect/conv_{i}/conv/W"].d for i in (1, 2)]
        assert not any(np.array_equal(a, b) for a, b in zip(own, mixture_skip))
        skip = original_factorized_reduce(x.d, *own)
    np.testing.assert_allclose(edge.d, mixture.d + 0.6 * skip, rtol=1e-4, atol=1e-5)


def test_beta_follows_the_original_s_linear_decay_per_epoch(fresh):
    variant = darts_minus()
    original = OriginalDecayScheduler()
    for epoch in range(60):  # 50 epochs by default; past T_max the original keeps 0
        original.step(epoch)
        variant.start_epoch(epoch, 50)
        assert float(variant.beta.d.flat[0]) == pytest.approx(original.decay_rate, abs=1e-7)
        assert variant.epoch_values()["Auxiliary skip beta"] == pytest.approx(original.decay_rate, abs=1e-7)
    assert variant.settings.beta(0) == 1.0 and variant.settings.beta(49) == pytest.approx(0.02)


def test_the_decay_s_start_length_and_beta_are_settings(fresh):
    variant = darts_minus("--skip-beta", "0.5", "--skip-decay-start", "3", "--skip-decay-epochs", "10")
    original = OriginalDecayScheduler(base_lr=0.5, T_max=10, T_start=3, T_stop=10)
    for epoch in range(14):
        original.step(epoch)
        assert variant.settings.beta(epoch) == pytest.approx(original.decay_rate)
    assert not math.isclose(variant.settings.beta(2), variant.settings.beta(6))


def test_the_weight_step_trains_the_auxiliary_skips_of_the_reduction_edges(fresh):
    variant = darts_minus()
    graph = build_graph(lambda x: variant.network(x, frozen=False, purpose="weights"), SHAPE)
    rng = np.random.default_rng(0)
    feed(graph, (rng.standard_normal(SHAPE), rng.integers(0, CLASSES, (SHAPE[0], 1))))
    forward_backward(graph)
    auxiliary = {name: p for name, p in nn.get_parameters().items() if "auxiliary_skip" in name}
    # 2 reduction cells x 8 stride-2 edges (each node's edges from the cell's two inputs) x 2 convolutions
    assert len(auxiliary) == 2 * 8 * 2
    assert all(np.any(p.g != 0) for p in auxiliary.values())


def test_a_decay_that_ends_before_it_starts_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        darts_search.main(["--variant", "darts-minus", "--skip-decay-start", "50", "-m", str(tmp_path / "never")])
    assert exit_info.value.code == 2
    assert "--skip-decay-start 50 must be below --skip-decay-epochs 50" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()

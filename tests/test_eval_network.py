"""The evaluation network: hand-counted weights, drop path, auxiliary head, output shapes."""
import nnabla as nn
import nnabla.parametric_functions as PF
import numpy as np
import pytest

from models.eval_network import (AUX_SCOPE, DropPath, build_test_graph, build_train_graph, drop_path_schedule,
                                 eval_network, training_loss)
from models.genotype import Architecture, load_architecture
from utils.training.model_stats import count_macs, count_parameters, parameters_by_scope
from tests.helpers import bn, conv_bn as relu_conv_bn, dil_conv, factorized_reduce, sep_conv

DARTS_V2 = load_architecture("DARTS_V2")
CLASSES = 10



def aux_head(c_in, conv2_kernel):
    return c_in * 128 + bn(128) + 128 * 768 * conv2_kernel ** 2 + bn(768) + 768 * CLASSES + CLASSES


@pytest.fixture(autouse=True)
def fresh_parameters():
    nn.clear_parameters()
    yield
    nn.clear_parameters()


def weights():
    return nn.get_parameters(grad_only=True)


def build(arch, shape, channels=4, num_cells=3, auxiliary=True, drop_path=None):
    """Training-mode network on a fresh registry; returns (x, logits, aux_logits)."""
    x = nn.Variable(shape)
    logits, aux = eval_network(x, arch, CLASSES, channels, num_cells, test=False, drop_path=drop_path,
                               auxiliary=auxiliary)
    return x, logits, aux


def test_darts_v2_blocks_have_their_hand_counted_weights():
    # C=4, 3 cells on 8x8x1: cell0 normal (C=4), cells 1 and 2 reduction (C=8, then 16).
    build(DARTS_V2, (2, 1, 8, 8))
    counts = parameters_by_scope(weights())
    assert counts["stem"] == 1 * 12 * 9 + bn(12)
    # Normal: sep_conv_3x3 on five edges, dil_conv_3x3 on one, two parameter-free skips.
    assert counts["cell0"] == relu_conv_bn(12, 4) + relu_conv_bn(12, 4) + 5 * sep_conv(4, 3) + dil_conv(4, 3)
    # Reduction: max pools and skips from node 2 (stride 1, so identities) only: preprocessing is all.
    assert counts["cell1"] == relu_conv_bn(12, 8) + relu_conv_bn(16, 8)
    # After a reduction cell, preprocess0 is a FactorizedReduce.
    assert counts["cell2"] == factorized_reduce(16, 16) + relu_conv_bn(32, 16)
    # After cell 2 the map is 2x2: pooled to 1x1, so the head's second conv is 1x1.
    assert counts[AUX_SCOPE] == aux_head(64, conv2_kernel=1)
    assert counts["classifier"] == 64 * CLASSES + CLASSES
    assert count_parameters(weights()) == sum(counts.values())
    assert count_parameters(weights(), exclude_scope=AUX_SCOPE) == sum(counts.values()) - counts[AUX_SCOPE]


def test_any_number_of_edges_and_strided_skip_weights():
    arch = Architecture(
        normal={2: [(6, 0)], 3: [(2, 1), (0, 2), (7, 0)], 4: [(4, 3)], 5: [(5, 4), (6, 1)]},
        reduction={2: [(6, 0), (6, 1)], 3: [(3, 2)], 4: [(1, 0)], 5: [(7, 1)]})
    x, logits, _ = build(arch, (2, 1, 8, 8), num_cells=3, auxiliary=False)
    counts = parameters_by_scope(weights())
    assert counts["cell0"] == 2 * relu_conv_bn(12, 4) + sep_conv(4, 3) + dil_conv(4, 3)
    # Stride-2 skips are FactorizedReduce; sep_conv_5x5 from node 2 and dil_conv_5x5 (stride 2).
    assert counts["cell1"] == (relu_conv_bn(12, 8) + relu_conv_bn(16, 8) + 2 * factorized_reduce(8, 8)
                               + sep_conv(8, 5) + dil_conv(8, 5))
    x.d = np.random.default_rng(0).normal(size=x.shape)
    logits.forward()
    assert logits.shape == (2, CLASSES) and np.isfinite(logits.d).all()


def test_darts_v2_on_cifar10_has_the_paper_size():
    # quark0's count_parameters_in_MB gives 3.349342 for DARTS_V2 at C=36, 20 cells (auxiliary head excluded).
    build(DARTS_V2, (1, 3, 32, 32), channels=36, num_cells=20)
    assert count_parameters(weights(), exclude_scope=AUX_SCOPE) == 3_349_342
    # After cell 13 the map is 8x8 with 4 * 144 channels: the head as in quark0.
    assert parameters_by_scope(weights())[AUX_SCOPE] == aux_head(576, conv2_kernel=2)


def test_macs_count_convolutions_depthwise_and_affine():
    x = nn.Variable((3, 2, 5, 5))
    h = PF.convolution(x, 4, (3, 3), pad=(1, 1), with_bias=False, name="conv")  # 25*4 outputs, 2*9 each
    h = PF.depthwise_convolution(h, (3, 3), pad=(1, 1), with_bias=False, name="dw")  # 25*4 outputs, 9 each
    out = PF.affine(h, 7, name="fc")  # 100 inputs x 7 outputs
    assert count_macs(out) == 3 * (100 * 18 + 100 * 9 + 100 * 7)


def test_drop_path_schedule_grows_from_zero():
    assert [drop_path_schedule(e, 4, 0.2) for e in range(4)] == pytest.approx([0.0, 0.05, 0.1, 0.15])
    drop_path = DropPath()
    for epoch in range(4):
        drop_path.set_prob(drop_path_schedule(epoch, 4, 0.2))
        assert float(drop_path.prob.d) == pytest.approx(0.05 * epoch)


def test_drop_path_zeroes_whole_samples_and_rescales_the_rest():
    drop_path = DropPath()
    x = nn.Variable((64, 3, 2, 2))
    x.d = 1.0
    y = drop_path(x)
    drop_path.set_prob(0.5)
    drop_path.resample(np.random.default_rng(0))
    y.forward()
    per_sample = y.d.reshape(64, -1)
    assert np.all(per_sample == per_sample[:, :1])  # one decision per sample
    assert set(np.unique(per_sample)) == {0.0, 2.0}  # dropped, or kept and divided by 1 - p
    assert 16 < np.sum(per_sample[:, 0] == 0) < 48


def test_drop_path_sits_on_every_edge_but_identities():
    arch = Architecture(  # reduction: a stride-2 skip (FactorizedReduce) and a stride-1 skip
        normal=DARTS_V2.normal,
        reduction={2: [(6, 0), (4, 1)], 3: [(6, 2), (4, 1)], 4: [(4, 0), (7, 2)], 5: [(6, 2), (4, 1)]})
    drop_path = DropPath()
    build(arch, (2, 1, 8, 8), num_cells=3, drop_path=drop_path)
    # Normal cell: 8 edges minus 2 identities. Reduction: 8 minus the 2 stride-1 skips and the zero op.
    assert len(drop_path.noise) == 6 + 2 * 5


def test_drop_path_at_zero_is_the_network_without_it_and_above_zero_is_not():
    x = nn.Variable((8, 1, 8, 8))
    drop_path = DropPath()
    dropped, _ = eval_network(x, DARTS_V2, CLASSES, 4, 3, test=False, drop_path=drop_path)
    plain, _ = eval_network(x, DARTS_V2, CLASSES, 4, 3, test=False)  # same parameters, no drop path
    x.d = np.random.default_rng(0).normal(size=x.shape)
    drop_path.resample(np.random.default_rng(1))
    plain.forward()
    dropped.forward()
    np.testing.assert_array_equal(dropped.d, plain.d)
    drop_path.set_prob(0.5)
    dropped.forward()
    assert not np.allclose(dropped.d, plain.d)


ODD_EDGES = Architecture(  # nodes of one, two and three edges, identities, a zero op, stride-2 skips
    normal={2: [(6, 0)], 3: [(2, 1), (0, 2), (7, 0)], 4: [(4, 3)], 5: [(5, 4), (6, 1)]},
    reduction={2: [(6, 0), (6, 1)], 3: [(3, 2)], 4: [(1, 0)], 5: [(7, 1)]})


@pytest.mark.parametrize("arch", [DARTS_V2, ODD_EDGES])
def test_drop_path_and_the_node_sums_on_the_cpu_kernels_equal_them_on_nnabla_s(arch, monkeypatch):
    """The same masks drop the same paths: equal loss and gradients, with the nodes summed by CpuScaledSum; and
    the masks do drop paths there (the gradients differ from those at p = 0)."""
    from ops import cpu_kernels, cpu_sums
    monkeypatch.setattr(cpu_kernels, "MIN_ELEMENTS", 0)  # the network is tiny
    monkeypatch.setattr(cpu_sums, "MIN_ELEMENTS", 0)
    monkeypatch.setattr(cpu_sums, "PLAIN_MIN_ELEMENTS", 0)
    rng = np.random.default_rng(9)
    # The initial weights from a seed of their own, not from whatever earlier tests drew: with some of them a
    # batch norm over the auxiliary head's 8 values per channel saw a variance near eps, where nnabla's one-pass
    # variance and the kernel's two passes differ by percents.
    nn.random.seed(0)
    x, labels = rng.standard_normal((8, 1, 8, 8)), rng.integers(0, CLASSES, (8, 1))
    drop_paths = {}

    def loss(cpu_kernels):
        drop_paths[cpu_kernels] = DropPath()
        graph = build_train_graph(arch, x.shape, CLASSES, 4, 3, auxiliary=True, aux_weight=0.4,
                                  drop_path=drop_paths[cpu_kernels], cpu_kernels=cpu_kernels)
        graph.x.d, graph.y.d = x, labels
        return graph.loss
    theirs, ours = loss(False), loss(True)
    names = []
    ours.visit(lambda f: names.append(f.info.type_name))
    assert names.count("CpuScaledSum") >= 3 * 3 and "BatchMatmul" not in names
    params = weights()
    for p in params.values():
        p.d = p.d + 0.1 * rng.standard_normal(p.shape)

    def run(graph_loss, prob):
        for drop_path in drop_paths.values():
            drop_path.set_prob(prob)
            drop_path.resample(np.random.default_rng(10))
        for p in params.values():
            p.grad.zero()
        graph_loss.forward()
        graph_loss.backward()
        return float(graph_loss.d), {name: p.g.copy() for name, p in params.items()}
    expected_loss, expected = run(theirs, 0.5)
    assert any((noise.d < 0.5).any() for noise in drop_paths[True].noise)  # some sample's path is dropped
    got_loss, got = run(ours, 0.5)
    assert got_loss == pytest.approx(expected_loss, rel=1e-5)
    for name in params:
        scale = np.abs(expected[name]).max()
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-3, atol=1e-4 * scale, err_msg=name)
    undropped = run(ours, 0.0)[1]
    assert any(not np.allclose(undropped[name], got[name], rtol=1e-2, atol=1e-6) for name in params)


def test_auxiliary_head_adds_weights_and_its_weighted_loss():
    shape = (4, 1, 8, 8)
    build(DARTS_V2, shape, auxiliary=False)
    without = count_parameters(weights())
    nn.clear_parameters()
    x, logits, aux = build(DARTS_V2, shape, auxiliary=True)
    assert count_parameters(weights()) == without + aux_head(64, conv2_kernel=1)
    assert count_parameters(weights(), exclude_scope=AUX_SCOPE) == without

    y = nn.Variable((4, 1))
    x.d = np.random.default_rng(0).normal(size=shape)
    y.d = np.array([[0], [3], [5], [9]])
    loss_with, loss_without = training_loss(logits, aux, y, 0.4), training_loss(logits, None, y, 0.4)
    logits.persistent = aux.persistent = True
    loss_with.forward()
    loss_without.forward()

    def cross_entropy(z):
        z = z - z.max(axis=1, keepdims=True)
        return np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(4), y.d.ravel().astype(int)])
    assert float(loss_without.d) == pytest.approx(cross_entropy(logits.d), rel=1e-5)
    assert float(loss_with.d) == pytest.approx(cross_entropy(logits.d) + 0.4 * cross_entropy(aux.d), rel=1e-5)


@pytest.mark.parametrize("shape", [(2, 1, 8, 8), (2, 3, 32, 32), (2, 1, 28, 28)])
def test_output_shapes(shape):
    graph = build_train_graph(DARTS_V2, shape, CLASSES, 4, 3, auxiliary=True, aux_weight=0.4,
                              drop_path=DropPath())
    graph.x.d = np.random.default_rng(0).normal(size=shape)
    graph.y.d = 1
    graph.loss.forward()
    assert graph.logits.shape == (2, CLASSES)
    assert np.isfinite(float(graph.loss.d))
    test = build_test_graph(DARTS_V2, shape, CLASSES, 4, 3)
    test.x.d = graph.x.d
    test.logits.forward()
    assert test.logits.shape == (2, CLASSES)


def test_test_graph_has_neither_drop_path_nor_auxiliary_head():
    with pytest.raises(ValueError):
        eval_network(nn.Variable((1, 1, 8, 8)), DARTS_V2, CLASSES, 4, 3, test=True, auxiliary=True)
    build_test_graph(DARTS_V2, (1, 1, 8, 8), CLASSES, 4, 3)
    assert not any(name.startswith(AUX_SCOPE) for name in weights())

"""FairDARTS (--variant fairdarts) against numpy transcriptions of the original's formulas
(github xiaomi-automl/FairDARTS, fairdarts/: model_search.py, separate_loss.py, utils.py parse, model.py DCOCell)."""
import nnabla as nn
import numpy as np
import pytest

import darts_search
from models.derivation import derive_by_rule
from models.discretization import node_rows
from models.eval_network import eval_network
from models.genotype import from_json_dict, to_json_dict
from models.graph import feed
from models.search_network import ALPHA_NAMES
from ops.operations import OP_NAMES, ZERO_OP
from utils.search.bilevel import build_search_graphs
from utils.search.variant import DiscreteGraph, SearchSetup
from utils.search.variants.fairdarts import Fairdarts

SHAPE, CLASSES, CHANNELS, CELLS = (4, 1, 8, 8), 3, 4, 3
# fairdarts/genotypes.py: its search space, without 'none'.
PRIMITIVES = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
              "dil_conv_5x5")
COLUMNS = [OP_NAMES.index(name) for name in PRIMITIVES]  # our column of each of the original's ops


def settings(*flags):
    return Fairdarts.Settings.from_args(darts_search.parse_args(darts_search.search_parser(),
                                                                ["--variant", "fairdarts", *flags]))


@pytest.fixture
def variant():
    """A Fairdarts on fresh parameters, its alphas spread so that sigmoids lie on both sides of 0.5."""
    def make(*flags, seed=0):
        v = Fairdarts(settings(*flags), SearchSetup(SHAPE, CLASSES, CHANNELS, CELLS, seed=0,
                                                    rng=np.random.RandomState(0)))
        rng = np.random.RandomState(seed)
        for alpha in v.alphas.values():
            alpha.d = rng.randn(*alpha.shape) * 2
        return v
    nn.clear_parameters()
    yield make
    nn.clear_parameters()


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-np.asarray(a, dtype=np.float64)))


def original_weights(alpha):
    """model_search.py: F.sigmoid(alphas), in the original's (14, 7) layout."""
    return sigmoid(alpha)[:, COLUMNS]


def original_zero_one(values, weight, kind):
    """separate_loss.py on aux_input = cat(sigmoid(alphas_normal), sigmoid(alphas_reduce)):
    ConvSeparateLoss -mse(input, 0.5), TriSeparateLoss -l1(input, 0.5), times the loss's weight."""
    aux = np.concatenate([original_weights(values[name]) for name in ALPHA_NAMES])
    return weight * (-np.mean((aux - 0.5) ** 2) if kind == "l2" else -np.mean(np.abs(aux - 0.5)))


def original_parse(weights, op_threshold):
    """utils.py parse(parse_method='threshold_sparse', steps=4): [(op name, node, input node)]. Per node, its
    edges sorted (stable) by their largest weight, the first two; each adds its first strictly-largest op if
    that weight >= op_threshold."""
    gene, start = [], 0
    for i in range(4):
        rows = weights[start:start + i + 2]
        for j in sorted(range(i + 2), key=lambda x: -max(rows[x]))[:2]:
            k_best = 0
            for k in range(len(rows[j])):
                if rows[j][k] > rows[j][k_best]:
                    k_best = k
            if rows[j][k_best] >= op_threshold:
                gene.append((PRIMITIVES[k_best], i + 2, j))
        start += i + 2
    return gene


def dco_cell(gene):
    """model.py DCOCell: {node: [(op name, input node)]} it computes; an edge from a node that got no op
    ("isolate node") is skipped; the output concatenates the nodes that have ops."""
    present, cell = {0, 1}, {}
    for node in range(2, 6):
        cell[node] = [(op, j) for op, to, j in gene if to == node and j in present]
        if cell[node]:
            present.add(node)
    return cell


def named(cell):
    return {node: [(OP_NAMES[op_id], j) for op_id, j in pairs] for node, pairs in cell.items()}


def test_every_pass_mixes_with_the_sigmoid_of_each_alpha(variant):
    v = variant()
    for purpose in ("weights", "virtual", "alphas"):
        for name, weights in v.mixing(purpose).items():
            weights.forward()
            np.testing.assert_allclose(weights.d, sigmoid(v.alphas[name].d), rtol=1e-6)


def test_the_alphas_start_at_zero_as_the_original_s():
    nn.clear_parameters()
    v = Fairdarts(settings(), SearchSetup(SHAPE, CLASSES, CHANNELS, CELLS, seed=0, rng=np.random.RandomState(0)))
    assert all(np.all(alpha.d == 0) for alpha in v.alphas.values())
    nn.clear_parameters()


def test_the_defaults_and_the_recipe_are_the_original_s():
    s = settings()
    assert (s.aux_loss_weight, s.zero_one_loss, s.op_threshold, s.parse_method) == (10.0, "l2", 0.85,
                                                                                     "threshold_sparse")
    args = darts_search.parse_args(darts_search.search_parser(), ["--variant", "fairdarts"])
    assert (args.batch_size, args.lr, args.lr_min, args.arch_lr, args.arch_beta1, args.arch_weight_decay,
            args.second_order) == (128, 0.005, 0.001, 3e-3, 0.9, 1e-3, False)


@pytest.mark.parametrize("flags, weight, kind", [((), 10.0, "l2"), (("--aux-loss-weight", "3", "--zero-one-loss",
                                                                     "l1"), 3.0, "l1")])
def test_the_zero_one_loss_and_its_gradient(variant, flags, weight, kind):
    v = variant(*flags)
    values = v.alpha_values()
    penalty = v.alpha_penalty()
    for alpha in v.alphas.values():
        alpha.grad.zero()
    penalty.forward()
    penalty.backward()
    np.testing.assert_allclose(penalty.d, original_zero_one(values, weight, kind), rtol=1e-5)
    count = 2 * len(values["alpha_normal"]) * len(PRIMITIVES)
    for name in ALPHA_NAMES:
        s = sigmoid(values[name])
        slope = 2 * (s - 0.5) if kind == "l2" else np.sign(s - 0.5)
        expected = -weight * slope / count * s * (1 - s)
        expected[:, OP_NAMES.index("none")] = 0.0  # not in the original's space: no loss, no gradient
        np.testing.assert_allclose(v.alphas[name].g, expected, rtol=1e-4, atol=1e-9)
    # The series: the unweighted loss.
    assert v.epoch_values()["Zero-one loss"] == pytest.approx(original_zero_one(values, 1.0, kind), rel=1e-6)


def test_the_alpha_step_s_loss_is_the_cross_entropy_plus_the_weighted_zero_one_loss(variant):
    v = variant()
    graphs = build_search_graphs(v.network, SHAPE, False, v.alpha_penalty)
    rng = np.random.default_rng(0)
    feed(graphs.val, (rng.standard_normal(SHAPE), rng.integers(0, CLASSES, (SHAPE[0], 1))))
    for epoch in (0, 49):  # a constant weight: no schedule in the original
        v.start_epoch(epoch, 50)
        graphs.val.loss.forward()
        logits = graphs.val.logits.d.astype(np.float64)
        log_p = logits - logits.max(1, keepdims=True)
        log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
        cross_entropy = -np.mean(log_p[np.arange(SHAPE[0]), graphs.val.y.d[:, 0].astype(int)])
        expected = cross_entropy + original_zero_one(v.alpha_values(), 10.0, "l2")
        assert float(graphs.val.loss.d) == pytest.approx(expected, rel=1e-5)


def test_derivation_by_threshold_is_the_original_s(variant):
    inputs, dropped = set(), 0
    for seed in range(12):
        v = variant(seed=seed)
        arch, values = v.cell(), v.alpha_values()
        for name, cell in zip(ALPHA_NAMES, (arch.normal, arch.reduction)):
            gene = original_parse(original_weights(values[name]), 0.85)
            assert named(cell) == dco_cell(gene)
            inputs.update(len(pairs) for pairs in cell.values())
            dropped += len(gene) - sum(len(pairs) for pairs in cell.values())
    assert inputs == {0, 1, 2}  # the seeds cover nodes with two, one and no inputs,
    assert dropped > 0  # and edges from nodes without inputs


def test_a_cell_without_inputs_keeps_node_2_at_its_ranked_edges(variant):
    v = variant()
    for alpha in v.alphas.values():
        alpha.d = 0.0  # every sigmoid 0.5, below the threshold: the original's cell would have no node
    arch = v.cell()
    for cell, concat in ((arch.normal, arch.normal_concat), (arch.reduction, arch.reduction_concat)):
        # Ties: the first input nodes, at the original's first op.
        assert named(cell) == {2: [("max_pool_3x3", 0), ("max_pool_3x3", 1)], 3: [], 4: [], 5: []}
        assert concat == (2,)


def test_a_derived_cell_with_empty_nodes_trains(variant):
    v = variant(seed=0)
    for alpha in v.alphas.values():
        alpha.d = alpha.d - 2.5  # fewer sigmoids above the threshold
    arch = v.cell()
    assert not all(arch.normal.values()) and not all(arch.reduction.values())
    assert from_json_dict(to_json_dict(arch)) == arch
    x = nn.Variable((2, 3, 8, 8))
    logits, _ = eval_network(x, arch, CLASSES, CHANNELS, CELLS, test=False)
    x.d = np.random.RandomState(0).randn(*x.shape)
    logits.forward()
    assert np.all(np.isfinite(logits.d))


@pytest.mark.parametrize("rule", ["top-k", "best", "topk-edge"])
def test_parse_method_darts_derives_by_the_derivation_rule_on_the_sigmoids_without_none(rule):
    rng = np.random.RandomState(4)
    values = {name: rng.randn(14, 8) * 2 for name in ALPHA_NAMES}
    for value in values.values():
        value[:, -1] = 50.0  # the untrained 'none' column at its strongest: it must play no part
    arch = Fairdarts.derive(settings("--parse-method", "darts", "--derivation", rule), values)
    for name, cell in zip(ALPHA_NAMES, (arch.normal, arch.reduction)):
        assert all(op_id != ZERO_OP for pairs in cell.values() for op_id, _ in pairs)
        if rule == "top-k":  # the original's 'darts' parse: each node's two ranked edges at their strongest ops
            assert named(cell) == {node: [(op, j) for op, to, j in original_parse(original_weights(values[name]), 0)
                                          if to == node] for node in range(2, 6)}
    if rule != "top-k":  # a per-edge rule on the alphas whose 'none' is the weakest op (sigmoid is monotone)
        weakest = {name: np.where(np.arange(8) == 7, value.min() - 100.0, value) for name, value in values.items()}
        assert arch == derive_by_rule(weakest["alpha_normal"], weakest["alpha_reduction"], rule)


def test_the_derivation_rule_without_parse_method_darts_is_refused(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        darts_search.main(["--variant", "fairdarts", "--derivation", "best", "-m", str(tmp_path / "never")])
    assert exit_info.value.code == 2
    assert "--derivation would never take effect" in capsys.readouterr().err


def test_the_discretized_network_is_the_derived_cell_not_a_softmax_discretization(variant):
    v = variant(seed=0)
    for alpha in v.alphas.values():
        alpha.d = alpha.d - 2.5  # most real alphas below the untrained 'none' one (0), some sigmoids above 0.85
    arch = v.cell()
    kept = v.discretized_ops()
    for name, cell in zip(ALPHA_NAMES, (arch.normal, arch.reduction)):  # by hand: the derived cell's edges
        assert kept[name] == {node_rows(node)[j]: op_id for node, pairs in cell.items() for op_id, j in pairs}
    assert all(op_id != ZERO_OP for cell in kept.values() for op_id in cell.values())
    # and the validated network is built from them
    assert function_types(v.discretized_graph(test=True)) == function_types(
        DiscreteGraph(v.setup, True, v.classifier).graph(kept))


def function_types(graph):
    names = []
    graph.loss.visit(lambda f: names.append(f.info.type_name))
    return sorted(names)

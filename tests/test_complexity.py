"""The expected parameter count P(α) and the complexity penalty λ·P of var_nas (I5)."""
import nnabla as nn
import numpy as np
import pytest

from models.complexity import (architecture_parameters, candidate_parameter_counts, complexity_penalty,
                               expected_parameters, parameter_table)
from models.eval_network import eval_nodes
from models.genotype import EDGES, NODES, Architecture
from models.network import network
from ops.operations import OP_NAMES, OpMode

C, CELLS = 16, 3  # the mini search: normal, reduce, reduce at 16, 32, 64 channels


def one_hot_cell(choices):
    """A cell whose edge e (in alpha-row order) keeps op choices[e]."""
    cell = {node: [] for node in NODES}
    for (input_node, node), op_id in zip(EDGES, choices):
        cell[node].append((int(op_id), input_node))
    return cell


def cell_weights_of_built_network(arch):
    """Weights of each cell's edges (not its preprocessing) in a network built from `arch`, BN without affine."""
    nn.clear_parameters()
    mode = OpMode(affine=False, test=False)
    network(nn.Variable((1, 1, 8, 8)), 10, C, CELLS, mode, build_nodes=eval_nodes(arch, mode))
    counts = [0] * CELLS
    for name, v in nn.get_parameters(grad_only=True).items():
        parts = name.split("/")
        if parts[0].startswith("cell") and parts[1].startswith("node"):
            counts[int(parts[0][4:])] += v.size
    nn.clear_parameters()
    return counts


def test_candidate_counts_follow_the_formulas_of_var_nas():
    """sep_k: 2(C k² + C²), dil_k: C k² + C², skip at stride 2: C², pools and none: 0 (BN without affine)."""
    for channels in (16, 32, 64):
        for stride in (1, 2):
            counts = dict(zip(OP_NAMES, candidate_parameter_counts(channels, stride)))
            cc = channels * channels
            assert counts["sep_conv_5x5"] == 2 * (channels * 25 + cc)
            assert counts["sep_conv_3x3"] == 2 * (channels * 9 + cc)
            assert counts["dil_conv_3x3"] == channels * 9 + cc
            assert counts["dil_conv_5x5"] == channels * 25 + cc
            assert counts["skip_connect"] == (cc if stride == 2 else 0)
            assert counts["max_pool_3x3"] == counts["avg_pool_3x3"] == counts["none"] == 0
    assert candidate_parameter_counts(16, 1)[OP_NAMES.index("sep_conv_5x5")] == 1312


@pytest.mark.parametrize("seed", [0, 1])
def test_expected_count_of_one_hot_cells_equals_the_built_network(seed):
    rng = np.random.default_rng(seed)
    normal, reduction = rng.integers(0, 8, 14), rng.integers(0, 8, 14)
    arch = Architecture(normal=one_hot_cell(normal), reduction=one_hot_cell(reduction))
    per_cell = cell_weights_of_built_network(arch)
    table = parameter_table(C, CELLS)
    alphas = {"alpha_normal": np.eye(8)[normal] * 1000.0, "alpha_reduction": np.eye(8)[reduction] * 1000.0}
    p = expected_parameters({k: nn.Variable.from_numpy_array(v) for k, v in alphas.items()}, table)
    p.forward()
    assert float(p.d) == pytest.approx(sum(per_cell), rel=1e-6)
    assert architecture_parameters(arch, C, CELLS) == sum(per_cell)
    # Each channel count on its own: cell 0 is the normal cell at 16, cells 1 and 2 reduce at 32 and 64.
    for index, (channels, choices) in enumerate(((16, normal), (32, reduction), (64, reduction))):
        strides = [2 if index > 0 and input_node < 2 else 1 for input_node, _ in EDGES]
        assert per_cell[index] == sum(candidate_parameter_counts(channels, s)[op] for s, op in zip(strides, choices))


def test_all_sep5_mini_network_costs_the_spec_count():
    table = parameter_table(C, CELLS)
    sep5 = OP_NAMES.index("sep_conv_5x5")
    assert table["alpha_normal"][:, sep5].sum() + table["alpha_reduction"][:, sep5].sum() == 228_928


def test_penalty_gradient_matches_the_numpy_transcription():
    rng = np.random.default_rng(4)
    table = parameter_table(8, 5)
    alphas = {name: nn.Variable.from_numpy_array(rng.normal(size=(14, 8)), need_grad=True) for name in table}
    lam = nn.Variable.from_numpy_array(np.array([3e-5]))
    penalty = complexity_penalty(alphas, lam, table)
    penalty.forward()
    for a in alphas.values():
        a.grad.zero()
    penalty.backward()
    total = 0.0
    for name, a in alphas.items():
        s = np.exp(a.d - a.d.max(axis=1, keepdims=True))
        s /= s.sum(axis=1, keepdims=True)
        theta = table[name]
        total += (s * theta).sum()
        grad = s * (theta - (s * theta).sum(axis=1, keepdims=True))
        np.testing.assert_allclose(a.g, 3e-5 * grad, rtol=1e-3, atol=1e-9)
        assert np.abs(grad).max() > 1
    assert float(penalty.d[0]) == pytest.approx(3e-5 * total, rel=1e-5)


def test_counting_leaves_the_seeded_generator_alone():
    candidate_parameter_counts.cache_clear()
    nn.random.seed(5)
    before = nn.random.prng.get_state()[1].copy()
    parameter_table(12, 2)
    np.testing.assert_array_equal(nn.random.prng.get_state()[1], before)

"""Cells extracted at a λ̃ from hand-made hypernetworks, and var_nas' genotype JSON (var_nas I6).

The extraction modes themselves are rules of models.derivation, tested in tests/test_derivation.py."""
import json

import nnabla as nn
import numpy as np
import pytest

from models.complexity import architecture_parameters
from models.derivation import derive_by_rule
from models.eval_network import build_test_graph
from models.genotype import ArchitectureError, load_architecture
from models.hypernetwork import Hypernetwork, LambdaInput
from models.search_network import alpha_parameters
from ops.operations import OP_NAMES

SEP3, DIL3, SKIP, MAX = (OP_NAMES.index(n) for n in ("sep_conv_3x3", "dil_conv_3x3", "skip_connect", "max_pool_3x3"))


def one_hot_alpha(choices, strength=5.0):
    return np.eye(8)[choices] * strength


def hand_made_hypernetwork(knot_alphas):
    """A hypernetwork whose knot k is the (14, 8) alpha knot_alphas[k] for both cell types (K = 5)."""
    nn.clear_parameters()
    hypernet = Hypernetwork(LambdaInput(-8, -4), np.random.RandomState(0))
    params = alpha_parameters()
    for cell in ("normal", "reduction"):
        start = 0
        for node in (2, 3, 4, 5):
            rows = slice(start, start + node)
            params[f"hypernet_{cell}/node{node}/knots"].d = np.stack(
                [alpha[cell][rows].reshape(-1) for alpha in knot_alphas])
            start += node
    return hypernet


def extract(hypernet, lam_tilde, mode):
    alphas = hypernet.alphas_at(lam_tilde)
    return derive_by_rule(alphas["alpha_normal"], alphas["alpha_reduction"], mode)


def test_extraction_follows_lambda_on_a_hand_made_hypernetwork():
    small = {"normal": one_hot_alpha(np.full(14, SKIP)), "reduction": one_hot_alpha(np.full(14, DIL3))}
    large = {"normal": one_hot_alpha(np.full(14, SEP3)), "reduction": one_hot_alpha(np.full(14, SEP3))}
    hypernet = hand_made_hypernetwork([large, large, small, small, small])
    low = extract(hypernet, 0.0, "simple")
    assert all(op == SEP3 for node in low.normal.values() for op, _ in node)
    # At λ̃ = 0.4 the knots 1 (large) and 2 (small) mix 0.4 : 0.6, so the small cell wins.
    arch = extract(hypernet, 0.4, "simple")
    assert all(op == SKIP for node in arch.normal.values() for op, _ in node)
    assert all(op == DIL3 for node in arch.reduction.values() for op, _ in node)
    # By hand, cells of 4 (normal), 8 and 16 channels (reduce): skip in the normal cell costs nothing,
    # each reduction cell has 14 dil_conv_3x3 edges of C*9 + C*C weights.
    assert architecture_parameters(arch, 4, 3) == 14 * (8 * 9 + 8 * 8) + 14 * (16 * 9 + 16 * 16)
    # 'DARTS' keeps two of each node's edges: 2 + 2 + 2 + 2 dil_conv_3x3 per reduction cell.
    darts = extract(hypernet, 1.0, "DARTS")
    assert architecture_parameters(darts, 4, 3) == 8 * (8 * 9 + 8 * 8) + 8 * (16 * 9 + 16 * 16)
    nn.clear_parameters()


def test_var_nas_json_is_read_reduce_first_with_the_op_map(tmp_path):
    # var_nas ids: 0 max, 1 avg, 2 skip, 3 sep3, 4 sep5, 5 dil3, 6 dil5, 7 none.
    reduce = [[0, 1], [2, 3, 4], [5, 6, 7, 0], [1, 2, 3, 4, 5]]
    normal = [[3, 3], [3, 4, 7], [7, 7, 7, 6], [0, 1, 2, 3, 4]]
    path = tmp_path / "genotype_0_0_5.json"
    path.write_text(json.dumps([reduce, normal]))
    arch = load_architecture(str(path))
    names = {node: [OP_NAMES[op] for op, _ in edges] for node, edges in arch.reduction.items()}
    assert names[2] == ["max_pool_3x3", "avg_pool_3x3"]
    assert names[3] == ["skip_connect", "sep_conv_3x3", "sep_conv_5x5"]
    assert names[4] == ["dil_conv_3x3", "dil_conv_5x5", "none", "max_pool_3x3"]
    assert arch.normal[2] == ((SEP3, 0), (SEP3, 1))
    assert [input_node for _, input_node in arch.normal[5]] == [0, 1, 2, 3, 4]
    # A node with 'none' edges and more than two edges builds and runs.
    nn.clear_parameters()
    graph = build_test_graph(arch, (2, 1, 8, 8), 10, channels=4, num_cells=3)
    graph.x.d = np.random.default_rng(0).normal(size=(2, 1, 8, 8))
    graph.logits.forward()
    assert np.all(np.isfinite(graph.logits.d))
    nn.clear_parameters()


@pytest.mark.parametrize("data", [[[[0, 1]] * 4], [[[0, 1], [2, 3, 4], [5, 6, 7, 0], [1, 2, 3, 4]]] * 2,
                                  [[[0, 1], [2, 3, 4], [5, 6, 8, 0], [1, 2, 3, 4, 5]]] * 2])
def test_bad_var_nas_json_is_one_clear_error(tmp_path, data):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ArchitectureError, match="var_nas"):
        load_architecture(str(path))

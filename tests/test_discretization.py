"""Hard discretization on hand-made weights, and the discretization loss against its formula."""
import nnabla as nn
import nnabla.functions as F
import numpy as np
import pytest

from models.discretization import (dal_cell_value, dal_loss, dal_loss_sum, dal_value,
                                   hard_discretization, kept_edges, softmax_rows)
from models.genotype import EDGES, ArchitectureError

NONE = 7


def row(input_node, node):
    return EDGES.index((input_node, node))


def hand_made_weights():
    """Rows not set below stay at 0.05 everywhere, the weakest of every node."""
    w = np.full((14, 8), 0.05)
    # node 2: 'none' wins edge 1, and with only two edges both are kept.
    w[row(0, 2), 3] = 0.6
    w[row(1, 2), NONE] = 0.9
    # node 3: edge strengths 0.5, 0.8, 0.6 keep edges 1 and 2.
    w[row(0, 3), 1] = 0.5
    w[row(1, 3), 4] = 0.8
    w[row(2, 3), 6] = 0.6
    # node 4: all four edges at 0.4 -> the earlier two; on edge 0 ops 2 and 5 tie -> op 2.
    for input_node, op in ((0, 2), (1, 0), (2, 1), (3, 3)):
        w[row(input_node, 4), op] = 0.4
    w[row(0, 4), 5] = 0.4
    # node 5: 'none' is the strongest edge's op (edge 1, 0.9); edge 3 comes second (0.7).
    w[row(0, 5), 2] = 0.3
    w[row(1, 5), NONE] = 0.9
    w[row(1, 5), 0] = 0.85
    w[row(2, 5), 5] = 0.2
    w[row(3, 5), 1] = 0.7
    w[row(4, 5), 0] = 0.1
    return w


def test_hard_discretization_of_hand_made_weights():
    hd = hard_discretization(hand_made_weights())
    expected = np.zeros((14, 8), dtype=np.float32)
    for input_node, node, op in ((0, 2, 3), (1, 2, NONE), (1, 3, 4), (2, 3, 6), (0, 4, 2),
                                 (1, 4, 0), (1, 5, NONE), (3, 5, 1)):
        expected[row(input_node, node), op] = 1.0
    assert hd.dtype == np.float32
    np.testing.assert_array_equal(hd, expected)


def test_kept_edges_list_the_strongest_first():
    cell = kept_edges(hand_made_weights())
    assert cell == {2: ((NONE, 1), (3, 0)), 3: ((4, 1), (6, 2)), 4: ((2, 0), (0, 1)),
                    5: ((NONE, 1), (1, 3))}


@pytest.mark.parametrize("bad, message", [(np.zeros((14, 7)), "shape"),
                                          (np.full((14, 8), np.nan), "NaN")])
def test_bad_weights_are_errors(bad, message):
    with pytest.raises(ArchitectureError, match=message):
        hard_discretization(bad)


def reference_dal(weights):
    """(1/4) * sum over nodes i of 1 / (8 * (i + 2)) * sum over its block of (w - HD)^2."""
    hd = hard_discretization(weights)
    total = 0.0
    for node in (2, 3, 4, 5):
        rows = [r for r, (_, target) in enumerate(EDGES) if target == node]
        total += ((weights[rows] - hd[rows]) ** 2).sum() / (8 * node)
    return total / 4


def test_dal_value_matches_the_formula():
    rng = np.random.RandomState(0)
    alphas = [rng.randn(14, 8) * 2 for _ in range(2)]
    weights = [softmax_rows(a) for a in alphas]
    for w in weights:
        assert dal_cell_value(w) == pytest.approx(reference_dal(w), rel=1e-12)
    assert dal_value(weights) == pytest.approx(reference_dal(weights[0]) + reference_dal(weights[1]),
                                               rel=1e-12)
    # A cell that is already its own hard discretization has no loss.
    assert dal_cell_value(hard_discretization(weights[0])) == 0.0


@pytest.mark.parametrize("cells", [1, 2])
def test_dal_graph_value_and_alpha_gradient(cells):
    """One cell (the seed's normal-only DAL) or both; gradients through the softmax."""
    rng = np.random.RandomState(1)
    alphas = [rng.randn(14, 8) for _ in range(cells)]
    alpha_vars = [nn.Variable.from_numpy_array(a.astype(np.float32), need_grad=True) for a in alphas]
    hd_vars = [nn.Variable.from_numpy_array(hard_discretization(softmax_rows(a)), need_grad=False)
               for a in alphas]
    loss = dal_loss_sum([(F.softmax(a, axis=1), hd) for a, hd in zip(alpha_vars, hd_vars)])
    loss.forward()
    for a in alpha_vars:
        a.grad.zero()
    loss.backward()
    assert float(loss.d) == pytest.approx(dal_value(softmax_rows(a) for a in alphas), rel=1e-5)

    # Central differences of the numpy DAL; the step is far too small to change HD.
    step = 1e-6
    for index, (alpha, alpha_var) in enumerate(zip(alphas, alpha_vars)):
        for direction in rng.randn(3, 14, 8):
            numeric = (dal_cell_value(softmax_rows(alpha + step * direction))
                       - dal_cell_value(softmax_rows(alpha - step * direction))) / (2 * step)
            analytic = float(np.sum(alpha_var.g * direction))
            assert abs(numeric) > 1e-4, index
            assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-7), index


def test_dal_loss_gradient_in_the_weights():
    """d DAL / d w = 2 (w - HD) / (4 * 8 * n_edges) on each node's block."""
    w = softmax_rows(np.random.RandomState(2).randn(14, 8))
    w_var = nn.Variable.from_numpy_array(w.astype(np.float32), need_grad=True)
    hd = hard_discretization(w)
    loss = dal_loss(w_var, nn.Variable.from_numpy_array(hd, need_grad=False))
    loss.forward()
    w_var.grad.zero()
    loss.backward()
    n_edges = np.array([node for _, node in EDGES])[:, None]
    np.testing.assert_allclose(w_var.g, 2 * (w - hd) / (4 * 8 * n_edges), rtol=1e-5, atol=1e-8)

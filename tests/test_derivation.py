"""DADARTS' derivation rules on hand-made alphas; expected cells worked out by hand in the comments."""
import numpy as np
import pytest

from models.derivation import DERIVATION_RULES, derive
from models.genotype import EDGES, ArchitectureError, derive_cell

NONE = 7


def hand_made_alpha():
    """Alphas are 0 except those set here. A row with one alpha a has the top weight
    s(a) = e^a / (e^a + 7), which grows with a; the weights quoted are softmax values."""
    alpha = np.zeros((14, 8))

    def put(input_node, node, op, value):
        alpha[EDGES.index((input_node, node)), op] = value
    # node 2: 'none' is the top op of both edges (0.60 and 0.46); without it op 2 (0.22) and op 4
    # (0.17) remain.
    put(0, 2, NONE, 3.0)
    put(0, 2, 2, 2.0)
    put(1, 2, NONE, 2.0)
    put(1, 2, 4, 1.0)
    # node 3: s(1) = 0.28 < s(2) = 0.51 < s(3) = 0.74.
    put(0, 3, 0, 1.0)
    put(1, 3, 5, 2.0)
    put(2, 3, 6, 3.0)
    # node 4: edges 0 and 1 tie at s(2) = 0.51; 'none' on edge 2 is s(1.9) = 0.49; edge 3 s(0.5) = 0.19.
    put(0, 4, 1, 2.0)
    put(1, 4, 1, 2.0)
    put(2, 4, NONE, 1.9)
    put(3, 4, 3, 0.5)
    # node 5: 'none' on edge 1 is the strongest (0.89); edge 2 has ops 3 and 5 tied at 0.40; edge 0
    # op 2 is s(1.5) = 0.39; edge 3 is all zeros (uniform 1/8); edge 4 op 0 is s(0.2) = 0.15.
    put(0, 5, 2, 1.5)
    put(1, 5, NONE, 4.0)
    put(2, 5, 3, 2.5)
    put(2, 5, 5, 2.5)
    put(4, 5, 0, 0.2)
    return alpha


ALL_NODES = (2, 3, 4, 5)
EXPECTED = {
    # 'none' out of the ranking: node 2 keeps both edges at ops 2 and 4; node 5 ranks edge 2 (op 3,
    # the lower of the tie) before edge 0.
    "top-k": ({2: ((2, 0), (4, 1)), 3: ((6, 2), (5, 1)), 4: ((1, 0), (1, 1)), 5: ((3, 2), (2, 0))},
              ALL_NODES),
    # node 2's two kept edges are both 'none', so it is empty; node 5 keeps edge 1 ('none', dropped)
    # and edge 2.
    "top-k_with_none": ({2: (), 3: ((6, 2), (5, 1)), 4: ((1, 0), (1, 1)), 5: ((3, 2),)},
                        (3, 4, 5)),
    # every edge whose top op is not 'none', in input order; the uniform edge 3 of node 5 takes op 0.
    "best": ({2: (), 3: ((0, 0), (5, 1), (6, 2)), 4: ((1, 0), (1, 1), (3, 3)),
              5: ((2, 0), (3, 2), (0, 3), (0, 4))}, (3, 4, 5)),
    # every nonzero raw alpha but 'none'; node 5's all-zero edge 3 gives nothing.
    "all": ({2: ((2, 0), (4, 1)), 3: ((0, 0), (5, 1), (6, 2)), 4: ((1, 0), (1, 1), (3, 3)),
             5: ((2, 0), (3, 2), (5, 2), (0, 4))}, ALL_NODES),
    # the top 2 ops of every edge (ties among the zeros go to the lower op id), minus 'none'.
    "topk-edge": ({2: ((2, 0), (4, 1)),
                   3: ((0, 0), (1, 0), (5, 1), (0, 1), (6, 2), (0, 2)),
                   4: ((1, 0), (0, 0), (1, 1), (0, 1), (0, 2), (3, 3), (0, 3)),
                   5: ((2, 0), (0, 0), (0, 1), (3, 2), (5, 2), (0, 3), (1, 3), (0, 4), (1, 4))},
                  ALL_NODES),
    # the top 2 (edge, op) pairs of each node: node 2's are both 'none'; node 5's are 'none' on
    # edge 1 and op 3 on edge 2.
    "topk-node": ({2: (), 3: ((6, 2), (5, 1)), 4: ((1, 0), (1, 1)), 5: ((3, 2),)}, (3, 4, 5)),
}


@pytest.mark.parametrize("rule", list(EXPECTED))
def test_rule_on_hand_made_alpha(rule):
    assert derive(hand_made_alpha(), rule) == EXPECTED[rule]


def test_every_rule_is_tested():
    assert set(DERIVATION_RULES) == set(EXPECTED)


def test_top_k_is_the_darts_rule():
    alpha = np.random.RandomState(0).randn(14, 8)
    cell, concat = derive(alpha, "top-k")
    assert cell == derive_cell(alpha)
    assert concat == ALL_NODES


def test_zero_alphas_leave_every_node_empty_under_all():
    cell, concat = derive(np.zeros((14, 8)), "all")
    assert cell == {node: () for node in ALL_NODES}
    assert concat == ()


def test_none_everywhere_empties_the_cell_except_under_top_k():
    alpha = np.zeros((14, 8))
    alpha[:, NONE] = 5.0
    for rule in ("top-k_with_none", "best", "topk-node"):
        assert derive(alpha, rule) == ({node: () for node in ALL_NODES}, ()), rule
    assert derive(alpha, "top-k")[1] == ALL_NODES


def test_unknown_rule_and_bad_alpha_are_errors():
    with pytest.raises(ArchitectureError, match="unknown derivation rule"):
        derive(np.zeros((14, 8)), "top-3")
    for rule in DERIVATION_RULES:
        with pytest.raises(ArchitectureError, match="shape"):
            derive(np.zeros((14, 7)), rule)

"""The derivation rules of models.derivation on hand-made alphas; expected cells worked out by hand in
the comments: DARTS' top-k, DADARTS' rules and the extraction modes of a complexity-controlled search."""
import os

import numpy as np
import pytest

from args import parse_args, search_parser
from models.derivation import CELL_RULES, DERIVATIONS, EXTRACTION_MODES, RULES, derive_by_rule, extracted_file_name
from models.genotype import EDGES, NODES, ArchitectureError, load_architecture
from ops.operations import SEARCH_OPS, ZERO_OP

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")

DIL3, DIL5, SEP3, SEP5, MAX, AVG, SKIP, NONE = range(8)


def cell_of(alpha, rule):
    """One cell by the named rule, entries as tuples; unlike an Architecture's cell, it may read an
    empty node."""
    return {node: tuple(edges) for node, edges in CELL_RULES[rule](alpha).items()}


def row(input_node, node):
    return EDGES.index((input_node, node))


def alpha_with(*settings):
    """A zero (14, 8) alpha with alpha[edge(input, node), op] = value for each (input, node, op, value)."""
    alpha = np.zeros((len(EDGES), len(SEARCH_OPS)))
    for input_node, node, op_id, value in settings:
        alpha[row(input_node, node), op_id] = value
    return alpha


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


EXPECTED = {
    # 'none' out of the ranking: node 2 keeps both edges at ops 2 and 4; node 5 ranks edge 2 (op 3,
    # the lower of the tie) before edge 0.
    "top-k": {2: ((2, 0), (4, 1)), 3: ((6, 2), (5, 1)), 4: ((1, 0), (1, 1)), 5: ((3, 2), (2, 0))},
    # node 2's two kept edges are both 'none', so it is empty; node 5 keeps edge 1 ('none', dropped)
    # and edge 2.
    "top-k_with_none": {2: (), 3: ((6, 2), (5, 1)), 4: ((1, 0), (1, 1)), 5: ((3, 2),)},
    # every edge whose top op is not 'none', in input order; the uniform edge 3 of node 5 takes op 0.
    "best": {2: (), 3: ((0, 0), (5, 1), (6, 2)), 4: ((1, 0), (1, 1), (3, 3)),
             5: ((2, 0), (3, 2), (0, 3), (0, 4))},
    # every nonzero raw alpha but 'none'; node 5's all-zero edge 3 gives nothing.
    "all": {2: ((2, 0), (4, 1)), 3: ((0, 0), (5, 1), (6, 2)), 4: ((1, 0), (1, 1), (3, 3)),
            5: ((2, 0), (3, 2), (5, 2), (0, 4))},
    # the top 2 ops of every edge (ties among the zeros go to the lower op id), minus 'none'.
    "topk-edge": {2: ((2, 0), (4, 1)),
                  3: ((0, 0), (1, 0), (5, 1), (0, 1), (6, 2), (0, 2)),
                  4: ((1, 0), (0, 0), (1, 1), (0, 1), (0, 2), (3, 3), (0, 3)),
                  5: ((2, 0), (0, 0), (0, 1), (3, 2), (5, 2), (0, 3), (1, 3), (0, 4), (1, 4))},
    # the top 2 (edge, op) pairs of each node: node 2's are both 'none'; node 5's are 'none' on
    # edge 1 and op 3 on edge 2.
    "topk-node": {2: (), 3: ((6, 2), (5, 1)), 4: ((1, 0), (1, 1)), 5: ((3, 2),)},
    # every edge at its raw argmax, 'none' included (node 5's all-zero edge 3 takes op 0).
    "simple": {2: ((NONE, 0), (NONE, 1)), 3: ((0, 0), (5, 1), (6, 2)), 4: ((1, 0), (1, 1), (NONE, 2), (3, 3)),
               5: ((2, 0), (NONE, 1), (3, 2), (0, 3), (0, 4))},
    # top-k's edges with their ops, in input order, and 'none' on the others.
    "DARTS": {2: ((2, 0), (4, 1)), 3: ((NONE, 0), (5, 1), (6, 2)), 4: ((1, 0), (1, 1), (NONE, 2), (NONE, 3)),
              5: ((2, 0), (NONE, 1), (3, 2), (NONE, 3), (NONE, 4))},
}


@pytest.mark.parametrize("rule", list(EXPECTED))
def test_rule_on_hand_made_alpha(rule):
    assert cell_of(hand_made_alpha(), rule) == EXPECTED[rule]


def test_every_rule_is_tested_and_reachable_by_its_option():
    assert set(RULES) == set(CELL_RULES) == set(EXPECTED)
    # 'simple' is both: var_nas derives its DARTS baseline, a plain search, with it.
    assert DERIVATIONS == ("top-k", "top-k_with_none", "best", "all", "topk-edge", "topk-node", "simple")
    assert EXTRACTION_MODES == ("simple", "DARTS")
    assert set(DERIVATIONS + EXTRACTION_MODES) == set(RULES)


def test_a_plain_search_derives_simple_as_var_nas_derives_its_darts_baseline(tiny_search, tmp_path):
    out = tiny_search(tmp_path / "simple", "--epoch", "1", "--derivation", "simple")
    history = np.load(out / "alpha_history.npz")
    arch = load_architecture(str(out / "DARTS_arch.json"))
    nones = 0
    for cell, alpha in ((arch.normal, history["normal"][-1]), (arch.reduction, history["reduction"][-1])):
        # By hand: every edge of every node, in input order, at the argmax of its alphas, 'none' included.
        by_hand = {node: tuple((int(np.argmax(alpha[row(input_node, node)])), input_node) for input_node in range(node))
                   for node in NODES}
        assert {node: tuple(cell[node]) for node in NODES} == by_hand
        nones += sum(op == NONE for edges in by_hand.values() for op, _ in edges)
    assert nones > 0  # these alphas put 'none' first on some edge, which DARTS's top-k never keeps
    assert arch.normal_concat == arch.reduction_concat == NODES


@pytest.mark.parametrize("seed", [150, 200])
def test_the_seed_experiments_darts_baseline_derives_simple(seed):
    args = parse_args(search_parser(), ["--config", os.path.join(CONFIGS, f"fmnist_mini_darts_seed{seed}.yaml")])
    assert (args.variant, args.derivation, args.seed) == ("darts", "simple", seed)


def test_each_cell_type_is_derived_from_its_own_alphas():
    normal = alpha_with((0, 2, SEP3, 1.0), (1, 2, SEP3, 1.0))
    reduction = alpha_with((0, 2, MAX, 1.0), (1, 2, MAX, 1.0))
    for rule in RULES:
        arch = derive_by_rule(normal, reduction, rule)
        # Every rule puts node 2's strongest op on both its edges (topk-edge also the runner-up, op 0).
        assert [edge for edge in arch.normal[2] if edge[0] != DIL3] == [(SEP3, 0), (SEP3, 1)], rule
        assert [edge for edge in arch.reduction[2] if edge[0] != DIL3] == [(MAX, 0), (MAX, 1)], rule


def test_concat_is_the_nodes_with_inputs():
    # Node 5's edges all have 'none' far ahead; no later node reads node 5, so every rule gives a
    # valid cell. Other edges: op SEP3 at 2.0 (0.51 after the softmax).
    alpha = alpha_with(*[(input_node, node, SEP3, 2.0) for input_node, node in EDGES if node < 5],
                       *[(input_node, 5, NONE, 5.0) for input_node in range(5)])
    for rule in RULES:
        arch = derive_by_rule(alpha, alpha, rule)
        dropped_none = rule in ("top-k_with_none", "best", "topk-node", "all")
        assert arch.normal_concat == arch.reduction_concat == ((2, 3, 4) if dropped_none else NODES), rule
    # 'none' is never kept by top-k: node 5 gets its two first edges at the lowest op id.
    assert derive_by_rule(alpha, alpha, "top-k").normal[5] == ((DIL3, 0), (DIL3, 1))


def test_a_cell_that_reads_an_empty_node_is_no_architecture():
    # The hand-made alpha empties node 2 under top-k_with_none while node 3 reads it.
    with pytest.raises(ArchitectureError, match="input node 2 has no edges"):
        derive_by_rule(hand_made_alpha(), hand_made_alpha(), "top-k_with_none")


def test_zero_alphas_leave_every_node_empty_under_all():
    assert cell_of(np.zeros((14, 8)), "all") == {node: () for node in NODES}
    with pytest.raises(ArchitectureError, match="concat is empty"):
        derive_by_rule(np.zeros((14, 8)), np.zeros((14, 8)), "all")


def test_none_everywhere_empties_the_cell_except_under_top_k():
    alpha = np.zeros((14, 8))
    alpha[:, NONE] = 5.0
    for rule in ("top-k_with_none", "best", "topk-node"):
        assert cell_of(alpha, rule) == {node: () for node in NODES}, rule
    assert derive_by_rule(alpha, alpha, "top-k").normal_concat == NODES


def test_unknown_rule_and_bad_alpha_are_errors():
    with pytest.raises(ArchitectureError, match="unknown derivation rule 'top-3'"):
        derive_by_rule(np.zeros((14, 8)), np.zeros((14, 8)), "top-3")
    for rule in RULES:
        with pytest.raises(ArchitectureError, match="shape"):
            derive_by_rule(np.zeros((14, 8)), np.zeros((14, 7)), rule)
        with pytest.raises(ArchitectureError, match="NaN"):
            derive_by_rule(np.full((14, 8), np.nan), np.zeros((14, 8)), rule)


# ---------------------------------------------------------------- top-k, DARTS' rule

def reference_top_k(alpha):
    """The DARTS rule written out with plain loops, to check top-k against."""
    cell = {}
    for node in NODES:
        candidates = []
        for input_node in range(node):
            logits = alpha[row(input_node, node)]
            probs = np.exp(logits) / np.exp(logits).sum()
            best_op = max((op for op in SEARCH_OPS if op != ZERO_OP), key=lambda op: probs[op])
            candidates.append((probs[best_op], input_node, best_op))
        candidates.sort(key=lambda c: -c[0])
        cell[node] = tuple((op, input_node) for _, input_node, op in candidates[:2])
    return cell


def test_zero_is_never_chosen_even_when_strongest_everywhere():
    rng = np.random.default_rng(0)
    alpha = rng.normal(size=(14, 8))
    alpha[:, ZERO_OP] = 10.0
    arch = derive_by_rule(alpha, alpha, "top-k")
    assert all(op != ZERO_OP for node in NODES for op, _ in arch.normal[node])
    assert all(len(arch.normal[node]) == 2 for node in NODES)
    assert arch.normal == reference_top_k(alpha)


def test_edges_are_ranked_by_softmax_weight_of_strongest_non_zero_op():
    # Raw alphas would rank input 0 first (5.0), but its zero op takes most of its softmax mass:
    # weights are input 0: e^5/(e^5+e^6+6) = 0.26, input 1: e^2/(e^2+7) = 0.51, input 2: 0.39.
    alpha = alpha_with((0, 3, SEP3, 5.0), (0, 3, NONE, 6.0),
                       (1, 3, MAX, 2.0),
                       (2, 3, SEP5, 1.5))
    assert cell_of(alpha, "top-k")[3] == ((MAX, 1), (SEP5, 2))  # strongest first


def test_kept_edge_gets_its_strongest_non_zero_op():
    # Input 1: zero is strongest, then AVG with softmax weight 0.26 (> 1/8 of the untouched edges).
    alpha = alpha_with((1, 4, NONE, 3.5), (1, 4, AVG, 3.0), (1, 4, SEP3, 2.9),
                       (3, 4, DIL5, 4.0), (3, 4, SKIP, 1.0))
    assert cell_of(alpha, "top-k")[4] == ((DIL5, 3), (AVG, 1))


def test_ties_go_to_earlier_edge_and_lower_op_id():
    assert cell_of(np.zeros((14, 8)), "top-k") == {node: ((DIL3, 0), (DIL3, 1)) for node in NODES}
    # Inputs 1, 3 and 4 of node 5 have identical rows, so they tie exactly, as do SEP3 and AVG
    # inside each of them.
    tied = [(input_node, 5, op, 2.0) for input_node in (1, 3, 4) for op in (AVG, SEP3)]
    assert cell_of(alpha_with(*tied), "top-k")[5] == ((SEP3, 1), (SEP3, 3))


def test_a_none_that_takes_all_the_weight_wins_no_tie():
    # Every other op of node 2's edges underflows to weight 0: op 0, not 'none', is still chosen.
    alpha = alpha_with((0, 2, NONE, 1000.0), (1, 2, NONE, 1000.0))
    assert cell_of(alpha, "top-k")[2] == ((DIL3, 0), (DIL3, 1))


@pytest.mark.parametrize("seed", range(5))
def test_top_k_matches_reference_on_random_alphas(seed):
    alpha = np.random.default_rng(seed).normal(scale=2.0, size=(14, 8))
    assert cell_of(alpha, "top-k") == reference_top_k(alpha)


# ---------------------------------------------------------------- the extraction modes

def test_simple_keeps_every_edge_with_its_argmax_none_included():
    choices = np.arange(14) % 8
    cell = derive_by_rule(np.eye(8)[choices] * 5.0, np.zeros((14, 8)), "simple").normal
    assert [len(cell[node]) for node in NODES] == [2, 3, 4, 5]
    kept = {(input_node, node): op for node in cell for op, input_node in cell[node]}
    assert [kept[edge] for edge in EDGES] == list(choices)
    assert ZERO_OP in kept.values()


def test_darts_keeps_two_edges_per_node_and_sets_the_others_to_none():
    alpha = np.zeros((14, 8))
    alpha[:, ZERO_OP] = 10.0  # the strongest everywhere, yet never chosen
    alpha[row(0, 3), SEP3] = 3.0
    alpha[row(1, 3), MAX] = 1.0
    alpha[row(2, 3), DIL3] = 4.0
    cell = derive_by_rule(alpha, alpha, "DARTS").normal
    assert cell[3] == ((SEP3, 0), (ZERO_OP, 1), (DIL3, 2))
    assert all(sum(op != ZERO_OP for op, _ in cell[node]) == 2 for node in NODES)


@pytest.mark.parametrize("seed", range(20))
def test_darts_extraction_is_top_k_listed_edge_by_edge(seed):
    # The same edges at the same ops, not an alias: 'DARTS' also lists the other edges, as 'none'.
    rng = np.random.default_rng(seed)
    normal, reduction = rng.normal(scale=2.0, size=(2, 14, 8))
    darts, top_k = derive_by_rule(normal, reduction, "DARTS"), derive_by_rule(normal, reduction, "top-k")
    for cell_name in ("normal", "reduction"):
        extracted, derived = getattr(darts, cell_name), getattr(top_k, cell_name)
        assert {node: [input_node for _, input_node in extracted[node]] for node in NODES} == \
            {node: list(range(node)) for node in NODES}
        assert {node: sorted(edge for edge in extracted[node] if edge[0] != ZERO_OP) for node in NODES} == \
            {node: sorted(derived[node]) for node in NODES}
    assert darts != top_k


def test_extracted_file_name():
    assert extracted_file_name(1.0, "DARTS") == "arch_lambda_1_DARTS.json"
    assert extracted_file_name(0.25, "simple") == "arch_lambda_0.25_simple.json"

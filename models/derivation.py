"""The one registry of rules that derive a discrete architecture from the alphas of a search.

RULES maps a rule's name to a function (normal alpha, reduction alpha) -> Architecture, each alpha a
(14, 8) array: one row per edge in models.genotype.EDGES order, one column per op id, 'none'
(ZERO_OP) included. Every rule derives each cell type from its own alphas alone, and an
Architecture's concat is the nodes that have at least one input (every node for the rules that
give every node its edges).

Two kinds of rules share the registry:
- DERIVATIONS (--derivation), DARTS' rule 'top-k' and DADARTS' rules (S-H H7). Where a rule picks
  'none', that pick is dropped, so a node may have no inputs; entries of a node are listed
  strongest first for the ranking rules (top-k, top-k_with_none, topk-node) and in (input node,
  then rank or op id) order for the per-edge rules.
- EXTRACTION_MODES (--extract-mode), the cells of a complexity-controlled search (var_nas I6). They
  list every edge of the DAG, in input-node order, with 'none' where the edge adds nothing, so the
  cell is complete in our JSON. 'DARTS' is top-k's cell written that way: the same edges with the
  same ops, yet not an alias, since its cell lists the other edges as 'none' (another JSON file).
'simple' is a derivation too: var_nas derives the DARTS baseline of its experiments with it
(analysis/hyper/run_genotypes_mini_fmnist_darts.py), so that a plain search's cell compares with the
complexity-controlled ones.

Weights are the softmax of each edge's alphas over all 8 ops, except where a rule says raw alphas
(the argmax is the same, unless the softmax rounds two alphas to one weight). Ties go to the earlier
candidate: the lower input node, then the lower op id.
"""
import numpy as np

from models.discretization import KEPT_EDGES, check_cell_array, kept_edges, node_rows, softmax_rows
from models.genotype import NODES, Architecture, ArchitectureError
from ops.operations import ZERO_OP

# DADARTS' one k: the edges a node keeps, the ops an edge keeps (topk-edge), the picks of a node (topk-node).
K = KEPT_EDGES


def _drop_none(cell):
    return {node: [(op_id, input_node) for op_id, input_node in edges if op_id != ZERO_OP]
            for node, edges in cell.items()}


def _edge_by_edge(ops_of_row):
    """{node: [(op_id, input_node), ...]}: every edge in input-node order, with the op ids that
    ops_of_row(row) gives it, row being the edge's row in the alpha arrays."""
    return {node: [(int(op_id), input_node)
                   for input_node, row in enumerate(node_rows(node)) for op_id in ops_of_row(row)]
            for node in NODES}


def _top_k_of_weights(weights):
    """The DARTS rule: 'none' is out of both the edge ranking and the op choice, so every node keeps
    its K = 2 strongest edges, each at its strongest other op, strongest first.

    This is the hard discretization's choice on weights where 'none' weighs 0: no other op weighs
    less, and 'none' is the last op, so it wins no tie either. Like the stable sorted() and the
    strict-greater argmax of quark0/darts and of the NNabla example, ties go to the lower input node
    and the lower op id; with our op ids this is exactly the NNabla example's choice.
    """
    weights = np.array(weights, dtype=np.float64)
    weights[:, ZERO_OP] = 0.0
    return kept_edges(weights)


def _top_k_with_none_of_weights(weights):
    """'none' stays in the ranking: each node's K = 2 edges with the strongest op over all 8 ops (the
    hard discretization's choice); kept edges whose strongest op is 'none' are then dropped."""
    return _drop_none(kept_edges(weights))


def _best_cell(alpha):
    """Every edge at its strongest op over all 8 ops, unless that op is 'none'."""
    weights = softmax_rows(alpha)
    return _drop_none(_edge_by_edge(lambda row: [weights[row].argmax()]))


def _all_cell(alpha):
    """Every op with a nonzero RAW alpha, except 'none', on every edge (op ids ascending)."""
    alpha = check_cell_array(alpha, "alpha")
    return _drop_none(_edge_by_edge(lambda row: np.flatnonzero(alpha[row])))


def _topk_edge_cell(alpha):
    """On each edge, its K = 2 strongest ops over all 8 (strongest first), minus 'none'."""
    weights = softmax_rows(alpha)
    return _drop_none(_edge_by_edge(lambda row: np.argsort(-weights[row], kind="stable")[:K]))


def _topk_node_of_weights(weights):
    """The K = 2 strongest (edge, op) pairs of each node's whole block, 'none' included in the
    ranking, minus the picks that are 'none'."""
    cell = {}
    for node in NODES:
        block = weights[node_rows(node)]
        picks = np.argsort(-block.ravel(), kind="stable")[:K]  # row-major: edge, then op
        cell[node] = [(int(flat % block.shape[1]), int(flat // block.shape[1])) for flat in picks]
    return _drop_none(cell)


def _simple_cell(alpha):
    """Every edge at the argmax of its RAW alphas, 'none' included."""
    alpha = check_cell_array(alpha, "alpha")
    return _edge_by_edge(lambda row: [alpha[row].argmax()])


def _darts_extraction_cell(alpha):
    """top-k's edges with their ops, and 'none' on every other edge."""
    kept = {node: {input_node: op_id for op_id, input_node in edges}
            for node, edges in _DERIVATION_CELLS["top-k"](alpha).items()}
    return {node: [(kept[node].get(input_node, ZERO_OP), input_node) for input_node in range(node)]
            for node in NODES}


def _nodes_with_inputs(cell):
    return tuple(node for node in NODES if cell[node])


def _both_cell_types(cell_rule):
    """The rule of an Architecture that derives each cell type by cell_rule."""
    def rule(alpha_normal, alpha_reduction):
        normal, reduction = cell_rule(alpha_normal), cell_rule(alpha_reduction)
        return Architecture(normal, reduction, _nodes_with_inputs(normal), _nodes_with_inputs(reduction))
    return rule


# The rules that rank the edges into a node against each other, as functions of the (14, 8) op weights: a
# variant that weighs its edges beyond softmax(alpha) (PC-DARTS's edge normalisation) derives with them
# (derive_from_weights). The other rules choose edge by edge, where a positive factor on a row changes nothing.
RANKING_RULES = {
    "top-k": _top_k_of_weights,
    "top-k_with_none": _top_k_with_none_of_weights,
    "topk-node": _topk_node_of_weights,
}


def _of_alphas(weight_rule):
    """The cell rule on alphas of a rule on op weights: the weights are each edge's softmax."""
    return lambda alpha: weight_rule(softmax_rows(alpha))


_DERIVATION_CELLS = {
    "top-k": _of_alphas(_top_k_of_weights),
    "top-k_with_none": _of_alphas(_top_k_with_none_of_weights),
    "best": _best_cell,
    "all": _all_cell,
    "topk-edge": _topk_edge_cell,
    "topk-node": _of_alphas(_topk_node_of_weights),
}
_EXTRACTION_CELLS = {
    "simple": _simple_cell,
    "DARTS": _darts_extraction_cell,
}
DERIVATIONS = (*_DERIVATION_CELLS, "simple")
EXTRACTION_MODES = tuple(_EXTRACTION_CELLS)
# One cell type's rules, {name: alpha -> {node: [(op_id, input_node), ...]}}. A cell alone may read a
# node that the rule left empty, which no Architecture accepts (derive_by_rule then raises).
CELL_RULES = {**_DERIVATION_CELLS, **_EXTRACTION_CELLS}
RULES = {name: _both_cell_types(cell_rule) for name, cell_rule in CELL_RULES.items()}


def derive_by_rule(alpha_normal, alpha_reduction, rule):
    """The Architecture of both cell types' alphas by the named rule of RULES."""
    if rule not in RULES:
        raise ArchitectureError(f"unknown derivation rule {rule!r}; choose one of {', '.join(RULES)}")
    return RULES[rule](alpha_normal, alpha_reduction)


def derive_from_weights(weights_normal, weights_reduction, rule):
    """The Architecture of both cell types' (14, 8) op weights by one of RANKING_RULES."""
    if rule not in RANKING_RULES:
        raise ArchitectureError(f"derivation rule {rule!r} does not rank op weights; choose one of "
                                f"{', '.join(RANKING_RULES)}")
    return _both_cell_types(RANKING_RULES[rule])(weights_normal, weights_reduction)


def extracted_file_name(lam_tilde, mode):
    """arch_lambda_<λ̃>_<mode>.json; the pareto picture groups runs by the λ̃ in this name."""
    return f"arch_lambda_{lam_tilde:g}_{mode}.json"

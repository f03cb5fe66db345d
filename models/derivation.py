"""DADARTS' rules for deriving a discrete cell from one (14, 8) alpha array (S-H H7).

Every rule returns (cell, concat): cell is {node: ((op_id, input_node), ...)} for nodes 2..5, where
a node may have no inputs (an empty tuple), and concat is the sorted tuple of the nodes with at
least one input, the nodes whose outputs the cell concatenates.

Common conventions:
- Weights are the softmax of each edge's alphas over all 8 ops, except for 'all' (raw alphas).
- 'none' (ZERO_OP) is never part of a cell: where a rule picks it, that pick is dropped.
- Ties go to the earlier candidate: the lower input node, then the lower op id.
- Entries of a node are listed strongest first for the ranking rules (top-k, top-k_with_none,
  topk-node) and in (input node, then rank or op id) order for the per-edge rules.
"""
import numpy as np

from models.discretization import kept_edges, node_rows, softmax_rows
from models.genotype import NODES, Architecture, ArchitectureError, derive_cell
from ops.operations import ZERO_OP

K = 2


def _cell_and_concat(cell):
    cell = {node: tuple(edges) for node, edges in cell.items()}
    return cell, tuple(node for node in NODES if cell[node])


def _without_none(edges):
    return [(op_id, input_node) for op_id, input_node in edges if op_id != ZERO_OP]


def top_k(alpha):
    """The DARTS rule (models.genotype.derive_cell): 'none' is out of both the edge ranking and the
    op choice, so every node has its K = 2 edges and concat is every node."""
    return _cell_and_concat(derive_cell(alpha))


def top_k_with_none(alpha):
    """'none' stays in the ranking: each node's 2 edges with the strongest op over all 8 ops (the
    hard discretization's choice); kept edges whose strongest op is 'none' are then dropped."""
    return _cell_and_concat({node: _without_none(edges)
                             for node, edges in kept_edges(softmax_rows(alpha)).items()})


def best(alpha):
    """Every edge at its strongest op over all 8 ops, unless that op is 'none'."""
    weights = softmax_rows(alpha)
    return _cell_and_concat({node: _without_none((int(weights[row].argmax()), input_node)
                                                 for input_node, row in enumerate(node_rows(node)))
                             for node in NODES})


def all_ops(alpha):
    """Every op with a nonzero RAW alpha, except 'none', on every edge (op ids ascending)."""
    alpha = np.asarray(alpha, dtype=np.float64)
    softmax_rows(alpha)  # the shape and finiteness checks
    return _cell_and_concat({node: [(op_id, input_node)
                                    for input_node, row in enumerate(node_rows(node))
                                    for op_id in np.flatnonzero(alpha[row]).tolist()
                                    if op_id != ZERO_OP]
                             for node in NODES})


def topk_edge(alpha):
    """On each edge, its K = 2 strongest ops over all 8 (strongest first), minus 'none'."""
    weights = softmax_rows(alpha)
    cell = {}
    for node in NODES:
        cell[node] = _without_none((int(op_id), input_node)
                                   for input_node, row in enumerate(node_rows(node))
                                   for op_id in np.argsort(-weights[row], kind="stable")[:K])
    return _cell_and_concat(cell)


def topk_node(alpha):
    """The K = 2 strongest (edge, op) pairs of each node's whole block, 'none' included in the
    ranking, minus the picks that are 'none'."""
    weights = softmax_rows(alpha)
    cell = {}
    for node in NODES:
        block = weights[node_rows(node)]
        picks = np.argsort(-block.ravel(), kind="stable")[:K]  # row-major: edge, then op
        cell[node] = _without_none((int(flat % block.shape[1]), int(flat // block.shape[1]))
                                   for flat in picks)
    return _cell_and_concat(cell)


DERIVATION_RULES = {
    "top-k": top_k,
    "top-k_with_none": top_k_with_none,
    "best": best,
    "all": all_ops,
    "topk-edge": topk_edge,
    "topk-node": topk_node,
}


def derive(alpha, rule):
    """(cell, concat) of one (14, 8) alpha array by the named rule of DERIVATION_RULES."""
    if rule not in DERIVATION_RULES:
        raise ArchitectureError(f"unknown derivation rule {rule!r}; "
                                f"choose one of {', '.join(DERIVATION_RULES)}")
    return DERIVATION_RULES[rule](alpha)


def derive_by_rule(alpha_normal, alpha_reduction, rule):
    """The Architecture of both cells' alphas by the named rule; its concats are the non-empty nodes."""
    normal, normal_concat = derive(alpha_normal, rule)
    reduction, reduction_concat = derive(alpha_reduction, rule)
    return Architecture(normal, reduction, normal_concat, reduction_concat)

"""DADARTS' hard discretization of a cell's weights (H1) and its discretization additional loss (H5).

Arrays are (14, 8): one row per edge in models.genotype.EDGES order, one column per op id, 'none'
(ZERO_OP) included.
"""
import nnabla as nn
import nnabla.functions as F
import numpy as np

from models.genotype import EDGES, NODES, ArchitectureError
from ops.operations import SEARCH_OPS

KEPT_EDGES = 2
CELL_SHAPE = (len(EDGES), len(SEARCH_OPS))


def node_rows(node):
    """The rows of the edges into `node`, ordered by input node."""
    return [EDGES.index((input_node, node)) for input_node in range(node)]


def check_cell_array(array, what):
    """`array` as float64, or an ArchitectureError if it is not a finite (14, 8) array."""
    array = np.asarray(array, dtype=np.float64)
    if array.shape != CELL_SHAPE:
        raise ArchitectureError(f"{what} has shape {array.shape}, expected {CELL_SHAPE}")
    if not np.all(np.isfinite(array)):
        raise ArchitectureError(f"{what} contains NaN or infinite values")
    return array


def softmax_rows(alpha):
    """The mixing weights of a (14, 8) alpha array: a softmax over the ops of each edge."""
    alpha = check_cell_array(alpha, "alpha")
    exp = np.exp(alpha - alpha.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def kept_edges(weights):
    """{node: ((op_id, input_node), ...)}: each node's 2 strongest edges, strongest first.

    An edge's strength is its largest weight over ALL 8 ops, 'none' included (as DADARTS does), and
    its op is that argmax, which may be 'none'. Ties go to the earlier edge (lower input node) and to
    the lower op id.
    """
    weights = check_cell_array(weights, "weights")
    cell = {}
    for node in NODES:
        block = weights[node_rows(node)]
        ops = block.argmax(axis=1)  # first maximum: the lower op id
        ranked = np.argsort(-block.max(axis=1), kind="stable")[:KEPT_EDGES]
        cell[node] = tuple((int(ops[input_node]), int(input_node)) for input_node in ranked)
    return cell


def hard_discretization(weights):
    """The (14, 8) float32 0/1 array with a 1 at (edge, op) for every kept edge of kept_edges()."""
    one_hot = np.zeros(CELL_SHAPE, dtype=np.float32)
    for node, edges in kept_edges(weights).items():
        for op_id, input_node in edges:
            one_hot[EDGES.index((input_node, node)), op_id] = 1.0
    return one_hot


def _dal_scale():
    """Per row, 1 / (nodes * entries of its node's block): the mean per node, then over nodes."""
    scale = np.zeros((len(EDGES), 1), dtype=np.float32)
    for node in NODES:
        scale[node_rows(node)] = 1.0 / (len(NODES) * node * len(SEARCH_OPS))
    return scale


def dal_cell_value(weights):
    """DAL of one cell: (1/4) * sum over nodes of the mean over its block of (w - HD(w))^2."""
    weights = check_cell_array(weights, "weights")
    hd = hard_discretization(weights)
    return float(np.mean([np.mean((weights[rows] - hd[rows]) ** 2)
                          for rows in map(node_rows, NODES)]))


def dal_value(weights_by_cell):
    """The sum of dal_cell_value over the given cells' weight arrays."""
    return sum(dal_cell_value(weights) for weights in weights_by_cell)


def dal_loss(weights, hard_weights):
    """The graph term of dal_cell_value: `weights` a (14, 8) Variable, `hard_weights` a need_grad=False
    Variable holding hard_discretization(weights.d), written before each forward."""
    scale = nn.Variable.from_numpy_array(_dal_scale(), need_grad=False)
    return F.sum(F.squared_error(weights, hard_weights) * scale)


def dal_loss_sum(cells):
    """The graph term of dal_value: the sum of dal_loss over (weights, hard_weights) pairs."""
    terms = [dal_loss(weights, hard_weights) for weights, hard_weights in cells]
    return terms[0] if len(terms) == 1 else F.add_n(*terms)

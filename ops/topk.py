"""Differentiable top-k masks (DADARTS), as nnabla graph functions for static graphs.

TopK(x; k, T), for each row of x: p_i = sigmoid(T * (x_i + tau)) with tau such that sum_i p_i = k.
tau is found by bisection inside the graph, so the graph is built once while x and the temperature
T (a need_grad=False Variable) change every step, and nothing is copied to the host.

Computed in the scaled form p_i = sigmoid(T * x_i + s), s = T * tau: the value is the same, but it
stays finite as T goes to 0 and keeps x's digits when tau is large.

Temperature:
- For T >= 1 the bisection bracket is the seed's, tau in [-max x - 10, -min x + 10]. Below 1 it
  stays 10 wide in s instead of shrinking with T: the seed's s +- 10 T misses the root once 10 T
  is under about |logit(k / n)| (T < 0.2 for k = 1 of 8 equal ops, whose masks then sum to more
  than 1), while here the masks sum to k for every T > 0.
- T = 0: sigmoid(0 * (x + tau)) is 0.5 for every tau, as in the seed (Q-D2), so the mask is 0.5
  everywhere and sums to n/2, not k. The exact gradient carries the factor T and is 0;
  grad="seed" keeps the seed's nonzero gradient.
- T must not be negative.
"""
import nnabla as nn
import nnabla.functions as F
import numpy as np

from ops.user_error import UserError

BISECTION_STEPS = 64
# Half-width of the bisection bracket beyond the data, in units of T * x: 10 * T as in the seed for
# T >= 1. At least 10, since the root lies within |logit(k / n)| of the data, under 10 up to n = 22000.
_BRACKET = 10.0
# Smallest normal float32: a floor for sum(v) that is never reached while any v is normal.
_TINY = float(np.finfo(np.float32).tiny)
# Moves padded entries out of the min and max of a row; far beyond any T * x, far below float32's max.
_PAD = 1e30

GRADIENTS = ("exact", "seed")
OPTIONS = (1, 2)
NUM_OPS = 8
# Incoming edges of nodes 2..5: the row blocks of a (14, 8) weights array, in models.genotype.EDGES
# order (all edges into node 2 first, then node 3, ...).
EDGES_PER_NODE = (2, 3, 4, 5)


class TopKError(UserError, ValueError):
    """Top-k settings that cannot be used together; the message says which and why."""


def _stop_gradient(x):
    y = F.identity(x)
    y.need_grad = False
    return y


def _check_k(k, candidates, what):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TopKError(f"{what} must be an int, got {k!r}")
    if not 0 < k < candidates:
        raise TopKError(f"{what} = {k} is out of range: a top-k over {candidates} candidates "
                        f"needs 0 < k < {candidates}")


def _check_grad(grad):
    if grad not in GRADIENTS:
        raise TopKError(f"top-k gradient {grad!r} is unknown; choose one of {', '.join(GRADIENTS)}")


def _threshold(tx, k, temperature, valid):
    """s, shape (rows, 1), with sum_i valid_i * sigmoid(tx_i + s) = k by bisection; tx = T * x.

    valid (None or a constant (rows, n) 0/1 array) marks the entries of each row that take part,
    so rows of different lengths can share one bisection.
    """
    margin = F.maximum_scalar(temperature, 1.0) * _BRACKET
    if valid is None:
        top, bottom = tx, tx
    else:  # padding sinks below the maximum and rises above the minimum
        top, bottom = tx + (valid - 1.0) * _PAD, tx - (valid - 1.0) * _PAD
    lo = -F.max(top, axis=1, keepdims=True) - margin
    hi = -F.min(bottom, axis=1, keepdims=True) + margin
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) * 0.5
        sigmoids = F.sigmoid(tx + mid)
        if valid is not None:
            sigmoids = sigmoids * valid
        below = F.less_scalar(F.sum(sigmoids, axis=1, keepdims=True), k)
        lo = F.where(below, mid, lo)
        hi = F.where(below, hi, mid)
    return (lo + hi) * 0.5


def _topk_rows(x, k, temperature, grad, valid=None):
    t = F.reshape(temperature, (1, 1))
    x_value = _stop_gradient(x)
    tx = x_value * t
    # sigmoid(0 * x + s) would be k / n at T = 0; the seed's sigmoid(T * (x + tau)) is 0.5.
    s = _threshold(tx, k, t, valid) * F.greater_scalar(t, 0.0)
    z_value = tx + s
    p_value = F.sigmoid(z_value)
    v = p_value * (1.0 - p_value)  # as nnabla's sigmoid backward computes it
    if valid is not None:
        v = v * valid
    c = -v / F.maximum_scalar(F.sum(v, axis=1, keepdims=True), _TINY)
    # tau moves with x as d tau / dx_j = c_j (implicit function theorem). zero is 0 in the forward
    # pass and has the gradient of x, so z keeps its value and gets the Jacobian gain * (I + 1 c^T).
    zero = x - x_value
    gain = t if grad == "exact" else 1.0
    z = z_value + gain * (zero + F.sum(c * zero, axis=1, keepdims=True))
    return F.sigmoid(z)


def topk_mask(x, k, temperature, grad="exact"):
    """The soft top-k mask of each row of x, shape (rows, n), with 0 < k < n.

    temperature: a need_grad=False Variable of shape () or (1,), T >= 0.
    grad="exact": dp_i/dx_j = T * v_i * (delta_ij - v_j / sum(v)), v = sigmoid'(T * x + s).
    grad="seed": the same without the factor T, as the seed's TopK.backward (Q-D1).
    Where sum(v) = 0 (every sigmoid saturated) the gradient is 0.
    """
    _check_grad(grad)
    if len(x.shape) != 2:
        raise TopKError(f"top-k input must have shape (rows, n), got {x.shape}")
    _check_k(k, x.shape[1], "k")
    return _topk_rows(x, k, temperature, grad)


def check_topk_settings(k_edge, k_node, option, grad="exact", num_ops=NUM_OPS,
                        min_edges=min(EDGES_PER_NODE)):
    """Raise TopKError unless the settings make a top-k transform of every node's weights.

    k_edge = 0 skips the per-edge top-k; k_node = 0 the per-node one (option 2 only: option 1
    multiplies by the node mask, which the seed then never defines, a NameError, Q-D8).
    """
    _check_grad(grad)
    if option not in OPTIONS:
        raise TopKError(f"top-k option {option!r} is unknown; choose 1 or 2")
    for k, name in ((k_edge, "top-k k_edge"), (k_node, "top-k k_node")):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TopKError(f"{name} must be an int, got {k!r}")
        if k < 0:
            raise TopKError(f"{name} = {k} is negative; use 0 to skip that top-k")
    if k_edge:
        _check_k(k_edge, num_ops, "top-k k_edge (over the ops of an edge)")
    if k_node:
        _check_k(k_node, min_edges * num_ops,
                 f"top-k k_node (over the {min_edges}x{num_ops} (edge, op) pairs of the smallest node)")
    elif option == 1:
        raise TopKError("top-k k_node = 0 does not work with option 1, which multiplies by the node "
                        "mask; use k_node > 0 or option 2")
    elif not k_edge:
        raise TopKError("top-k k_edge = 0 and k_node = 0 leave nothing to transform")


def topk_transform(weights_block, k_edge, k_node, temperature, option=1, just_topk=False,
                   grad="exact"):
    """DADARTS' top-k transform of one node's weights, (n_edges, ops), softmaxed, 'none' included.

    p_edge = TopK of each row with k_edge (omitted when k_edge = 0);
    option 1: mask = p_edge * TopK(flatten(weights), k_node);
    option 2: mask = TopK(flatten(p_edge), k_node), or p_edge when k_node = 0, where p_edge is the
    weights themselves when k_edge = 0.
    Returns weights * mask, or the mask alone with just_topk.

    Two seed differences: with k_edge = 0 under option 1 the seed multiplies by the weights twice
    (its edge mask defaults to the weights), and its just_topk under option 1 returns p_edge and
    drops the node mask. Here a skipped mask is a factor 1 and just_topk is always the full mask.
    """
    rows, ops = weights_block.shape
    check_topk_settings(k_edge, k_node, option, grad, num_ops=ops, min_edges=rows)

    def node_topk(x):
        flat = F.reshape(x, (1, rows * ops))
        return F.reshape(topk_mask(flat, k_node, temperature, grad), (rows, ops))

    p_edge = topk_mask(weights_block, k_edge, temperature, grad) if k_edge else None
    if option == 1:
        p_node = node_topk(weights_block)
        mask = p_node if p_edge is None else p_edge * p_node
    else:
        mask = node_topk(weights_block if p_edge is None else p_edge) if k_node else p_edge
    return mask if just_topk else weights_block * mask


def _node_masks(weights, k_node, temperature, grad):
    """TopK over each node's flattened block of a (14, 8) array, in one padded bisection."""
    sizes = [n_edges * NUM_OPS for n_edges in EDGES_PER_NODE]
    width = max(sizes)
    rows, start = [], 0
    for n_edges, size in zip(EDGES_PER_NODE, sizes):
        flat = F.reshape(weights[start:start + n_edges], (1, size))
        rows.append(F.pad(flat, (0, width - size)) if size < width else flat)
        start += n_edges
    valid = nn.Variable.from_numpy_array(
        (np.arange(width)[None, :] < np.array(sizes)[:, None]).astype(np.float32), need_grad=False)
    padded = _topk_rows(F.concatenate(*rows, axis=0), k_node, temperature, grad, valid)
    return F.concatenate(*[F.reshape(padded[i:i + 1, :size], (n_edges, NUM_OPS))
                           for i, (n_edges, size) in enumerate(zip(EDGES_PER_NODE, sizes))], axis=0)


def topk_transform_cell(weights, k_edge, k_node, temperature, option=1, just_topk=False,
                        grad="exact"):
    """topk_transform of every node of a (14, 8) weights Variable (rows in EDGES order): (14, 8).

    The same values and gradients as calling topk_transform node by node, in two or three
    bisections instead of eight: rows are independent for the edge top-k, and the node top-k pads
    the flattened blocks to one length.
    """
    expected = (sum(EDGES_PER_NODE), NUM_OPS)
    if tuple(weights.shape) != expected:
        raise TopKError(f"cell weights must have shape {expected}, got {weights.shape}")
    check_topk_settings(k_edge, k_node, option, grad)
    p_edge = _topk_rows(weights, k_edge, temperature, grad) if k_edge else None
    if option == 1:
        p_node = _node_masks(weights, k_node, temperature, grad)
        mask = p_node if p_edge is None else p_edge * p_node
    else:
        source = weights if p_edge is None else p_edge
        mask = _node_masks(source, k_node, temperature, grad) if k_node else p_edge
    return mask if just_topk else weights * mask

"""The DARTS search network: every edge of a cell carries a softmax(alpha)-weighted mixture of all ops.

Weights live in the parameter scope "net", the two (14, 8) alpha arrays in "arch", so that the two
levels of the bilevel problem can be handed to different solvers.
"""
import nnabla as nn
import nnabla.functions as F
import nnabla.initializer as I

from models.genotype import EDGES, NODES
from models.network import dense_classifier, edge_stride, network
from ops import cpu_sums
from ops.operations import OP_NAMES, POOLING_OPS, SEARCH_OPS, ZERO_OP, OpMode, batch_norm, operation

WEIGHT_SCOPE = "net"
ARCH_SCOPE = "arch"
ALPHA_NAMES = ("alpha_normal", "alpha_reduction")


def create_alphas(rng):
    """The architecture parameters, 1e-3 * N(0, 1), one array per cell type."""
    with nn.parameter_scope(ARCH_SCOPE):
        return {name: nn.parameter.get_parameter_or_create(
            name, (len(EDGES), len(SEARCH_OPS)), I.NormalInitializer(1e-3, rng=rng), need_grad=True)
            for name in ALPHA_NAMES}


def weight_parameters():
    with nn.parameter_scope(WEIGHT_SCOPE):
        return nn.get_parameters(grad_only=True)


def all_weight_state():
    """Weights plus batch-norm running statistics: everything of the network that is not an alpha."""
    with nn.parameter_scope(WEIGHT_SCOPE):
        return nn.get_parameters(grad_only=False)


def alpha_parameters():
    with nn.parameter_scope(ARCH_SCOPE):
        return nn.get_parameters(grad_only=False)


# The ops a mixed edge builds: the zero op adds nothing to the sum. Its column stays the last one.
BUILT_OPS = tuple(op_id for op_id in SEARCH_OPS if op_id != ZERO_OP)
assert SEARCH_OPS[-1] == ZERO_OP


def candidate_op(op_id, x, channels, stride, mode):
    """One op of a mixed edge, in its own scope; pooling ops get a BN without affine after them, as in DARTS."""
    out = operation(op_id, x, channels, stride, mode)
    if op_id in POOLING_OPS:
        with nn.parameter_scope(f"{OP_NAMES[op_id]}_bn"):
            out = batch_norm(out, mode)
    return out


def mixed_op(x, edge_weights, channels, stride, mode):
    """Sum over ops of weight * op(x), as one matrix product.

    edge_weights is a (1, ops) row shared by the batch, taken as one (1, ops) x (ops, size) product;
    or a (B, 1, ops) row per sample (models.mixing), taken as (B, 1, ops) x (B, ops, CHW) batched
    products. The products are an order of magnitude faster on nnabla's CPU backend than one
    broadcast multiply per op. The same form serves cudnn: there it is one GEMV-shaped cuBLAS call that
    reads each op output once, as a fused weighted sum would, where seven broadcast multiplies and
    six additions would read and write the (7 x size) outputs thirteen times; no context switch is needed.

    On the cpu kernels (mode.cpu_kernels, where the outputs are large enough) the sum is one multi-threaded
    pass instead (ops.cpu_sums): at B 64, C 16, 32 x 32 it takes 0.98 + 1.7 ms forward + backward where
    Stack + Affine took 5.2 + 16 ms.
    """
    outputs = [candidate_op(op_id, x, channels, stride, mode) for op_id in BUILT_OPS]
    if mode.cpu_kernels and cpu_sums.worthwhile(outputs[0]):
        return cpu_sums.weighted_sum(outputs, edge_weights)
    if edge_weights.ndim == 3:
        stacked = F.reshape(F.stack(*outputs, axis=1), (x.shape[0], len(outputs), -1))
        return F.reshape(F.batch_matmul(edge_weights, stacked), outputs[0].shape)
    stacked = F.reshape(F.stack(*outputs, axis=0), (len(outputs), -1))
    return F.reshape(F.affine(edge_weights, stacked), outputs[0].shape)


def search_nodes(edge_output, mode):
    """build_nodes for network(): every earlier node feeds every intermediate node.

    edge_output(cell_type, edge, x, channels, stride) is what edge `edge` (a row of the alpha arrays)
    adds to its node, or None for nothing; a node that gets nothing is zero.
    """
    def build_nodes(s0, s1, channels, reduction):
        cell_type = ALPHA_NAMES[1] if reduction else ALPHA_NAMES[0]
        states = [s0, s1]
        edge = 0
        for node in NODES:
            total = None
            for input_node in range(node):
                stride = edge_stride(reduction, input_node)
                with nn.parameter_scope(f"edge{edge}"):
                    out = edge_output(cell_type, edge, states[input_node], channels, stride)
                if out is not None:
                    total = out if total is None else total + out
                edge += 1
            if total is None:
                total = operation(ZERO_OP, s0, channels, edge_stride(reduction, 0), mode)
            states.append(total)
        return states[2:]
    return build_nodes


def edge_rows(weights):
    """Per edge, the (1, 7) row, or (B, 1, 7) rows, of the weights of the ops that are built.

    `weights` is (14, 8), shared by the batch, or (B, 14, 8), one per sample (models.mixing); the zero
    op, the last column, is left out.
    """
    if weights.ndim == 3:
        return [weights[:, edge:edge + 1, :len(BUILT_OPS)] for edge in range(weights.shape[1])]
    return [F.reshape(row, (1, -1))[:, :len(BUILT_OPS)] for row in F.split(weights, axis=0)]


def softmax_weights(alphas):
    """Plain DARTS's mixing weights: the softmax over the ops of every edge, {name: (14, 8) Variable}."""
    return {name: F.softmax(alpha, axis=1) for name, alpha in alphas.items()}


def search_network(x, mixing_weights, num_classes, channels, num_cells, frozen=False, test=False,
                   classifier=dense_classifier, cpu_kernels=False, edge=mixed_op):
    """Logits of the search network for input `x`: every edge mixes all ops with `mixing_weights`
    ({name: (14, 8) Variable}, e.g. softmax_weights(alphas); or (B, 14, 8), one mixture per sample).

    frozen=True builds a graph that computes no weight gradients (see ops.operations.OpMode); test=True
    uses the batch-norm running statistics (validation), training mode uses batch statistics, as DARTS.
    `classifier` is the final layer (models.network; models.hypernetwork has one that depends on λ).
    cpu_kernels: see ops.operations.OpMode. `edge(x, edge_weights, channels, stride, mode)` builds one
    edge from its row of the weights (mixed_op's signature; a search variant may build edges its own way).
    """
    rows = {name: edge_rows(weights) for name, weights in mixing_weights.items()}
    mode = OpMode(affine=False, test=test, frozen=frozen, cpu_kernels=cpu_kernels)

    def edge_output(cell_type, index, x, channels, stride):
        return edge(x, rows[cell_type][index], channels, stride, mode)
    with nn.parameter_scope(WEIGHT_SCOPE):
        return network(x, num_classes, channels, num_cells, mode, build_nodes=search_nodes(edge_output, mode),
                       classifier=classifier)


def discrete_search_network(x, kept_ops, num_classes, channels, num_cells, test=False, classifier=dense_classifier,
                            cpu_kernels=False):
    """The search network with each edge reduced to the op it keeps, reading the supernet's parameters.

    kept_ops: {name: {edge: op_id}} for the kept edges of each cell type (a hard discretization);
    an edge that is not kept, or keeps 'none', adds nothing. The logits equal those of search_network
    fed the one-hot weights of kept_ops, at a fraction of the cost. `classifier` and `cpu_kernels` as
    in search_network.
    """
    mode = OpMode(affine=False, test=test, cpu_kernels=cpu_kernels)

    def edge_output(cell_type, edge, x, channels, stride):
        op_id = kept_ops[cell_type].get(edge, ZERO_OP)
        if op_id == ZERO_OP:
            return None
        return candidate_op(op_id, x, channels, stride, mode)
    with nn.parameter_scope(WEIGHT_SCOPE):
        return network(x, num_classes, channels, num_cells, mode, build_nodes=search_nodes(edge_output, mode),
                       classifier=classifier)

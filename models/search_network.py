"""The DARTS search network: every edge of a cell carries a softmax(alpha)-weighted mixture of all ops.

Weights live in the parameter scope "net", the two (14, 8) alpha arrays in "arch", so that the two
levels of the bilevel problem can be handed to different solvers.
"""
import nnabla as nn
import nnabla.functions as F
import nnabla.initializer as I

from models.genotype import EDGES, NODES
from models.network import edge_stride, network
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


def mixed_op(x, edge_weights, channels, stride, mode):
    """Sum over ops of weight * op(x), as one (1, ops) x (ops, size) product.

    The product is an order of magnitude faster on nnabla's CPU backend than one broadcast multiply
    per op.
    """
    outputs = []
    for op_id in BUILT_OPS:
        out = operation(op_id, x, channels, stride, mode)
        if op_id in POOLING_OPS:
            with nn.parameter_scope(f"{OP_NAMES[op_id]}_bn"):
                out = batch_norm(out, mode)
        outputs.append(out)
    stacked = F.reshape(F.stack(*outputs, axis=0), (len(outputs), -1))
    return F.reshape(F.affine(edge_weights, stacked), outputs[0].shape)


def search_nodes(alpha_weights, mode):
    """Returns build_nodes for network(): every earlier node feeds every intermediate node."""
    def build_nodes(s0, s1, channels, reduction):
        op_weights = alpha_weights["alpha_reduction" if reduction else "alpha_normal"]
        states = [s0, s1]
        edge = 0
        for node in NODES:
            total = None
            for input_node in range(node):
                with nn.parameter_scope(f"edge{edge}"):
                    out = mixed_op(states[input_node], op_weights[edge], channels,
                                   edge_stride(reduction, input_node), mode)
                total = out if total is None else total + out
                edge += 1
            states.append(total)
        return states[2:]
    return build_nodes


def search_network(x, alphas, num_classes, channels, num_cells, frozen=False):
    """Logits of the search network for input `x`, in training mode (batch statistics), as in DARTS.

    frozen=True builds a graph that computes no weight gradients (see ops.operations.OpMode).
    """
    alpha_weights = {}
    for name, alpha in alphas.items():
        softmax = F.softmax(alpha, axis=1)
        # Per edge, a (1, 7) row of the weights of the ops that are built (all but zero, the last).
        alpha_weights[name] = [F.reshape(row, (1, -1))[:, :len(BUILT_OPS)] for row in F.split(softmax, axis=0)]
    mode = OpMode(affine=False, test=False, frozen=frozen)
    with nn.parameter_scope(WEIGHT_SCOPE):
        return network(x, num_classes, channels, num_cells, mode, build_nodes=search_nodes(alpha_weights, mode))

"""The DARTS search network: every edge of a cell carries a softmax(alpha)-weighted mixture of all ops.

Weights live in the parameter scope "net", the two (14, 8) alpha arrays in "arch", so that the two
levels of the bilevel problem can be handed to different solvers.
"""
import nnabla as nn
import nnabla.functions as F
import nnabla.initializer as I

from models.genotype import EDGES, NODES, OP_NAMES
from models.network import edge_stride, network
from ops.operations import POOLING_OPS, ZERO_OP, batch_norm, operation

WEIGHT_SCOPE = "net"
ARCH_SCOPE = "arch"
ALPHA_NAMES = ("alpha_normal", "alpha_reduction")


def create_alphas(rng):
    """The architecture parameters, 1e-3 * N(0, 1), one array per cell type."""
    with nn.parameter_scope(ARCH_SCOPE):
        return {name: nn.parameter.get_parameter_or_create(
            name, (len(EDGES), len(OP_NAMES)), I.NormalInitializer(1e-3, rng=rng), need_grad=True)
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


def mixed_op(x, edge_weights, channels, stride, test):
    """Sum over ops of weight * op(x), as one (1, ops) x (ops, size) product.

    The product is an order of magnitude faster on nnabla's CPU backend than one broadcast multiply
    per op. The zero op adds nothing to the sum, so it is not built at all.
    """
    outputs = []
    for op_id in range(len(OP_NAMES)):
        if op_id == ZERO_OP:
            continue
        out = operation(op_id, x, channels, stride, affine=False, test=test)
        if op_id in POOLING_OPS:
            with nn.parameter_scope(f"{OP_NAMES[op_id]}_bn"):
                out = batch_norm(out, affine=False, test=test)
        outputs.append(out)
    stacked = F.reshape(F.stack(*outputs, axis=0), (len(outputs), -1))
    return F.reshape(F.affine(edge_weights, stacked), outputs[0].shape)


def search_nodes(alpha_weights):
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
                                   edge_stride(reduction, input_node), test=False)
                total = out if total is None else total + out
                edge += 1
            states.append(total)
        return states[2:]
    return build_nodes


def search_network(x, alphas, num_classes, channels, num_cells):
    """Logits of the search network for input `x`, in training mode (batch statistics), as in DARTS."""
    alpha_weights = {}
    for name, alpha in alphas.items():
        softmax = F.softmax(alpha, axis=1)
        # Per edge, a (1, 7) row of the weights of the ops that are built (all but zero, the last).
        alpha_weights[name] = [F.reshape(row, (1, -1))[:, :ZERO_OP] for row in F.split(softmax, axis=0)]
    with nn.parameter_scope(WEIGHT_SCOPE):
        return network(x, num_classes, channels, num_cells, affine=False, test=False,
                       build_nodes=search_nodes(alpha_weights))

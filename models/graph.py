"""Static graphs (built once, then fed new batches and run forward/backward every step) and their losses."""
from collections import namedtuple

import nnabla as nn
import nnabla.functions as F


# One static graph: its input and label variables, and what it computes from them.
Graph = namedtuple("Graph", "x y logits loss")


def make_graph(x, y, logits, loss):
    # Kept through forward(clear_no_need_grad) and backward(clear_buffer) so they can be read afterwards.
    logits.persistent = True
    loss.persistent = True
    return Graph(x, y, logits, loss)


def build_graph(network, input_shape):
    """Input and label variables, the logits of network(x) and their mean cross-entropy."""
    x = nn.Variable(input_shape)
    y = nn.Variable((input_shape[0], 1))
    logits = network(x)
    return make_graph(x, y, logits, cross_entropy(logits, y))


def cross_entropy(logits, labels):
    return F.mean(F.softmax_cross_entropy(logits, labels))


def label_smoothing_cross_entropy(logits, labels, epsilon):
    """Batch mean of sum_k -[(1 - eps) 1{k = y} + eps / K] log p_k (quark0's CrossEntropyLabelSmooth).

    That is (1 - eps) times the cross-entropy plus eps times the mean over classes of -log p_k.
    """
    nll = F.softmax_cross_entropy(logits, labels)
    uniform = -F.mean(F.log_softmax(logits, axis=1), axis=1, keepdims=True)
    return F.mean((1.0 - epsilon) * nll + epsilon * uniform)


def feed(graph, batch):
    graph.x.d, graph.y.d = batch


def forward_backward(graph, grad_scale=1.0):
    """grad_scale: what the loss is backpropagated times (an optimiser's grad_scale under half precision)."""
    graph.loss.forward(clear_no_need_grad=True)
    graph.loss.backward(grad_scale, clear_buffer=True)

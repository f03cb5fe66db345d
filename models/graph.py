"""Static graphs: built once, then fed new batches and run forward/backward every step."""
from collections import namedtuple

import nnabla as nn

from models.network import cross_entropy

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


def feed(graph, batch):
    graph.x.d, graph.y.d = batch


def forward_backward(graph):
    graph.loss.forward(clear_no_need_grad=True)
    graph.loss.backward(clear_buffer=True)

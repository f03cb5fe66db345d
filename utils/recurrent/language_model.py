"""Running recurrent language models: a static graph per sequence length, the hidden state carried
from batch to batch, dropout masks drawn per step, and perplexity over a whole stream.
"""
import math

import numpy as np

from models.recurrent import MASK_NAMES, feed_masks
from utils.data.text import evaluation_batches

# Mask streams of one step, so the training and validation batches of a step draw different masks;
# PASS_MASKS: the alpha step's passes on the training batch under --original-unrolled-step, a mask each.
TRAIN_MASKS, VALID_MASKS, PASS_MASKS = 1, 2, 3


def dropouts_of(args):
    """{mask name: probability} of models.recurrent.MASK_NAMES from the --dropout* flags."""
    return dict(zip(MASK_NAMES, (args.dropoute, args.dropouti, args.dropoutx, args.dropouth, args.dropout)))


def mask_rng(seed, epoch, step, stream):
    """The generator of one step's masks: the same (seed, epoch, step) draws the same, resumed or not."""
    return np.random.default_rng((seed, epoch, step, stream))


class GraphCache:
    """Graphs by sequence length: build(seq_len) runs once per length, later steps reuse the graph.

    What a caller reads after a pass (the last hidden state, the losses) is kept through nnabla's
    buffer clearing.
    """

    def __init__(self, build):
        self.build = build
        self.graphs = {}

    def __getitem__(self, seq_len):
        graph = self.graphs.get(seq_len)
        if graph is None:
            graph = self.graphs[seq_len] = self.build(seq_len)
            for variable in (graph.last_hidden, graph.nll, graph.loss):
                variable.persistent = True
        return graph

    def __len__(self):
        return len(self.graphs)


def feed(graph, data, target, hidden, masks=None):
    """Writes one batch into a graph: tokens, targets, the incoming hidden state and (training) masks."""
    graph.tokens.d = data
    graph.targets.d = target
    graph.hidden.d = hidden
    for name, mask in (masks or {}).items():
        graph.masks[name].d = mask


def draw_masks(graph, rng, dropouts):
    """{name: array} of fresh masks for a training graph, kept so several passes can share them."""
    feed_masks(graph, rng, dropouts)
    return {name: mask.d.copy() for name, mask in graph.masks.items()}


def forward_backward(loss):
    loss.forward(clear_no_need_grad=True)
    loss.backward(clear_buffer=True)


def stream_loss(graphs, source, bptt):
    """Mean negative log-likelihood per predicted word of a batchified source, read in windows of bptt
    with the hidden state carried and starting from zeros, as the seed's evaluate().

    graphs: a GraphCache of test-mode graphs at the source's batch size.
    """
    total, count = 0.0, 0
    hidden = None
    for data, target in evaluation_batches(source, bptt):
        graph = graphs[len(data)]
        if hidden is None:
            hidden = np.zeros(graph.hidden.shape, dtype=np.float32)
        feed(graph, data, target, hidden)
        graph.nll.forward(clear_buffer=True)
        hidden = graph.last_hidden.d.copy()
        total += float(graph.nll.d) * len(data)
        count += len(data)
    return total / count


def perplexity(loss):
    # exp overflows past ~709; a diverged model's perplexity is simply infinite.
    return math.exp(loss) if loss < 700 else math.inf

"""The skeleton the search and evaluation networks share: stem, cell sequence, preprocessing and classifier.

A network differs from the other only in what happens on the edges inside a cell, which the caller
supplies as `build_nodes(s0, s1, channels, reduction) -> list of the node outputs the cell concatenates`
(the four intermediate nodes in the search network, the concat nodes in the evaluation network).
"""
import dataclasses

import nnabla as nn
import nnabla.functions as F

from ops.operations import batch_norm, conv, dense, factorized_reduce, relu_conv_bn

STEM_MULTIPLIER = 3


def reduction_cells(num_cells):
    """Indices of the reduction cells: a third and two thirds of the way through the network."""
    return {num_cells // 3, 2 * num_cells // 3}


def edge_stride(reduction, input_node):
    """Edges that leave the cell inputs (nodes 0 and 1) of a reduction cell halve the resolution."""
    return 2 if reduction and input_node < 2 else 1


def cell_channels(channels, num_cells):
    """(channel count, is a reduction cell) of every cell: a reduction cell doubles the channels."""
    reductions = reduction_cells(num_cells)
    plan = []
    for i in range(num_cells):
        if i in reductions:
            channels *= 2
        plan.append((channels, i in reductions))
    return plan


def cell_body(s0, s1, channels, reduction, reduction_prev, mode, build_nodes):
    with nn.parameter_scope("preprocess0"):
        if reduction_prev:
            s0 = factorized_reduce(s0, channels, mode)
        else:
            s0 = relu_conv_bn(s0, channels, mode)
    with nn.parameter_scope("preprocess1"):
        s1 = relu_conv_bn(s1, channels, mode)
    nodes = build_nodes(s0, s1, channels, reduction)
    # nnabla's concatenate needs two inputs at least; a one-node concat is that node.
    return nodes[0] if len(nodes) == 1 else F.concatenate(*nodes, axis=1)


def cifar_stem(x, channels, mode):
    """One 3x3 conv to STEM_MULTIPLIER * channels at full resolution, feeding both inputs of cell 0.

    Returns (s0, s1, reduction_prev), as every stem does.
    """
    with nn.parameter_scope("stem"):
        # The stem's batch normalisation is affine in the search network too, as in DARTS.
        s = batch_norm(conv(x, STEM_MULTIPLIER * channels, 3, mode, pad=1), dataclasses.replace(mode, affine=True))
    return s, s, False


def imagenet_stem(x, channels, mode):
    """quark0's ImageNet stem: three stride-2 3x3 convs, so 224x224 images reach cell 0 at 28x28.

    stem0: conv to C/2, BN, ReLU, conv to C, BN; stem1: ReLU, conv, BN. Cell 0 sees s0 at twice the
    resolution of s1, as a cell after a reduction does, so reduction_prev is True.
    """
    with nn.parameter_scope("stem0"):
        h = batch_norm(conv(x, channels // 2, 3, mode, stride=2, pad=1, name="conv1"), mode, name="bn1")
        s0 = batch_norm(conv(F.relu(h), channels, 3, mode, stride=2, pad=1, name="conv2"), mode, name="bn2")
    with nn.parameter_scope("stem1"):
        s1 = batch_norm(conv(F.relu(s0), channels, 3, mode, stride=2, pad=1), mode)
    return s0, s1, True


def dense_classifier(pooled, num_classes, mode):
    return dense(pooled, num_classes, mode)


def network(x, num_classes, channels, num_cells, mode, build_nodes, after_cell=None, stem=cifar_stem,
            classifier=dense_classifier):
    """Stem, `num_cells` cells and the classifier; returns the logits. `mode` is an ops.OpMode.

    `stem(x, channels, mode)` gives (s0, s1, reduction_prev): the two inputs of cell 0, and whether s0
    has twice the resolution of s1. `after_cell(index, output)` is called after every cell, which is
    where an auxiliary head attaches. `classifier(pooled, num_classes, mode)` gives the logits from the
    pooled features, in the parameter scope "classifier".
    """
    s0, s1, reduction_prev = stem(x, channels, mode)
    for i, (channels, reduction) in enumerate(cell_channels(channels, num_cells)):
        with nn.parameter_scope(f"cell{i}"):
            out = cell_body(s0, s1, channels, reduction, reduction_prev, mode, build_nodes)
        s0, s1 = s1, out
        reduction_prev = reduction
        if after_cell is not None:
            after_cell(i, s1)
    pooled = F.global_average_pooling(s1)
    with nn.parameter_scope("classifier"):
        return classifier(pooled, num_classes, mode)

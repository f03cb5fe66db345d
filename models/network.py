"""The skeleton the search and evaluation networks share: stem, cell sequence, preprocessing and classifier.

A network differs from the other only in what happens on the edges inside a cell, which the caller
supplies as `build_nodes(s0, s1, channels, reduction) -> list of the four intermediate node outputs`.
"""
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


def cell_body(s0, s1, channels, reduction, reduction_prev, affine, test, build_nodes):
    with nn.parameter_scope("preprocess0"):
        if reduction_prev:
            s0 = factorized_reduce(s0, channels, affine, test)
        else:
            s0 = relu_conv_bn(s0, channels, affine, test)
    with nn.parameter_scope("preprocess1"):
        s1 = relu_conv_bn(s1, channels, affine, test)
    return F.concatenate(*build_nodes(s0, s1, channels, reduction), axis=1)


def cifar_stem(x, channels, test):
    """One 3x3 conv to STEM_MULTIPLIER * channels at full resolution, feeding both inputs of cell 0."""
    with nn.parameter_scope("stem"):
        s = batch_norm(conv(x, STEM_MULTIPLIER * channels, 3, pad=1), affine=True, test=test)
    return s, s, False


def network(x, num_classes, channels, num_cells, affine, test, build_nodes, after_cell=None,
            stem=cifar_stem):
    """Stem, `num_cells` cells and the classifier; returns the logits.

    `stem(x, channels, test)` gives (s0, s1, reduction_prev): the two inputs of cell 0, and whether
    s0 has twice the resolution of s1 (then cell 0 reduces s0 as if it followed a reduction cell).
    `after_cell(index, output)` is called after every cell, which is where an auxiliary head attaches.
    """
    s0, s1, reduction_prev = stem(x, channels, test)
    reductions = reduction_cells(num_cells)
    for i in range(num_cells):
        reduction = i in reductions
        if reduction:
            channels *= 2
        with nn.parameter_scope(f"cell{i}"):
            out = cell_body(s0, s1, channels, reduction, reduction_prev, affine, test, build_nodes)
        s0, s1 = s1, out
        reduction_prev = reduction
        if after_cell is not None:
            after_cell(i, s1)
    pooled = F.global_average_pooling(s1)
    with nn.parameter_scope("classifier"):
        return dense(pooled, num_classes)


def cross_entropy(logits, labels):
    return F.mean(F.softmax_cross_entropy(logits, labels))

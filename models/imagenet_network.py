"""DARTS on ImageNet in the mobile setting: quark0's NetworkImageNet, its auxiliary head, loss and recipe.

The cells are those of the evaluation network (models.eval_network); only the ends differ from CIFAR:
- a stem of three stride-2 3x3 convs, so 224x224 images reach the first cell at 28x28, and cell 0 sees
  s0 at twice the resolution of s1, as a cell after a reduction does;
- the auxiliary head after cell 2n//3 reads a 7x7 map (224x224 input): 5x5 pooling with stride 2, and no
  batch normalisation after its 768-channel conv, as in the experiments of the paper;
- training minimises a label-smoothed cross-entropy (the auxiliary loss too); evaluation uses the plain one.
"""
from dataclasses import dataclass

import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF
import numpy as np

from models.eval_network import (AUX_CONV_KERNEL, AUX_FEATURES, AUX_HIDDEN_CHANNELS, AUX_POOL_KERNEL, AUX_SCOPE,
                                 eval_nodes, training_loss)
from models.network import network
from ops.operations import batch_norm, conv
from utils.graph import build_graph, make_graph

AUX_POOL_STRIDE = 2


@dataclass(frozen=True)
class Recipe:
    """quark0's train_imagenet.py defaults."""
    channels: int = 48
    num_cells: int = 14
    batch_size: int = 128
    epochs: int = 250
    lr: float = 0.1
    lr_decay: float = 0.97  # per epoch
    momentum: float = 0.9
    weight_decay: float = 3e-5
    grad_clip: float = 5.0
    aux_weight: float = 0.4
    label_smoothing: float = 0.1
    drop_path_prob: float = 0.0


RECIPE = Recipe()


def learning_rate(epoch, base_lr=RECIPE.lr, decay=RECIPE.lr_decay):
    """lr of `epoch` (0-based): StepLR(1, 0.97) stepped at the start of each epoch gives base_lr * decay**epoch."""
    return base_lr * decay ** epoch


def imagenet_stem(x, channels, test):
    """stem0: conv s2 to C/2, BN, ReLU, conv s2 to C, BN; stem1: ReLU, conv s2, BN. Returns (s0, s1, True)."""
    with nn.parameter_scope("stem0"):
        h = batch_norm(conv(x, channels // 2, 3, stride=2, pad=1, name="conv1"), affine=True, test=test, name="bn1")
        s0 = batch_norm(conv(F.relu(h), channels, 3, stride=2, pad=1, name="conv2"), affine=True, test=test,
                        name="bn2")
    with nn.parameter_scope("stem1"):
        s1 = batch_norm(conv(F.relu(s0), channels, 3, stride=2, pad=1), affine=True, test=test)
    return s0, s1, True


def imagenet_auxiliary_head(x, num_classes, test):
    """quark0's AuxiliaryHeadImageNet: ReLU, 5x5/2 average pooling, 1x1 conv 128, BN, ReLU, 2x2 conv 768, ReLU, affine.

    On the 7x7 map of a 224x224 input the pooling gives 2x2 and the 2x2 conv 1x1. As the CIFAR head
    does, each window is clipped to the map it reads, so that the small inputs of tests work too.
    """
    height, width = x.shape[2:]
    pool = (min(AUX_POOL_KERNEL, height), min(AUX_POOL_KERNEL, width))
    with nn.parameter_scope(AUX_SCOPE):
        x = F.average_pooling(F.relu(x), pool, stride=(AUX_POOL_STRIDE, AUX_POOL_STRIDE),
                              ignore_border=True, pad=(0, 0), including_pad=False)
        x = PF.convolution(x, AUX_HIDDEN_CHANNELS, (1, 1), with_bias=False, name="conv1")
        x = F.relu(batch_norm(x, affine=True, test=test, name="bn1"))
        kernel = (min(AUX_CONV_KERNEL, x.shape[2]), min(AUX_CONV_KERNEL, x.shape[3]))
        x = F.relu(PF.convolution(x, AUX_FEATURES, kernel, with_bias=False, name="conv2"))
        return PF.affine(x, num_classes, name="classifier")


def imagenet_network(x, arch, num_classes, channels, num_cells, test, drop_path=None, auxiliary=False):
    """(logits, auxiliary logits or None), as models.eval_network.eval_network but with the ImageNet ends."""
    if test and (drop_path is not None or auxiliary):
        raise ValueError("drop path and the auxiliary head belong to training graphs only")
    aux_cell = 2 * num_cells // 3
    aux_logits = []

    def after_cell(index, output):
        if auxiliary and index == aux_cell:
            aux_logits.append(imagenet_auxiliary_head(output, num_classes, test))

    logits = network(x, num_classes, channels, num_cells, affine=True, test=test,
                     build_nodes=eval_nodes(arch, test, drop_path), after_cell=after_cell, stem=imagenet_stem)
    return logits, (aux_logits[0] if aux_logits else None)


def label_smoothing_cross_entropy(logits, labels, epsilon):
    """Batch mean of sum_k -[(1 - eps) 1{k = y} + eps / K] log p_k.

    That is (1 - eps) times the cross-entropy plus eps times the mean over classes of -log p_k.
    """
    nll = F.softmax_cross_entropy(logits, labels)
    uniform = -F.mean(F.log_softmax(logits, axis=1), axis=1, keepdims=True)
    return F.mean((1.0 - epsilon) * nll + epsilon * uniform)


def top_k_misses(logits, labels, k):
    """How many rows of numpy `logits` do not have their label among their k largest values."""
    labels = np.asarray(labels).reshape(-1, 1)
    top = np.argpartition(-np.asarray(logits), k - 1, axis=1)[:, :k]
    return int(np.sum(~np.any(top == labels, axis=1)))


def build_imagenet_train_graph(arch, input_shape, num_classes, channels, num_cells, *, auxiliary, aux_weight,
                               label_smoothing, drop_path=None):
    """A static training graph whose loss (and auxiliary loss) is label-smoothed."""
    x = nn.Variable(input_shape)
    y = nn.Variable((input_shape[0], 1))
    logits, aux_logits = imagenet_network(x, arch, num_classes, channels, num_cells, test=False,
                                          drop_path=drop_path, auxiliary=auxiliary)

    def criterion(z, labels):
        return label_smoothing_cross_entropy(z, labels, label_smoothing)
    return make_graph(x, y, logits, training_loss(logits, aux_logits, y, aux_weight, criterion))


def build_imagenet_test_graph(arch, input_shape, num_classes, channels, num_cells):
    """A static test graph: running statistics, plain cross-entropy, no drop path, no auxiliary head."""
    def logits(x):
        return imagenet_network(x, arch, num_classes, channels, num_cells, test=True)[0]
    return build_graph(logits, input_shape)

"""The DARTS evaluation network: a discrete architecture stacked into a deep network trained from scratch.

Cells follow the Architecture exactly: each intermediate node is the sum of its edges (however many
there are), every edge carries one op, batch normalisation learns its scale and shift, and pooling
edges have no batch normalisation after them. Two regularisers of the DARTS training exist only in
training graphs:

- drop path (DropPath): on every edge whose op is not an identity, each sample's path is kept with
  probability 1 - p and scaled by 1 / (1 - p). As in quark0/darts, a stride-2 skip_connect is a
  FactorizedReduce, not an identity, so it is dropped too.
- the auxiliary head (auxiliary_head) after cell 2n//3, whose loss is added with a weight.

The same cells serve quark0's CIFAR and ImageNet networks; what differs around them is a NetworkEnds
(CIFAR, IMAGENET). Parameters live in the root scope (stem, cell<i>, classifier as in models.network)
and the auxiliary head in AUX_SCOPE, so it can be left out of parameter counts as the paper does.
"""
from dataclasses import dataclass
from typing import Callable

import nnabla as nn
import nnabla.functions as F
import numpy as np

from models.graph import build_graph, cross_entropy, label_smoothing_cross_entropy, make_graph
from models.network import cifar_stem, edge_stride, imagenet_stem, network
from ops import cpu_sums
from ops.operations import OP_NAMES, OPS, POOLING_OPS, OpMode, batch_norm, conv, dense, operation, whole_map_conv

AUX_SCOPE = "auxiliary_head"
AUX_POOL_KERNEL = 5
AUX_HIDDEN_CHANNELS = 128
AUX_FEATURES = 768


@dataclass(frozen=True)
class NetworkEnds:
    """What quark0's CIFAR and ImageNet networks build differently around the same cells."""
    stem: Callable  # models.network.cifar_stem or imagenet_stem
    aux_feature_bn: bool  # the ImageNet head has no BN after its 768-channel conv ("as in the paper's experiments")


CIFAR = NetworkEnds(cifar_stem, aux_feature_bn=True)
IMAGENET = NetworkEnds(imagenet_stem, aux_feature_bn=False)


@dataclass(frozen=True)
class CellVariant:
    """How the cells' layers are built: DARTS's (affine BN, bare pooling), or var_nas' one-hot fine-tuning
    (affine=False: the cells' BNs learn no scale and shift; pool_bn: a BN after every pooling edge).

    The stem, classifier and auxiliary head are the same in every variant (the stem BN stays affine).
    """
    affine: bool = True
    pool_bn: bool = False


DARTS_CELLS = CellVariant()


def drop_path_schedule(epoch, epochs, max_prob, delta=None):
    """Drop probability of `epoch` (0-based): max_prob * epoch / epochs, so training starts without it;
    with `delta`, var_nas' delta * epoch (the same when delta = max_prob / epochs)."""
    if delta is not None:
        return delta * epoch
    return max_prob * epoch / epochs


class DropPath:
    """Per-sample dropping of edge outputs, with its probability and randomness fed rather than built in.

    The probability is a variable, so one graph serves every epoch of the schedule. The uniform noise
    that decides which samples keep their path is fed from numpy too, one (B, 1, 1, 1) variable per
    edge: a run then draws the same masks from the same (seed, epoch, step) whether or not it was
    resumed, which nnabla's own random functions (whose generator state no checkpoint holds) would not.
    Graphs of several batch sizes (an epoch's smaller last batch) can share one DropPath and its probability.
    """

    def __init__(self):
        self.prob = nn.Variable((1, 1, 1, 1), need_grad=False)
        self.prob.d = 0.0
        # Shared by every edge: 1 / (1 - p).
        self._inverse_keep_prob = F.r_div_scalar(F.r_sub_scalar(self.prob, 1.0), 1.0)
        self.noise = []

    def set_prob(self, p):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop path probability {p} is not in [0, 1)")
        self.prob.d = p

    def resample(self, rng, batch_size=None):
        """New uniform noise for every edge of the graphs at batch_size (default: that of the first graph
        built), from a numpy Generator."""
        if not self.noise:
            return
        batch = self.noise[0].shape[0] if batch_size is None else batch_size
        edges = [variable for variable in self.noise if variable.shape[0] == batch]
        values = rng.random((len(edges), batch, 1, 1, 1), dtype=np.float32)
        for variable, noise in zip(edges, values):
            variable.d = noise

    def scale(self, x):
        """The (B, 1, 1, 1) scale of a new edge's output x: 1 / (1 - p) where the sample keeps its path, else 0."""
        noise = nn.Variable((x.shape[0], 1, 1, 1), need_grad=False)
        noise.d = 0.5
        self.noise.append(noise)
        # noise >= p has probability 1 - p; at p = 0 it always holds, and x * 1 * 1 is x exactly.
        keep = F.greater_equal(noise, self.prob)
        return keep * self._inverse_keep_prob

    def __call__(self, x):
        return per_sample_scale(x, self.scale(x))


def per_sample_scale(x, scale):
    """x[i] * scale[i] for a (B, 1, 1, 1) scale, as a batched (1 x 1) @ (1 x CHW) product.

    On nnabla's cpu backend this is about ten times faster than the broadcasting multiply, whose
    generic kernel costs ~20 ns an element. On cudnn both forms are one memory-bound kernel (a strided
    batched cuBLAS product here) that reads and writes x once, so the same form is kept for both contexts.
    """
    batch = x.shape[0]
    product = F.batch_matmul(F.reshape(scale, (batch, 1, 1)), F.reshape(x, (batch, 1, -1)))
    return F.reshape(product, x.shape)


def is_dropped(op_id, stride):
    """Drop path skips identities (as quark0) and the zero op, whose output is zero either way."""
    kind = OPS[op_id].kind
    if kind == "zero":
        return False
    return not (kind == "identity" and stride == 1)


def node_sum(outputs, scales, mode):
    """sum_k scales[k] * outputs[k], a scale None for 1 (an edge that is not dropped); None for no outputs.

    On the cpu kernels (mode.cpu_kernels, large enough outputs) one multi-threaded pass (ops.cpu_sums): for two
    dropped edges at B 32, C 36, 32 x 32 it takes 0.35 + 0.61 ms forward + backward where per_sample_scale's
    BatchMatmuls and Reshapes and the Add2 took 4.2 + 3.3 ms. Otherwise nnabla's functions, an edge at a time.
    """
    if not outputs:
        return None
    if len(outputs) == 1 and scales[0] is None:
        return outputs[0]
    if mode.cpu_kernels and cpu_sums.worthwhile(outputs[0], scaled=any(scale is not None for scale in scales)):
        return cpu_sums.scaled_sum(outputs, scales)
    total = None
    for out, scale in zip(outputs, scales):
        if scale is not None:
            out = per_sample_scale(out, scale)
        total = out if total is None else total + out
    return total


def eval_nodes(arch, mode, drop_path=None, pool_bn=False):
    """build_nodes for models.network: each intermediate node sums the ops of its edges in `arch`, and
    the cell's output is its concat nodes, so the next cell reads len(concat) * C channels. pool_bn puts
    a batch normalisation (of `mode`) after every pooling edge, before drop path."""
    def build_nodes(s0, s1, channels, reduction):
        cell, concat = arch.cell(reduction)
        states = {0: s0, 1: s1}
        for node in sorted(cell):
            outputs, scales = [], []
            for index, (op_id, input_node) in enumerate(cell[node]):
                stride = edge_stride(reduction, input_node)
                with nn.parameter_scope(f"node{node}_edge{index}"):
                    out = operation(op_id, states[input_node], channels, stride, mode)
                    if pool_bn and op_id in POOLING_OPS:
                        out = batch_norm(out, mode, name=f"{OP_NAMES[op_id]}_bn")
                outputs.append(out)
                scales.append(drop_path.scale(out) if drop_path is not None and is_dropped(op_id, stride) else None)
            # None for an empty node, which Architecture keeps out of concat and inputs
            states[node] = node_sum(outputs, scales, mode)
        return [states[node] for node in concat]
    return build_nodes


def aux_pool_window(size):
    """(kernel, stride) of the head's average pooling on a size x size map.

    quark0's heads pool 5x5 with stride 3 on CIFAR's 8x8 map and with stride 2 on ImageNet's 7x7,
    both giving 2x2; stride size - 5 generalises them (as var_nas and DADARTS do for 28x28 inputs), and
    ImageNet at other --image-size values, which the original's fixed AvgPool2d(5, stride=2) does not fit.
    Maps smaller than 6 (2x2 for the 8x8 digits) are pooled whole.
    """
    if size <= AUX_POOL_KERNEL:
        return size, 1
    return AUX_POOL_KERNEL, size - AUX_POOL_KERNEL


def auxiliary_head(x, num_classes, mode, feature_bn=True):
    """quark0's auxiliary heads: ReLU, 5x5 average pooling to 2x2, 1x1 conv 128, BN, ReLU, 2x2 conv 768,
    BN (not on ImageNet: feature_bn=False), ReLU, affine.

    The 2x2 conv covers the whole pooled map, which is 1x1 for the 8x8 digits: the head then has fewer
    weights than on CIFAR.
    """
    kernel, stride = aux_pool_window(x.shape[2])
    with nn.parameter_scope(AUX_SCOPE):
        x = F.average_pooling(F.relu(x), (kernel, kernel), stride=(stride, stride),
                              ignore_border=True, pad=(0, 0), including_pad=False)
        x = conv(x, AUX_HIDDEN_CHANNELS, 1, mode, name="conv1")
        x = F.relu(batch_norm(x, mode, name="bn1"))
        x = whole_map_conv(x, AUX_FEATURES, mode, name="conv2")
        if feature_bn:
            x = batch_norm(x, mode, name="bn2")
        return dense(F.relu(x), num_classes, mode, name="classifier")


def eval_network(x, arch, num_classes, channels, num_cells, test, drop_path=None, auxiliary=False, ends=CIFAR,
                 cells=DARTS_CELLS, cpu_kernels=False):
    """(logits, auxiliary logits) of the evaluation network; the second is None without `auxiliary`.

    test=True uses the batch-norm running statistics; test graphs take neither drop path nor the
    auxiliary head, which only regularise training. cpu_kernels: see ops.operations.OpMode.
    """
    if test and (drop_path is not None or auxiliary):
        raise ValueError("drop path and the auxiliary head belong to training graphs only")
    aux_cell = 2 * num_cells // 3
    aux_logits = []
    mode = OpMode(affine=True, test=test, cpu_kernels=cpu_kernels)
    cell_mode = OpMode(affine=cells.affine, test=test, cpu_kernels=cpu_kernels)

    def after_cell(index, output):
        if auxiliary and index == aux_cell:
            aux_logits.append(auxiliary_head(output, num_classes, mode, ends.aux_feature_bn))

    logits = network(x, num_classes, channels, num_cells, cell_mode,
                     build_nodes=eval_nodes(arch, cell_mode, drop_path, cells.pool_bn), after_cell=after_cell,
                     stem=lambda x, c, _: ends.stem(x, c, mode))
    return logits, (aux_logits[0] if aux_logits else None)


def training_loss(logits, aux_logits, labels, aux_weight, criterion=cross_entropy):
    """DARTS's objective: the criterion (cross-entropy), plus aux_weight times the auxiliary head's."""
    loss = criterion(logits, labels)
    if aux_logits is not None:
        loss = loss + aux_weight * criterion(aux_logits, labels)
    return loss


def build_train_graph(arch, input_shape, num_classes, channels, num_cells, *, auxiliary, aux_weight,
                      drop_path=None, ends=CIFAR, label_smoothing=0.0, cells=DARTS_CELLS, cpu_kernels=False):
    """A static training graph (batch statistics); its loss includes the auxiliary loss.

    With label_smoothing > 0 both losses are label-smoothed (quark0's ImageNet recipe).
    """
    x = nn.Variable(input_shape)
    y = nn.Variable((input_shape[0], 1))
    logits, aux_logits = eval_network(x, arch, num_classes, channels, num_cells, test=False,
                                      drop_path=drop_path, auxiliary=auxiliary, ends=ends, cells=cells,
                                      cpu_kernels=cpu_kernels)

    def criterion(z, labels):
        if label_smoothing > 0:
            return label_smoothing_cross_entropy(z, labels, label_smoothing)
        return cross_entropy(z, labels)
    return make_graph(x, y, logits, training_loss(logits, aux_logits, y, aux_weight, criterion))


def build_test_graph(arch, input_shape, num_classes, channels, num_cells, ends=CIFAR, cells=DARTS_CELLS,
                     cpu_kernels=False):
    """A static test graph: running statistics, no drop path, no auxiliary head, plain cross-entropy."""
    def logits(x):
        return eval_network(x, arch, num_classes, channels, num_cells, test=True, ends=ends, cells=cells,
                            cpu_kernels=cpu_kernels)[0]
    return build_graph(logits, input_shape)

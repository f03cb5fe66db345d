"""The DARTS operations and the one table of op ids, plus the cell preprocessing blocks.

Every builder takes the input variable and returns the output variable, creating its weights in
the current parameter scope. One definition serves the search and the evaluation network; how a
graph is built is said by an OpMode passed down explicitly (never by a module-level switch).

OPS is the op-id table: the index of an entry is its op id. Ids 0-7 are those of the NNabla
example, so its JSON files load here and ours load there; new ops take ids from 8 up.
"""
import math
from dataclasses import dataclass
from typing import Callable

import nnabla as nn
import nnabla.functions as F
import nnabla.initializer as I
import nnabla.parametric_functions as PF

from ops import cpu_kernels, cpu_pooling, cpu_reduce


@dataclass(frozen=True)
class OpMode:
    """How the parametric layers of a graph are built.

    affine: batch normalisation learns a scale and a shift (evaluation) or not (search).
    test: batch normalisation uses its running statistics.
    frozen: the graph reads the same weights but never computes their gradients. A pass that only
    needs the gradient of the alphas (DARTS' first-order alpha step, the two Hessian-vector passes
    of the second-order one) skips a third of its backward work this way.
    cpu_kernels: the depthwise and 1x1 convolutions (ops/cpu_kernels; at stride 1 a conv op's ReLU, depthwise and
    1x1 convolution as one function), the pooling ops (ops/cpu_pooling) and
    FactorizedReduce (ops/cpu_reduce) run on the multi-threaded kernels where their input is large enough to
    gain, the batch-statistics batch norms at every size (float on the cpu context only; nnabla's own cpu
    kernels are single-threaded). The parameters are the same either way.
    """
    affine: bool
    test: bool
    frozen: bool = False
    cpu_kernels: bool = False


def parameter(scopes, name, shape, initializer, mode, trainable=True):
    """A parameter as nnabla's parametric functions create it (scopes: the `name` given to one, then its
    own scope), for the cpu kernels, whose graphs must read the same arrays: a trainable one is read
    without gradient in a frozen graph."""
    with nn.parameter_scope(scopes[0]), nn.parameter_scope(scopes[1]):
        return nn.parameter.get_parameter_or_create(name, shape, initializer, need_grad=trainable,
                                                   as_need_grad=(not mode.frozen) if trainable else None)


def pointwise_weight(name, c_in, c_out, mode):
    """The weight of a 1x1 convolution named `name`, as PF.convolution creates it, for the cpu kernels."""
    return parameter((name, "conv"), "W", (c_out, c_in, 1, 1), torch_uniform(c_in), mode)


def depthwise_weight(name, channels, kernel, mode):
    """The weight of a depthwise convolution named `name`, as PF.depthwise_convolution creates it (one input channel
    per group: fan_in is the kernel's area), for the cpu kernels."""
    return parameter((name, "depthwise_conv"), "W", (channels, kernel, kernel), torch_uniform(kernel * kernel), mode)


def batch_norm(x, mode, name="bn"):
    # On the cpu kernels at every size (not only where cpu_kernels.worthwhile): their two-pass variance stays
    # exact where nnabla's one pass loses float precision (a large mean against the spread); the kernel runs
    # single-threaded on small layers, where it is still as fast as nnabla's for the sizes of a search.
    if not mode.cpu_kernels or mode.test:
        return PF.batch_normalization(x, batch_stat=not mode.test, no_scale=not mode.affine,
                                      no_bias=not mode.affine, fix_parameters=mode.frozen, name=name)
    shape = (1, x.shape[1], 1, 1)
    scopes = (name, "bn")
    affine = [parameter(scopes, "beta", shape, I.ConstantInitializer(0), mode),
              parameter(scopes, "gamma", shape, I.ConstantInitializer(1), mode)] if mode.affine else []
    statistics = [parameter(scopes, "mean", shape, I.ConstantInitializer(0), mode, trainable=False),
                  parameter(scopes, "var", shape, I.ConstantInitializer(1), mode, trainable=False)]
    # PF.batch_normalization's defaults: decay 0.9, eps 1e-5.
    return cpu_kernels.BatchNormalization(mode.affine, decay_rate=0.9, eps=1e-5)(x, *affine, *statistics)


def relu(x):
    """ReLU whose output is recomputed in the backward pass instead of being kept from the forward."""
    with nn.recompute():
        return F.relu(x)


def torch_uniform(fan_in):
    """PyTorch's default initialiser of conv and linear weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    (For weights torch calls it kaiming_uniform with a = sqrt(5), which comes to the same bound.) The
    DARTS code keeps these defaults, and with BN after every conv the scale of the initial weights
    sets how fast each op learns during the search, so nnabla's default (Glorot) is not used.
    """
    bound = 1.0 / math.sqrt(fan_in)
    return I.UniformInitializer((-bound, bound))


def conv(x, c_out, kernel, mode, stride=1, pad=0, name="conv", relu_input=False):
    """Convolution without bias, of ReLU(x) with relu_input (fused on the cpu kernels for 1x1, stride 1)."""
    if mode.cpu_kernels and cpu_kernels.worthwhile(x) and kernel == 1 and stride == 1:
        c_in = x.shape[1]
        w = pointwise_weight(name, c_in, c_out, mode)
        return cpu_kernels.PointwiseConvolution(relu_input)(x, w)
    if relu_input:
        x = F.relu(x)
    return PF.convolution(x, c_out, (kernel, kernel), pad=(pad, pad), stride=(stride, stride),
                          w_init=torch_uniform(x.shape[1] * kernel * kernel),
                          with_bias=False, fix_parameters=mode.frozen, name=name)


def whole_map_conv(x, c_out, mode, name):
    """Convolution without bias or padding whose kernel covers x's whole map (the auxiliary head's 2x2 conv of
    its pooled 2x2 map), so one pixel out: a matrix product of the flattened map, which the cpu kernels run as a
    1x1 convolution of the map's values taken as channels (nnabla's took 9 ms a pass at DARTS_V2's B 32). The
    weight is PF.convolution's either way."""
    c_in, h, w = x.shape[1:]
    init = torch_uniform(c_in * h * w)
    if mode.cpu_kernels and cpu_kernels.worthwhile(x):
        weight = parameter((name, "conv"), "W", (c_out, c_in, h, w), init, mode)
        flat = (c_in * h * w, 1, 1)
        return cpu_kernels.PointwiseConvolution()(F.reshape(x, (x.shape[0],) + flat),
                                                  F.reshape(weight, (c_out,) + flat))
    return PF.convolution(x, c_out, (h, w), w_init=init, with_bias=False, fix_parameters=mode.frozen, name=name)


def relu_depthwise_conv(x, kernel, stride, pad, dilation, mode, name):
    """Depthwise convolution of ReLU(x), the first layer of every DARTS conv op (the cpu kernels fuse the two)."""
    # One input channel per group: fan_in is the kernel's area.
    init = torch_uniform(kernel * kernel)
    if mode.cpu_kernels and cpu_kernels.worthwhile(x):
        w = depthwise_weight(name, x.shape[1], kernel, mode)
        return cpu_kernels.DepthwiseConvolution(stride, pad, dilation, relu_input=True)(x, w)
    # With the cpu kernels x is a kernel batch norm's output, which its backward pass reads (ops.cpu_kernels:
    # BatchNormalization), and nnabla's recomputation loses a recomputed function's input before that: the
    # ReLU's output is kept there instead (a small layer's, below the kernels' size threshold).
    x = F.relu(x) if mode.cpu_kernels else relu(x)
    return PF.depthwise_convolution(x, (kernel, kernel), pad=(pad, pad), stride=(stride, stride),
                                    dilation=(dilation, dilation), w_init=init,
                                    with_bias=False, fix_parameters=mode.frozen, name=name)


def relu_depthwise_pointwise(x, kernel, stride, pad, dilation, c_out, mode, names):
    """ReLU, depthwise convolution, 1x1 convolution to c_out channels: the convolutions of every DARTS conv op.
    names: the two convolutions' scopes. At stride 1 the cpu kernels compute the three as one function, which
    keeps no depthwise output for the backward pass (it computes it again there): one tensor fewer per
    convolution pair for about the same time. At stride 2 that recomputation cost a third more, so the two
    stay apart."""
    if mode.cpu_kernels and cpu_kernels.worthwhile(x) and stride == 1:
        c_in = x.shape[1]
        wd, wp = depthwise_weight(names[0], c_in, kernel, mode), pointwise_weight(names[1], c_in, c_out, mode)
        return cpu_kernels.DepthwisePointwise(stride, pad, dilation)(x, wd, wp)
    x = relu_depthwise_conv(x, kernel, stride, pad, dilation, mode, name=names[0])
    return conv(x, c_out, 1, mode, name=names[1])


def dense(x, n_out, mode, name="affine"):
    """Affine layer of the features of each sample (x flattened to (batch, features) first)."""
    features = math.prod(x.shape[1:])
    # An explicit reshape, which an export writes with a free batch axis: nnabla's ONNX converter
    # otherwise flattens an affine's input with the file's batch size written into the shape.
    x = F.reshape(x, (x.shape[0], features))
    init = torch_uniform(features)
    return PF.affine(x, n_out, w_init=init, b_init=init, fix_parameters=mode.frozen, name=name)


def relu_conv_bn(x, c_out, mode, kernel=1, stride=1, pad=0):
    return batch_norm(conv(x, c_out, kernel, mode, stride, pad, relu_input=True), mode)


def spatial_slice(x, start, step):
    """x[:, :, start::step, start::step], sliced on the two spatial axes only.

    Python's x[:, :, ...] writes the batch axis' end (the graph's batch size) into the Slice; an
    exported .nnp then fails at any other batch size. A Slice given only the trailing axes leaves
    the batch axis free, in nnabla, its C++ runtime and nnabla's ONNX converter alike.
    """
    return F.slice(x, start=(start, start), stop=x.shape[2:], step=(step, step))


def factorized_reduce(x, c_out, mode):
    """Halves the resolution without losing every other pixel: two 1x1 stride-2 convs, one shifted by a pixel."""
    assert c_out % 2 == 0, "FactorizedReduce needs an even channel count"
    if mode.cpu_kernels and cpu_kernels.worthwhile(x):
        c_in = x.shape[1]
        w1, w2 = (pointwise_weight(name, c_in, c_out // 2, mode) for name in ("conv_1", "conv_2"))
        return batch_norm(cpu_reduce.FactorizedReduce()(x, w1, w2), mode)
    x = F.relu(x)
    even = conv(x, c_out // 2, 1, mode, stride=2, name="conv_1")
    # The shifted path starts at pixel (1, 1); padding the far edge keeps odd sizes aligned with the even path.
    shifted = F.pad(spatial_slice(x, 1, 1), (0, 1, 0, 1))
    odd = conv(shifted, c_out // 2, 1, mode, stride=2, name="conv_2")
    return batch_norm(F.concatenate(even, odd, axis=1), mode)


def dil_conv(x, c_out, stride, mode, kernel):
    """ReLU, depthwise conv with dilation 2, pointwise conv, BN."""
    pad = kernel - 1  # dilation 2 keeps the size at stride 1
    return batch_norm(relu_depthwise_pointwise(x, kernel, stride, pad, 2, c_out, mode, ("dw", "pw")), mode)


def sep_conv(x, c_out, stride, mode, kernel):
    """Two (ReLU, depthwise, pointwise, BN) blocks; only the first is strided and it keeps the input channels."""
    c_in = x.shape[1]
    pad = kernel // 2
    for i, (channels, s) in enumerate(((c_in, stride), (c_out, 1))):
        x = relu_depthwise_pointwise(x, kernel, s, pad, 1, channels, mode, (f"sep{i}_dw", f"sep{i}_pw"))
        x = batch_norm(x, mode, name=f"sep{i}_bn")
    return x


def conv_7x1_1x7(x, c_out, stride, mode):
    """ReLU, a 1x7 conv strided along the width, a 7x1 conv strided along the height, BN (NASNet's factorised 7x7)."""
    x = PF.convolution(F.relu(x), c_out, (1, 7), pad=(0, 3), stride=(1, stride), w_init=torch_uniform(x.shape[1] * 7),
                       with_bias=False, fix_parameters=mode.frozen, name="conv_1x7")
    x = PF.convolution(x, c_out, (7, 1), pad=(3, 0), stride=(stride, 1), w_init=torch_uniform(c_out * 7),
                       with_bias=False, fix_parameters=mode.frozen, name="conv_7x1")
    return batch_norm(x, mode)


def max_pool(x, c_out, stride, mode):
    if mode.cpu_kernels and cpu_pooling.worthwhile_max_pool(x, stride):
        return cpu_pooling.MaxPooling(stride)(x)
    return F.max_pooling(x, (3, 3), stride=(stride, stride), pad=(1, 1), ignore_border=True)


def avg_pool(x, c_out, stride, mode):
    if mode.cpu_kernels and cpu_kernels.worthwhile(x):
        return cpu_pooling.AveragePooling(stride)(x)
    return F.average_pooling(x, (3, 3), stride=(stride, stride), pad=(1, 1), ignore_border=True, including_pad=False)


def identity(x, c_out, stride, mode):
    return x if stride == 1 else factorized_reduce(x, c_out, mode)


def zero(x, c_out, stride, mode):
    return F.mul_scalar(spatial_slice(x, 0, stride), 0.0)


@dataclass(frozen=True)
class Op:
    """One row of the op-id table: its name and builder(x, c_out, stride, mode) -> output."""
    name: str
    build: Callable
    kind: str  # "conv", "pool", "identity" or "zero": what drop path and the search's pooling BN ask


def _with_kernel(builder, kernel):
    return lambda x, c_out, stride, mode: builder(x, c_out, stride, mode, kernel)


OPS = (
    Op("dil_conv_3x3", _with_kernel(dil_conv, 3), "conv"),
    Op("dil_conv_5x5", _with_kernel(dil_conv, 5), "conv"),
    Op("sep_conv_3x3", _with_kernel(sep_conv, 3), "conv"),
    Op("sep_conv_5x5", _with_kernel(sep_conv, 5), "conv"),
    Op("max_pool_3x3", max_pool, "pool"),
    Op("avg_pool_3x3", avg_pool, "pool"),
    Op("skip_connect", identity, "identity"),
    Op("none", zero, "zero"),
    # Outside the search space, for the cells of NASNet and AmoebaNet.
    Op("sep_conv_7x7", _with_kernel(sep_conv, 7), "conv"),
    Op("conv_7x1_1x7", conv_7x1_1x7, "conv"),
)
OP_NAMES = tuple(op.name for op in OPS)
ZERO_OP = OP_NAMES.index("none")
IDENTITY_OP = OP_NAMES.index("skip_connect")
POOLING_OPS = tuple(i for i, op in enumerate(OPS) if op.kind == "pool")
# The DARTS search space: the ops a mixed edge mixes, in the order of an alpha array's columns.
SEARCH_OPS = tuple(range(8))


def operation(op_id, x, c_out, stride, mode):
    """Builds op `op_id` on `x` in a scope named after it. Channel count is kept (c_out == c_in in a cell)."""
    if not 0 <= op_id < len(OPS):
        raise ValueError(f"unknown op id {op_id}; op ids are 0..{len(OPS) - 1}")
    op = OPS[op_id]
    with nn.parameter_scope(op.name):
        return op.build(x, c_out, stride, mode)

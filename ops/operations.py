"""The eight DARTS operations under the NNabla example's op ids, plus the cell preprocessing blocks.

Every builder takes the input variable and returns the output variable, creating its weights in
the current parameter scope. One definition serves the search and the evaluation network:
`affine` says whether batch normalisation learns a scale and a shift, `test` switches batch
normalisation to its running statistics.
"""
import contextlib

import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF

from models.genotype import OP_NAMES, ZERO_OP

POOLING_OPS = (4, 5)
IDENTITY_OP = 6

_weights_frozen = False


@contextlib.contextmanager
def frozen_weights():
    """Graphs built inside read the same weights but never compute their gradients.

    A pass that only needs the gradient of the alphas (DARTS' first-order alpha step, the two
    Hessian-vector passes of the second-order one) skips a third of its backward work this way.
    """
    global _weights_frozen
    _weights_frozen = True
    try:
        yield
    finally:
        _weights_frozen = False


def batch_norm(x, affine, test, name="bn"):
    return PF.batch_normalization(x, batch_stat=not test, no_scale=not affine, no_bias=not affine,
                                  fix_parameters=_weights_frozen, name=name)


def relu(x):
    """ReLU whose output is recomputed in the backward pass instead of being kept from the forward."""
    with nn.recompute():
        return F.relu(x)


def conv(x, c_out, kernel, stride=1, pad=0, name="conv"):
    return PF.convolution(x, c_out, (kernel, kernel), pad=(pad, pad), stride=(stride, stride),
                          with_bias=False, fix_parameters=_weights_frozen, name=name)


def relu_conv_bn(x, c_out, affine, test, kernel=1, stride=1, pad=0):
    return batch_norm(conv(F.relu(x), c_out, kernel, stride, pad), affine, test)


def factorized_reduce(x, c_out, affine, test):
    """Halves the resolution without losing every other pixel: two 1x1 stride-2 convs, one shifted by a pixel."""
    assert c_out % 2 == 0, "FactorizedReduce needs an even channel count"
    x = F.relu(x)
    even = conv(x, c_out // 2, 1, stride=2, name="conv_1")
    # The shifted path starts at pixel (1, 1); padding the far edge keeps odd sizes aligned with the even path.
    shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
    odd = conv(shifted, c_out // 2, 1, stride=2, name="conv_2")
    return batch_norm(F.concatenate(even, odd, axis=1), affine, test)


def dil_conv(x, c_out, kernel, stride, affine, test):
    """ReLU, depthwise conv with dilation 2, pointwise conv, BN."""
    pad = kernel - 1  # dilation 2 keeps the size at stride 1
    x = PF.depthwise_convolution(relu(x), (kernel, kernel), pad=(pad, pad), stride=(stride, stride),
                                 dilation=(2, 2), with_bias=False, fix_parameters=_weights_frozen, name="dw")
    return batch_norm(conv(x, c_out, 1, name="pw"), affine, test)


def sep_conv(x, c_out, kernel, stride, affine, test):
    """Two (ReLU, depthwise, pointwise, BN) blocks; only the first is strided and it keeps the input channels."""
    c_in = x.shape[1]
    pad = kernel // 2
    for i, (channels, s) in enumerate(((c_in, stride), (c_out, 1))):
        x = PF.depthwise_convolution(relu(x), (kernel, kernel), pad=(pad, pad), stride=(s, s),
                                     with_bias=False, fix_parameters=_weights_frozen, name=f"sep{i}_dw")
        x = batch_norm(conv(x, channels, 1, name=f"sep{i}_pw"), affine, test, name=f"sep{i}_bn")
    return x


def dense(x, n_out, name="affine"):
    return PF.affine(x, n_out, fix_parameters=_weights_frozen, name=name)


def max_pool(x, stride):
    return F.max_pooling(x, (3, 3), stride=(stride, stride), pad=(1, 1), ignore_border=True)


def avg_pool(x, stride):
    return F.average_pooling(x, (3, 3), stride=(stride, stride), pad=(1, 1), ignore_border=True, including_pad=False)


def zero(x, stride):
    return F.mul_scalar(x[:, :, ::stride, ::stride], 0.0)


def identity(x, c_out, stride, affine, test):
    return x if stride == 1 else factorized_reduce(x, c_out, affine, test)


def operation(op_id, x, c_out, stride, affine, test):
    """Builds op `op_id` on `x` in a scope named after it. Channel count is kept (c_out == c_in in a cell)."""
    name = OP_NAMES[op_id]
    with nn.parameter_scope(name):
        if op_id == 0:
            return dil_conv(x, c_out, 3, stride, affine, test)
        if op_id == 1:
            return dil_conv(x, c_out, 5, stride, affine, test)
        if op_id == 2:
            return sep_conv(x, c_out, 3, stride, affine, test)
        if op_id == 3:
            return sep_conv(x, c_out, 5, stride, affine, test)
        if op_id == 4:
            return max_pool(x, stride)
        if op_id == 5:
            return avg_pool(x, stride)
        if op_id == IDENTITY_OP:
            return identity(x, c_out, stride, affine, test)
        if op_id == ZERO_OP:
            return zero(x, stride)
    raise ValueError(f"unknown op id {op_id}")


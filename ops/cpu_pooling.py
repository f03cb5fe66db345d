"""DARTS's 3x3 max and average pooling (pad 1, stride 1 or 2) as nnabla functions on the multi-threaded kernels
of ops/pooling_kernels.c.

They compute what F.max_pooling and F.average_pooling(including_pad=False) compute with kernel (3, 3), pad (1, 1)
and ignore_border=True, which nnabla 1.39 runs on one thread. For the cpu context in float only, as the rest of
ops/cpu_kernels.
"""
import ctypes

import numpy as np

from ops import cpu_kernels
from ops.cpu_kernels import _KernelFunction, _read, _write


def _declare(lib):
    """The ctypes argument types of this module's C functions."""
    pointer, integer = ctypes.c_void_p, ctypes.c_int
    lib.avg_pool_forward.argtypes = [pointer] * 2 + [integer] * 5
    lib.max_pool_forward.argtypes = [pointer] * 3 + [integer] * 5
    lib.max_pool_backward.argtypes = [pointer] * 3 + [integer] * 6
    lib.avg_pool_backward.argtypes = [pointer] * 2 + [integer] * 6


library = cpu_kernels.library_declaring(_declare)

# Max pooling at stride 2 keeps nnabla's single thread below this many input elements, where the kernel's
# de-interleaving of the plane costs more than its threads save. Forward and backward, ms, nnabla's against
# ours, 2 cores: (8, 16, 32, 32) 0.21 / 0.28; (64, 32, 16, 16) 0.83 / 0.74; (32, 72, 32, 32) 4.05 / 2.67.
MAX_POOL_STRIDE_2_MIN_ELEMENTS = 2 ** 18


def worthwhile_max_pool(x, stride):
    """Whether max pooling the Variable x at `stride` gains from the kernel here."""
    return cpu_kernels.worthwhile(x) and (stride == 1 or x.size >= MAX_POOL_STRIDE_2_MIN_ELEMENTS)


def pooled_size(size, stride):
    return (size - 1) // stride + 1


class _Pooling(_KernelFunction):
    """input x (N, C, H, W) -> its 3x3 pooling with pad 1 at `stride`; no gradient reads x."""

    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def grad_depends_input_data(self, i, j):
        return False

    def setup_impl(self, inputs, outputs):
        n, c, h, w = inputs[0].shape
        outputs[0].reset_shape((n, c, pooled_size(h, self.stride), pooled_size(w, self.stride)), True)

    def _sizes(self, inputs):
        return (*inputs[0].shape, self.stride)


class MaxPooling(_Pooling):
    """As F.max_pooling(x, (3, 3), stride, ignore_border=True, pad=(1, 1)). The forward pass keeps where each
    maximum came from (a byte per output: its position in the window) for the backward pass, as nnabla's does."""
    NAME = "CpuMaxPooling"

    def setup_impl(self, inputs, outputs):
        super().setup_impl(inputs, outputs)
        self.taps = np.zeros(outputs[0].shape, np.uint8)

    def forward_impl(self, inputs, outputs):
        library().max_pool_forward(_read(inputs[0].data), _write(outputs[0].data), self.taps.ctypes.data,
                                   *self._sizes(inputs))

    def backward_impl(self, inputs, outputs, propagate_down, accum):
        if propagate_down[0]:
            library().max_pool_backward(_read(outputs[0].grad), self.taps.ctypes.data,
                                        _write(inputs[0].grad, accum[0]), *self._sizes(inputs), int(accum[0]))


class AveragePooling(_Pooling):
    """As F.average_pooling(x, (3, 3), stride, ignore_border=True, pad=(1, 1), including_pad=False)."""
    NAME = "CpuAveragePooling"

    def forward_impl(self, inputs, outputs):
        library().avg_pool_forward(_read(inputs[0].data), _write(outputs[0].data), *self._sizes(inputs))

    def backward_impl(self, inputs, outputs, propagate_down, accum):
        if propagate_down[0]:
            library().avg_pool_backward(_read(outputs[0].grad), _write(inputs[0].grad, accum[0]), *self._sizes(inputs),
                                        int(accum[0]))

"""DARTS's FactorizedReduce before its batch norm as one nnabla function on the multi-threaded kernel of
ops/reduce_kernels.c: ReLU, two 1x1 stride-2 convolutions (the second on the image shifted by a pixel, its far
edge zero-padded), concatenated over the channels.

nnabla 1.39 runs it as ReLU, Slice, Pad, Convolution and Concatenate, each on one thread. For the cpu context in
float only, as the rest of ops/cpu_kernels; the weights are those of the two convolutions nnabla's version uses.
"""
import ctypes

from ops import cpu_kernels
from ops.cpu_kernels import _KernelFunction, _read, _write


def _declare(lib):
    """The ctypes argument types of this module's C functions."""
    pointer, integer = ctypes.c_void_p, ctypes.c_int
    lib.fr_forward.argtypes = [pointer] * 4 + [integer] * 6
    lib.fr_backward_data.argtypes = [pointer] * 5 + [integer] * 7
    lib.fr_backward_weight.argtypes = [pointer] * 4 + [integer] * 8


library = cpu_kernels.library_declaring(_declare)


class FactorizedReduce(_KernelFunction):
    """inputs (x: (N, Ci, H, W), w1: (C1, Ci, 1, 1), w2: (C2, Ci, 1, 1)) -> (N, C1 + C2, (H + 1) // 2, (W + 1) // 2),
    as F.concatenate(conv(relu(x), w1, stride 2), conv(pad(relu(x)[:, :, 1:, 1:], far edge 1), w2, stride 2))."""
    NAME = "CpuFactorizedReduce"

    def grad_depends_input_data(self, i, j):
        return True  # dx needs the weights and x (the ReLU's mask), the weights' gradients x

    def setup_impl(self, inputs, outputs):
        n, c, h, w = inputs[0].shape
        for weight in inputs[1:]:
            assert weight.shape[1:] == (c, 1, 1), "1x1 kernels over every input channel"
        outputs[0].reset_shape((n, inputs[1].shape[0] + inputs[2].shape[0], (h + 1) // 2, (w + 1) // 2), True)

    def _sizes(self, inputs):
        return (*inputs[0].shape, inputs[1].shape[0], inputs[2].shape[0])

    def forward_impl(self, inputs, outputs):
        x, w1, w2 = inputs
        library().fr_forward(_read(x.data), _read(w1.data), _read(w2.data), _write(outputs[0].data),
                             *self._sizes(inputs))

    def backward_impl(self, inputs, outputs, propagate_down, accum):
        x, w1, w2 = inputs
        dy = _read(outputs[0].grad)
        if propagate_down[0]:
            library().fr_backward_data(dy, _read(w1.data), _read(w2.data), _read(x.data), _write(x.grad, accum[0]),
                                       *self._sizes(inputs), int(accum[0]))
        if propagate_down[1] or propagate_down[2]:
            dw1 = _write(w1.grad, accum[1]) if propagate_down[1] else None
            dw2 = _write(w2.grad, accum[2]) if propagate_down[2] else None
            library().fr_backward_weight(dy, _read(x.data), dw1, dw2, *self._sizes(inputs), int(accum[1]),
                                         int(accum[2]))

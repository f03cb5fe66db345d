"""Weighted sums of equally shaped arrays, sum_k c_k x_k, as one multi-threaded nnabla function (ops/sum_kernels.c).

The coefficient of an input is one value shared by the batch or one per sample, in the two forms the networks
use: `weighted_sum` takes the mixed op's row of weights, (1, K) or (K,) shared, or (N, 1, K) one row per
sample; `scaled_sum` takes one (N, ...) scale per input, or None for 1 (the evaluation cell's node, its dropped
edges scaled by drop path's keep mask). Gradients flow to the inputs and to the coefficients (the alphas' through
the mixed op's weights).

On nnabla's cpu backend the mixed op took a Stack, a Reshape and a one-threaded Affine or BatchMatmul (15 % of a
first-order search step at B 64), drop path a BatchMatmul and three Reshapes per edge and the node an Add2
(about 19 % of a DARTS_V2 training step at B 32). Like ops.cpu_kernels, for the cpu context in float only.

SumOfSquares, the squared global norm of many arrays in one call, serves the optimisers' gradient clipping.
"""
import ctypes

import numpy as np

from ops import cpu_kernels
from ops.cpu_kernels import _KernelFunction, _read, _write

FLOAT_BYTES = 4
# Below these sizes (elements of one summed array) nnabla's functions beat a call here, whose fixed cost grows
# with its inputs (nnabla's PythonFunction wrapper: about 0.02 ms an input forward). Measured on 2 busy cores,
# forward + backward: the mixed op's sum of 7 took 0.17 ms here against 0.11 for Stack + Affine at 8,192
# elements, 0.25 against 0.37 at 32,768; a node of two dropped edges 0.18 against 0.17 (BatchMatmuls, Add2) at
# 18,432, 0.22 against 0.46 at 73,728. A plain sum (no edge dropped) loses to Add2, whose backward hands the
# gradient on in place, for longer: 0.22 against 0.13 ms at 73,728, 0.43 against 0.50 at 294,912.
MIN_ELEMENTS = 2 ** 15
PLAIN_MIN_ELEMENTS = 2 ** 18
# The coefficient of an input that `scaled_sum` does not scale, read with stride 0.
_ONE = np.ones(1, np.float32)


def _declare(lib):
    """The ctypes argument types of this module's C functions."""
    pointer, integer = ctypes.c_void_p, ctypes.c_int
    lib.wsum_forward.argtypes = [pointer] * 4 + [integer] * 3
    lib.wsum_backward.argtypes = [pointer] * 8 + [integer] * 3
    lib.sum_of_squares.argtypes = [pointer, pointer, integer]
    lib.sum_of_squares.restype = ctypes.c_double


library = cpu_kernels.library_declaring(_declare)


def worthwhile(x, scaled=True):
    """Whether summing arrays like the Variable x gains from the kernel here; scaled=False for a plain sum."""
    return x.size >= (MIN_ELEMENTS if scaled else PLAIN_MIN_ELEMENTS)


def weighted_sum(inputs, weights):
    """sum_k weights[..., k] * inputs[k]: weights of K elements (shared by the batch) or (N, 1, K) (per sample)."""
    return WeightedSum(len(inputs), None)(*inputs, weights)


def scaled_sum(inputs, scales):
    """sum_k scales[k] * inputs[k], each scale an (N, ...) variable of N elements (one per sample) or None (1)."""
    assert len(scales) == len(inputs)
    scaled = tuple(scale is not None for scale in scales)
    return WeightedSum(len(inputs), scaled)(*inputs, *[scale for scale in scales if scale is not None])


def _pointers(addresses):
    return (ctypes.c_void_p * len(addresses))(*addresses)


def _integers(values):
    return (ctypes.c_int * len(values))(*values)


class WeightedSum(_KernelFunction):
    """inputs (x_1 ... x_K, coefficients) -> sum_k c_k x_k. scaled=None: one weights input of K or N * K
    elements; otherwise scaled[k] says whether x_k has its own scale input of N elements (they follow the x's
    in order), else its coefficient is 1. The type name of the graph node says which form it is."""
    NAME = "CpuWeightedSum"
    SCALED_NAME = "CpuScaledSum"

    def __init__(self, count, scaled):
        super().__init__()
        if scaled is not None:
            self.NAME = self.SCALED_NAME
        self.count = count
        self.scaled = scaled
        # Input index of the coefficient of each x_k (None for 1).
        if scaled is None:
            self.coefficient_input = [count] * count
        else:
            indices = iter(range(count, count + sum(scaled)))
            self.coefficient_input = [next(indices) if s else None for s in scaled]

    def min_inputs(self):
        return self.count + (1 if self.scaled is None else sum(self.scaled))

    def grad_depends_input_data(self, i, j):
        if i < self.count:
            return j == self.coefficient_input[i]  # dx_i = c_i dy
        return j < self.count and self.coefficient_input[j] == i  # dc = sum dy x over the inputs it scales

    def setup_impl(self, inputs, outputs):
        shape = inputs[0].shape
        assert all(x.shape == shape for x in inputs[:self.count]), "the summed arrays have one shape"
        n = shape[0]
        if self.scaled is None:
            size = inputs[self.count].size
            assert size in (self.count, n * self.count), "K weights, or N rows of K"
            self.weights_shared = size == self.count
        else:
            assert all(scale.size == n for scale in inputs[self.count:]), "one scale per sample"
        outputs[0].reset_shape(shape, True)

    def _coefficients(self, address):
        """Per x_k: the address of its coefficient (address(input index) of the weights or its scale; None
        where there is none to read or write) and its stride over the samples."""
        count = self.count
        if self.scaled is None:
            base = address(count)
            stride = 0 if self.weights_shared else count
            return [None if base is None else base + k * FLOAT_BYTES for k in range(count)], [stride] * count
        addresses = [_ONE.ctypes.data if index is None else address(index) for index in self.coefficient_input]
        return addresses, [0 if index is None else 1 for index in self.coefficient_input]

    def _sizes(self, inputs):
        x = inputs[0]
        return self.count, x.shape[0], x.size // x.shape[0]

    def forward_impl(self, inputs, outputs):
        c, strides = self._coefficients(lambda index: _read(inputs[index].data))
        x = [_read(v.data) for v in inputs[:self.count]]
        library().wsum_forward(_pointers(x), _pointers(c), _integers(strides), _write(outputs[0].data),
                               *self._sizes(inputs))

    def backward_impl(self, inputs, outputs, propagate_down, accum):
        count = self.count
        dx = [_write(v.grad, accum[k]) if propagate_down[k] else None for k, v in enumerate(inputs[:count])]
        c, strides = self._coefficients(lambda index: _read(inputs[index].data))
        dc, _ = self._coefficients(
            lambda index: _write(inputs[index].grad, accum[index]) if propagate_down[index] else None)
        wanted = [index is not None and propagate_down[index] for index in self.coefficient_input]
        dc = [address if want else None for address, want in zip(dc, wanted)]
        dc_accum = [int(want and accum[index]) for want, index in zip(wanted, self.coefficient_input)]
        x = [_read(v.data) if want else None for v, want in zip(inputs[:count], wanted)]
        library().wsum_backward(_read(outputs[0].grad), _pointers(x), _pointers(c), _integers(strides),
                                _pointers(dx), _integers([int(a) for a in accum[:count]]), _pointers(dc),
                                _integers(dc_accum), *self._sizes(inputs))


class SumOfSquares:
    """The sum of the squares of every element of a list of float32 NdArrays, in double, in one kernel call: the
    squared global norm of a network's gradients, which nnabla's graph took about 1,800 functions for (17 ms over
    DARTS_V2's 927 gradient arrays; 1.3 ms here). The arrays must keep their identity, as in
    utils.optim.array_graphs."""

    def __init__(self, arrays):
        self.arrays = list(arrays)
        self.sizes = (ctypes.c_long * len(self.arrays))(*[a.size for a in self.arrays])

    def __call__(self):
        return library().sum_of_squares(_pointers([_read(a) for a in self.arrays]), self.sizes, len(self.arrays))

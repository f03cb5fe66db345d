"""Depthwise and 1x1 convolution and batch-statistics batch normalisation as nnabla functions on
multi-threaded cpu kernels (ops/cpu_kernels.c, OpenMP).

nnabla 1.39's cpu backend runs every kernel on one thread, and a DARTS search step spent about 80 %
of its time in these layers. The functions here compute what nnabla's DepthwiseConvolution,
Convolution (1x1, stride 1) and BatchNormalization (batch_stat=True, axes [1]) compute, in float32
on the host, from the same parameters (ops.operations creates them as nnabla's parametric functions
would). They are for the cpu context in float only: on a GPU, or in half precision, nnabla's kernels
are used.

The library is built by `make kernels` (part of `make env`); its 1x1 convolutions are OpenBLAS's matrix
products (ops/blas.py). `available()` tells whether the library was built and OpenBLAS is installed.
"""
import ctypes
import os
import sys
import types

import numpy as np
import nnabla as nn
from nnabla.function import PythonFunction

from ops import blas

LIBRARY_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_cpu_kernels.so")

# Below this many input elements the convolutions keep nnabla's own kernels, whose single thread beats a call's
# fixed cost there. bench/kernel_threshold.py, forward and backward with the ReLU before, nnabla's against ours
# (ms, 2 cores): 2,048 elements depthwise 0.06 / 0.10, 1x1 0.03 / 0.11; 8,192 depthwise 0.21 / 0.13, 1x1
# 0.08 / 0.12; 32,768 depthwise 0.90 / 0.24, 1x1 0.42 / 0.19. Batch norm runs here at every size, for its
# stable variance (ops.operations.batch_norm), on one thread below BN_PARALLEL_MIN_ELEMENTS (cpu_kernels.c).
MIN_ELEMENTS = 2 ** 13

_library = None


class KernelsMissing(Exception):
    """The kernel library was not built; the message is one line."""


def missing():
    """Why the kernels cannot run, in one line (the library not built, or the OpenBLAS it calls not installed);
    None when they can."""
    if not os.path.exists(LIBRARY_PATH):
        return f"the cpu kernels are not built ({LIBRARY_PATH} is missing): run `make kernels`"
    if not blas.installed():
        return blas.MISSING
    return None


def available():
    return missing() is None


def worthwhile(x):
    """Whether a layer on the Variable x gains from the kernels here (see MIN_ELEMENTS)."""
    return x.size >= MIN_ELEMENTS


def library():
    global _library  # loaded once per process, like any shared library
    if _library is None:
        if not available():
            raise KernelsMissing(f"{missing()}, or pass --cpu-kernels false")
        _spin_briefly_unless_told()
        lib = ctypes.CDLL(LIBRARY_PATH)  # loads libgomp, which reads its settings once, now
        pointer, integer, real = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
        conv_sizes = [integer] * 9
        lib.dw_forward.argtypes = [pointer] * 3 + conv_sizes + [integer]
        lib.dw_backward_data.argtypes = [pointer] * 4 + conv_sizes + [integer] * 2
        lib.dw_backward_weight.argtypes = [pointer] * 3 + conv_sizes + [integer] * 2
        lib.pw_forward.argtypes = [pointer] * 3 + [integer] * 5
        lib.pw_backward_data.argtypes = [pointer] * 4 + [integer] * 6
        lib.pw_backward_weight.argtypes = [pointer] * 3 + [integer] * 6
        lib.bn_forward.argtypes = [pointer] * 8 + [integer] * 3 + [real] * 2
        lib.bn_backward.argtypes = [pointer] * 8 + [integer] * 3 + [real] + [integer] * 4
        lib.dwpw_forward.argtypes = [pointer] * 4 + conv_sizes + [integer] * 2
        lib.dwpw_backward.argtypes = [pointer] * 7 + conv_sizes + [integer] * 5
        lib.set_sgemm.argtypes = [pointer]
        lib.set_sgemm(blas.sgemm_address())
        _answer_nnabla_s_relative_import()
        _library = lib
    return _library


def library_declaring(declare):
    """library() for a module of kernels in the same library (ops/cpu_pooling, ops/cpu_sums, ...): this module's
    library() with declare(lib), the ctypes argument types of the module's C functions, applied once to each
    library object it returns."""
    declared_on = [None]

    def declared_library():
        lib = library()
        if declared_on[0] is not lib:
            declare(lib)
            declared_on[0] = lib
        return lib
    return declared_library


# How long a waiting OpenMP thread spins before it sleeps, when the user sets neither OMP_WAIT_POLICY nor
# GOMP_SPINCOUNT (libgomp's, which gcc's -fopenmp links). The kernels open a parallel region every 0.1-1 ms, and
# a sleeping thread takes tens of µs to wake (a futex, on a virtual machine an interrupt to another cpu), which a
# passive wait paid at every region; libgomp's default spin (300,000 rounds) holds the core that the late thread
# needs when another process keeps the other core busy. DARTS_V2 training at B 32 (bench/train_step.py), img/s
# quiet / other core busy: passive 31.4 / 22.8, 300,000 rounds 39.5 / 13.2, 3,000 38.5 / 18.8, 300 37.6 / 22.9
# (README: The cpu kernels). OMP_WAIT_POLICY or GOMP_SPINCOUNT in the environment wins.
SPIN_ROUNDS = "300"


def _spin_briefly_unless_told():
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = SPIN_ROUNDS


class _NnablaItself(types.ModuleType):
    """The module nnabla's Cython code finds first when it imports nnabla (see _answer_nnabla_s_relative_import):
    it reads nnabla's own attributes, each kept in its own dictionary once read (the next read of context_scope
    costs a dictionary lookup, not this method). It has no __path__, so it is no package: nothing is ever
    imported under its name, and a relative import of a submodule fails at once and goes on to nnabla's own."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = getattr(nn, name)
        setattr(self, name, value)
        return value


def _answer_nnabla_s_relative_import():
    """nnabla 1.39's PythonFunction wrapper (Cython, implicit relative imports) runs `from nnabla import
    context_scope` in every call it makes to a Python function: forward, backward, and the graph engine's
    questions of which data a gradient reads, about 10,000 calls in a DARTS_V2 training step at B 32. Each first
    looks for a module nnabla.nnabla: through the file system when there is none, and through the import lock
    and a ModuleNotFoundError (about 4 µs on Python 3.10) when sys.modules marks it absent. A module under that
    name answers at once, with nnabla's own context_scope: 40 ms less in that 1.0 s step."""
    sys.modules.setdefault("nnabla.nnabla", _NnablaItself("nnabla.nnabla"))


# The host context of the arrays the kernels read and write; NdArray.data_ptr in it costs about 2 µs
# where NdArray.data (a numpy view) costs 60-100 µs, which would dominate the small layers.
HOST = nn.Context(backend=["cpu:float"], array_class="CpuCachedArray", device_id="")
FLOAT32 = np.dtype(np.float32)


def _read(array):
    """The address of an NdArray's float32 host buffer, for reading; None for None."""
    return None if array is None else array.data_ptr(FLOAT32, HOST)


def _write(array, accumulate=False):
    """The address of an NdArray's float32 host buffer, for writing: without accumulate the old values are
    not brought over."""
    return array.data_ptr(FLOAT32, HOST, not accumulate)


def _data(variable):
    return None if variable is None else variable.data


def output_size(size, kernel, stride, pad, dilation):
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


class _KernelFunction(PythonFunction):
    """What the functions here share: one output, which no gradient reads, and NAME, the type_name of
    their graph nodes."""
    NAME = None

    def __init__(self):
        super().__init__(nn.get_current_context())

    @property
    def name(self):
        return self.NAME

    def min_outputs(self):
        return 1

    def grad_depends_output_data(self, i, o):
        return False


class _Convolution(_KernelFunction):
    """inputs (x, w); of F.relu(x) when relu_input (fused: one pass over memory fewer each way)."""

    def __init__(self, relu_input):
        super().__init__()
        self.relu_input = relu_input

    def grad_depends_input_data(self, i, j):
        return i != j or (i == 0 and self.relu_input)  # dx needs w (and x for the ReLU's mask), dw needs x


class DepthwiseConvolution(_Convolution):
    """inputs (x: (N, C, H, W), w: (C, K, K)) -> y, as F.depthwise_convolution with multiplier 1, no bias."""
    NAME = "CpuDepthwiseConvolution"

    def __init__(self, stride, pad, dilation, relu_input=False):
        super().__init__(relu_input)
        self.stride, self.pad, self.dilation = stride, pad, dilation

    def setup_impl(self, inputs, outputs):
        n, c, h, w = inputs[0].shape
        k = inputs[1].shape[-1]
        assert inputs[1].shape == (c, k, k), "one kernel per channel"
        assert self.pad <= self.dilation * (k - 1), "no wider padding than the kernel's reach (dw_backward_data)"
        outputs[0].reset_shape((n, c, output_size(h, k, self.stride, self.pad, self.dilation),
                                output_size(w, k, self.stride, self.pad, self.dilation)), True)

    def _sizes(self, inputs, outputs):
        n, c, h, w = inputs[0].shape
        return (n, c, h, w) + outputs[0].shape[2:] + (inputs[1].shape[-1], self.stride, self.pad, self.dilation)

    def forward_impl(self, inputs, outputs):
        library().dw_forward(_read(inputs[0].data), _read(inputs[1].data), _write(outputs[0].data),
                             *self._sizes(inputs, outputs), int(self.relu_input))

    def backward_impl(self, inputs, outputs, propagate_down, accum):
        sizes = self._sizes(inputs, outputs)
        dy = _read(outputs[0].grad)
        relu = int(self.relu_input)
        if propagate_down[0]:
            x = _read(inputs[0].data) if relu else None
            library().dw_backward_data(dy, _read(inputs[1].data), x, _write(inputs[0].grad, accum[0]), *sizes, relu,
                                       int(accum[0]))
        if propagate_down[1]:
            library().dw_backward_weight(dy, _read(inputs[0].data), _write(inputs[1].grad, accum[1]), *sizes, relu,
                                         int(accum[1]))


class PointwiseConvolution(_Convolution):
    """inputs (x: (N, Ci, H, W), w: (Co, Ci, 1, 1)) -> y, as F.convolution with a 1x1 kernel, stride 1, no bias."""
    NAME = "CpuPointwiseConvolution"

    def __init__(self, relu_input=False):
        super().__init__(relu_input)

    def setup_impl(self, inputs, outputs):
        n, c, h, w = inputs[0].shape
        assert inputs[1].shape[1:] == (c, 1, 1), "a 1x1 kernel over every input channel"
        outputs[0].reset_shape((n, inputs[1].shape[0], h, w), True)

    def _sizes(self, inputs):
        n, c, h, w = inputs[0].shape
        return n, c, inputs[1].shape[0], h * w

    def forward_impl(self, inputs, outputs):
        library().pw_forward(_read(inputs[0].data), _read(inputs[1].data), _write(outputs[0].data),
                             *self._sizes(inputs), int(self.relu_input))

    def backward_impl(self, inputs, outputs, propagate_down, accum):
        sizes = self._sizes(inputs)
        dy = _read(outputs[0].grad)
        relu = int(self.relu_input)
        if propagate_down[0]:
            x = _read(inputs[0].data) if relu else None
            library().pw_backward_data(dy, _read(inputs[1].data), x, _write(inputs[0].grad, accum[0]), *sizes, relu,
                                       int(accum[0]))
        if propagate_down[1]:
            library().pw_backward_weight(dy, _read(inputs[0].data), _write(inputs[1].grad, accum[1]), *sizes, relu,
                                         int(accum[1]))


class DepthwisePointwise(_KernelFunction):
    """inputs (x: (N, C, H, W), wd: (C, K, K), wp: (Co, C, 1, 1)) -> the 1x1 convolution by wp of the
    depthwise convolution by wd of ReLU(x) (of x when not relu_input), with multiplier 1 and no biases.

    The depthwise output is not kept for the backward pass, which computes it again image by image
    (separable_kernels.c): only x is kept, where the two functions apart keep x and the depthwise output."""
    NAME = "CpuDepthwisePointwise"

    def __init__(self, stride, pad, dilation, relu_input=True):
        super().__init__()
        self.stride, self.pad, self.dilation, self.relu_input = stride, pad, dilation, relu_input

    def grad_depends_input_data(self, i, j):
        return True  # every gradient goes through the recomputed depthwise output, which needs x, wd and wp

    def setup_impl(self, inputs, outputs):
        n, c, h, w = inputs[0].shape
        k = inputs[1].shape[-1]
        assert inputs[1].shape == (c, k, k) and inputs[2].shape[1:] == (c, 1, 1), "a depthwise, then a 1x1 kernel"
        assert self.pad <= self.dilation * (k - 1), "no wider padding than the kernel's reach (dw_backward_data)"
        outputs[0].reset_shape((n, inputs[2].shape[0], output_size(h, k, self.stride, self.pad, self.dilation),
                                output_size(w, k, self.stride, self.pad, self.dilation)), True)

    def _sizes(self, inputs, outputs):
        n, c, h, w = inputs[0].shape
        return ((n, c, h, w) + outputs[0].shape[2:] + (inputs[1].shape[-1], self.stride, self.pad, self.dilation)
                + (outputs[0].shape[1], int(self.relu_input)))

    def forward_impl(self, inputs, outputs):
        library().dwpw_forward(_read(inputs[0].data), _read(inputs[1].data), _read(inputs[2].data),
                               _write(outputs[0].data), *self._sizes(inputs, outputs))

    def backward_impl(self, inputs, outputs, propagate_down, accum):
        if not any(propagate_down):
            return

        def grad(index):
            return _write(inputs[index].grad, accum[index]) if propagate_down[index] else None
        library().dwpw_backward(_read(outputs[0].grad), _read(inputs[0].data), _read(inputs[1].data),
                                _read(inputs[2].data), grad(0), grad(1), grad(2), *self._sizes(inputs, outputs),
                                *(int(a) for a in accum))


class BatchNormalization(_KernelFunction):
    """inputs (x, [beta, gamma,] running mean, running var) -> y, as F.batch_normalization(axes=[1],
    batch_stat=True); the running statistics are updated in place by the forward pass.

    Without scale and shift (the search network's) the output is the normalised input itself, from which the
    backward pass computes: x is then not kept for it, and the convolution or pooling output before each such
    batch norm is freed after the forward pass (y is kept anyway, for whatever reads it next)."""
    NAME = "CpuBatchNormalization"

    def __init__(self, affine, decay_rate, eps):
        super().__init__()
        self.affine, self.decay_rate, self.eps = affine, decay_rate, eps

    def grad_depends_input_data(self, i, j):
        return self.affine and j in (0, 2)  # x, and gamma for dx (without them the output serves)

    def grad_depends_output_data(self, i, o):
        return not self.affine

    def setup_impl(self, inputs, outputs):
        outputs[0].reset_shape(inputs[0].shape, True)
        channels = inputs[0].shape[1]
        self.batch_mean = np.zeros(2 * channels, np.float32)  # the mean as float pairs: hi, then lo (see bn_forward)
        self.batch_var = np.zeros(channels, np.float32)

    def _parts(self, inputs):
        if self.affine:
            x, beta, gamma, mean, var = inputs
        else:
            (x, mean, var), beta, gamma = inputs, None, None
        n, c = x.shape[:2]
        return x, beta, gamma, mean, var, (n, c, int(np.prod(x.shape[2:])))

    def forward_impl(self, inputs, outputs):
        x, beta, gamma, mean, var, sizes = self._parts(inputs)
        library().bn_forward(_read(x.data), _read(_data(beta)), _read(_data(gamma)), _write(outputs[0].data),
                             _write(mean.data, True), _write(var.data, True), self.batch_mean.ctypes.data,
                             self.batch_var.ctypes.data, *sizes, self.decay_rate, self.eps)

    def backward_impl(self, inputs, outputs, propagate_down, accum):
        x, beta, gamma, _, _, sizes = self._parts(inputs)

        def grad(index):
            return _write(inputs[index].grad, accum[index]) if propagate_down[index] else None
        dx = grad(0)
        dbeta, dgamma = (grad(1), grad(2)) if self.affine else (None, None)
        if dx is None and dbeta is None and dgamma is None:
            return
        xhat_given = not self.affine
        library().bn_backward(_read(outputs[0].data if xhat_given else x.data), _read(outputs[0].grad),
                              _read(_data(gamma)), self.batch_mean.ctypes.data, self.batch_var.ctypes.data, dx, dgamma,
                              dbeta, *sizes, self.eps, int(xhat_given), int(accum[0]), int(self.affine and accum[2]),
                              int(self.affine and accum[1]))

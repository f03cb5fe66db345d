"""The recurrent DARTS models' heavy functions as nnabla functions on multi-threaded cpu kernels
(ops/recurrent_kernels.c): the matrix products on OpenBLAS's sgemm (ops/blas.py) with the dropout masks folded
in, each node's gated highway fused into one pass (an evaluation cell's Gate, a search cell's Mix of all its
edges and ops), and the softmax cross-entropy of the decoder.

nnabla 1.39 runs these on one thread: at PTB size Affine took 79 % of a DARTS_V2 training step's forward and
backward (850 units, batch 64, bptt 35) and the gates' and masks' Mul2/Sub2 another 14 %; in a search step
(300 units, batch 256) Affine took 49 % and the elementwise mixing most of the rest (README: The cpu kernels).
The functions here compute the same values in float32 on the host; models.recurrent builds them when asked for
the cpu kernels (cpu, float only). The activations use a vectorised e^x (about 1 ulp; tanh within 1.2e-7 of
tanhf absolutely), as libm's scalar expf and tanhf left the mixing 20x slower.
"""
import ctypes

import numpy as np

from ops import cpu_kernels
from ops.cpu_kernels import _KernelFunction, _read, _write


def _declare(lib):
    """The ctypes argument types of this module's C functions."""
    pointer, integer = ctypes.c_void_p, ctypes.c_int
    lib.rnn_affine_forward.argtypes = [pointer, pointer, integer, pointer, pointer, pointer] + [integer] * 4
    lib.rnn_affine_backward_data.argtypes = [pointer, pointer, integer, pointer, pointer] + [integer] * 5
    lib.rnn_affine_backward_weight.argtypes = [pointer, pointer, pointer, integer, pointer, pointer] + [integer] * 6
    lib.rnn_gate_forward.argtypes = [pointer] * 4 + [integer] * 3
    lib.rnn_gate_backward.argtypes = [pointer] * 7 + [integer] * 6
    lib.rnn_mix_forward.argtypes = [pointer] * 4 + [integer] * 3
    lib.rnn_mix_backward.argtypes = [pointer] * 7 + [integer] * 6
    lib.rnn_softmax_ce_forward.argtypes = [pointer] * 4 + [integer] * 2
    lib.rnn_softmax_ce_backward.argtypes = [pointer] * 5 + [integer] * 3


library = cpu_kernels.library_declaring(_declare)


def _grad(inputs, index, propagate_down, accum):
    return _write(inputs[index].grad, accum[index]) if propagate_down[index] else None


class Affine(_KernelFunction):
    """inputs (x: (M, K), w[, b: (N,)][, mask: (R, K)]) -> (x * mask) . w (+ b), (M, N), as F.affine of F.mul2;
    w is (K, N), or (N, K) used transposed when transpose_w (the tied decoder: no F.transpose copy). Row m of x
    takes row m % R of the mask, a dropout mask shared by the steps or edges stacked in x; the mask gets no
    gradient."""
    NAME = "CpuRecurrentAffine"

    def __init__(self, transpose_w=False, bias=False, mask=False):
        super().__init__()
        self.transpose_w, self.bias, self.mask = transpose_w, bias, mask

    def grad_depends_input_data(self, i, j):
        # dx needs w, dw needs x, both need the mask; db needs nothing.
        mask = self.mask and j == (3 if self.bias else 2)
        return (i, j) in ((0, 1), (1, 0)) or (mask and i in (0, 1))

    def _parts(self, inputs):
        x, w = inputs[:2]
        b = inputs[2] if self.bias else None
        mask = inputs[-1] if self.mask else None
        m, k = x.shape
        n = w.shape[0] if self.transpose_w else w.shape[1]
        return x, w, b, mask, (m, k, n)

    def setup_impl(self, inputs, outputs):
        x, w, b, mask, (m, k, n) = self._parts(inputs)
        assert len(x.shape) == 2 and w.shape == ((n, k) if self.transpose_w else (k, n)), "x (M, K), w (K, N)"
        assert mask is None or (mask.shape[1] == k and m % mask.shape[0] == 0), "mask (R, K), R divides M"
        outputs[0].reset_shape((m, n), True)

    def _mask(self, mask):
        return (_read(mask.data), mask.shape[0]) if mask is not None else (None, 1)

    def forward_impl(self, inputs, outputs):
        x, w, b, mask, sizes = self._parts(inputs)
        library().rnn_affine_forward(_read(x.data), *self._mask(mask), _read(w.data), _read(b.data if b else None),
                                     _write(outputs[0].data), *sizes, int(self.transpose_w))

    def backward_impl(self, inputs, outputs, propagate_down, accum):
        x, w, b, mask, sizes = self._parts(inputs)
        assert not (self.mask and propagate_down[-1]), "the dropout mask gets no gradient"
        dy = _read(outputs[0].grad)
        if propagate_down[0]:
            library().rnn_affine_backward_data(dy, *self._mask(mask), _read(w.data), _write(x.grad, accum[0]),
                                               *sizes, int(self.transpose_w), int(accum[0]))
        dw = _grad(inputs, 1, propagate_down, accum)
        db = _grad(inputs, 2, propagate_down, accum) if self.bias else None
        if dw is not None or db is not None:
            library().rnn_affine_backward_weight(dy, _read(x.data), *self._mask(mask), dw, db, *sizes,
                                                 int(self.transpose_w), int(accum[1]),
                                                 int(self.bias and accum[2]))


class Gate(_KernelFunction):
    """inputs (ch: (B, 2n), s: (B, n)[, add: (B, 2n)]) -> s + sigmoid(c) * (f(h) - s) with [c, h] = ch (+ add):
    an evaluation cell's node, f the activation of op_id (ops.recurrent_ops: 1 tanh, 2 relu, 3 sigmoid,
    4 identity). add is node 0's input projection."""
    NAME = "CpuRecurrentGate"

    def __init__(self, op_id, add=False):
        super().__init__()
        assert op_id in (1, 2, 3, 4), "an activation op"
        self.op_id, self.add = op_id, add

    def grad_depends_input_data(self, i, j):
        return True

    def setup_impl(self, inputs, outputs):
        b, n = inputs[1].shape
        assert inputs[0].shape == (b, 2 * n) and (not self.add or inputs[2].shape == (b, 2 * n))
        outputs[0].reset_shape((b, n), True)

    def _add(self, inputs):
        return _read(inputs[2].data) if self.add else None

    def forward_impl(self, inputs, outputs):
        library().rnn_gate_forward(_read(inputs[0].data), self._add(inputs), _read(inputs[1].data),
                                   _write(outputs[0].data), *inputs[1].shape, self.op_id)

    def backward_impl(self, inputs, outputs, propagate_down, accum):
        dch = _grad(inputs, 0, propagate_down, accum)
        dadd = _grad(inputs, 2, propagate_down, accum) if self.add else None  # the same values as dch
        ds = _grad(inputs, 1, propagate_down, accum)
        if dch is None and dadd is None and ds is None:
            return
        library().rnn_gate_backward(_read(outputs[0].grad), _read(inputs[0].data), self._add(inputs),
                                    _read(inputs[1].data), dch, dadd, ds, *inputs[1].shape, self.op_id,
                                    int(accum[0]), int(self.add and accum[2]), int(accum[1]))


class Mix(_KernelFunction):
    """inputs (ch: (J, B, 2n), s: (J, B, n), p: (J, 4)) -> (B, n): a search cell's node over its J edges,
    sum_j sum_op p_jop (s_j + sigmoid(c_j) (op(h_j) - s_j)) over the ops tanh, relu, sigmoid, identity, with
    [c_j, h_j] = ch[j]."""
    NAME = "CpuRecurrentMix"

    def grad_depends_input_data(self, i, j):
        return True

    def setup_impl(self, inputs, outputs):
        j, b, n = inputs[1].shape
        assert inputs[0].shape == (j, b, 2 * n) and inputs[2].shape == (j, 4), "ch (J, B, 2n), s (J, B, n), p (J, 4)"
        outputs[0].reset_shape((b, n), True)

    def forward_impl(self, inputs, outputs):
        library().rnn_mix_forward(*[_read(v.data) for v in inputs], _write(outputs[0].data), *inputs[1].shape)

    def backward_impl(self, inputs, outputs, propagate_down, accum):
        grads = [_grad(inputs, i, propagate_down, accum) for i in range(3)]
        if all(g is None for g in grads):
            return
        library().rnn_mix_backward(_read(outputs[0].grad), *[_read(v.data) for v in inputs], *grads,
                                   *inputs[1].shape, *[int(a) for a in accum])


class SoftmaxCrossEntropy(_KernelFunction):
    """inputs (x: (M, N), t: (M, 1) word ids) -> (M, 1) -log softmax(x)[t], as F.softmax_cross_entropy; the
    ids get no gradient. nnabla's ran on one thread: 0.2 s of a PTB training step, 1.2 s of a search step's
    forward and backward."""
    NAME = "CpuRecurrentSoftmaxCrossEntropy"

    def grad_depends_input_data(self, i, j):
        return True

    def setup_impl(self, inputs, outputs):
        m = inputs[0].shape[0]
        assert len(inputs[0].shape) == 2 and inputs[1].shape == (m, 1), "x (M, N), t (M, 1)"
        outputs[0].reset_shape((m, 1), True)
        self.lse = np.zeros(m, np.float32)  # each row's log-sum-exp, from the forward pass to the backward

    def forward_impl(self, inputs, outputs):
        library().rnn_softmax_ce_forward(_read(inputs[0].data), _read(inputs[1].data), _write(outputs[0].data),
                                         self.lse.ctypes.data, *inputs[0].shape)

    def backward_impl(self, inputs, outputs, propagate_down, accum):
        assert not propagate_down[1], "the word ids get no gradient"
        if propagate_down[0]:
            library().rnn_softmax_ce_backward(_read(inputs[0].data), _read(inputs[1].data), self.lse.ctypes.data,
                                              _read(outputs[0].grad), _write(inputs[0].grad, accum[0]),
                                              *inputs[0].shape, int(accum[0]))

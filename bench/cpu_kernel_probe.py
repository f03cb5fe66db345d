"""Probe for issue 15's CPU fast path: numba kernels inside nnabla PythonFunctions against nnabla's
own batch normalisation and depthwise convolution, at the search network's shapes (B 64).

numba is not a project dependency (the probe decided against it, see the numbers in the report of
issue 15); to repeat the probe, unpack the numba 0.61.2 and llvmlite 0.44.0 wheels for CPython 3.10
(`pip download --no-deps --python-version 3.10 --only-binary=:all: numba==0.61.2 llvmlite==0.44.0`)
into a directory and put it on PYTHONPATH:

    PYTHONPATH=/tmp/numbalib NUMBA_NUM_THREADS=2 .venv/bin/python bench/cpu_kernel_probe.py

Prints, per shape, milliseconds per call of nnabla's kernel and of the numba one (batch norm forward
and backward through a PythonFunction in a graph; depthwise forward as a bare kernel), and the
largest difference from nnabla's result.
"""
import time

import numba as nb
import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF
from nnabla.function import PythonFunction

@nb.njit(parallel=True)
def bn_forward(x, y, mean, var, rmean, rvar, eps, decay):
    N, C, H, W = x.shape
    M = N * H * W
    for c in nb.prange(C):
        s = 0.0
        for n in range(N):
            for i in range(H):
                for j in range(W):
                    s += x[n, c, i, j]
        mu = s / M
        q = 0.0
        for n in range(N):
            for i in range(H):
                for j in range(W):
                    d = x[n, c, i, j] - mu
                    q += d * d
        v = q / M
        mean[c] = mu; var[c] = v
        rmean[0, c, 0, 0] = decay * rmean[0, c, 0, 0] + (1 - decay) * mu
        rvar[0, c, 0, 0] = decay * rvar[0, c, 0, 0] + (1 - decay) * v * M / (M - 1)
        inv = 1.0 / np.sqrt(v + eps)
        for n in range(N):
            for i in range(H):
                for j in range(W):
                    y[n, c, i, j] = (x[n, c, i, j] - mu) * inv

@nb.njit(parallel=True)
def bn_backward(x, dy, dx, mean, var, eps, accum):
    N, C, H, W = x.shape
    M = N * H * W
    for c in nb.prange(C):
        mu = mean[c]; inv = 1.0 / np.sqrt(var[c] + eps)
        sg = 0.0; sgx = 0.0
        for n in range(N):
            for i in range(H):
                for j in range(W):
                    g = dy[n, c, i, j]
                    sg += g; sgx += g * (x[n, c, i, j] - mu) * inv
        a = sg / M; b = sgx / M
        for n in range(N):
            for i in range(H):
                for j in range(W):
                    val = inv * (dy[n, c, i, j] - a - (x[n, c, i, j] - mu) * inv * b)
                    if accum: dx[n, c, i, j] += val
                    else: dx[n, c, i, j] = val

class BN(PythonFunction):
    def __init__(self, ctx=None): super().__init__(ctx); self.eps = 1e-5; self.decay = 0.9
    @property
    def name(self): return "FastBatchNorm"
    def min_outputs(self): return 1
    def setup_impl(self, inputs, outputs):
        outputs[0].reset_shape(inputs[0].shape, True)
        C = inputs[0].shape[1]; self.mean = np.empty(C); self.var = np.empty(C)
    def forward_impl(self, inputs, outputs):
        bn_forward(inputs[0].data.data, outputs[0].data.data, self.mean, self.var, inputs[1].data.data, inputs[2].data.data, self.eps, self.decay)
    def backward_impl(self, inputs, outputs, propagate_down, accum):
        if propagate_down[0]:
            bn_backward(inputs[0].data.data, outputs[0].grad.data, inputs[0].grad.data, self.mean, self.var, self.eps, accum[0])
    def grad_depends_output_data(self, i, o): return False
    def grad_depends_input_data(self, i, j): return i == 0 and j == 0

@nb.njit(inline='always')
def valid(o_size, in_size, stride, offset):
    # output indices o with 0 <= o*stride + offset < in_size
    lo = 0
    if offset < 0: lo = (-offset + stride - 1) // stride
    hi = (in_size - 1 - offset) // stride + 1 if in_size - 1 - offset >= 0 else 0
    if hi > o_size: hi = o_size
    return lo, hi

@nb.njit(parallel=True, fastmath=True)
def dw_forward(x, w, y, stride, pad, dil):
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    K = w.shape[1]
    for nc in nb.prange(N * C):
        n = nc // C; c = nc % C
        out = y[n, c]
        out[:] = 0
        inp = x[n, c]
        for ki in range(K):
            ilo, ihi = valid(OH, H, stride, ki * dil - pad)
            for kj in range(K):
                jlo, jhi = valid(OW, W, stride, kj * dil - pad)
                wv = w[c, ki, kj]
                for i in range(ilo, ihi):
                    row = inp[i * stride + ki * dil - pad]
                    orow = out[i]
                    off = kj * dil - pad
                    for j in range(jlo, jhi):
                        orow[j] += wv * row[j * stride + off]

def ms_per_call(f, n=5):
    f()
    started = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - started) / n * 1e3


def main():
    rng = np.random.RandomState(0)
    print("batch norm (batch statistics, no affine), ms per call")
    for shape in [(64, 16, 32, 32), (64, 32, 16, 16), (64, 64, 8, 8), (8, 16, 8, 8)]:
        x = nn.Variable.from_numpy_array(rng.randn(*shape).astype(np.float32), need_grad=True)
        with nn.parameter_scope(str(shape)):
            y = PF.batch_normalization(x, no_scale=True, no_bias=True, batch_stat=True)
        stats = nn.Variable.from_numpy_array(np.zeros((1, shape[1], 1, 1), np.float32))
        variance = nn.Variable.from_numpy_array(np.ones((1, shape[1], 1, 1), np.float32))
        y_fast = BN()(x, stats, variance)
        dy = rng.randn(*shape).astype(np.float32)
        y.forward(); x.grad.zero(); y.backward(dy); g_ref = x.g.copy()
        y_fast.forward(); x.grad.zero(); y_fast.backward(dy); g_fast = x.g.copy()
        print(f"  {str(shape):<18} forward nnabla {ms_per_call(y.forward):7.2f} numba {ms_per_call(y_fast.forward):7.2f}"
              f" | backward nnabla {ms_per_call(lambda: y.backward(dy)):7.2f}"
              f" numba {ms_per_call(lambda: y_fast.backward(dy)):7.2f}"
              f" | max diff y {np.abs(y.d - y_fast.d).max():.1e} dx {np.abs(g_ref - g_fast).max():.1e}")
    print("depthwise convolution forward (bare kernel), ms per call")
    for shape, k, s, p, d in [((64, 16, 32, 32), 3, 1, 1, 1), ((64, 16, 32, 32), 5, 1, 4, 2), ((64, 32, 16, 16), 3, 2, 1, 1)]:
        xv = rng.randn(*shape).astype(np.float32)
        wv = rng.randn(shape[1], k, k).astype(np.float32)
        y = F.depthwise_convolution(nn.Variable.from_numpy_array(xv), nn.Variable.from_numpy_array(wv),
                                    pad=(p, p), stride=(s, s), dilation=(d, d))
        y.forward()
        out = np.empty(y.shape, np.float32)
        print(f"  {str(shape):<18} k {k} stride {s} dilation {d}: nnabla {ms_per_call(y.forward):7.2f}"
              f" numba {ms_per_call(lambda: dw_forward(xv, wv, out, s, p, d)):7.2f}"
              f" | max diff {np.abs(out - y.d).max():.1e}")


if __name__ == "__main__":
    main()

"""Where the cpu kernels' convolutions start to beat nnabla's (ops/cpu_kernels.MIN_ELEMENTS): forward and
backward of a 3x3 depthwise and of a 1x1 convolution, each with the ReLU before it, on nnabla's functions and
on the kernels, at sizes around the threshold.

    .venv/bin/python bench/kernel_threshold.py

Prints one line per shape (milliseconds, the lower quartile of 30 runs), then JSON with the same figures.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import nnabla as nn  # noqa: E402
import nnabla.functions as F  # noqa: E402
import numpy as np  # noqa: E402

from ops import cpu_kernels  # noqa: E402

SHAPES = [(2, 16, 8), (8, 16, 8), (16, 32, 8), (8, 64, 8), (32, 16, 16), (64, 16, 16)]  # (batch, channels, side)


def milliseconds(output, runs=30):
    output.forward()
    output.backward(clear_buffer=False)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        output.forward()
        output.backward(clear_buffer=False)
        times.append(time.perf_counter() - start)
    return sorted(times)[runs // 4] * 1e3


def trainable(array):
    v = nn.Variable.from_numpy_array(array.astype(np.float32))
    v.need_grad = True
    return v


def main():
    rng = np.random.default_rng(0)
    rows = []
    for batch, channels, side in SHAPES:
        x = trainable(rng.standard_normal((batch, channels, side, side)))
        pointwise = trainable(rng.standard_normal((channels, channels, 1, 1)))
        depthwise = trainable(rng.standard_normal((channels, 3, 3)))
        row = {"shape": [batch, channels, side, side], "elements": batch * channels * side * side,
               "pointwise_nnabla_ms": milliseconds(F.convolution(F.relu(x), pointwise)),
               "pointwise_kernel_ms": milliseconds(cpu_kernels.PointwiseConvolution(True)(x, pointwise)),
               "depthwise_nnabla_ms": milliseconds(F.depthwise_convolution(F.relu(x), depthwise, pad=(1, 1))),
               "depthwise_kernel_ms": milliseconds(cpu_kernels.DepthwiseConvolution(1, 1, 1, True)(x, depthwise))}
        rows.append(row)
        print(f"{row['elements']:>8} elements {tuple(row['shape'])}: 1x1 nnabla {row['pointwise_nnabla_ms']:.3f} "
              f"kernel {row['pointwise_kernel_ms']:.3f} ms | depthwise nnabla {row['depthwise_nnabla_ms']:.3f} "
              f"kernel {row['depthwise_kernel_ms']:.3f} ms")
    print(json.dumps({"min_elements": cpu_kernels.MIN_ELEMENTS, "rows": rows}))


if __name__ == "__main__":
    main()

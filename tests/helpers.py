"""What several test files share: small slices of the embedded digits, series files, hand weight counts."""
import dataclasses

import numpy as np
import pytest

from ops import cpu_kernels
from utils.data.datasets import load_dataset

# A parameter for a test run both on nnabla's functions and on ops/cpu_kernels (where they are built).
KERNELS_OFF_AND_ON = [False, pytest.param(True, marks=pytest.mark.skipif(not cpu_kernels.available(),
                                                                        reason="the cpu kernels are not built"))]


def digits_head(n):
    """The embedded digits with only their first n training images: a search epoch of a step or two."""
    data = load_dataset("digits", "unused")
    return dataclasses.replace(data, train_x=data.train_x[:n], train_y=data.train_y[:n])


def series(path, name):
    """The (epoch, value) rows of one MonitorSeries file of a monitor directory."""
    return np.loadtxt(path / f"{name.replace(' ', '-')}.series.txt", ndmin=2)


# Weights of the evaluation network's blocks, counted by hand (BN with scale and shift).
def bn(c):
    return 2 * c


def conv_bn(c_in, c_out, k=1):
    return k * k * c_in * c_out + bn(c_out)


def factorized_reduce(c_in, c_out):
    return 2 * c_in * (c_out // 2) + bn(c_out)


def sep_conv(c, k):
    return 2 * (k * k * c + c * c + bn(c))


def dil_conv(c, k):
    return k * k * c + c * c + bn(c)

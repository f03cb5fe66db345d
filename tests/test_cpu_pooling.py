"""The pooling, factorized-reduce and stride-2 depthwise kernels (ops/cpu_pooling, ops/cpu_reduce, and
ops/cpu_kernels' DepthwiseConvolution, whose stride 2 is ops/strided_depthwise_kernels.c) against nnabla's own
functions, forward, backward and accumulating, on odd and even sizes; and the networks' use of them."""
import nnabla as nn
import nnabla.functions as F
import numpy as np
import pytest

from ops import cpu_kernels, cpu_pooling, cpu_reduce
from ops.operations import OpMode, factorized_reduce

needs_library = pytest.mark.skipif(not cpu_kernels.available(), reason="make kernels has not run")

SHAPES = [(3, 4, 8, 8), (2, 3, 9, 9), (2, 2, 7, 10), (1, 2, 1, 2)]


def variable(rng, shape):
    v = nn.Variable.from_numpy_array(rng.standard_normal(shape).astype(np.float32))
    v.need_grad = True
    return v


def results(y, inputs, dy, start):
    """y's value and the inputs' gradients, which start at `start` (zero: overwritten; else accumulated)."""
    for v, g in zip(inputs, start):
        v.grad.data[...] = g
    y.forward()
    y.backward(nn.NdArray.from_numpy_array(dy), clear_buffer=False)
    return [y.d.copy()] + [v.g.copy() for v in inputs]


def assert_same(ours, theirs, inputs, rng, exact=False):
    assert ours.shape == theirs.shape
    dy = rng.standard_normal(ours.shape).astype(np.float32)
    for accumulate in (False, True):
        start = [rng.standard_normal(v.shape) if accumulate else np.zeros(v.shape) for v in inputs]
        for got, expected in zip(results(ours, inputs, dy, start), results(theirs, inputs, dy, start)):
            if exact:
                np.testing.assert_array_equal(got, expected)
            else:
                np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@needs_library
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("stride", [1, 2])
def test_max_pooling_equals_nnabla_s(shape, stride):
    rng = np.random.default_rng(stride * 10 + shape[-1])
    x = variable(rng, shape)
    theirs = F.max_pooling(x, (3, 3), stride=(stride, stride), pad=(1, 1), ignore_border=True)
    assert_same(cpu_pooling.MaxPooling(stride)(x), theirs, [x], rng, exact=True)


@needs_library
@pytest.mark.parametrize("stride", [1, 2])
def test_max_pooling_routes_ties_and_all_negative_windows_as_nnabla_does(stride):
    """Equal values: the first in the window takes the gradient; the padding is never a maximum."""
    rng = np.random.default_rng(stride)
    x = variable(rng, (2, 3, 7, 8))
    x.d = np.where(rng.random(x.shape) < 0.5, 1.0, -np.abs(x.d) - 1.0)
    theirs = F.max_pooling(x, (3, 3), stride=(stride, stride), pad=(1, 1), ignore_border=True)
    assert_same(cpu_pooling.MaxPooling(stride)(x), theirs, [x], rng, exact=True)


@needs_library
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("stride", [1, 2])
def test_average_pooling_without_the_padding_equals_nnabla_s(shape, stride):
    rng = np.random.default_rng(stride * 10 + shape[-1])
    x = variable(rng, shape)
    theirs = F.average_pooling(x, (3, 3), stride=(stride, stride), pad=(1, 1), ignore_border=True,
                               including_pad=False)
    assert_same(cpu_pooling.AveragePooling(stride)(x), theirs, [x], rng)


def nnabla_s_factorized_reduce(x, w1, w2):
    """DARTS's FactorizedReduce before its batch norm, in nnabla's functions, as ops.operations builds it."""
    r = F.relu(x)
    shifted = F.pad(F.slice(r, start=(1, 1), stop=x.shape[2:], step=(1, 1)), (0, 1, 0, 1))
    return F.concatenate(F.convolution(r, w1, stride=(2, 2)), F.convolution(shifted, w2, stride=(2, 2)), axis=1)


@needs_library
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("halves", [(4, 4), (3, 5)])
def test_factorized_reduce_equals_nnabla_s_relu_slice_pad_and_convolutions(shape, halves):
    rng = np.random.default_rng(shape[-1] + halves[0])
    x = variable(rng, shape)
    w1, w2 = (variable(rng, (c, shape[1], 1, 1)) for c in halves)
    assert_same(cpu_reduce.FactorizedReduce()(x, w1, w2), nnabla_s_factorized_reduce(x, w1, w2), [x, w1, w2], rng)


def function_names(output):
    names = []
    output.visit(lambda f: names.append(f.info.type_name))
    return names


@needs_library
def test_factorized_reduce_on_the_kernels_reads_nnabla_s_parameters_and_follows_the_size_threshold(monkeypatch):
    rng = np.random.default_rng(0)
    x = variable(rng, (2, 4, 8, 8))

    def build(cpu_kernels_on):
        with nn.parameter_scope("fr"):
            return factorized_reduce(x, 6, OpMode(affine=True, test=False, cpu_kernels=cpu_kernels_on))
    nn.clear_parameters()
    theirs = build(False)
    assert "CpuFactorizedReduce" not in function_names(build(True))  # 512 elements: below the threshold
    monkeypatch.setattr(cpu_kernels, "MIN_ELEMENTS", 0)
    ours = build(True)
    assert "CpuFactorizedReduce" in function_names(ours)
    assert_same(ours, theirs, [x] + list(nn.get_parameters(grad_only=True).values()), rng)
    nn.clear_parameters()


@needs_library
def test_the_networks_pool_and_reduce_on_the_kernels_when_they_are_on(monkeypatch):
    from models.eval_network import build_train_graph
    from models.genotype import load_architecture
    from models.search_network import create_alphas, search_network, softmax_weights
    monkeypatch.setattr(cpu_kernels, "MIN_ELEMENTS", 0)
    nn.clear_parameters()
    x = nn.Variable((2, 3, 8, 8))
    search = function_names(search_network(x, softmax_weights(create_alphas(np.random.RandomState(0))), 10, 4, 3,
                                           cpu_kernels=True))
    nn.clear_parameters()
    evaluation = function_names(build_train_graph(load_architecture("DARTS_V2"), (2, 3, 8, 8), 10, 6, 3,
                                                  auxiliary=False, aux_weight=0.0, cpu_kernels=True).loss)
    nn.clear_parameters()
    for kind in ("CpuMaxPooling", "CpuAveragePooling", "CpuFactorizedReduce", "CpuDepthwiseConvolution",
                 "CpuDepthwisePointwise"):
        assert kind in search, kind
    # The conv ops at stride 1 as one function each: no depthwise convolution of nnabla's or ours apart from it
    # outside the reduction cells' strided edges.
    assert "CpuDepthwisePointwise" in evaluation and "DepthwiseConvolution" not in search + evaluation
    # Max pooling at stride 2 on so small maps stays nnabla's (cpu_pooling.MAX_POOL_STRIDE_2_MIN_ELEMENTS);
    # average pooling runs here at both strides.
    assert "MaxPooling" in search and "AveragePooling" not in search
    assert "Pad" not in search
    assert "CpuFactorizedReduce" in evaluation and "Pad" not in evaluation
    monkeypatch.setattr(cpu_pooling, "MAX_POOL_STRIDE_2_MIN_ELEMENTS", 0)
    nn.clear_parameters()
    evaluation = function_names(build_train_graph(load_architecture("DARTS_V2"), (2, 3, 8, 8), 10, 6, 3,
                                                  auxiliary=False, aux_weight=0.0, cpu_kernels=True).loss)
    nn.clear_parameters()
    assert "CpuMaxPooling" in evaluation and "MaxPooling" not in evaluation  # DARTS_V2 pools only at stride 2


# (kernel, pad, dilation) of sep_conv 3/5/7 and dil_conv 3/5, whose first layer is strided on reduction edges.
STRIDED_CONVOLUTIONS = [(3, 1, 1), (5, 2, 1), (7, 3, 1), (3, 2, 2), (5, 4, 2)]


@needs_library
@pytest.mark.parametrize("kernel,pad,dilation", STRIDED_CONVOLUTIONS)
@pytest.mark.parametrize("shape", [(3, 4, 8, 8), (2, 3, 9, 9), (2, 2, 7, 10)])
@pytest.mark.parametrize("relu_input", [False, True])
def test_stride_2_depthwise_convolution_equals_nnabla_s(kernel, pad, dilation, shape, relu_input):
    rng = np.random.default_rng(kernel * 10 + dilation + shape[-1])
    x = variable(rng, shape)
    w = variable(rng, (shape[1], kernel, kernel))
    ours = cpu_kernels.DepthwiseConvolution(2, pad, dilation, relu_input)(x, w)
    theirs = F.depthwise_convolution(F.relu(x) if relu_input else x, w, pad=(pad, pad), stride=(2, 2),
                                     dilation=(dilation, dilation))
    assert_same(ours, theirs, [x, w], rng)

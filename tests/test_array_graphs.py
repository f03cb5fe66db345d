"""Graphs built once over many arrays: they must read and write the arrays themselves, every run."""
import math

import nnabla as nn
import nnabla.functions as F
import numpy as np
import pytest

from helpers import KERNELS_OFF_AND_ON
from ops.cpu_sums import SumOfSquares
from utils.optim.array_graphs import ArrayGraph, GlobalNorm, copy_graph, float_context

SHAPES = [(3, 4), (5,), (2, 1, 3, 3)]


def ndarrays(rng, shapes=SHAPES):
    return [nn.NdArray.from_numpy_array(rng.randn(*s).astype(np.float32)) for s in shapes]


def test_an_in_place_graph_rereads_its_arrays_on_every_run():
    rng = np.random.RandomState(0)
    a, b = ndarrays(rng), ndarrays(rng)
    graph = ArrayGraph(lambda x, y, s: x + y * s, [a, b], [a], scalars=("s",))
    expected = [x.data.copy() for x in a]
    for s in (0.5, -2.0):
        new_b = [rng.randn(*x.shape).astype(np.float32) for x in b]
        for array, value in zip(b, new_b):
            array.data = value  # written into the array the graph reads
        graph.run(s=s)
        expected = [e + v * s for e, v in zip(expected, new_b)]
        for array, e in zip(a, expected):
            np.testing.assert_allclose(array.data, e, rtol=1e-6, atol=1e-6)
    for array, e in zip(b, new_b):  # operands that are not targets are left alone
        np.testing.assert_array_equal(array.data, e)


def test_a_graph_with_several_results_writes_each_into_its_own_targets():
    rng = np.random.RandomState(1)
    a, b = ndarrays(rng), ndarrays(rng)
    before_a, before_b = [x.data.copy() for x in a], [x.data.copy() for x in b]
    # The second result reads the first after it was written, as Adam's step reads its new moments.
    graph = ArrayGraph(lambda x, y: (lambda s: (s, x - s))(x + y), [a, b], [b, a])
    graph.run()
    for x, y, x0, y0 in zip(a, b, before_a, before_b):
        np.testing.assert_allclose(y.data, x0 + y0, rtol=1e-6)
        np.testing.assert_allclose(x.data, -y0, rtol=1e-5, atol=1e-6)


def test_copies_are_independent_of_their_source():
    rng = np.random.RandomState(2)
    source = ndarrays(rng)
    copies = [nn.NdArray(x.shape) for x in source]
    save, restore = copy_graph(source, copies), copy_graph(copies, source)
    originals = [x.data.copy() for x in source]
    save.run()
    for x in source:
        x.data = np.zeros(x.shape, np.float32)
    for c, o in zip(copies, originals):
        np.testing.assert_array_equal(c.data, o)
    restore.run()
    for x, o in zip(source, originals):
        np.testing.assert_array_equal(x.data, o)


@pytest.mark.parametrize("on_the_kernel", KERNELS_OFF_AND_ON)
def test_global_norm_is_the_norm_of_all_arrays_as_one_vector_and_follows_zeroing(on_the_kernel):
    rng = np.random.RandomState(3)
    arrays = ndarrays(rng, SHAPES + [(3, 5000)])  # the kernel sums an array in blocks of 4,096
    norm = GlobalNorm(arrays, on_the_kernel)
    assert norm() == pytest.approx(math.sqrt(sum(float((x.data.astype(np.float64) ** 2).sum()) for x in arrays)),
                                   rel=1e-6)
    arrays[1].zero()
    assert norm() == pytest.approx(math.sqrt(sum(float((x.data.astype(np.float64) ** 2).sum())
                                                 for x in arrays if x is not arrays[1])), rel=1e-6)
    assert GlobalNorm([], on_the_kernel)() == 0.0
    assert isinstance(norm._sum_of_squares, SumOfSquares) == on_the_kernel


def test_a_parameter_gradient_read_through_a_graph_survives_its_own_graphs_backward():
    """The bound arrays are a parameter's own: a backward into it is seen by the graph afterwards."""
    rng = np.random.RandomState(4)
    w = nn.Variable.from_numpy_array(rng.randn(4).astype(np.float32), need_grad=True)
    loss = F.sum(w * w)
    norm = GlobalNorm([w.grad])
    w.grad.zero()
    loss.forward()
    loss.backward(clear_buffer=True)
    assert norm() == pytest.approx(2 * np.linalg.norm(w.d), rel=1e-6)


def test_the_graphs_compute_in_float_under_a_half_context():
    half = nn.Context(backend=["cpu:half", "cpu:float"], array_class="CpuCachedArray", device_id="")
    with nn.context_scope(half):
        assert float_context().backend == ["cpu:float"]
    cuda_half = nn.Context(backend=["cudnn:half", "cuda:half", "cpu:float"], array_class="CudaCachedArray",
                           device_id="1")
    with nn.context_scope(cuda_half):
        ctx = float_context()
    assert ctx.backend == ["cudnn:float", "cuda:float", "cpu:float"]
    assert ctx.array_class == "CudaCachedArray" and ctx.device_id == "1"

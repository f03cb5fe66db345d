"""The weighted sums of ops/cpu_sums against nnabla's own composition of the same sum (forward, the gradients of
the inputs and of the coefficients, with and without accumulation), in every coefficient form, and the finite
difference of the coefficients' gradient."""
import nnabla as nn
import nnabla.functions as F
import numpy as np
import pytest

from ops import cpu_kernels, cpu_sums

needs_library = pytest.mark.skipif(not cpu_kernels.available(), reason="make kernels has not run")

N, K = 3, 4
# Odd sizes, and one sample larger than the kernel's blocks of 4096 floats.
SHAPES = [(N, 5, 3, 3), (N, 3, 40, 37)]


def variable(rng, shape):
    v = nn.Variable.from_numpy_array(rng.standard_normal(shape).astype(np.float32))
    v.need_grad = True
    return v


def summands(rng, shape, count):
    """`count` leaves: nnabla asks a function to add to a leaf's gradient, unless it was zeroed (see gradients)."""
    leaves = [variable(rng, shape) for _ in range(count)]
    return leaves, leaves


def composed_weighted_sum(xs, weights):
    """nnabla's own sum_k w_k x_k: weights of K elements shared, or (N, 1, K) one row per sample."""
    rows = F.reshape(weights, (-1, len(xs)))
    total = None
    for k, x in enumerate(xs):
        w = F.broadcast(F.reshape(rows[:, k:k + 1], (rows.shape[0],) + (1,) * (x.ndim - 1)), x.shape)
        total = w * x if total is None else total + w * x
    return total


def composed_scaled_sum(xs, scales):
    total = None
    for x, scale in zip(xs, scales):
        term = x if scale is None else F.broadcast(scale, x.shape) * x
        total = term if total is None else total + term
    return total


def gradients(y, dy, variables, start):
    """y's output and the variables' gradients after a backward from dy; the gradients start at `start` (arrays,
    accumulated into) or, for None, are zeroed so that nnabla asks the functions to overwrite them."""
    for v, s in zip(variables, start):
        if s is None:
            v.grad.zero()
        else:
            v.grad.data[...] = s
    y.forward()
    y.backward(nn.NdArray.from_numpy_array(dy), clear_buffer=False)
    return [y.d.copy()] + [v.g.copy() for v in variables]


def assert_same_sums(ours, theirs, variables, rng):
    dy = rng.standard_normal(ours.shape).astype(np.float32)
    for accumulate in (False, True):
        start = [rng.standard_normal(v.shape) if accumulate else None for v in variables]
        got = gradients(ours, dy, variables, start)
        expected = gradients(theirs, dy, variables, start)
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)


@needs_library
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("weights_shape", [(1, K), (K,), (N, 1, K)])
def test_the_weighted_sum_equals_nnabla_s(shape, weights_shape):
    rng = np.random.default_rng(len(weights_shape) * 10 + shape[2])
    leaves, xs = summands(rng, shape, K)
    weights = variable(rng, weights_shape)
    ours = cpu_sums.weighted_sum(xs, weights)
    assert ours.parent.info.type_name == "CpuWeightedSum"
    assert_same_sums(ours, composed_weighted_sum(xs, weights), leaves + [weights], rng)


@needs_library
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("scaled", [(True, False, True), (False, True), (True,), (False, False)])
def test_the_scaled_sum_equals_nnabla_s(shape, scaled):
    rng = np.random.default_rng(sum(scaled) * 10 + len(scaled) + shape[2])
    leaves, xs = summands(rng, shape, len(scaled))
    # Drop path's scales: 0 for a dropped sample, 1 / (1 - p) for a kept one; and any other value.
    scale_values = [np.array([0.0, 2.0, rng.standard_normal()], np.float32).reshape(N, 1, 1, 1) for _ in scaled]
    scales = [nn.Variable.from_numpy_array(v, need_grad=True) if s else None for v, s in zip(scale_values, scaled)]
    ours = cpu_sums.scaled_sum(xs, scales)
    assert ours.parent.info.type_name == "CpuScaledSum"
    assert_same_sums(ours, composed_scaled_sum(xs, scales), leaves + [s for s in scales if s is not None], rng)


@needs_library
def test_scales_without_gradient_are_read_and_left_alone():
    """Drop path's masks need no gradient: the sum must neither need one nor write one."""
    rng = np.random.default_rng(3)
    leaves, xs = summands(rng, SHAPES[1], 2)
    scales = [nn.Variable.from_numpy_array(np.array([0.0, 2.0, 1.0], np.float32).reshape(N, 1, 1, 1),
                                           need_grad=False) for _ in xs]
    for s in scales:
        s.grad.data[...] = 7.0
    ours = cpu_sums.scaled_sum(xs, scales)
    assert_same_sums(ours, composed_scaled_sum(xs, scales), leaves, rng)
    for s in scales:
        np.testing.assert_array_equal(s.g, 7.0)


@needs_library
@pytest.mark.parametrize("parent", [False, True])
def test_an_array_summed_twice_gets_both_gradients(parent):
    """nnabla asks to overwrite (for an array with a parent), then to add to, the gradient of an array given
    twice: the kernel must handle the two in order."""
    rng = np.random.default_rng(4)
    leaf, other = variable(rng, SHAPES[1]), variable(rng, SHAPES[1])
    x = F.identity(leaf) if parent else leaf
    weights = variable(rng, (1, 3))
    ours = cpu_sums.weighted_sum([x, other, x], weights)
    assert_same_sums(ours, composed_weighted_sum([x, other, x], weights), [leaf, other, weights], rng)


@needs_library
@pytest.mark.parametrize("weights_shape", [(1, K), (N, 1, K)])
def test_the_weights_gradient_is_the_finite_difference_of_the_sum(weights_shape):
    rng = np.random.default_rng(5)
    xs = [variable(rng, SHAPES[1]) for _ in range(K)]
    weights = variable(rng, weights_shape)
    r = rng.standard_normal(SHAPES[1]).astype(np.float32)
    loss = F.sum(cpu_sums.weighted_sum(xs, weights) * nn.Variable.from_numpy_array(r))
    weights.grad.zero()
    loss.forward()
    loss.backward()
    analytic = weights.g.copy()
    base = weights.d.copy()
    numeric = np.zeros_like(base)
    eps = 1e-2
    for index in np.ndindex(base.shape):
        values = []
        for sign in (1, -1):
            shifted = base.copy()
            shifted[index] += sign * eps
            weights.d = shifted
            loss.forward()
            values.append(float(loss.d))
        numeric[index] = (values[0] - values[1]) / (2 * eps)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-3, atol=1e-2)

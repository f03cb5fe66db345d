import nnabla as nn
import numpy as np
import pytest

from ops.operations import OP_NAMES, OpMode, factorized_reduce, operation, relu_conv_bn

SEARCH = OpMode(affine=False, test=False)
EVAL = OpMode(affine=True, test=False)


@pytest.fixture(autouse=True)
def fresh_parameters():
    nn.clear_parameters()
    yield
    nn.clear_parameters()


def run(x_shape, build):
    x = nn.Variable.from_numpy_array(np.random.RandomState(0).randn(*x_shape).astype(np.float32))
    y = build(x)
    if y.parent is not None:  # identity at stride 1 returns its input, which has nothing to compute
        y.forward()
    return y


@pytest.mark.parametrize("op_id", range(len(OP_NAMES)))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [8, 7])
def test_every_op_keeps_channels_and_divides_size_by_stride(op_id, stride, size):
    y = run((2, 6, size, size), lambda x: operation(op_id, x, 6, stride, SEARCH))
    expected = -(-size // stride)  # ceil: padding keeps odd sizes aligned across ops
    assert y.shape == (2, 6, expected, expected)
    assert np.all(np.isfinite(y.d))


def test_zero_op_outputs_zeros_and_identity_passes_through():
    x = np.random.RandomState(1).randn(2, 4, 8, 8).astype(np.float32)
    assert np.all(run(x.shape, lambda v: operation(7, v, 4, 2, SEARCH)).d == 0)
    xv = nn.Variable.from_numpy_array(x)
    assert operation(6, xv, 4, 1, SEARCH) is xv


def test_factorized_reduce_reads_both_pixel_grids():
    # An impulse on an odd pixel is invisible to the even 1x1 stride-2 conv; the shifted path must see it.
    x = np.zeros((1, 2, 8, 8), np.float32)
    x[0, :, 3, 3] = 1.0
    xv = nn.Variable.from_numpy_array(x)
    y = factorized_reduce(xv, 4, EVAL)
    conv1 = [v for k, v in nn.get_parameters().items() if k.startswith("conv_1")][0]
    conv1.d = np.zeros(conv1.shape)
    y.forward()
    assert y.shape == (1, 4, 4, 4)
    assert np.abs(y.d[0, 2:]).max() > 0  # the second half of the channels comes from the shifted path


def test_parameter_counts_of_sep_conv_and_relu_conv_bn():
    run((1, 6, 8, 8), lambda x: operation(2, x, 6, 1, EVAL))
    sep = sum(p.size for p in nn.get_parameters(grad_only=True).values())
    # two blocks of depthwise 3x3 (6*9), pointwise (6*6), BN scale+shift (2*6)
    assert sep == 2 * (6 * 9 + 6 * 6 + 2 * 6)
    nn.clear_parameters()
    run((1, 10, 8, 8), lambda x: relu_conv_bn(x, 6, SEARCH))
    assert sum(p.size for p in nn.get_parameters(grad_only=True).values()) == 10 * 6


def test_frozen_mode_is_per_graph_and_shares_the_weights():
    """A frozen graph computes no weight gradients; a graph built after it (or from it) is unaffected."""
    x = nn.Variable.from_numpy_array(np.random.RandomState(2).randn(2, 4, 8, 8).astype(np.float32))
    frozen = operation(2, x, 4, 1, OpMode(affine=False, test=False, frozen=True))
    full = operation(2, x, 4, 1, SEARCH)
    weights = nn.get_parameters(grad_only=True)
    assert weights and all(w.need_grad for w in weights.values())
    for y, expect_grads in ((frozen, False), (full, True)):
        for w in weights.values():
            w.grad.zero()
        y.forward()
        y.backward(clear_buffer=True)
        assert any(np.any(w.g) for w in weights.values()) == expect_grads
    np.testing.assert_array_equal(frozen.d, full.d)  # the same parameters, read by both graphs


def test_unknown_op_id_is_an_error():
    with pytest.raises(ValueError, match="unknown op id 99"):
        operation(99, nn.Variable((1, 4, 8, 8)), 4, 1, SEARCH)

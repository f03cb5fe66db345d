"""Conv and affine layers start as in PyTorch: weights and biases uniform in +-1/sqrt(fan_in)."""
import math

import nnabla as nn
import numpy as np
import pytest

from models.eval_network import build_train_graph
from models.genotype import load_architecture
from models.search_network import create_alphas, search_network
from ops import cpu_kernels
from ops.operations import OP_NAMES, OPS, OpMode, conv, dense, operation, relu_depthwise_conv
from utils.run.run import seed_everything

MODE = OpMode(affine=True, test=False)


@pytest.fixture(autouse=True)
def fresh_parameters():
    nn.clear_parameters()
    seed_everything(0)
    yield
    nn.clear_parameters()


def assert_uniform_with_bound(values, bound):
    """Uniform on [-b, b]: nothing beyond b, the extremes close to it, std b / sqrt(3), mean 0."""
    values = np.asarray(values, np.float64).ravel()
    assert np.abs(values).max() <= bound * (1 + 1e-6)
    assert np.abs(values).max() > 0.99 * bound
    assert values.std() == pytest.approx(bound / math.sqrt(3), rel=0.03)
    assert abs(values.mean()) < 0.05 * bound


def test_conv_weights_have_torch_bound_from_input_channels_and_kernel():
    x = nn.Variable((1, 48, 8, 8))
    conv(x, 64, 3, MODE)
    assert_uniform_with_bound(nn.get_parameters()["conv/conv/W"].d, 1 / math.sqrt(48 * 9))


def test_depthwise_weights_have_torch_bound_from_the_kernel_area():
    x = nn.Variable((1, 512, 8, 8))
    relu_depthwise_conv(x, 5, 1, 2, 1, MODE, name="dw")
    assert_uniform_with_bound(nn.get_parameters()["dw/depthwise_conv/W"].d, 1 / math.sqrt(25))


def test_affine_weights_and_bias_have_torch_bound_from_the_input_features():
    x = nn.Variable((2, 16, 2, 2))  # 64 features
    dense(x, 3000, MODE)
    params = nn.get_parameters()
    assert_uniform_with_bound(params["affine/affine/W"].d, 1 / math.sqrt(64))
    assert_uniform_with_bound(params["affine/affine/b"].d, 1 / math.sqrt(64))


def test_conv_7x1_1x7_weights_have_torch_bound_from_input_channels_and_kernel_length():
    """quark0's op: Conv2d(C, C, (1, 7)) then Conv2d(C, C, (7, 1)), each with fan_in C * 7 (nnabla's
    default, Glorot, would give sqrt(6 / (C * 7 + C * 7)) = sqrt(3) times that)."""
    operation(OP_NAMES.index("conv_7x1_1x7"), nn.Variable((1, 48, 8, 8)), 48, 1, MODE)
    params = nn.get_parameters()
    for layer in ("conv_1x7", "conv_7x1"):
        assert_uniform_with_bound(params[f"conv_7x1_1x7/{layer}/conv/W"].d, 1 / math.sqrt(48 * 7))


def fan_in(name, shape):
    if name.endswith("/b"):
        return None  # checked with its weight
    if len(shape) == 4:  # convolution (out, in, kh, kw)
        return shape[1] * shape[2] * shape[3]
    if len(shape) == 3:  # depthwise (channels, kh, kw): one input channel per filter
        return shape[1] * shape[2]
    return shape[0]  # affine (in, out)


def assert_every_layer_within_its_bound():
    params = nn.get_parameters()
    layers = 0
    for name, p in params.items():
        if not name.endswith("/W"):
            continue
        bound = 1 / math.sqrt(fan_in(name, p.shape))
        assert np.abs(p.d).max() <= bound * (1 + 1e-6), name
        assert np.abs(p.d).max() > 0.5 * bound, name  # not a smaller initialiser
        bias = params.get(name[:-2] + "/b")
        if bias is not None:
            assert np.abs(bias.d).max() <= bound * (1 + 1e-6), name
        layers += 1
    return layers


def test_every_layer_of_the_search_network_starts_within_torch_bounds():
    alphas = create_alphas(np.random.RandomState(0))
    search_network(nn.Variable((2, 3, 8, 8)), alphas, 10, 4, 3)
    assert assert_every_layer_within_its_bound() > 50


def test_every_layer_of_the_evaluation_network_and_its_auxiliary_head_starts_within_torch_bounds():
    build_train_graph(load_architecture("DARTS_V2"), (2, 3, 16, 16), 10, 4, 3, auxiliary=True, aux_weight=0.4)
    params = nn.get_parameters()
    assert any(name.startswith("aux") or "/aux" in name for name in params), list(params)[-5:]
    assert assert_every_layer_within_its_bound() > 20


# The weighted layers each op builds at stride 1 and 2 (by hand from quark0's operations.py); a stride-2
# skip_connect is FactorizedReduce's two 1x1 convs.
WEIGHTED_LAYERS = {"dil_conv_3x3": (2, 2), "dil_conv_5x5": (2, 2), "sep_conv_3x3": (4, 4), "sep_conv_5x5": (4, 4),
                   "sep_conv_7x7": (4, 4), "conv_7x1_1x7": (2, 2), "max_pool_3x3": (0, 0), "avg_pool_3x3": (0, 0),
                   "skip_connect": (0, 2), "none": (0, 0)}
KERNEL_MODES = [False] + ([True] if cpu_kernels.available() else [])


def test_the_table_of_weighted_layers_names_every_op():
    assert set(WEIGHTED_LAYERS) == set(OP_NAMES)


@pytest.mark.parametrize("kernels", KERNEL_MODES, ids=lambda k: "cpu_kernels" if k else "nnabla")
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("op_id", range(len(OPS)), ids=OP_NAMES)
def test_every_op_starts_within_torch_bounds(op_id, stride, kernels):
    """Every conv of every op, also those outside the search space, at both strides and on both kernels
    (the cpu kernels create their own parameters, on inputs big enough for them)."""
    x = nn.Variable((2, 32, 48, 48))
    assert cpu_kernels.worthwhile(x)
    operation(op_id, x, 32, stride, OpMode(affine=True, test=False, cpu_kernels=kernels))
    assert assert_every_layer_within_its_bound() == WEIGHTED_LAYERS[OP_NAMES[op_id]][stride - 1]

"""Conv and affine layers start as in PyTorch: weights and biases uniform in +-1/sqrt(fan_in)."""
import math

import nnabla as nn
import numpy as np
import pytest

from models.eval_network import build_train_graph
from models.genotype import load_architecture
from models.search_network import create_alphas, search_network
from ops.operations import OpMode, conv, dense, relu_depthwise_conv
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

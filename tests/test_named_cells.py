"""Named cells (DARTS, BANANAS, ASHA200, NASNet, AmoebaNet) and the two ops only NASNet and AmoebaNet use."""
import nnabla as nn
import numpy as np
import pytest

from models.eval_network import eval_network
from models.genotype import NAMED_ARCHITECTURES, load_architecture, parse_genotype_string, to_genotype_string
from models.network import reduction_cells
from ops.operations import OP_NAMES, SEARCH_OPS, OpMode, operation
from utils.training.model_stats import count_parameters

SEP7, CONV7 = OP_NAMES.index("sep_conv_7x7"), OP_NAMES.index("conv_7x1_1x7")
TRAIN = OpMode(affine=True, test=False)


@pytest.fixture(autouse=True)
def fresh_parameters():
    nn.clear_parameters()
    yield
    nn.clear_parameters()


def test_new_ops_take_ids_after_the_search_space():
    assert (SEP7, CONV7) == (8, 9)
    assert SEARCH_OPS == tuple(range(8))


@pytest.mark.parametrize("stride", [1, 2])
def test_new_ops_shapes_and_weights(stride):
    x = nn.Variable((2, 6, 8, 6))
    x.d = np.random.default_rng(0).normal(size=x.shape)
    for op_id in (SEP7, CONV7):
        with nn.parameter_scope(OP_NAMES[op_id]):
            y = operation(op_id, x, 6, stride, TRAIN)
        y.forward()
        # Each conv of conv_7x1_1x7 strides one axis; together they halve both.
        assert y.shape == (2, 6, 8 // stride, 6 // stride)
        assert np.all(np.isfinite(y.d))
    shapes = {name: v.shape for name, v in nn.get_parameters(grad_only=True).items()}
    conv7 = "conv_7x1_1x7/conv_7x1_1x7"
    assert shapes[f"{conv7}/conv_1x7/conv/W"] == (6, 6, 1, 7)
    assert shapes[f"{conv7}/conv_7x1/conv/W"] == (6, 6, 7, 1)
    assert shapes["sep_conv_7x7/sep_conv_7x7/sep0_dw/depthwise_conv/W"] == (6, 7, 7)


def test_conv_7x1_1x7_is_a_1x7_then_a_7x1_convolution():
    """At stride 1 with weights of ones: each output is the sum over a 7x7 window of the ReLU'd input."""
    x = nn.Variable((1, 1, 9, 9))
    x.d = np.random.default_rng(1).normal(size=x.shape)
    y = operation(CONV7, x, 1, 1, TRAIN)
    for name, v in nn.get_parameters(grad_only=True).items():
        v.d = 1.0 if name.endswith("/W") else v.d
    # Undo the training-mode BN: its output is (z - mean) / sqrt(var + eps) with gamma 1, beta 0.
    z = y.parent.inputs[0]
    y.forward()
    padded = np.pad(np.maximum(x.d[0, 0], 0), 3)
    expected = np.array([[padded[i:i + 7, j:j + 7].sum() for j in range(9)] for i in range(9)])
    np.testing.assert_allclose(z.d[0, 0], expected, rtol=1e-5, atol=1e-5)


def test_named_cells_match_their_genotype_strings():
    assert load_architecture("DARTS") == load_architecture("DARTS_V2")
    for name in ("BANANAS", "ASHA200", "NASNet", "AmoebaNet"):
        arch = load_architecture(name)
        assert parse_genotype_string(to_genotype_string(arch)) == arch
    nasnet, amoeba = NAMED_ARCHITECTURES["NASNet"], NAMED_ARCHITECTURES["AmoebaNet"]
    assert sorted(nasnet.normal) == [2, 3, 4, 5, 6]
    assert (nasnet.normal_concat, nasnet.reduction_concat) == ((2, 3, 4, 5, 6), (4, 5, 6))
    assert (amoeba.normal_concat, amoeba.reduction_concat) == ((4, 5, 6), (3, 4, 6))
    assert amoeba.reduction[6] == ((CONV7, 0), (OP_NAMES.index("sep_conv_3x3"), 5))
    assert nasnet.reduction[2][1] == (SEP7, 0)


# quark0's NetworkCIFAR weights written out from its cnn/model.py and cnn/operations.py, per op name.
def op_weights(name, c, stride):
    if name.startswith("sep_conv"):
        k = int(name[-1])
        return 2 * (k * k * c + c * c + 2 * c)
    if name.startswith("dil_conv"):
        k = int(name[-1])
        return k * k * c + c * c + 2 * c
    if name == "conv_7x1_1x7":
        return 7 * c * c + 7 * c * c + 2 * c
    if name == "skip_connect" and stride == 2:
        return 2 * c * (c // 2) + 2 * c  # FactorizedReduce
    return 0  # pools, identity, none


def quark0_weights(arch, c, layers, classes, in_channels):
    """Stem, cells (preprocess0/1 and the ops) and classifier, without the auxiliary head."""
    total = in_channels * 3 * c * 9 + 2 * 3 * c
    c_prev_prev, c_prev, c_curr, reduction_prev = 3 * c, 3 * c, c, False
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        c_curr *= 2 if reduction else 1
        if reduction_prev:
            total += 2 * c_prev_prev * (c_curr // 2) + 2 * c_curr
        else:
            total += c_prev_prev * c_curr + 2 * c_curr
        total += c_prev * c_curr + 2 * c_curr
        cell, concat = arch.cell(reduction)
        for node in cell:
            for op_id, input_node in cell[node]:
                total += op_weights(OP_NAMES[op_id], c_curr, 2 if reduction and input_node < 2 else 1)
        c_prev_prev, c_prev = c_prev, len(concat) * c_curr
        reduction_prev = reduction
    return total + c_prev * classes + classes


def test_the_transcription_gives_the_known_darts_v2_size():
    assert quark0_weights(load_architecture("DARTS_V2"), 36, 20, 10, 3) == 3_349_342


@pytest.mark.parametrize("name", ["DARTS", "BANANAS", "ASHA200", "NASNet", "AmoebaNet"])
def test_named_cells_have_quark0s_weights_at_small_sizes(name):
    arch = load_architecture(name)
    assert reduction_cells(5) == {1, 3}
    x = nn.Variable((1, 1, 8, 8))
    eval_network(x, arch, 10, 4, 5, test=False, auxiliary=True)[0].forward()
    weights = nn.get_parameters(grad_only=True)
    assert count_parameters(weights, exclude_scope="auxiliary_head") == quark0_weights(arch, 4, 5, 10, 1)


@pytest.mark.parametrize("name, expected", [("NASNet", 3_830_950), ("AmoebaNet", 3_145_078)])
def test_nasnet_and_amoebanet_at_the_paper_size(name, expected):
    """C 36, 20 cells on CIFAR-10: the counts quark0's count_parameters_in_MB gives (its 3.83 and 3.15 MB)."""
    arch = load_architecture(name)
    assert quark0_weights(arch, 36, 20, 10, 3) == expected
    eval_network(nn.Variable((1, 3, 32, 32)), arch, 10, 36, 20, test=False, auxiliary=True)
    assert count_parameters(nn.get_parameters(grad_only=True), exclude_scope="auxiliary_head") == expected

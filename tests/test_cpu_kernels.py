"""The multi-threaded cpu kernels against nnabla's own functions, forward and backward, on the shapes,
strides, dilations and paddings of the DARTS ops (and odd sizes, which stride 2 rounds)."""
import os
import subprocess
import sys

import nnabla as nn
import nnabla.functions as F
import numpy as np
import pytest

from ops import blas, cpu_kernels
from ops.operations import OpMode, batch_norm, whole_map_conv
from utils.run.context import uses_cpu_kernels
from utils.training.model_stats import count_macs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

needs_library = pytest.mark.skipif(not cpu_kernels.available(), reason="make kernels has not run")

# (kernel, stride, pad, dilation) of sep_conv 3/5/7 and dil_conv 3/5, each at stride 1 and 2.
CONVOLUTIONS = [(k, s, k // 2, 1) for k in (3, 5, 7) for s in (1, 2)] + [(k, s, k - 1, 2) for k in (3, 5) for s in (1, 2)]


def variable(rng, shape, scale=1.0, shift=0.0):
    v = nn.Variable.from_numpy_array((rng.standard_normal(shape) * scale + shift).astype(np.float32))
    v.need_grad = True
    return v


def forward_backward(y, dy, inputs, accumulated):
    """Runs y with output gradient dy onto inputs whose grads start at `accumulated` (so that
    accumulation is checked too); returns y and the inputs' grads."""
    for v, g in zip(inputs, accumulated):
        v.grad.data[...] = g
    y.forward()
    y.backward(dy, clear_buffer=False)
    return y.d.copy(), [v.g.copy() for v in inputs]


def assert_same_convolution(ours, theirs, x, w, rng):
    """Equal outputs, and equal gradients of x and w whether they start at zero or accumulate."""
    assert ours.shape == theirs.shape
    dy = rng.standard_normal(ours.shape).astype(np.float32)
    accumulated = [rng.standard_normal(x.shape), rng.standard_normal(w.shape)]
    for accumulate in (False, True):
        start = accumulated if accumulate else [np.zeros(x.shape), np.zeros(w.shape)]
        y1, grads1 = forward_backward(ours, nn.NdArray.from_numpy_array(dy), [x, w], start)
        y2, grads2 = forward_backward(theirs, nn.NdArray.from_numpy_array(dy), [x, w], start)
        np.testing.assert_allclose(y1, y2, rtol=1e-5, atol=1e-5)
        for g1, g2 in zip(grads1, grads2):
            np.testing.assert_allclose(g1, g2, rtol=1e-4, atol=1e-4)


@needs_library
@pytest.mark.parametrize("kernel,stride,pad,dilation", CONVOLUTIONS)
@pytest.mark.parametrize("size", [8, 9])
@pytest.mark.parametrize("relu_input", [False, True])
def test_depthwise_convolution_equals_nnabla(kernel, stride, pad, dilation, size, relu_input):
    rng = np.random.default_rng(kernel * 100 + stride * 10 + dilation + size)
    x = variable(rng, (3, 4, size, size))
    w = variable(rng, (4, kernel, kernel))
    ours = cpu_kernels.DepthwiseConvolution(stride, pad, dilation, relu_input)(x, w)
    theirs = F.depthwise_convolution(F.relu(x) if relu_input else x, w, pad=(pad, pad), stride=(stride, stride),
                                     dilation=(dilation, dilation))
    assert_same_convolution(ours, theirs, x, w, rng)


@needs_library
@pytest.mark.parametrize("c_in,c_out,size", [(4, 8, 8), (6, 10, 5), (16, 3, 3), (3, 17, 1)])
@pytest.mark.parametrize("relu_input", [False, True])
def test_pointwise_convolution_equals_nnabla(c_in, c_out, size, relu_input):
    """Channel counts and pixel counts on and off the kernel's blocks of 8."""
    rng = np.random.default_rng(c_in * 100 + c_out + size)
    x = variable(rng, (3, c_in, size, size))
    w = variable(rng, (c_out, c_in, 1, 1))
    ours = cpu_kernels.PointwiseConvolution(relu_input)(x, w)
    theirs = F.convolution(F.relu(x) if relu_input else x, w)
    assert_same_convolution(ours, theirs, x, w, rng)


def batch_norm_pair(rng, affine, shape, shift=0.0, scale=1.0):
    x = variable(rng, shape, scale, shift)
    stats = [nn.Variable.from_numpy_array(a.astype(np.float32)) for a in
             (rng.standard_normal((1, shape[1], 1, 1)), 1 + rng.random((1, shape[1], 1, 1)))]
    affine_params = [variable(rng, (1, shape[1], 1, 1)) for _ in range(2)] if affine else []
    copies = [nn.Variable.from_numpy_array(s.d.copy()) for s in stats]
    ours = cpu_kernels.BatchNormalization(affine, 0.9, 1e-5)(x, *affine_params, *stats)
    beta, gamma = affine_params if affine else (None, None)
    theirs = F.batch_normalization(x, beta, gamma, *copies, batch_stat=True)
    return x, affine_params, stats, copies, ours, theirs


@needs_library
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (2, 6, 8, 8)])
def test_batch_normalization_equals_nnabla_with_running_statistics(affine, shape):
    rng = np.random.default_rng(len(shape) + shape[1] + affine)
    x, affine_params, stats, copies, ours, theirs = batch_norm_pair(rng, affine, shape)
    inputs = [x] + affine_params
    dy = rng.standard_normal(shape).astype(np.float32)
    accumulated = [rng.standard_normal(v.shape) for v in inputs]
    y1, grads1 = forward_backward(ours, nn.NdArray.from_numpy_array(dy), inputs, accumulated)
    y2, grads2 = forward_backward(theirs, nn.NdArray.from_numpy_array(dy), inputs, accumulated)
    np.testing.assert_allclose(y1, y2, rtol=1e-4, atol=1e-5)
    for g1, g2 in zip(grads1, grads2):
        np.testing.assert_allclose(g1, g2, rtol=1e-4, atol=1e-4)
    # Both forwards above updated their own copy of the running statistics once, in the same way.
    for ours_stat, theirs_stat in zip(stats, copies):
        np.testing.assert_allclose(ours_stat.d, theirs_stat.d, rtol=1e-5)


@needs_library
def test_the_running_variance_is_unbiased_and_decays_by_0_9():
    rng = np.random.default_rng(3)
    x, _, (mean, var), _, ours, _ = batch_norm_pair(rng, False, (2, 3, 4, 4))
    before_mean, before_var, values = mean.d.copy(), var.d.copy(), x.d.astype(np.float64)
    ours.forward()
    batch_mean = values.mean(axis=(0, 2, 3), keepdims=True)
    batch_var = values.var(axis=(0, 2, 3), keepdims=True, ddof=1)
    np.testing.assert_allclose(mean.d, 0.9 * before_mean + 0.1 * batch_mean, rtol=1e-5)
    np.testing.assert_allclose(var.d, 0.9 * before_var + 0.1 * batch_var, rtol=1e-5)


@needs_library
def test_batch_statistics_stay_exact_when_the_mean_dwarfs_the_spread():
    """Two passes: mean 5 and std 0.5, where nnabla's one-pass variance loses float precision."""
    rng = np.random.default_rng(4)
    x, _, _, _, ours, _ = batch_norm_pair(rng, False, (64, 4, 16, 16), shift=5.0, scale=0.5)
    ours.forward()
    values = x.d.astype(np.float64)
    exact = (values - values.mean(axis=(0, 2, 3), keepdims=True)) / np.sqrt(values.var(axis=(0, 2, 3), keepdims=True) + 1e-5)
    assert np.abs(ours.d - exact).max() / np.abs(exact).max() < 2e-6


def small_layer_batch_norm(x, mode):
    """ops.operations.batch_norm on x, below the size where the kernel's batch norm takes its threads
    (BN_PARALLEL_MIN_ELEMENTS, 2**17, in cpu_kernels.c), in a parameter scope of its own; returns its output
    and its parameters: beta and gamma (if affine), running mean and variance."""
    assert x.size < 2 ** 17
    nn.clear_parameters()
    y = batch_norm(x, mode)
    parameters = nn.get_parameters(grad_only=False)
    nn.clear_parameters()
    return y, [parameters[f"bn/bn/{name}"] for name in (["beta", "gamma"] if mode.affine else []) + ["mean", "var"]]


@needs_library
def test_a_small_layer_s_batch_norm_is_exact_when_the_mean_dwarfs_the_spread():
    """Below the size threshold too: forward output and running variance against a float64 two-pass
    reference on x = 1000 + N(0, 1), where nnabla's one-pass variance loses float precision."""
    rng = np.random.default_rng(5)
    x = variable(rng, (16, 16, 16, 16), shift=1000.0)
    y, (mean, var) = small_layer_batch_norm(x, OpMode(affine=False, test=False, cpu_kernels=True))
    y.forward()
    values = x.d.astype(np.float64)
    deviations = values - values.mean(axis=(0, 2, 3), keepdims=True)
    exact = deviations / np.sqrt((deviations ** 2).mean(axis=(0, 2, 3), keepdims=True) + 1e-5)
    assert np.abs(y.d - exact).max() / np.abs(exact).max() < 1e-6
    # The running statistics start at mean 0 and variance 1 and take a tenth of the batch's.
    np.testing.assert_allclose(mean.d.ravel(), 0.1 * values.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(var.d.ravel(), 0.9 + 0.1 * values.var(axis=(0, 2, 3), ddof=1), rtol=1e-6)


@needs_library
@pytest.mark.parametrize("affine", [False, True])
def test_a_small_layer_s_batch_norm_equals_nnabla_s_forward_and_backward(affine):
    """The same layer on nnabla's kernel (cpu kernels off) on moderate data, where its one pass is exact
    enough: outputs, gradients (accumulated onto non-zero ones) and running statistics."""
    rng = np.random.default_rng(6 + affine)
    shape = (8, 16, 8, 8)
    x = variable(rng, shape, shift=0.5)
    ours, ours_parameters = small_layer_batch_norm(x, OpMode(affine=affine, test=False, cpu_kernels=True))
    theirs, theirs_parameters = small_layer_batch_norm(x, OpMode(affine=affine, test=False))
    assert kernel_calls(ours, ("CpuBatchNormalization",)) == 1 and kernel_calls(theirs) == 0
    dy = nn.NdArray.from_numpy_array(rng.standard_normal(shape).astype(np.float32))
    accumulated = [rng.standard_normal(v.shape) for v in [x] + ours_parameters[:-2]]
    y1, grads1 = forward_backward(ours, dy, [x] + ours_parameters[:-2], accumulated)
    y2, grads2 = forward_backward(theirs, dy, [x] + theirs_parameters[:-2], accumulated)
    np.testing.assert_allclose(y1, y2, rtol=1e-4, atol=1e-5)
    assert len(grads1) == 1 + 2 * affine
    for g1, g2 in zip(grads1, grads2):
        np.testing.assert_allclose(g1, g2, rtol=1e-4, atol=1e-4)
    for ours_statistic, theirs_statistic in zip(ours_parameters[-2:], theirs_parameters[-2:]):
        np.testing.assert_allclose(ours_statistic.d, theirs_statistic.d, rtol=1e-5, atol=1e-7)


@needs_library
@pytest.mark.parametrize("affine", [False, True])
def test_the_batch_norm_keeps_for_its_backward_only_what_it_reads(affine):
    """Between two other functions, run with the forward pass freeing what no backward pass needs (as every
    step here does): its gradients equal nnabla's. Without scale and shift it declares that it reads its output
    and not its input, so the input is freed; a kernel that read the freed input would fail this."""
    rng = np.random.default_rng(11)
    x = variable(rng, (4, 3, 6, 6))
    params = [variable(rng, (1, 3, 1, 1)) for _ in range(2 * affine)]

    def loss(kernel):
        stats = [nn.Variable.from_numpy_array(a) for a in (np.zeros((1, 3, 1, 1)), np.ones((1, 3, 1, 1)))]
        before = F.mul_scalar(F.sin(x), 2.0)  # an intermediate input, freed unless declared needed
        if kernel:
            y = cpu_kernels.BatchNormalization(affine, 0.9, 1e-5)(before, *params, *stats)
        else:
            y = F.batch_normalization(before, *(params or [None, None]), *stats, batch_stat=True)
        return F.sum(F.tanh(y) * F.constant(1.0, y.shape) * nn.Variable.from_numpy_array(rng.random(y.shape))), before

    grads = []
    for kernel in (True, False):
        rng = np.random.default_rng(3)
        total, before = loss(kernel)
        for v in [x] + params:
            v.grad.zero()
        total.forward(clear_no_need_grad=True)
        total.backward(clear_buffer=True)
        grads.append([v.g.copy() for v in [x] + params])
    for ours, theirs in zip(*grads):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    function = cpu_kernels.BatchNormalization(affine, 0.9, 1e-5)
    assert function.grad_depends_input_data(0, 0) == affine and function.grad_depends_output_data(0, 0) != affine


@needs_library
def test_a_kernel_call_imports_nothing(monkeypatch):
    """nnabla's PythonFunction wrapper imports nnabla.nnabla before nnabla in every call it makes to a kernel
    function; loading the library registers a module under that name, so that no call looks for one (through
    the file system, or through the import lock when the name is marked absent) or loads any module under it."""
    import importlib._bootstrap as bootstrap
    looked_up = []
    find_and_load = bootstrap._find_and_load

    def recording(name, import_):
        looked_up.append(name)
        return find_and_load(name, import_)
    monkeypatch.delitem(sys.modules, "nnabla.nnabla", raising=False)
    monkeypatch.setattr(cpu_kernels, "_library", None)
    cpu_kernels.library()
    x, _, _, _, ours, _ = batch_norm_pair(np.random.default_rng(7), False, (2, 3, 4, 4))
    monkeypatch.setattr(bootstrap, "_find_and_load", recording)
    ours.forward()
    ours.backward(clear_buffer=False)
    assert looked_up == []
    assert [name for name in sys.modules if name.startswith("nnabla.nnabla.")] == []


def test_the_module_nnabla_finds_first_reads_nnabla_and_is_no_package():
    itself = cpu_kernels._NnablaItself("nnabla.nnabla")
    assert itself.context_scope is nn.context_scope and itself.Variable is nn.Variable
    assert not hasattr(itself, "__path__")


@pytest.fixture
def every_layer_on_the_kernels(monkeypatch):
    """The networks here are tiny; below cpu_kernels.MIN_ELEMENTS a layer would keep nnabla's kernel."""
    monkeypatch.setattr(cpu_kernels, "MIN_ELEMENTS", 0)


def kernel_calls(output, kinds=("Cpu",)):
    """How many functions of the graph computing `output` run on ops/cpu_kernels (whose type names start
    with one of `kinds`)."""
    names = []
    output.visit(lambda f: names.append(f.info.type_name))
    return sum(name.startswith(kinds) for name in names)


def gradients_of(loss, params):
    for p in params.values():
        p.grad.zero()
    loss.forward()
    loss.backward()
    return {name: p.g.copy() for name, p in params.items()}


def assert_same_graph_results(make_loss, rng):
    """The loss built on nnabla's kernels and on ours, reading the same parameters (moved off their
    initial values, BN's scale 1 and shift 0 would hide mistakes): equal values and gradients."""
    theirs, ours = make_loss(False), make_loss(True)
    assert kernel_calls(theirs) == 0 and kernel_calls(ours) > 20
    assert count_macs(ours) == count_macs(theirs)
    params = nn.get_parameters(grad_only=True)
    assert sum(name.endswith("depthwise_conv/W") for name in params) >= 8
    for p in params.values():
        p.d = p.d + 0.1 * rng.standard_normal(p.shape)
    expected = gradients_of(theirs, params)
    got = gradients_of(ours, params)
    np.testing.assert_allclose(ours.d, theirs.d, rtol=1e-4)
    for name in params:
        # The batch statistics differ in the last bits (two passes in double against nnabla's one), and
        # the stem's gradient sums every layer's: tolerances relative to the array's largest entry.
        scale = np.abs(expected[name]).max()
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-3, atol=1e-4 * scale, err_msg=name)


@needs_library
def test_the_search_network_on_the_cpu_kernels_equals_it_on_nnabla_s(every_layer_on_the_kernels):
    from models.search_network import create_alphas, search_network, softmax_weights
    nn.clear_parameters()
    nn.random.seed(5)
    rng = np.random.default_rng(5)
    alphas = create_alphas(np.random.RandomState(5))
    x = nn.Variable.from_numpy_array(rng.standard_normal((4, 3, 8, 8)).astype(np.float32))
    labels = nn.Variable.from_numpy_array(rng.integers(0, 10, (4, 1)))

    def loss(cpu_kernels):
        logits = search_network(x, softmax_weights(alphas), 10, 4, 3, cpu_kernels=cpu_kernels)
        return F.mean(F.softmax_cross_entropy(logits, labels))
    assert_same_graph_results(loss, rng)
    nn.clear_parameters()


@needs_library
def test_the_evaluation_network_on_the_cpu_kernels_equals_it_on_nnabla_s(every_layer_on_the_kernels):
    from models.eval_network import build_train_graph
    from models.genotype import load_architecture
    nn.clear_parameters()
    nn.random.seed(5)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    labels = rng.integers(0, 10, (4, 1))

    def loss(cpu_kernels):
        graph = build_train_graph(load_architecture("DARTS_V2"), (4, 3, 8, 8), 10, 6, 3, auxiliary=True,
                                  aux_weight=0.4, cpu_kernels=cpu_kernels)
        graph.x.d, graph.y.d = x, labels
        return graph.loss
    assert_same_graph_results(loss, rng)
    nn.clear_parameters()


@needs_library
@pytest.mark.parametrize("size", [1, 2])
def test_a_convolution_over_the_whole_map_on_the_kernels_equals_nnabla_s(size, every_layer_on_the_kernels):
    """The auxiliary head's conv of its pooled map (2x2 on CIFAR and ImageNet, 1x1 on the digits)."""
    rng = np.random.default_rng(size)
    x = nn.Variable.from_numpy_array(rng.standard_normal((3, 5, size, size)).astype(np.float32), need_grad=True)
    upstream = nn.Variable.from_numpy_array(rng.standard_normal((3, 4, 1, 1)).astype(np.float32))
    results = []
    for on_the_kernels in (False, True):
        nn.clear_parameters()
        nn.random.seed(3)
        y = whole_map_conv(x, 4, OpMode(affine=True, test=False, cpu_kernels=on_the_kernels), "conv2")
        assert kernel_calls(y) == int(on_the_kernels)
        (w,) = nn.get_parameters().values()
        assert w.shape == (4, 5, size, size)
        x.grad.zero()
        loss = F.sum(F.reshape(y, (3, 4, 1, 1)) * upstream)
        loss.forward()
        loss.backward()
        results.append((y.d.reshape(3, 4).copy(), x.g.copy(), w.g.copy()))
    for theirs, ours in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    nn.clear_parameters()


def test_the_kernels_serve_the_cpu_in_float_only(monkeypatch, capsys):
    monkeypatch.setattr(cpu_kernels, "available", lambda: True)
    assert uses_cpu_kernels("cpu", "float", True)
    assert not uses_cpu_kernels("cpu", "float", False)
    assert not uses_cpu_kernels("cudnn", "float", True)
    assert not uses_cpu_kernels("cpu", "half", True)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("absent,remedy", [("library", "make kernels"), ("openblas", "make env")])
def test_without_the_library_or_its_openblas_a_run_says_so_in_one_line_and_uses_nnabla_s_kernels(
        absent, remedy, monkeypatch, capsys):
    if absent == "library":
        monkeypatch.setattr(cpu_kernels, "LIBRARY_PATH", "/nonexistent/_cpu_kernels.so")
    else:
        monkeypatch.setattr(blas, "installed", lambda: False)
    monkeypatch.setattr(cpu_kernels, "_library", None)
    assert not uses_cpu_kernels("cpu", "float", True)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and remedy in out[0]
    with pytest.raises(cpu_kernels.KernelsMissing, match=remedy):
        cpu_kernels.library()


@pytest.mark.parametrize("network", ["search", "evaluation"])
def test_built_first_the_cpu_kernels_create_the_parameters_nnabla_would(network, every_layer_on_the_kernels):
    """Same names, order, shapes, trainability and initial values from the same seed."""
    from models.eval_network import build_train_graph
    from models.genotype import load_architecture
    from models.search_network import create_alphas, search_network, softmax_weights

    def parameters(cpu_kernels):
        nn.clear_parameters()
        nn.random.seed(7)
        x = nn.Variable((2, 3, 8, 8))
        if network == "search":
            search_network(x, softmax_weights(create_alphas(np.random.RandomState(7))), 10, 4, 3,
                           cpu_kernels=cpu_kernels)
        else:
            build_train_graph(load_architecture("DARTS_V2"), (2, 3, 8, 8), 10, 6, 3, auxiliary=True, aux_weight=0.4,
                              cpu_kernels=cpu_kernels)
        built = {name: (p.d.copy(), p.need_grad) for name, p in nn.get_parameters(grad_only=False).items()}
        nn.clear_parameters()
        return built
    theirs, ours = parameters(False), parameters(True)
    assert list(ours) == list(theirs)
    for name, (values, trainable) in theirs.items():
        np.testing.assert_array_equal(ours[name][0], values, err_msg=name)
        assert ours[name][1] == trainable, name


def test_convolutions_below_the_size_threshold_keep_nnabla_s_kernels(monkeypatch):
    from models.search_network import create_alphas, search_network, softmax_weights

    def calls(shape, channels):
        nn.clear_parameters()
        alphas = softmax_weights(create_alphas(np.random.RandomState(0)))
        count = kernel_calls(search_network(nn.Variable(shape), alphas, 10, channels, 3, cpu_kernels=True),
                             ("CpuDepthwise", "CpuPointwise"))
        nn.clear_parameters()
        return count
    monkeypatch.setattr(cpu_kernels, "MIN_ELEMENTS", 2 ** 17)  # a threshold the sizes below are derived from
    assert calls((2, 3, 8, 8), 4) == 0
    # 8 images of 32 x 32 with 16 channels: 2**17 elements in the first cell, fewer after the reductions.
    some = calls((8, 3, 32, 32), 16)
    monkeypatch.setattr(cpu_kernels, "MIN_ELEMENTS", 0)
    assert 0 < some < calls((8, 3, 32, 32), 16)


@pytest.mark.parametrize("told", [{}, {"OMP_WAIT_POLICY": "passive"}, {"GOMP_SPINCOUNT": "1000"}])
def test_the_kernels_load_libgomp_spinning_briefly_unless_the_environment_says_otherwise(told):
    # libgomp reads its settings once, when the library loads it: a fresh process shows what it reads.
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(told)
    code = ("import os, ops.cpu_kernels as k; "
            "before = 'libgomp' in open('/proc/self/maps').read(); k.library(); "
            "print(before, 'libgomp' in open('/proc/self/maps').read(), os.environ.get('OMP_WAIT_POLICY'), "
            "os.environ.get('GOMP_SPINCOUNT'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    expected = told if told else {"GOMP_SPINCOUNT": cpu_kernels.SPIN_ROUNDS}
    assert out == ["False", "True", str(expected.get("OMP_WAIT_POLICY")), str(expected.get("GOMP_SPINCOUNT"))]


@needs_library
@pytest.mark.parametrize("kernel,stride,pad,dilation", CONVOLUTIONS)
@pytest.mark.parametrize("size", [6, 7])
def test_depthwise_then_pointwise_in_one_function_equals_nnabla(kernel, stride, pad, dilation, size):
    """Outputs and the gradients of x and both weights, from zero and accumulated onto given ones."""
    rng = np.random.default_rng(kernel * 100 + stride * 10 + dilation + size)
    x = variable(rng, (3, 4, size, size))
    wd = variable(rng, (4, kernel, kernel))
    wp = variable(rng, (5, 4, 1, 1))
    ours = cpu_kernels.DepthwisePointwise(stride, pad, dilation)(x, wd, wp)
    theirs = F.convolution(F.depthwise_convolution(F.relu(x), wd, pad=(pad, pad), stride=(stride, stride),
                                                   dilation=(dilation, dilation)), wp)
    assert ours.shape == theirs.shape
    dy = nn.NdArray.from_numpy_array(rng.standard_normal(ours.shape).astype(np.float32))
    inputs = [x, wd, wp]
    for accumulate in (False, True):
        start = [rng.standard_normal(v.shape) if accumulate else np.zeros(v.shape) for v in inputs]
        y1, grads1 = forward_backward(ours, dy, inputs, start)
        y2, grads2 = forward_backward(theirs, dy, inputs, start)
        np.testing.assert_allclose(y1, y2, rtol=1e-5, atol=1e-5)
        for g1, g2 in zip(grads1, grads2):
            np.testing.assert_allclose(g1, g2, rtol=1e-4, atol=1e-4)


@needs_library
@pytest.mark.parametrize("wanted", [(True, False, False), (False, True, False), (False, False, True)])
def test_depthwise_then_pointwise_computes_only_the_gradients_wanted(wanted):
    """One input at a time needs a gradient: it gets nnabla's, and the others' gradients stay untouched."""
    rng = np.random.default_rng(17)
    x, wd, wp = variable(rng, (2, 3, 5, 5)), variable(rng, (3, 3, 3)), variable(rng, (4, 3, 1, 1))
    inputs = [x, wd, wp]
    for v, need in zip(inputs, wanted):
        v.need_grad = need
        v.grad.data[...] = 7.0
    ours = cpu_kernels.DepthwisePointwise(1, 1, 1)(x, wd, wp)
    ours.forward()
    ours.backward(clear_buffer=False)
    for v, need in zip(inputs, wanted):
        assert np.any(v.g != 7.0) == need


@needs_library
def test_a_small_depthwise_convolution_after_a_kernel_batch_norm_leaves_the_batch_norm_its_output(monkeypatch):
    """Below the size threshold a conv op's ReLU and depthwise convolution are nnabla's, after a batch norm on the
    kernels, which reads its own output in its backward pass: run freeing every buffer it can, with the freed
    memory reused in between, the gradient equals the one computed keeping every buffer."""
    from ops.operations import relu_depthwise_conv
    monkeypatch.setattr(cpu_kernels, "MIN_ELEMENTS", 2 ** 40)

    def gradient(clear):
        nn.clear_parameters()
        nn.random.seed(4)  # the depthwise weights' initialiser draws from nnabla's generator
        rng = np.random.default_rng(4)
        x = variable(rng, (4, 3, 6, 6))
        mode = OpMode(affine=False, test=False, cpu_kernels=True)
        y = relu_depthwise_conv(batch_norm(F.mul_scalar(F.sin(x), 2.0), mode), 3, 1, 1, 1, mode, "dw")
        loss = F.sum(y * nn.Variable.from_numpy_array(rng.standard_normal(y.shape).astype(np.float32)))
        x.grad.zero()
        loss.forward(clear_no_need_grad=clear)
        reused = [nn.NdArray.from_numpy_array(np.full(x.shape, 1e3, np.float32)) for _ in range(10)]  # freed memory
        loss.backward(clear_buffer=clear)
        del reused
        nn.clear_parameters()
        return x.g.copy()
    np.testing.assert_allclose(gradient(True), gradient(False), rtol=1e-5, atol=1e-6)

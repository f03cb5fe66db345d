"""--type-config half: fp16 passes on cpu, float master weights, dynamic loss scaling."""
import nnabla as nn
import nnabla.functions as F
import numpy as np
import pytest

import darts_search
import darts_train
from tests.helpers import digits_head
from utils.optim.mixed_precision import DynamicLossScale
from utils.optim.solvers import SGD, Adam

HALF = nn.Context(backend=["cpu:half", "cpu:float"], array_class="CpuCachedArray", device_id="")


@pytest.fixture(autouse=True)
def restores_the_context():
    """The scripts set a half context as the default; the tests after these must get float back."""
    before = nn.get_current_context()
    yield
    nn.set_default_context(before)


@pytest.fixture
def half_context():
    nn.set_default_context(HALF)


def linear_problem(loss_scale, factor, x, lr):
    """loss = factor * sum(w * x) with w = 1: the gradient of w is factor * x. Returns (w, loss, optimizer)."""
    w = nn.Variable.from_numpy_array(np.ones(len(x), np.float32), need_grad=True)
    loss = F.sum(w * nn.Variable.from_numpy_array(np.array(x, np.float32))) * factor
    optimizer = SGD({"w": w}, lr=lr, momentum=0.0, weight_decay=0.0, grad_clip=1e9, loss_scale=loss_scale)
    return w, loss, optimizer


# Every number here is exact in fp16 (2**-14 is its smallest normal number), but the gradients
# 2**-28 * X lie below half its smallest subnormal (2**-24), so they round to zero. Each step moves w
# by 2**14 * 2**-28 * X, less than fp16's spacing at 1 (2**-10): only float master weights keep it.
X = 2.0 ** -14 * np.array([1.0, 1.25, 1.5, 1.75])


def tiny_gradient_problem(loss_scale):
    return linear_problem(loss_scale, 2.0 ** -14, X, lr=2.0 ** 14)


def half_step(loss, optimizer):
    optimizer.zero_grad()
    loss.forward()
    loss.backward(optimizer.grad_scale)
    return optimizer.step()


def test_half_precision_really_computes_in_fp16_on_cpu(half_context):
    x = nn.Variable.from_numpy_array(np.full(3, 1.0, np.float32))
    y = x + 1e-4  # 1 + 1e-4 rounds to 1 in fp16 (spacing 1e-3 there), not in float
    y.forward()
    assert y.data.dtype == np.float16
    np.testing.assert_array_equal(y.d, 1.0)


def test_unscaled_fp16_gradients_underflow_and_the_weights_never_move(half_context):
    w, loss, optimizer = tiny_gradient_problem(None)
    assert half_step(loss, optimizer)
    np.testing.assert_array_equal(w.d, 1.0)


def test_loss_scaling_recovers_gradients_below_fp16_range_into_float_weights(half_context):
    w, loss, optimizer = tiny_gradient_problem(DynamicLossScale())
    for _ in range(3):
        assert half_step(loss, optimizer)
    assert w.data.dtype == np.float32
    np.testing.assert_allclose(1.0 - w.d, 3 * 2.0 ** 14 * 2.0 ** -14 * X, rtol=1e-5)


def test_an_overflowing_step_is_skipped_and_halves_the_scale(half_context):
    # Scaled by 2**15 the gradient 10 * 4 reaches 1.3e6, past fp16's largest number (65504).
    scale = DynamicLossScale()
    w, loss, optimizer = linear_problem(scale, 10.0, [1.0, 2.0, 3.0, 4.0], lr=1e-3)
    assert not half_step(loss, optimizer)
    np.testing.assert_array_equal(w.d, 1.0)
    assert scale.scale == 2.0 ** 14 and scale.skipped_steps == 1
    while not half_step(loss, optimizer):
        pass
    assert scale.scale == 2.0 ** 10  # 40 * 2**10 = 40960 fits; 40 * 2**11 does not
    np.testing.assert_allclose(1.0 - w.d, 1e-3 * 10.0 * np.array([1, 2, 3, 4]), rtol=1e-3)


def test_the_scale_doubles_after_an_interval_of_clean_steps_and_round_trips():
    class Solver:
        def scale_grad(self, factor):
            self.factor = factor
    scale = DynamicLossScale(scale=8.0, growth_interval=3)
    solver = Solver()
    assert scale.unscale(solver, 16.0) == 2.0 and solver.factor == 1 / 8
    scale.unscale(solver, 1.0)
    assert scale.scale == 8.0
    scale.unscale(solver, 1.0)
    assert scale.scale == 16.0 and scale.clean_steps == 0
    assert scale.unscale(solver, float("nan")) is None and scale.scale == 8.0
    copy = DynamicLossScale()
    copy.load_state(scale.state())
    assert copy.state() == {"scale": 8.0, "clean_steps": 0, "skipped_steps": 1}


def test_adam_unscales_and_skips_like_sgd(half_context):
    a = nn.Variable.from_numpy_array(np.zeros(3, np.float32), need_grad=True)
    grads = np.array([2.0 ** -20, 1.0, 40000.0])  # exact in fp16
    loss = F.sum(a * nn.Variable.from_numpy_array(grads.astype(np.float32)))
    opt = Adam({"a": a}, lr=0.1, beta1=0.5, beta2=0.999, weight_decay=0.0, loss_scale=DynamicLossScale())
    steps = 0
    while True:
        opt.zero_grad()
        loss.forward()
        loss.backward(opt.grad_scale)
        steps += 1
        if opt.step():
            break
    assert steps > 1  # 40000 * 2**15 overflowed first
    # Adam's first step is lr * g / (|g| + eps).
    np.testing.assert_allclose(a.d, -0.1 * grads / (grads + 1e-8), rtol=1e-4)


# nnabla's cpu convolutions in fp16 are about 100 times slower than in float: the smallest network.
# Batch 32: at 100, the half-precision batch norm of nnabla's kernels overflows a running variance to inf in
# the first epoch (its sum of squares over 100 x 8 x 8 values passes float16's 65504), which the training
# refuses as a divergence.
TRAIN = ["--dataset", "digits", "--num-cells", "2", "--output-filter", "4", "-f", "0", "-b", "32",
         "--epoch", "1", "--model-arch-name", "DARTS_V2", "--auxiliary", "false", "--type-config", "half"]


@pytest.mark.slow
def test_darts_train_in_half_precision_trains_float_weights_and_logs_the_scale(tmp_path, capsys):
    summary = darts_train.main(TRAIN + ["-m", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    line = [s for s in out if s.startswith("epoch 1/1")][0]
    steps = int([s for s in out if s.startswith("train epoch 1/1")][-1].split("step ")[1].split("/")[1].split()[0])
    skipped = int(line.split("loss scale ")[1].split("(")[1].split()[0])
    assert 0 < skipped < steps  # the scale came down from 2**15, and then the weights trained
    assert np.isfinite(summary["final_test_error"])
    assert all(v.data.dtype == np.float32 for v in nn.get_parameters(grad_only=True).values())


@pytest.mark.slow
def test_darts_search_first_order_in_half_precision(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(darts_search, "load_dataset", lambda name, data_dir: digits_head(64))
    darts_search.main(["--dataset", "digits", "--batch-size", "16", "--num-cells", "2", "--output-filter", "4",
                       "--epoch", "1", "--type-config", "half", "-m", str(tmp_path),
                       "--model-arch-name", str(tmp_path / "DARTS_arch.json")])
    out = capsys.readouterr().out
    assert "weights loss scale" in out and "alphas loss scale" in out
    assert (tmp_path / "DARTS_arch.json").exists()


def test_half_precision_recurrent_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        darts_train.main(["--space", "recurrent", "--dataset", "pydoc", "--type-config", "half"])
    assert exit_info.value.code == 2
    assert "--type-config half is for the CNN cells" in capsys.readouterr().err

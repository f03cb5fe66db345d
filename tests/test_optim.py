import math

import nnabla as nn
import numpy as np
import pytest

from utils.training.bilevel import BilevelOptimizer
from utils.training.optim import SGD, Adam, clip_by_global_norm, cosine_lr, global_norm


def variables(*arrays):
    out = {}
    for i, a in enumerate(arrays):
        v = nn.Variable.from_numpy_array(np.array(a, np.float32))
        v.need_grad = True
        out[f"p{i}"] = v
    return out


def torch_sgd(ws, grads_per_step, lrs, momentum, wd):
    """torch.optim.SGD(momentum, weight_decay) written out in numpy."""
    ws = [w.astype(np.float64) for w in ws]
    bufs = [None] * len(ws)
    for grads, lr in zip(grads_per_step, lrs):
        for i, (w, g) in enumerate(zip(ws, grads)):
            d = g + wd * w
            bufs[i] = d if bufs[i] is None else momentum * bufs[i] + d
            ws[i] = w - lr * bufs[i]
    return ws, bufs


def test_sgd_follows_torch_through_learning_rate_changes():
    rng = np.random.RandomState(0)
    init = [rng.randn(3, 2), rng.randn(4)]
    params = variables(*init)
    opt = SGD(params, 0.1, 0.9, 1e-2, grad_clip=1e9)
    grads = [[rng.randn(3, 2), rng.randn(4)] for _ in range(6)]
    lrs = [0.1, 0.1, 0.05, 0.05, 0.01, 0.02]
    for g, lr in zip(grads, lrs):
        opt.set_learning_rate(lr)
        for v, gi in zip(params.values(), g):
            v.g = gi
        opt.step()
    expected, bufs = torch_sgd(init, grads, lrs, 0.9, 1e-2)
    for v, e in zip(params.values(), expected):
        np.testing.assert_allclose(v.d, e, rtol=1e-5, atol=1e-6)
    # The solver's state is lr * torch's buffer, which the virtual step relies on.
    velocity = opt.scaled_velocity()
    for name, b in zip(params, bufs):
        np.testing.assert_allclose(velocity[name].data, lrs[-1] * b, rtol=1e-5, atol=1e-6)


def test_virtual_step_uses_momentum_gradient_and_weight_decay():
    rng = np.random.RandomState(1)
    params = variables(rng.randn(5))
    w = params["p0"]
    opt = SGD(params, 0.05, 0.9, 0.1, grad_clip=1e9)
    w.g = rng.randn(5)
    opt.step()  # leaves a momentum buffer
    buf = opt.scaled_velocity()["p0"].data / 0.05
    grad = rng.randn(5).astype(np.float32)
    w.g = grad
    before = w.d.copy()
    bilevel = BilevelOptimizer((None, None, None), params, params, {}, opt, None)
    bilevel.virtual_step(xi=0.05)
    np.testing.assert_allclose(w.d, before - 0.05 * (0.9 * buf + grad + 0.1 * before), rtol=1e-5, atol=1e-7)


def test_clipping_scales_all_gradients_together_to_the_global_norm():
    params = variables(np.zeros(2), np.zeros(2))
    params["p0"].g = [3.0, 0.0]
    params["p1"].g = [0.0, 4.0]
    assert global_norm(p.grad for p in params.values()) == pytest.approx(5.0)
    assert clip_by_global_norm(params, 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(params["p0"].g, [0.6, 0.0], rtol=1e-5)
    np.testing.assert_allclose(params["p1"].g, [0.0, 0.8], rtol=1e-5)
    clip_by_global_norm(params, 10.0)  # under the limit: untouched
    np.testing.assert_allclose(params["p1"].g, [0.0, 0.8], rtol=1e-5)


def test_adam_applies_l2_weight_decay_to_the_gradient():
    params = variables([1.0])
    opt = Adam(params, 0.1, 0.5, 0.999, weight_decay=1.0)
    params["p0"].g = [0.0]
    opt.step()  # the only gradient is wd * w > 0, so the weight must fall by about lr
    assert params["p0"].d[0] == pytest.approx(0.9, abs=1e-3)


def test_cosine_schedule_ends_and_starts_where_the_spec_says():
    assert cosine_lr(0, 50, 0.025, 0.001) == pytest.approx(0.025)
    assert cosine_lr(25, 50, 0.025, 0.001) == pytest.approx(0.013)
    assert cosine_lr(50, 50, 0.025, 0.001) == pytest.approx(0.001)
    assert cosine_lr(10, 600, 0.025, 0.0) == pytest.approx(0.0125 * (1 + math.cos(math.pi * 10 / 600)))

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
    bilevel = BilevelOptimizer((None, None, None, None), params, params, {}, opt, None)
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


def nnabla_adam(w, grads, lr, beta1, beta2, eps, weight_decay, decoupled=False):
    """nnabla's documented Adam step (bias corrections folded into the step size), in float64 numpy.

    Coupled (L2) weight decay adds wd * w to the gradient, as torch.optim.Adam(weight_decay=...) does;
    decoupled (AdamW) shrinks the weight apart from the moments.
    """
    w = np.array(w, np.float64)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        g = np.array(g, np.float64)
        if not decoupled:
            g = g + weight_decay * w
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        step = lr * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
        w = w - step * m / (np.sqrt(v) + eps) - (lr * weight_decay * w if decoupled else 0.0)
    return w


def test_adam_follows_its_transcription_with_coupled_weight_decay_momentum_and_eps():
    rng = np.random.RandomState(3)
    init = rng.randn(6)
    # Gradients of mixed sign and size, so that beta1's averaging changes the direction of later steps,
    # and some so small that eps (0.05) is a large part of the denominator.
    grads = [rng.randn(6) * scale for scale in (1.0, 0.3, 0.02, 1.5, 0.01)]
    settings = dict(lr=0.1, beta1=0.5, beta2=0.9, eps=0.05, weight_decay=0.3)
    params = variables(init)
    opt = Adam(params, settings["lr"], settings["beta1"], settings["beta2"], settings["weight_decay"],
               eps=settings["eps"])
    for g in grads:
        params["p0"].g = g
        opt.step()
    expected = nnabla_adam(init, grads, **settings)
    np.testing.assert_allclose(params["p0"].d, expected, rtol=1e-5, atol=1e-6)
    # Each of these would be a different optimiser; the tolerance above tells every one of them apart.
    others = {"AdamW": nnabla_adam(init, grads, **settings, decoupled=True),
              "beta1 = 0": nnabla_adam(init, grads, **{**settings, "beta1": 0.0}),
              "eps = 1e-8": nnabla_adam(init, grads, **{**settings, "eps": 1e-8}),
              "no weight decay": nnabla_adam(init, grads, **{**settings, "weight_decay": 0.0})}
    for name, other in others.items():
        assert np.abs(other - expected).max() > 100 * 1e-5, name


def test_cosine_schedule_ends_and_starts_where_the_spec_says():
    assert cosine_lr(0, 50, 0.025, 0.001) == pytest.approx(0.025)
    assert cosine_lr(25, 50, 0.025, 0.001) == pytest.approx(0.013)
    assert cosine_lr(50, 50, 0.025, 0.001) == pytest.approx(0.001)
    assert cosine_lr(10, 600, 0.025, 0.0) == pytest.approx(0.0125 * (1 + math.cos(math.pi * 10 / 600)))

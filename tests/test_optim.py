import math

import nnabla as nn
import numpy as np
import pytest

from helpers import KERNELS_OFF_AND_ON
from ops.cpu_sums import SumOfSquares
from utils.optim.solvers import SGD, Adam, cosine_lr, global_norm
from utils.search.bilevel import BilevelOptimizer


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
    opt = SGD(params, 0.1, 0.9, 0.0, grad_clip=1.0)
    params["p0"].g = [3.0, 0.0]
    params["p1"].g = [0.0, 4.0]
    assert global_norm(p.grad for p in params.values()) == pytest.approx(5.0)
    assert opt.grad_norm() == pytest.approx(5.0)
    assert opt.clip_gradients() == pytest.approx(5.0)
    np.testing.assert_allclose(params["p0"].g, [0.6, 0.0], rtol=1e-5)
    np.testing.assert_allclose(params["p1"].g, [0.0, 0.8], rtol=1e-5)
    opt.grad_clip = 10.0
    assert opt.clip_gradients() == pytest.approx(1.0, rel=1e-5)  # under the limit: untouched
    np.testing.assert_allclose(params["p1"].g, [0.0, 0.8], rtol=1e-5)


@pytest.mark.parametrize("cpu_kernels", KERNELS_OFF_AND_ON)
def test_the_gradient_norm_reads_the_gradients_of_every_step(cpu_kernels):
    """Built once: it must see new values written into the gradient arrays and the solver's zeroing."""
    params = variables(np.zeros((3, 4)), np.zeros(5), np.zeros((2, 1, 3, 3)))
    opt = SGD(params, 0.1, 0.9, 0.0, grad_clip=1.0, cpu_kernels=cpu_kernels)
    assert isinstance(opt.grad_norm._sum_of_squares, SumOfSquares) == cpu_kernels
    rng = np.random.RandomState(4)
    for _ in range(2):
        grads = [rng.randn(*p.shape) for p in params.values()]
        for p, g in zip(params.values(), grads):
            p.g = g
        expected = math.sqrt(sum(float((g.astype(np.float32) ** 2).sum()) for g in grads))
        assert opt.grad_norm() == pytest.approx(expected, rel=1e-5)
    opt.zero_grad()
    assert opt.grad_norm() == 0.0


def torch_adam(w, grads, lr, beta1, beta2, eps, weight_decay, decoupled=False):
    """torch.optim.Adam's step (eps added after the bias corrections), in float64 numpy.

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
        denominator = np.sqrt(v) / math.sqrt(1 - beta2 ** t) + eps
        w = w - lr / (1 - beta1 ** t) * m / denominator - (lr * weight_decay * w if decoupled else 0.0)
    return w


def nnabla_adam(w, grads, lr, beta1, beta2, eps, weight_decay):
    """nnabla's S.Adam (bias corrections folded into the step size, so eps is scaled by sqrt(1 - beta2^t))."""
    w = np.array(w, np.float64)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        g = np.array(g, np.float64) + weight_decay * w
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        w = w - lr * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t) * m / (np.sqrt(v) + eps)
    return w


def run_adam(init, grads, settings):
    params = variables(init)
    opt = Adam(params, settings["lr"], settings["beta1"], settings["beta2"], settings["weight_decay"],
               eps=settings["eps"])
    for g in grads:
        params["p0"].g = g
        opt.step()
    return params["p0"].d, opt


def test_adam_follows_torch_with_coupled_weight_decay_momentum_and_eps():
    rng = np.random.RandomState(3)
    init = rng.randn(6)
    # Gradients of mixed sign and size, so that beta1's averaging changes the direction of later steps,
    # and some so small that eps (0.05) is a large part of the denominator.
    grads = [rng.randn(6) * scale for scale in (1.0, 0.3, 0.02, 1.5, 0.01)]
    settings = dict(lr=0.1, beta1=0.5, beta2=0.9, eps=0.05, weight_decay=0.3)
    result, opt = run_adam(init, grads, settings)
    expected = torch_adam(init, grads, **settings)
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)
    assert all(state.t == len(grads) for state in opt.solver.get_states().values())
    # Each of these would be a different optimiser; the tolerance above tells every one of them apart.
    others = {"AdamW": torch_adam(init, grads, **settings, decoupled=True),
              "nnabla's S.Adam": nnabla_adam(init, grads, **settings),
              "beta1 = 0": torch_adam(init, grads, **{**settings, "beta1": 0.0}),
              "eps = 1e-8": torch_adam(init, grads, **{**settings, "eps": 1e-8}),
              "no weight decay": torch_adam(init, grads, **{**settings, "weight_decay": 0.0})}
    for name, other in others.items():
        assert np.abs(other - expected).max() > 100 * 1e-5, name


def test_adam_matches_torch_for_gradients_from_1e_9_to_1e_1():
    """The DARTS alpha settings; where eps matters (small gradients) nnabla's own Adam is far off."""
    scales = 10.0 ** np.arange(-9, 0)
    rng = np.random.RandomState(5)
    init = rng.randn(len(scales)) * 1e-3
    grads = [scales * rng.choice([-1.0, 1.0], len(scales)) * rng.uniform(0.5, 1.5, len(scales)) for _ in range(4)]
    settings = dict(lr=3e-4, beta1=0.5, beta2=0.999, eps=1e-8, weight_decay=0.0)
    result, _ = run_adam(init, grads, settings)
    step = result - init
    expected_step = torch_adam(init, grads, **settings) - init
    np.testing.assert_allclose(step, expected_step, rtol=2e-3)
    nnabla_step = nnabla_adam(init, grads, **settings) - init
    assert np.abs(nnabla_step - expected_step).max() > 0.1 * np.abs(expected_step).max()


def test_adam_state_round_trips_through_a_checkpoint(tmp_path):
    from utils.run.checkpoint import load_checkpoint, save_checkpoint
    rng = np.random.RandomState(6)
    init = rng.randn(4)
    grads = [rng.randn(4) for _ in range(4)]
    settings = dict(lr=0.1, beta1=0.5, beta2=0.9, eps=1e-3, weight_decay=0.1)
    params = variables(init)
    opt = Adam(params, 0.1, 0.5, 0.9, 0.1, eps=1e-3)
    for g in grads[:2]:
        params["p0"].g = g
        opt.step()
    path = str(tmp_path / "c.npz")
    save_checkpoint(path, params, {"alphas": opt.solver}, {"epoch": 1})
    resumed = variables(np.zeros(4))
    opt2 = Adam(resumed, 0.1, 0.5, 0.9, 0.1, eps=1e-3)
    load_checkpoint(path, resumed, {"alphas": opt2.solver})
    for g in grads[2:]:
        resumed["p0"].g = g
        opt2.step()
    np.testing.assert_allclose(resumed["p0"].d, torch_adam(init, grads, **settings), rtol=1e-5, atol=1e-6)


def test_cosine_schedule_ends_and_starts_where_the_spec_says():
    assert cosine_lr(0, 50, 0.025, 0.001) == pytest.approx(0.025)
    assert cosine_lr(25, 50, 0.025, 0.001) == pytest.approx(0.013)
    assert cosine_lr(50, 50, 0.025, 0.001) == pytest.approx(0.001)
    assert cosine_lr(10, 600, 0.025, 0.0) == pytest.approx(0.0125 * (1 + math.cos(math.pi * 10 / 600)))

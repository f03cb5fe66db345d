"""The bilevel toy problem (DARTS paper Figure 2, the course project's notebook) through BilevelOptimizer's
hypergradient, against gradients and recurrences derived by hand.

L_train(w, a) = (w - a)^2, L_val(w, a) = a w - 2 a + 1. The virtual step is w' = w - xi * 2 (w - a)
= (1 - 2 xi) w + 2 xi a, so dw'/da = 2 xi and

    d/da L_val(w'(a), a) = w' + a * dw'/da - 2 = (1 - 2 xi) w + 4 xi a - 2,

which is w - 2 at xi = 0. With SGD at lr on both, one step of the loop is
    a_{t+1} = a_t - lr * hypergradient(a_t, w_t),  w_{t+1} = w_t - lr * 2 (w_t - a_{t+1}),
whose fixed point needs w = a and (1 + 2 xi) a = 2: a = w = 2 / (1 + 2 xi).
"""
import numpy as np
import pytest

import scripts.bilevel_toy
from utils.search.bilevel_toy import LEARNING_RATE, OPTIMUM, START, XIS, ToyBilevel, trajectory


def analytic_hypergradient(alpha, w, xi):
    return (1 - 2 * xi) * w + 4 * xi * alpha - 2


def limit(xi):
    return 2 / (1 + 2 * xi)


# Points away from the optimum, where the terms of the hypergradient differ (alpha != 0: the finite
# difference's eps is 0.01 / |dL_val/dw'| = 0.01 / |alpha|).
POINTS = [(2.0, -2.0), (0.7, 1.6), (-1.3, 0.4), (3.0, 2.5)]


@pytest.fixture(scope="module")
def notebook_runs():
    """The notebook's loop for its four xi: {xi: (n + 1, 2) array of (alpha, w)}."""
    return {xi: trajectory(xi) for xi in XIS}


@pytest.mark.parametrize("xi", [0.3, 0.5, 0.7, 1.5])
@pytest.mark.parametrize("point", POINTS)
def test_second_order_hypergradient_is_the_analytic_one(point, xi):
    toy = ToyBilevel(xi, start=point)
    gradient = toy.hypergradient()
    # float32 differences of the quadratic L_train (exact for a quadratic up to rounding): ~1e-6 relative.
    assert gradient == pytest.approx(analytic_hypergradient(*point, xi), rel=1e-4, abs=1e-4)
    assert gradient != pytest.approx(analytic_hypergradient(*point, 0.0), abs=0.1)  # it is not first order
    assert toy.point == tuple(float(np.float32(v)) for v in point)  # the unrolled step puts w back


@pytest.mark.parametrize("point", POINTS)
def test_first_order_hypergradient_is_the_unrolled_one_at_xi_zero(point):
    first_order = ToyBilevel(0.0, start=point)
    unrolled = ToyBilevel(0.0, start=point, unrolled=True)
    assert not first_order.unrolled and unrolled.unrolled
    alpha, w = point
    assert first_order.hypergradient() == pytest.approx(w - 2, abs=1e-6)
    assert unrolled.hypergradient() == pytest.approx(w - 2, abs=1e-6)


@pytest.mark.parametrize("xi", XIS)
def test_every_step_of_the_loop_follows_the_hand_derived_recurrence(notebook_runs, xi):
    points = notebook_runs[xi].astype(np.float64)
    alpha, w = points[:-1, 0], points[:-1, 1]
    next_alpha, next_w = points[1:, 0], points[1:, 1]
    np.testing.assert_allclose(next_alpha, alpha - LEARNING_RATE * analytic_hypergradient(alpha, w, xi), atol=2e-6)
    np.testing.assert_allclose(next_w, w - LEARNING_RATE * 2 * (w - next_alpha), atol=2e-6)


def test_the_loop_stops_where_the_notebook_stops(notebook_runs):
    # The step counts bilevel_optimization_example.ipynb prints (tqdm) for xi = 0, 0.3, 0.5, 0.7 with the
    # same start, rates, threshold and float32: the same iteration.
    assert [len(notebook_runs[xi]) - 1 for xi in XIS] == [659, 411, 296, 335]
    for xi in XIS:
        assert tuple(notebook_runs[xi][0]) == START


@pytest.mark.parametrize("xi", XIS)
def test_each_xi_ends_at_its_fixed_point(notebook_runs, xi):
    # The loop stops once a step moves less than 1e-4; the linearised step contracts by about
    # sqrt(det) = sqrt((1 - 4 xi lr)(1 - 2 lr)) ~ 0.98-0.99 a step, so what is left is of order
    # 1e-4 / (1 - 0.99) = 0.01.
    np.testing.assert_allclose(notebook_runs[xi][-1], [limit(xi), limit(xi)], atol=0.02)


def test_first_order_settles_on_the_feasible_set_away_from_the_optimum_and_xi_one_half_reaches_it(notebook_runs):
    distance = {xi: np.linalg.norm(notebook_runs[xi][-1] - np.array(OPTIMUM)) for xi in XIS}
    assert distance[0.0] > 1.3  # (2, 2) is sqrt(2) from (1, 1)
    assert distance[0.5] < 0.02
    assert all(distance[xi] < distance[0.0] / 3 for xi in XIS if xi > 0)


def test_first_order_spirals_into_two_two(notebook_runs):
    """At xi = 0 the alpha gradient is w - 2: alpha rises while w < 2 and falls once w > 2. Around (2, 2) the
    step is linear in (alpha - 2, w - 2) with matrix [[1, -lr], [2 lr, 1 - 2 lr - 2 lr^2]], trace
    2 - 2 lr - 2 lr^2 and determinant 1 - 2 lr; at lr = 0.01, trace^2 < 4 det, so its eigenvalues are complex
    of modulus sqrt(0.98): the point circles (2, 2) inwards, overshooting 2 in both coordinates."""
    lr = LEARNING_RATE
    assert (2 - 2 * lr - 2 * lr ** 2) ** 2 < 4 * (1 - 2 * lr)
    points = notebook_runs[0.0]
    rises = np.diff(points[:, 0]) > 0
    np.testing.assert_array_equal(rises, points[:-1, 1] < 2)
    assert points[:, 0].max() > 3.0 and points[:, 1].max() > 2.5  # the notebook's loop out to (3.3, 2.8)


def test_optimum_is_not_a_fixed_point_of_first_order_but_is_one_at_xi_one_half():
    for xi, moves in ((0.0, True), (0.5, False)):
        toy = ToyBilevel(xi, start=OPTIMUM)
        toy.step()
        assert (np.abs(np.array(toy.point) - OPTIMUM).max() > 1e-3) == moves, xi


def test_script_writes_its_picture_and_reports_each_xi(tmp_path, capsys):
    out = tmp_path / "toy.png"
    trajectories = scripts.bilevel_toy.main(["-o", str(out), "--xi", "0", "0.5"])
    assert out.stat().st_size > 20000
    assert [xi for xi, _ in trajectories] == [0.0, 0.5]
    printed = capsys.readouterr().out
    for xi, points in trajectories:
        assert f"xi = {xi:g}: {len(points) - 1} steps, ends at alpha = {points[-1][0]:.4f}" in printed


def test_script_refuses_a_negative_xi(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        scripts.bilevel_toy.main(["-o", str(tmp_path / "toy.png"), "--xi", "-0.1"])
    assert exit_info.value.code == 2

"""The differentiable top-k masks against a float64 numpy transcription and central finite differences."""
import functools

import nnabla as nn
import nnabla.functions as F
import numpy as np
import pytest

from models.genotype import EDGES, NODES
from ops.topk import (EDGES_PER_NODE, TopKError, check_topk_settings, topk_mask, topk_transform,
                      topk_transform_cell)


def sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def reference_topk(x, k, temperature):
    """sigmoid(T * (x + tau)) per row with sum = k, tau by bisection in float64 (0.5 at T = 0)."""
    x = np.asarray(x, dtype=np.float64)
    if temperature == 0:
        return np.full_like(x, 0.5)
    lo = -x.max(axis=1, keepdims=True) - 10.0 * max(1.0, 1.0 / temperature)
    hi = -x.min(axis=1, keepdims=True) + 10.0 * max(1.0, 1.0 / temperature)
    for _ in range(200):
        mid = (lo + hi) / 2
        below = sigmoid(temperature * (x + mid)).sum(axis=1, keepdims=True) < k
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return sigmoid(temperature * (x + (lo + hi) / 2))


def temperature_variable(value):
    t = nn.Variable((1,), need_grad=False)
    t.d = value
    return t


class MaskGraph:
    """topk_mask built once; `run` writes new values and returns the mask and d(sum g*p)/dx."""
    def __init__(self, shape, k, grad="exact"):
        self.x = nn.Variable(shape, need_grad=True)
        self.t = nn.Variable((1,), need_grad=False)
        self.g = nn.Variable(shape, need_grad=False)
        self.p = topk_mask(self.x, k, self.t, grad)
        self.loss = F.sum(self.p * self.g)

    def run(self, x, temperature, g=None):
        self.x.d = x
        self.t.d = temperature
        self.g.d = np.zeros(self.x.shape) if g is None else g
        self.loss.forward()
        self.x.grad.zero()
        self.loss.backward()
        return self.p.d.copy(), self.x.g.copy()

    def jacobian(self, x, temperature):
        """J[i, j] = dp_i / dx_j over the flattened input, one backward pass per output."""
        size = int(np.prod(self.x.shape))
        rows = []
        for i in range(size):
            g = np.zeros(size)
            g[i] = 1.0
            rows.append(self.run(x, temperature, g.reshape(self.x.shape))[1].ravel())
        return np.array(rows)


def extreme_inputs():
    rng = np.random.RandomState(0)
    return {
        "spread": rng.uniform(-50, 50, (3, 8)),
        "ties": np.array([[3, 3, 3, 1, 1, 0, 0, 0], [50, 50, -50, -50, 0, 0, 0, 0],
                          [7, 7, 7, 7, 7, 7, 7, 7]], dtype=np.float64),
        "small": rng.randn(3, 8) * 1e-3,
    }


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("temperature", [0.01, 1.0, 200.0, 1000.0])
def test_masks_sum_to_k_and_match_the_reference(k, temperature):
    graph = MaskGraph((3, 8), k)
    for name, x in extreme_inputs().items():
        p, _ = graph.run(x, temperature)
        assert np.all(np.isfinite(p)), name
        assert np.all((p >= 0) & (p <= 1)), name
        # float32 resolves T * x + s to ~6e-8 * T * 50 = 3e-3 at T = 1000, which moves a sigmoid by
        # at most a quarter of that: 1e-3 per entry covers it.
        np.testing.assert_allclose(p.sum(axis=1), k, atol=1e-3, err_msg=name)
        np.testing.assert_allclose(p, reference_topk(x, k, temperature), atol=1e-3, err_msg=name)
        # A larger input never gets a smaller mask.
        order = np.argsort(x, axis=1, kind="stable")
        assert np.all(np.diff(np.take_along_axis(p, order, axis=1), axis=1) >= -1e-6), name


def test_ties_share_the_mask():
    graph = MaskGraph((1, 6), 2)
    p, _ = graph.run(np.array([[5.0, 5.0, 5.0, -5.0, -5.0, -5.0]]), 200.0)
    np.testing.assert_allclose(p, [[2 / 3] * 3 + [0.0] * 3], atol=1e-4)


def test_low_temperature_spreads_the_mask_evenly():
    # As T -> 0 the mask tends to k / n, which the seed's bracket cannot reach below T = 0.2.
    graph = MaskGraph((1, 8), 1)
    p, _ = graph.run(np.linspace(-1, 1, 8)[None], 1e-4)
    np.testing.assert_allclose(p, 1 / 8, atol=1e-4)


def test_the_static_graph_follows_new_inputs_and_temperatures():
    graph = MaskGraph((2, 5), 2)
    rng = np.random.RandomState(1)
    for temperature in (1.0, 7.0, 0.3):
        x = rng.randn(2, 5) * 3
        p, _ = graph.run(x, temperature)
        np.testing.assert_allclose(p, reference_topk(x, 2, temperature), atol=1e-5)


def jacobian_inputs(temperature):
    # T * x spread over a few units: the sigmoids are off their flat tails, so sigma' is not vanishing.
    rng = np.random.RandomState(2)
    return 0.7 + rng.randn(2, 6) * 1.5 / temperature


def finite_difference_jacobian(x, k, temperature):
    # float64 with a step of 1e-5 in T * x: truncation (~1e-10) and rounding (~1e-11) are negligible.
    step = 1e-5 / temperature
    columns = []
    for j in range(x.size):
        shift = np.zeros(x.size)
        shift[j] = step
        shift = shift.reshape(x.shape)
        columns.append(((reference_topk(x + shift, k, temperature)
                         - reference_topk(x - shift, k, temperature)) / (2 * step)).ravel())
    return np.array(columns).T


def exact_jacobian(x, k, temperature):
    """T * v_i * (delta_ij - v_j / sum v), block diagonal over the rows."""
    p = reference_topk(x, k, temperature)
    v = p * (1 - p)
    n = x.shape[1]
    jacobian = np.zeros((x.size, x.size))
    for row in range(x.shape[0]):
        block = temperature * v[row][:, None] * (np.eye(n) - v[row][None, :] / v[row].sum())
        jacobian[row * n:(row + 1) * n, row * n:(row + 1) * n] = block
    return jacobian


@pytest.mark.parametrize("temperature", [1.0, 10.0, 200.0])
def test_exact_jacobian_matches_central_differences(temperature):
    x = jacobian_inputs(temperature)
    numeric = finite_difference_jacobian(x, 2, temperature)
    assert np.abs(numeric).max() > 0.05 * temperature  # far from vanishing
    np.testing.assert_allclose(exact_jacobian(x, 2, temperature), numeric,
                               atol=1e-6 * temperature)
    # float32: z = T * x + s carries ~1e-7 relative error, and so does every entry of T * v.
    analytic = MaskGraph(x.shape, 2).jacobian(x, temperature)
    np.testing.assert_allclose(analytic, numeric, atol=1e-4 * temperature)


@pytest.mark.parametrize("temperature", [1.0, 10.0, 200.0])
def test_seed_gradient_is_the_exact_one_divided_by_t(temperature):
    x = jacobian_inputs(temperature)
    g = np.random.RandomState(3).randn(*x.shape)
    p_exact, exact = MaskGraph(x.shape, 2, "exact").run(x, temperature, g)
    p_seed, seed = MaskGraph(x.shape, 2, "seed").run(x, temperature, g)
    np.testing.assert_array_equal(p_seed, p_exact)
    assert np.abs(exact).max() > 1e-2 * temperature
    np.testing.assert_allclose(seed * temperature, exact, rtol=1e-5, atol=1e-6 * temperature)


def test_zero_temperature_gives_half_and_only_the_seed_gradient():
    x = np.random.RandomState(4).randn(2, 8)
    g = np.random.RandomState(5).randn(2, 8)
    p, exact = MaskGraph(x.shape, 2, "exact").run(x, 0.0, g)
    np.testing.assert_array_equal(p, 0.5)
    np.testing.assert_array_equal(exact, 0.0)
    _, seed = MaskGraph(x.shape, 2, "seed").run(x, 0.0, g)
    # v = sigma'(0) = 1/4 everywhere: v * (g - mean(g)).
    np.testing.assert_allclose(seed, 0.25 * (g - g.mean(axis=1, keepdims=True)), atol=1e-6)


def test_saturated_rows_have_finite_zero_gradients():
    x = np.array([[50.0, 50.0, -50.0, -50.0], [50.0, -50.0, -50.0, 10.0]])
    graph = MaskGraph(x.shape, 2)
    p, grad = graph.run(x, 1000.0, np.random.RandomState(6).randn(*x.shape))
    np.testing.assert_allclose(p, [[1, 1, 0, 0], [1, 0, 0, 1]], atol=1e-6)
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, 0.0, atol=1e-3)


def test_temperature_of_shape_scalar_is_accepted():
    x = nn.Variable.from_numpy_array(np.array([[1.0, 2.0, 3.0]], dtype=np.float32))
    t = nn.Variable((), need_grad=False)
    t.d = 2.0
    p = topk_mask(x, 1, t)
    p.forward()
    np.testing.assert_allclose(p.d, reference_topk(x.d, 1, 2.0), atol=1e-5)


@pytest.mark.parametrize("k", [0, 4, 5, -1, 1.5, True])
def test_bad_k_is_an_error(k):
    with pytest.raises(TopKError, match="k"):
        topk_mask(nn.Variable((2, 4)), k, temperature_variable(1.0))


def test_bad_input_shape_and_gradient_are_errors():
    with pytest.raises(TopKError, match="shape"):
        topk_mask(nn.Variable((8,)), 1, temperature_variable(1.0))
    with pytest.raises(TopKError, match="gradient"):
        topk_mask(nn.Variable((2, 4)), 1, temperature_variable(1.0), grad="approx")


@pytest.mark.parametrize("k_edge, k_node, option, grad, message", [
    (1, 0, 1, "exact", "option 1"),         # the seed's NameError (Q-D8)
    (0, 0, 2, "exact", "nothing"),
    (8, 2, 1, "exact", "k_edge"),           # 8 ops per edge
    (1, 16, 1, "exact", "k_node"),          # node 2 has 2 x 8 candidates
    (-1, 2, 1, "exact", "negative"),
    (1, -2, 2, "exact", "negative"),
    (1, 2, 3, "exact", "option"),
    (1, 2, 1, "fast", "gradient"),
    (1, 2.0, 1, "exact", "int"),
])
def test_incompatible_settings_are_one_line_errors(k_edge, k_node, option, grad, message):
    with pytest.raises(TopKError, match=message) as error:
        check_topk_settings(k_edge, k_node, option, grad)
    assert "\n" not in str(error.value)
    assert isinstance(error.value, ValueError)


@pytest.mark.parametrize("k_edge, k_node, option", [(1, 2, 1), (0, 2, 1), (1, 15, 1), (1, 0, 2),
                                                    (0, 2, 2), (7, 2, 2)])
def test_usable_settings_pass(k_edge, k_node, option):
    check_topk_settings(k_edge, k_node, option)


def test_edges_per_node_follow_the_alpha_rows():
    rows = [sum(1 for _, node in EDGES if node == n) for n in NODES]
    assert tuple(rows) == EDGES_PER_NODE
    assert [node for _, node in EDGES] == sorted(node for _, node in EDGES)


def softmax(alpha):
    e = np.exp(alpha - alpha.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def reference_transform(w, k_edge, k_node, temperature, option, just_topk):
    """S-H H3 for one node's block, in float64."""
    def node_topk(x):
        return reference_topk(x.reshape(1, -1), k_node, temperature).reshape(x.shape)
    p_edge = reference_topk(w, k_edge, temperature) if k_edge else None
    if option == 1:
        mask = node_topk(w) * (1.0 if p_edge is None else p_edge)
    else:
        mask = node_topk(w if p_edge is None else p_edge) if k_node else p_edge
    return mask if just_topk else w * mask


def reference_transform_cell(alpha, *settings):
    w = softmax(alpha)
    out, start = [], 0
    for n_edges in EDGES_PER_NODE:
        out.append(reference_transform(w[start:start + n_edges], *settings))
        start += n_edges
    return np.concatenate(out)


SETTINGS = [  # (k_edge, k_node, option, just_topk)
    (1, 2, 1, False), (1, 2, 1, True), (0, 2, 1, False), (2, 3, 1, False),
    (1, 2, 2, False), (1, 2, 2, True), (0, 2, 2, False), (1, 0, 2, False),
]
TEMPERATURE = 5.0


class CellGraph:
    def __init__(self, k_edge, k_node, option, just_topk, per_node=False):
        self.alpha = nn.Variable((14, 8), need_grad=True)
        self.t = temperature_variable(TEMPERATURE)
        self.g = nn.Variable((14, 8), need_grad=False)
        w = F.softmax(self.alpha, axis=1)
        if per_node:
            blocks, start = [], 0
            for n_edges in EDGES_PER_NODE:
                blocks.append(topk_transform(w[start:start + n_edges], k_edge, k_node, self.t,
                                             option, just_topk))
                start += n_edges
            self.out = F.concatenate(*blocks, axis=0)
        else:
            self.out = topk_transform_cell(w, k_edge, k_node, self.t, option, just_topk)
        self.loss = F.sum(self.out * self.g)

    def run(self, alpha, g):
        self.alpha.d, self.g.d = alpha, g
        self.t.d = TEMPERATURE
        self.loss.forward()
        self.alpha.grad.zero()
        self.loss.backward()
        return self.out.d.copy(), self.alpha.g.copy()


@functools.lru_cache(maxsize=None)
def cell_graph(*settings, per_node=False):
    """Graphs hold no parameters, so one per setting serves every test (building one takes a while)."""
    return CellGraph(*settings, per_node=per_node)


@pytest.mark.parametrize("settings", SETTINGS)
def test_cell_transform_matches_the_formula(settings):
    rng = np.random.RandomState(7)
    alpha = rng.randn(14, 8)
    out, _ = cell_graph(*settings).run(alpha, rng.randn(14, 8))
    expected = reference_transform_cell(alpha, *settings[:2], TEMPERATURE, *settings[2:])
    np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("settings", [SETTINGS[0], SETTINGS[4]])
def test_padded_cell_transform_equals_the_per_node_transform(settings):
    rng = np.random.RandomState(9)
    alpha, g = rng.randn(14, 8), rng.randn(14, 8)
    out, grad = cell_graph(*settings).run(alpha, g)
    per_node_out, per_node_grad = cell_graph(*settings, per_node=True).run(alpha, g)
    np.testing.assert_allclose(per_node_out, out, atol=1e-6)
    np.testing.assert_allclose(per_node_grad, grad, atol=1e-5)


@pytest.mark.parametrize("settings", [SETTINGS[0], SETTINGS[4]])
def test_cell_transform_gradient_matches_central_differences(settings):
    rng = np.random.RandomState(8)
    alpha, g = rng.randn(14, 8), rng.randn(14, 8)
    _, grad = cell_graph(*settings).run(alpha, g)

    def objective(a):
        return np.sum(g * reference_transform_cell(a, *settings[:2], TEMPERATURE, *settings[2:]))
    step = 1e-5
    for direction in rng.randn(3, 14, 8):
        numeric = (objective(alpha + step * direction) - objective(alpha - step * direction)) / (2 * step)
        analytic = np.sum(grad * direction)
        assert abs(numeric) > 1e-2
        assert abs(analytic - numeric) <= 1e-4 * max(1.0, abs(numeric))


def test_cell_transform_rejects_a_wrong_shape():
    with pytest.raises(TopKError, match="shape"):
        topk_transform_cell(nn.Variable((14, 7)), 1, 2, temperature_variable(1.0))

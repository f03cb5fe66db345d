"""The piecewise-linear hypernetwork α(λ̃) and classifier of complexity-controlled DARTS (var_nas I1, I2)."""
import nnabla as nn
import nnabla.functions as F
import numpy as np
import pytest

from models.hypernetwork import (Hypernetwork, LambdaInput, LambdaRangeError, piecewise_linear,
                                 piecewise_linear_classifier)
from models.search_network import alpha_parameters, search_network, softmax_weights, weight_parameters
from ops.operations import OpMode


@pytest.fixture
def hypernet():
    nn.clear_parameters()
    lam = LambdaInput(-8, -4)
    yield Hypernetwork(lam, np.random.RandomState(0))
    nn.clear_parameters()


def knots_of(name, node):
    """The (K, node, 8) knots of one node, read from the registry."""
    cell = "normal" if name == "alpha_normal" else "reduction"
    knots = alpha_parameters()[f"hypernet_{cell}/node{node}/knots"].d
    return knots.reshape(len(knots), node, 8)


def expected_alpha(name, weights):
    """(14, 8) alpha of knot mixture `weights` (one weight per knot), node blocks stacked in row order."""
    return np.concatenate([np.tensordot(weights, knots_of(name, node), axes=1) for node in (2, 3, 4, 5)])


def test_lambda_input_normalises_and_counts_knots():
    lam = LambdaInput(-8, -4)
    assert lam.num_knots == 5
    lam.set_lambda(1e-6)
    assert lam.lam_tilde.d[0] == pytest.approx(0.5)
    lam.set_normalised(1.0)
    assert lam.lam.d[0] == pytest.approx(1e-4)
    assert LambdaInput(-10, -6.5).num_knots == 4
    draws = [LambdaInput(-8, -4).draw(np.random.default_rng(3)) for _ in range(2)]
    assert draws[0] == draws[1] and 1e-8 <= draws[0] <= 1e-4
    with pytest.raises(LambdaRangeError):
        LambdaInput(-4, -4.5)
    with pytest.raises(LambdaRangeError):
        lam.set_normalised(1.5)


def test_knots_are_parameters_under_arch_with_their_init_bound(hypernet):
    names = sorted(alpha_parameters())
    assert len(names) == 2 * 4 * 2  # knots and pivots per node and cell type
    for node in (2, 3, 4, 5):
        knots = knots_of("alpha_normal", node)
        bound = 1 / np.sqrt(node * 8)
        assert knots.shape[0] == 5
        assert np.abs(knots).max() <= bound and np.abs(knots).max() > 0.8 * bound
    np.testing.assert_allclose(alpha_parameters()["hypernet_normal/node2/pivots"].d, np.linspace(0, 1, 5))


def test_output_at_the_knots_is_the_knots_and_linear_between(hypernet):
    for k, pivot in enumerate(np.linspace(0, 1, 5)):
        alphas = hypernet.alphas_at(pivot)
        for name in alphas:
            np.testing.assert_allclose(alphas[name], expected_alpha(name, np.eye(5)[k]), atol=1e-6)
    alphas = hypernet.alphas_at(0.25 + 0.3 * 0.25)  # 30% of the way from knot 1 to knot 2
    np.testing.assert_allclose(alphas["alpha_reduction"], expected_alpha("alpha_reduction", [0, 0.7, 0.3, 0, 0]),
                               atol=1e-6)


def test_the_segment_follows_trained_pivots(hypernet):
    """var_nas takes the segment from the uniform grid (Q-V2); here it comes from the pivots as they are."""
    for name, p in alpha_parameters().items():
        if name.endswith("pivots"):
            p.d = [0.0, 0.1, 0.2, 0.9, 1.0]
    # λ̃ = 0.55 is half way between the pivots 0.2 and 0.9 (knots 2 and 3), not in the grid's segment 2-3 at 0.8.
    alphas = hypernet.alphas_at(0.55)
    np.testing.assert_allclose(alphas["alpha_normal"], expected_alpha("alpha_normal", [0, 0, 0.5, 0.5, 0]),
                               atol=1e-6)


def central_differences(loss, variable, eps=1e-3):
    grad = np.zeros(variable.shape)
    flat = variable.d.copy().reshape(-1)
    for i in range(flat.size):
        values = []
        for sign in (1, -1):
            data = flat.copy()
            data[i] += sign * eps
            variable.d = data.reshape(variable.shape)
            loss.forward()
            values.append(float(loss.d))
        grad.reshape(-1)[i] = (values[0] - values[1]) / (2 * eps)
        variable.d = flat.reshape(variable.shape)
    return grad


@pytest.mark.parametrize("lam_tilde", [0.1, 0.62, 1.0])
def test_gradient_of_knots_and_pivots_matches_central_differences(lam_tilde):
    rng = np.random.default_rng(0)
    knots = nn.Variable.from_numpy_array(rng.normal(size=(4, 3)), need_grad=True)
    pivots = nn.Variable.from_numpy_array(np.array([0.0, 0.3, 0.55, 1.0]), need_grad=True)
    lam = nn.Variable.from_numpy_array(np.array([lam_tilde]))
    target = nn.Variable.from_numpy_array(rng.normal(size=(1, 3)))
    loss = F.sum(piecewise_linear(lam, knots, pivots) * target)
    loss.forward()
    for v in (knots, pivots):
        v.grad.zero()
    loss.backward()
    analytic = {"knots": knots.g.copy(), "pivots": pivots.g.copy()}
    np.testing.assert_allclose(analytic["knots"], central_differences(loss, knots), atol=2e-3)
    np.testing.assert_allclose(analytic["pivots"], central_differences(loss, pivots), atol=2e-3)
    assert np.abs(analytic["pivots"]).sum() > 0.1


def test_alphas_of_a_search_network_train_the_knots(hypernet):
    x = nn.Variable.from_numpy_array(np.random.default_rng(0).normal(size=(2, 1, 8, 8)))
    logits = search_network(x, softmax_weights(hypernet.alphas), 10, channels=2, num_cells=3)
    hypernet.lambda_input.set_normalised(0.3)
    loss = F.sum(logits * logits)
    loss.forward()
    for p in alpha_parameters().values():
        p.grad.zero()
    loss.backward()
    grads = {name: np.abs(p.g).sum() for name, p in alpha_parameters().items()}
    # λ̃ = 0.3 lies between knots 1 and 2: only those get a gradient.
    for cell in ("normal", "reduction"):
        knot_grads = np.abs(alpha_parameters()[f"hypernet_{cell}/node3/knots"].g).sum(axis=1)
        assert knot_grads[1] > 0 and knot_grads[2] > 0 and knot_grads[[0, 3, 4]].sum() == 0
    assert all(g > 0 for g in grads.values())


def test_classifier_is_piecewise_linear_and_replaces_the_final_layer(hypernet):
    lam = hypernet.lambda_input
    pooled = nn.Variable.from_numpy_array(np.random.default_rng(1).normal(size=(3, 6)))
    classifier = piecewise_linear_classifier(lam, np.random.RandomState(2))
    with nn.parameter_scope("net/classifier"):
        logits = classifier(pooled, 4, OpMode(affine=False, test=False))
        frozen_logits = classifier(pooled, 4, OpMode(affine=False, test=False, frozen=True))
    params = weight_parameters()
    w_knots = params["classifier/W/knots"].d.reshape(5, 6, 4)
    b_knots = params["classifier/b/knots"].d
    assert np.abs(w_knots).max() <= 0.5
    lam.set_normalised(0.5)  # knot 2
    logits.forward()
    np.testing.assert_allclose(logits.d, pooled.d @ w_knots[2] + b_knots[2], rtol=1e-5, atol=1e-6)
    lam.set_normalised(0.6)  # 40% of the way from knot 2 to knot 3
    logits.forward()
    w, b = 0.6 * w_knots[2] + 0.4 * w_knots[3], 0.6 * b_knots[2] + 0.4 * b_knots[3]
    np.testing.assert_allclose(logits.d, pooled.d @ w + b, rtol=1e-5, atol=1e-5)

    for p in params.values():
        p.grad.zero()
    F.sum(frozen_logits).forward()
    F.sum(frozen_logits).backward()
    assert all(np.all(p.g == 0) for p in params.values())

    nn.clear_parameters()
    alphas = Hypernetwork(lam, np.random.RandomState(0)).alphas
    search_network(nn.Variable((3, 1, 8, 8)), softmax_weights(alphas), 4, channels=2, num_cells=1, classifier=classifier)
    names = set(weight_parameters())
    assert "classifier/W/knots" in names and not any(name.startswith("classifier/affine") for name in names)

"""Mixing weights with temperature and per-sample Gumbel-softmax sampling (var_nas I4)."""
import nnabla as nn
import nnabla.functions as F
import numpy as np
import pytest

from models.mixing import Mixing, MixingError
from models.search_network import BUILT_OPS, create_alphas, edge_rows, mixed_op, search_network
from ops.operations import OpMode


def alpha_variables(seed=0):
    rng = np.random.default_rng(seed)
    return {"alpha_normal": nn.Variable.from_numpy_array(rng.normal(size=(14, 8)), need_grad=True),
            "alpha_reduction": nn.Variable.from_numpy_array(rng.normal(size=(14, 8)), need_grad=True)}


def softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def stacked(weights):
    """(B, 14, 7), or (1, 14, 7) if shared by the batch, of mixing weights, as the edges read them."""
    rows = edge_rows(weights)
    F.sink(*rows).forward()
    return np.concatenate([row.d.reshape(-1, 1, row.shape[-1]) for row in rows], axis=1)


def test_gumbel_weights_are_the_formula_and_differ_per_sample():
    alphas = alpha_variables()
    mixing = Mixing("gumbel", temperature_start=1.0, temperature_delta=-0.016)
    mixing.set_epoch(49)
    assert mixing.temperature.d.item() == pytest.approx(0.216)
    sampled = mixing.sampled(alphas, batch_size=3)["alpha_normal"]
    assert sampled.shape == (3, 14, 8) and edge_rows(sampled)[0].shape == (3, 1, 7)
    mixing.resample(seed=0, epoch=49, step=5)
    weights = stacked(sampled)
    noise = mixing.noise[0].d
    alpha = alphas["alpha_normal"].d
    log_p = np.log(softmax(alpha))
    expected = softmax((log_p[None] + noise) / 0.216, axis=2)[:, :, :7]
    np.testing.assert_allclose(weights, expected, rtol=1e-4, atol=1e-6)
    assert np.abs(weights[0] - weights[1]).max() > 0.1


def test_gumbel_mean_approaches_the_softmax_as_the_temperature_falls_and_uniform_as_it_rises():
    alphas = alpha_variables(1)
    probabilities = softmax(alphas["alpha_normal"].d)[:, :7]
    means = {}
    for t in (0.02, 50.0):
        mixing = Mixing("gumbel", temperature_start=t)
        rows = mixing.sampled(alphas, batch_size=4000)["alpha_normal"]
        mixing.resample(seed=1, epoch=0, step=0)
        means[t] = stacked(rows).mean(axis=0)
    # 4000 samples: the standard error of a mean of [0, 1] weights is below 0.008.
    np.testing.assert_allclose(means[0.02], probabilities, atol=0.03)
    np.testing.assert_allclose(means[50.0], np.full((14, 7), 1 / 8), atol=0.01)
    assert np.abs(means[50.0] - probabilities).max() > 0.1


def test_noise_depends_only_on_seed_epoch_and_step():
    def noise_after(*calls):
        mixing = Mixing("gumbel")
        mixing.sampled(alpha_variables(), batch_size=2)
        for call in calls:
            mixing.resample(*call)
        return np.stack([v.d.copy() for v in mixing.noise])
    fresh = noise_after((7, 3, 11))
    np.testing.assert_array_equal(fresh, noise_after((7, 0, 0), (7, 3, 12), (7, 3, 11)))
    assert not np.array_equal(fresh, noise_after((7, 3, 12)))
    assert not np.array_equal(fresh, noise_after((7, 4, 11)))
    assert not np.array_equal(fresh, noise_after((8, 3, 11)))


def test_shared_modes_and_deterministic_expected_weights():
    alphas = alpha_variables(2)
    alpha = alphas["alpha_reduction"].d
    softmax_mixing = Mixing("softmax", temperature_start=2.0)
    shared = softmax_mixing.sampled(alphas, 5)["alpha_reduction"]
    assert shared.shape == (14, 8) and edge_rows(shared)[0].shape == (1, 7)
    np.testing.assert_allclose(stacked(shared)[0], softmax(alpha / 2.0)[:, :7], rtol=1e-5)
    naive = Mixing("naive").sampled(alphas, 5)["alpha_reduction"]
    np.testing.assert_allclose(stacked(naive)[0], alpha[:, :7], rtol=1e-6)
    gumbel = Mixing("gumbel", temperature_start=0.3)
    expected = gumbel.expected(alphas)["alpha_reduction"]
    np.testing.assert_allclose(stacked(expected)[0], softmax(alpha)[:, :7], rtol=1e-5)
    assert gumbel.noise == []
    with pytest.raises(MixingError):
        Mixing("hard")
    with pytest.raises(MixingError):
        Mixing("gumbel", temperature_start=1.0, temperature_delta=-0.5).set_epoch(2)


def test_per_sample_mixed_op_applies_each_samples_own_weights():
    nn.clear_parameters()
    rng = np.random.default_rng(3)
    x = nn.Variable.from_numpy_array(rng.normal(size=(3, 4, 6, 6)))
    weights = rng.random((3, 1, len(BUILT_OPS)))
    mode = OpMode(affine=False, test=False)
    with nn.parameter_scope("edge"):
        per_sample = mixed_op(x, nn.Variable.from_numpy_array(weights), 4, 2, mode)
    shared = []
    for b in range(3):
        with nn.parameter_scope("edge"):  # the same weights, the same batch statistics
            shared.append(mixed_op(x, nn.Variable.from_numpy_array(weights[b]), 4, 2, mode))
    F.sink(per_sample, *shared).forward()
    assert per_sample.shape == (3, 4, 3, 3)
    for b in range(3):
        np.testing.assert_allclose(per_sample.d[b], shared[b].d[b], rtol=1e-5, atol=1e-6)
    nn.clear_parameters()


def test_a_search_network_with_gumbel_mixing_trains_the_alphas():
    nn.clear_parameters()
    alphas = create_alphas(np.random.RandomState(0))
    mixing = Mixing("gumbel")
    x = nn.Variable.from_numpy_array(np.random.default_rng(0).normal(size=(2, 1, 8, 8)))
    loss = F.sum(search_network(x, mixing.sampled(alphas, 2), 10, 2, 3) ** 2)
    assert len(mixing.noise) == 2 and mixing.noise[0].shape == (2, 14, 8)
    mixing.resample(0, 0, 0)
    loss.forward()
    for a in alphas.values():
        a.grad.zero()
    loss.backward()
    assert all(np.abs(a.g).sum() > 0 for a in alphas.values())
    nn.clear_parameters()

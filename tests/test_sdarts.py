"""SDARTS (--variant sdarts-rs, --variant sdarts-adv) against numpy transcriptions of the original's code
(xiangning-chen/SmoothDARTS: sota/cnn/model_search.py clip(), attacker/perturb.py, sota/cnn/train_search.py)."""
import nnabla as nn
import numpy as np
import pytest

import darts_search
from models.graph import build_graph, feed, forward_backward
from models.search_network import ALPHA_NAMES, softmax_weights
from utils.search.variant import SearchSetup
from utils.search.variants.sdarts import SdartsAdv, SdartsAdvSettings, SdartsRs, SdartsSettings, clip_rows, pgd_attack

SHAPE = (4, 1, 8, 8)


def original_clip(p):
    """model_search.py's Network.clip(), one row (`line`) at a time."""
    p = p.copy()
    for line in p:
        max_index = line.argmax()
        np.clip(line, 0, 1, out=line)
        if line.sum() == 0.0:
            line[max_index] = 1.0
        line /= line.sum()
    return p


def original_pgd(saved, start, loss, gradient, epsilon, steps):
    """perturb.py's Linf_PGD_alpha after its random start, with linf_sgd.py's Linf_SGD step on -loss."""
    lr = 2 * epsilon / steps
    loss_before = loss(saved)
    params = {n: p.copy() for n, p in start.items()}
    for _ in range(steps):
        grads_of_minus_loss = {n: -g for n, g in gradient(params).items()}
        for n in params:
            params[n] = params[n] - lr * np.sign(grads_of_minus_loss[n])
            diff = np.clip(params[n] - saved[n], -epsilon, epsilon)
            params[n] = original_clip(diff + saved[n])
    if loss_before > loss(params):
        params = {n: p.copy() for n, p in saved.items()}
    return params


def original_epsilon(epoch, epochs, epsilon_alpha=0.3):
    return 0.03 + (epsilon_alpha - 0.03) * epoch / epochs


def simplex_rows(rng, rows=14, ops=8):
    e = np.exp(rng.standard_normal((rows, ops)))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def test_the_projection_is_the_original_s_clip():
    rng = np.random.default_rng(0)
    rows = rng.uniform(-0.5, 1.5, (14, 8)).astype(np.float32)
    rows[3] = -rng.uniform(0.1, 1.0, 8)  # all negative: the argmax of the unclamped row becomes 1
    rows[3, 5] = -0.01
    rows[7] = [1.2, 1.7, -0.1, 0.0, 0.3, 2.0, 0.5, -1.0]  # entries above 1 are clamped before the division
    got = clip_rows(rows)
    np.testing.assert_allclose(got, original_clip(rows), rtol=1e-6)
    assert got[3, 5] == 1.0 and got.sum() == pytest.approx(14.0, abs=1e-5)


def test_the_epsilon_schedule_is_the_original_s():
    settings = SdartsSettings(epsilon_alpha=0.5)
    for epoch in (0, 7, 49):
        assert settings.epsilon(epoch, 50) == pytest.approx(original_epsilon(epoch, 50, 0.5))
    assert SdartsSettings().epsilon(25, 50) == pytest.approx(0.165)


def test_pgd_is_the_original_s_on_a_loss_whose_gradient_it_climbs():
    rng = np.random.default_rng(1)
    clean = {name: simplex_rows(rng) for name in ALPHA_NAMES}
    target = {name: rng.standard_normal((14, 8)).astype(np.float32) for name in ALPHA_NAMES}

    def loss(w):
        return float(sum(((w[n] - target[n]) ** 2).sum() for n in w))

    def gradient(w):
        return {n: 2 * (w[n] - target[n]) for n in w}
    epsilon, steps = 0.2, 7
    start = {n: original_clip(c + rng.uniform(-epsilon, epsilon, c.shape).astype(np.float32)) for n, c in clean.items()}
    got, attacked = pgd_attack(clean, start, loss, gradient, epsilon, steps)
    expected = original_pgd(clean, start, loss, gradient, epsilon, steps)
    assert attacked and loss(got) > loss(clean)
    for name in ALPHA_NAMES:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(got[name].sum(axis=1), 1.0, rtol=1e-5)
        assert got[name].min() >= 0.0


def test_pgd_keeps_the_unperturbed_weights_when_the_attack_lowers_the_loss():
    rng = np.random.default_rng(2)
    clean = {name: simplex_rows(rng) for name in ALPHA_NAMES}

    def loss(w):  # the squared distance to the uniform rows; a misleading gradient walks towards them
        return float(sum(((w[n] - 0.125) ** 2).sum() for n in w))

    def misleading(w):
        return {n: -(w[n] - 0.125) for n in w}
    got, attacked = pgd_attack(clean, clean, loss, misleading, 0.2, 7)
    assert not attacked
    for name in ALPHA_NAMES:
        np.testing.assert_array_equal(got[name], clean[name])


def make_variant(Variant, settings):
    nn.clear_parameters()
    return Variant(settings, SearchSetup(SHAPE, 3, 4, 3, seed=0, rng=np.random.RandomState(0)))


def batch(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(SHAPE).astype(np.float32), rng.integers(0, 3, (SHAPE[0], 1))


def loss_with(variant, weights, test=False):
    """The supernet's loss on batch() mixing with the given numpy weights."""
    fed = {name: nn.Variable.from_numpy_array(w) for name, w in weights.items()}
    graph = build_graph(lambda x: variant.supernet(x, fed, test=test), SHAPE)
    feed(graph, batch())
    graph.loss.forward()
    return float(graph.loss.d)


@pytest.fixture
def rs():
    variant = make_variant(SdartsRs, SdartsSettings())
    yield variant
    nn.clear_parameters()


def test_rs_perturbs_within_epsilon_and_projects_with_the_original_s_clip(rs):
    rs.start_epoch(40, 50)
    epsilon = original_epsilon(40, 50)
    clean = {name: softmax_weights(rs.alphas)[name] for name in ALPHA_NAMES}
    for w in clean.values():
        w.forward()
    noise = rs.noise()
    for name in ALPHA_NAMES:
        assert np.abs(noise[name]).max() <= epsilon and np.abs(noise[name]).max() > 0.8 * epsilon
    rs.before_weight_step(batch())
    for name in ALPHA_NAMES:
        np.testing.assert_allclose(rs.perturbed[name].d, original_clip(clean[name].d + noise[name]), rtol=1e-5)
    assert rs.noise()[ALPHA_NAMES[0]][0, 0] != noise[ALPHA_NAMES[0]][0, 0]  # the next step draws anew


@pytest.mark.parametrize("Variant, Settings", [(SdartsRs, SdartsSettings), (SdartsAdv, SdartsAdvSettings)])
def test_the_weight_step_trains_on_the_perturbed_weights_and_the_alpha_step_on_the_clean_ones(Variant, Settings):
    variant = make_variant(Variant, Settings())
    graphs_train = build_graph(lambda x: variant.network(x, frozen=False, purpose="weights"), SHAPE)
    graphs_val = build_graph(lambda x: variant.network(x, frozen=True, purpose="alphas"), SHAPE)
    variant.start_epoch(9, 10)
    feed(graphs_train, batch())
    variant.before_weight_step(batch())
    perturbed = {name: variant.perturbed[name].d.copy() for name in ALPHA_NAMES}
    clean = variant.clean_weights()
    assert not np.allclose(perturbed[ALPHA_NAMES[0]], clean[ALPHA_NAMES[0]], atol=1e-3)
    forward_backward(graphs_train)
    assert float(graphs_train.loss.d) == pytest.approx(loss_with(variant, perturbed), rel=1e-5)
    assert float(graphs_train.loss.d) != pytest.approx(loss_with(variant, clean), rel=1e-4)
    # The alpha step's loss and gradient are those of softmax(alpha), whatever the weight step was fed.
    feed(graphs_val, batch())
    for alpha in variant.alphas.values():
        alpha.grad.zero()
    forward_backward(graphs_val)
    assert float(graphs_val.loss.d) == pytest.approx(loss_with(variant, clean), rel=1e-5)
    got = [a.g.copy() for a in variant.alphas.values()]
    plain = build_graph(lambda x: variant.supernet(x, softmax_weights(variant.alphas), frozen=True), SHAPE)
    feed(plain, batch())
    for alpha in variant.alphas.values():
        alpha.grad.zero()
    forward_backward(plain)
    for g, alpha in zip(got, variant.alphas.values()):
        np.testing.assert_allclose(g, alpha.g, rtol=1e-5, atol=1e-9)
    # The validation is DARTS's too.
    validation = variant.validation_graph()
    feed(validation, batch())
    validation.loss.forward()
    assert float(validation.loss.d) == pytest.approx(loss_with(variant, clean, test=True), rel=1e-5)
    nn.clear_parameters()


def test_adv_s_attack_raises_the_eval_mode_loss_and_stays_on_the_simplex():
    adv = make_variant(SdartsAdv, SdartsAdvSettings())
    build_graph(lambda x: adv.network(x, frozen=False, purpose="weights"), SHAPE)  # the weights exist
    adv.start_epoch(9, 10)
    clean, noise = adv.clean_weights(), adv.noise()
    random_start = {name: original_clip(clean[name] + noise[name]) for name in ALPHA_NAMES}
    adv.before_weight_step(batch())
    attacked = {name: adv.perturbed[name].d.copy() for name in ALPHA_NAMES}
    assert adv.epoch_values()["Attacks kept"] == 1.0
    assert loss_with(adv, attacked, test=True) > loss_with(adv, random_start, test=True) > \
        loss_with(adv, clean, test=True)
    for name in ALPHA_NAMES:
        np.testing.assert_allclose(attacked[name].sum(axis=1), 1.0, rtol=1e-5)
        assert attacked[name].min() >= 0.0
        assert not np.allclose(attacked[name], random_start[name], atol=1e-3)
    # The same attack as the original's loop on the same network, loss and random start.
    expected = original_pgd(clean, random_start, adv.attack_loss, adv.attack_gradient, adv.epsilon, 7)
    for name in ALPHA_NAMES:
        np.testing.assert_allclose(attacked[name], expected[name], rtol=1e-5, atol=1e-7)
    # The attack's network is in eval mode (the original's model.eval()): batch-norm running statistics (a
    # training-mode pass, last, moves them).
    assert adv.attack_loss(clean) == pytest.approx(loss_with(adv, clean, test=True), rel=1e-5)
    assert adv.attack_loss(clean) != pytest.approx(loss_with(adv, clean, test=False), rel=1e-3)
    nn.clear_parameters()


@pytest.mark.parametrize("argv, message", [
    (["--variant", "sdarts-rs", "--epsilon-alpha", "-0.1"], "--epsilon-alpha"),
    (["--variant", "sdarts-adv", "--pgd-steps", "0"], "--pgd-steps"),
    (["--variant", "sdarts-rs", "--pgd-steps", "3"], "--pgd-steps is a flag of --variant sdarts-adv"),
])
def test_bad_settings_are_one_line_errors(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        darts_search.main(argv + ["-m", str(tmp_path / "never")])
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(lines) == 1 and message in lines[0]

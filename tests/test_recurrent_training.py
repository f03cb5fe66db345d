"""Recurrent search and training: NT-ASGD, the search's alpha gradients against finite differences,
per-space defaults, and both scripts end to end on a tiny corpus written here."""
import json
import os
from urllib.error import URLError

import nnabla as nn
import numpy as np
import pytest

import darts_search
import darts_train
import models.recurrent
import utils.recurrent.search
import utils.recurrent.train
from args import parse_args, search_parser, train_parser
from models.recurrent import (EMBEDDING_NAME, EMBEDDING_SCOPE, SEARCH_EMBEDDING, WEIGHT_SCOPE, build_eval_model,
                              build_search_model, create_alpha)
from models.recurrent_genotype import NAMED_RECURRENT_GENOTYPES, derive_recurrent_genotype, load_recurrent_genotype
from ops import cpu_kernels
from ops.divergence import DivergedError, check_finite
from utils.data.text import SPLITS, Batch
from utils.optim.solvers import SGD, Adam
from utils.pictures.run_pictures import draw_run
from utils.recurrent.language_model import GraphCache, feed, forward_backward, stream_loss
from utils.recurrent.ntasgd import PolyakAverage, should_switch_to_asgd
from utils.recurrent.search_step import RecurrentSearchStep

NTOKEN, NHID, SEQ, BATCH = 7, 4, 3, 4


@pytest.fixture(autouse=True)
def fresh_parameters():
    nn.clear_parameters()
    yield
    nn.clear_parameters()


# ---------------------------------------------------------------- NT-ASGD

def test_polyak_average_is_the_running_mean_of_the_iterates_since_the_start():
    rng = np.random.default_rng(0)
    params = {"a": nn.Variable((3, 2)), "b": nn.Variable((4,))}
    for p in params.values():
        p.d = rng.normal(size=p.shape)
    polyak = PolyakAverage(params)
    seen = {name: [] for name in params}
    for _ in range(7):
        for name, p in params.items():
            p.d = rng.normal(size=p.shape)
            seen[name].append(p.d.copy())
        polyak.update()
    for name in params:
        np.testing.assert_allclose(polyak.average[name], np.mean(seen[name], axis=0), rtol=1e-6)
    current = params["a"].d.copy()
    with polyak.swapped_in():
        np.testing.assert_allclose(params["a"].d, np.mean(seen["a"], axis=0), rtol=1e-6)
    assert np.array_equal(params["a"].d, current)


def test_asgd_trigger_is_the_seeds_condition():
    # Five epochs or fewer: never.
    assert not should_switch_to_asgd(9.0, [5.0, 4.0, 3.0, 2.0, 1.0], nonmono=5)
    # Six: compared with the best of all but the last five, i.e. the first one.
    assert not should_switch_to_asgd(4.9, [5.0, 4.0, 3.0, 2.0, 1.0, 0.5], nonmono=5)
    assert should_switch_to_asgd(5.1, [5.0, 4.0, 3.0, 2.0, 1.0, 0.5], nonmono=5)
    assert should_switch_to_asgd(2.5, [3.0, 2.0, 9.0, 9.0, 9.0], nonmono=3)
    assert not should_switch_to_asgd(1.5, [3.0, 2.0, 9.0, 9.0, 9.0], nonmono=3)


def test_asgd_switches_at_the_first_epoch_meeting_the_condition():
    losses = [6.0, 5.0, 4.5, 4.4, 4.6, 4.3, 4.2, 4.25, 5.2, 4.1]
    earlier, switched = [], None
    for epoch, loss in enumerate(losses):
        if should_switch_to_asgd(loss, earlier, nonmono=2):
            switched = epoch
            break
        earlier.append(loss)
    # By hand: epoch 4 (4.6) against min(6, 5) = 5 no; ...; epoch 8 (5.2) > min(losses[:6]) = 4.3.
    assert switched == 8


# ---------------------------------------------------------------- alpha gradients

# Float32 central differences of a loss near log(7): the step keeps rounding (~1e-7 / 0.02) well below
# the gradient entries. Measured relative errors are given with each test.
STEP = 0.05


def search_setup(second_order, lr, clip, weight_decay=0.0, original_unrolled_step=False):
    rng = np.random.RandomState(0)
    alpha = create_alpha(rng)
    alpha.d = rng.randn(*alpha.shape) * 0.5
    graphs = GraphCache(lambda seq_len: build_search_model(alpha, seq_len, BATCH, NTOKEN, NHID, training=True,
                                                           tar_beta=0.0, rng=rng))
    graphs[SEQ]
    params = nn.get_parameters(grad_only=False)
    weights = {k: v for k, v in nn.get_parameters().items() if k.startswith(WEIGHT_SCOPE + "/")}
    state = {k: v for k, v in params.items() if k.startswith(WEIGHT_SCOPE + "/")}
    for w in weights.values():  # larger than the seed's init, so the cell is far from linear
        w.d = rng.uniform(-0.6, 0.6, w.shape)
    alphas = {"arch/alpha": alpha}
    weight_opt = SGD(weights, lr, 0.0, weight_decay, clip)
    stepper = RecurrentSearchStep(graphs, weights, state, alphas, weight_opt, Adam(alphas, 0.0, 0.9, 0.999, 0.0),
                                  {}, second_order, original_unrolled_step)
    stepper.reset_hidden(BATCH, NHID)
    stepper.train_hidden = rng.randn(BATCH, NHID).astype(np.float32) * 0.5
    stepper.val_hidden = rng.randn(BATCH, NHID).astype(np.float32) * 0.5

    def batch(step):
        tokens = rng.randint(0, NTOKEN, (SEQ + 1, BATCH))
        return Batch(step, 0, SEQ, tokens[:-1], tokens[1:])
    return stepper, alpha, weights, state, batch(0), batch(1)


def nll(stepper, batch, hidden):
    graph = stepper.graphs[len(batch.data)]
    feed(graph, batch.data, batch.target, hidden)
    graph.nll.forward(clear_no_need_grad=True)
    return float(graph.nll.d)


def weight_gradient(stepper, batch, hidden):
    for w in stepper.weights.values():
        w.grad.zero()
    graph = stepper.graphs[len(batch.data)]
    feed(graph, batch.data, batch.target, hidden)
    forward_backward(graph.nll)
    return {k: w.g.copy() for k, w in stepper.weights.items()}


def global_norm(grads):
    return float(np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads.values())))


# The edges 0 -> 1, 1 -> 2 and 7 -> 8 (rows of EDGES), every op column of each.
ROWS = (0, 2, 35)
ENTRIES = [(row, column) for row in ROWS for column in range(5)]


def finite_difference(alpha, objective, step=STEP):
    original = alpha.d.copy()
    grad = np.zeros_like(original)
    for index in ENTRIES:
        values = []
        for sign in (1, -1):
            shifted = original.copy()
            shifted[index] += sign * step
            alpha.d = shifted
            values.append(objective())
        grad[index] = (values[0] - values[1]) / (2 * step)
    alpha.d = original
    return grad


def relative_error(a, b):
    a, b = (np.array([x[index] for index in ENTRIES]) for x in (a, b))
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def restore_state(state, saved):
    for k, v in state.items():
        v.d = saved[k]


def unrolled_objective(stepper, saved, train, val, xi, wd, factor, unmoved=()):
    """L_val(w') with w' = w - xi * (factor * g + wd * w) but for the weights in `unmoved`, g = dL_train/dw at the
    current alpha, w the `saved` network state; the state is put back after each evaluation."""
    def objective():
        g = weight_gradient(stepper, train, stepper.train_hidden)
        for k, w in stepper.weights.items():
            w.d = saved[k] if k in unmoved else saved[k] - xi * (factor * g[k] + wd * saved[k])
        value = nll(stepper, val, stepper.val_hidden)
        restore_state(stepper.network_state, saved)
        return value
    return objective


def test_first_order_alpha_gradient_matches_finite_differences_of_the_validation_nll():
    stepper, alpha, weights, state, train, val = search_setup(second_order=False, lr=1.0, clip=0.25)
    saved = {k: v.d.copy() for k, v in state.items()}
    stepper.alpha_gradient(train, val, {}, {})
    grad = alpha.g.copy()
    restore_state(state, saved)  # batch-norm running statistics moved; the loss does not read them

    numeric = finite_difference(alpha, lambda: nll(stepper, val, stepper.val_hidden))
    assert relative_error(grad, numeric) < 5e-3  # measured 6e-4


def test_second_order_alpha_gradient_with_clipping_matches_finite_differences():
    """The unrolled objective L_val(w - xi * (s * g + wd * w)) with s the clipping factor of g = dL_train/dw,
    held at its value at the current alpha, as the seed's formula treats it."""
    xi, clip, wd = 1.0, 0.8, 0.01
    # Swapped, so that the training gradient (norm ~1.06) is clipped and the direction dL_val/dw' (~0.5) is
    # not: the seed also clips the direction, which no objective's derivative does.
    stepper, alpha, weights, state, val, train = search_setup(second_order=True, lr=xi, clip=clip, weight_decay=wd)
    stepper.train_hidden, stepper.val_hidden = stepper.val_hidden, stepper.train_hidden
    saved = {k: v.d.copy() for k, v in state.items()}
    scale = min(1.0, clip / (global_norm(weight_gradient(stepper, train, stepper.train_hidden)) + 1e-6))
    restore_state(state, saved)
    assert scale < 0.8  # clipping is active, so the factor matters

    stepper.alpha_gradient(train, val, {}, {})
    grad = alpha.g.copy()
    for k, v in state.items():
        assert np.array_equal(v.d, saved[k]), k  # the virtual step is undone exactly

    numeric = finite_difference(alpha, unrolled_objective(stepper, saved, train, val, xi, wd, scale))
    # Measured 1.3e-2: the ReLU op's kinks (1e-3 with ReLU replaced by a smooth op).
    assert relative_error(grad, numeric) < 3e-2

    # Without the factor the objective is another one, which the gradient does not match.
    assert relative_error(grad, finite_difference(alpha, unrolled_objective(stepper, saved, train, val, xi, wd,
                                                                            1.0))) > 0.1  # measured 0.28


# ---------------------------------------------------------------- --original-unrolled-step (the seed's step)

def swapped_second_order_setup(original_unrolled_step, clip=0.8, xi=1.0, wd=0.01):
    """As in the test above: the training gradient (norm ~1.06) is clipped at 0.8, the direction (~0.5) is not."""
    stepper, alpha, weights, state, val, train = search_setup(True, xi, clip, wd, original_unrolled_step)
    stepper.train_hidden, stepper.val_hidden = stepper.val_hidden, stepper.train_hidden
    return stepper, alpha, {k: v.d.copy() for k, v in state.items()}, train, val


def seed_terms(stepper, alpha, saved, train, val, xi, wd, unmoved, step=STEP):
    """(V, H d) of the seed's second-order alpha gradient V - c * xi * H d, by finite differences in alpha.

    w' = w - xi * (s * g + wd * w) but for the `unmoved` weights, s the clipping factor of g = dL_train/dw;
    V = dL_val(w', a)/da at w' held fixed; d = dL_val/dw' clipped to the max norm; H d = the alpha gradient of
    <dL_train(w, a)/dw, d> at d held fixed, over every weight (the seed perturbs them all). With nothing unmoved
    and the direction not clipped it is the gradient of the unrolled objective (measured 4e-4 apart)."""
    clip = stepper.weight_optimizer.grad_clip
    g = weight_gradient(stepper, train, stepper.train_hidden)
    scale = min(1.0, clip / (global_norm(g) + 1e-6))
    virtual = {k: saved[k] if k in unmoved else saved[k] - xi * (scale * g[k] + wd * saved[k]) for k in g}

    def at_virtual_weights():
        for k, w in stepper.weights.items():
            w.d = virtual[k]
        value = nll(stepper, val, stepper.val_hidden)
        restore_state(stepper.network_state, saved)
        return value

    def along_direction():
        value = sum(np.sum(gradient.astype(np.float64) * direction[k])
                    for k, gradient in weight_gradient(stepper, train, stepper.train_hidden).items())
        restore_state(stepper.network_state, saved)
        return float(value)

    restore_state(stepper.network_state, saved)
    at_virtual_weights()
    for k, w in stepper.weights.items():
        w.d = virtual[k]
    direction = weight_gradient(stepper, val, stepper.val_hidden)
    restore_state(stepper.network_state, saved)
    direction_scale = min(1.0, clip / (global_norm(direction) + 1e-6))
    direction = {k: d * direction_scale for k, d in direction.items()}
    return finite_difference(alpha, at_virtual_weights, step), finite_difference(alpha, along_direction, step)


def seed_formula(stepper, alpha, saved, train, val, xi, wd, implicit_factor, unmoved):
    """The seed's alpha gradient with the implicit term scaled by c = implicit_factor."""
    partial, hessian = seed_terms(stepper, alpha, saved, train, val, xi, wd, unmoved)
    return partial - implicit_factor * xi * hessian


def test_original_unrolled_step_leaves_the_tied_embedding_out_of_the_virtual_step():
    """The seed's virtual step moves every weight but the embedding/decoder matrix (its Hessian term still
    perturbs that matrix too, so its gradient is not that of an objective with the matrix fixed)."""
    xi, wd = 1.0, 0.01
    grads = {}
    for original in (False, True):
        nn.clear_parameters()
        stepper, alpha, saved, train, val = swapped_second_order_setup(original)
        stepper.alpha_gradient(train, val, {}, {})
        grads[original] = alpha.g.copy()
        for k, v in stepper.network_state.items():
            assert np.array_equal(v.d, saved[k]), k
    scale = min(1.0, 0.8 / (global_norm(weight_gradient(stepper, train, stepper.train_hidden)) + 1e-6))
    restore_state(stepper.network_state, saved)
    assert scale < 0.8 and SEARCH_EMBEDDING in stepper.weights  # clipped: the seed's uncapped factor is the same
    fixed = seed_formula(stepper, alpha, saved, train, val, xi, wd, scale, unmoved=(SEARCH_EMBEDDING,))
    moved = seed_formula(stepper, alpha, saved, train, val, xi, wd, scale, unmoved=())
    assert relative_error(grads[True], fixed) < 3e-2  # measured 1.0e-2 (the ReLU kinks, as above)
    assert relative_error(grads[True], moved) > 0.2  # measured 0.33
    assert relative_error(grads[False], moved) < 3e-2  # measured 1.4e-2
    assert relative_error(grads[False], fixed) > 0.2  # measured 0.36


def test_original_unrolled_step_scales_the_implicit_term_by_the_uncapped_clipping_factor():
    """Nothing clipped (max norm 3 ||g||): the seed still scales its implicit term by max_norm / (||g|| + 1e-6),
    here 3, where ours (capped) takes 1."""
    xi, wd = 1.0, 0.01
    stepper, alpha, saved, train, val = swapped_second_order_setup(True)
    norm = global_norm(weight_gradient(stepper, train, stepper.train_hidden))
    restore_state(stepper.network_state, saved)
    stepper.weight_optimizer.grad_clip = 3.0 * (norm + 1e-6)
    stepper.alpha_gradient(train, val, {}, {})
    grad = alpha.g.copy()
    restore_state(stepper.network_state, saved)

    # A smaller step than elsewhere: the larger virtual step meets more ReLU kinks (5.5e-2 at STEP, 2.8e-2 here).
    partial, hessian = seed_terms(stepper, alpha, saved, train, val, xi, wd, (SEARCH_EMBEDDING,), step=0.02)
    assert relative_error(grad, partial - 3.0 * xi * hessian) < 6e-2  # measured 2.8e-2
    assert relative_error(grad, partial - xi * hessian) > 0.25  # measured 0.41


def recorded_passes(monkeypatch, original_unrolled_step):
    """The masks fed to each pass of one second-order step, in order: training (virtual step), validation,
    training at w+ and at w-, then the weight step's training pass."""
    import utils.recurrent.search_step as search_step
    fed = []
    plain_feed = search_step.feed

    def recording_feed(graph, data, target, hidden, masks=None):
        fed.append({name: mask.copy() for name, mask in masks.items()})
        plain_feed(graph, data, target, hidden, masks)
    monkeypatch.setattr(search_step, "feed", recording_feed)
    nn.clear_parameters()
    stepper, alpha, weights, state, train, val = search_setup(True, 0.1, 0.25, 0.0, original_unrolled_step)
    stepper.dropouts = {"embedding": 0.3, "input": 0.3, "x": 0.5, "h": 0.4, "output": 0.5}
    stepper.step(train, val, 0.1, seed=5, epoch=2)
    monkeypatch.setattr(search_step, "feed", plain_feed)
    assert len(fed) == 5
    return fed


def test_original_unrolled_step_draws_new_masks_for_every_pass(monkeypatch):
    """The seed draws dropout masks at every forward; here a step's passes on the training batch share theirs
    unless --original-unrolled-step. Either way they come from (seed, epoch, step), so a resume draws the same."""
    training = (0, 2, 3, 4)
    shared = recorded_passes(monkeypatch, False)
    for i in training[1:]:
        for name, mask in shared[0].items():
            assert np.array_equal(shared[i][name], mask), (i, name)

    fresh = recorded_passes(monkeypatch, True)
    for a in training:
        for b in training:
            if a < b:  # each pair of training passes sees another network
                assert not all(np.array_equal(fresh[a][n], fresh[b][n]) for n in fresh[a]), (a, b)
    # The weight step and the validation pass draw as without the flag.
    for i in (1, 4):
        for name, mask in shared[i].items():
            assert np.array_equal(fresh[i][name], mask), (i, name)
    again = recorded_passes(monkeypatch, True)
    assert all(np.array_equal(again[i][n], fresh[i][n]) for i in range(5) for n in fresh[i])


# ---------------------------------------------------------------- flags

def test_recurrent_space_takes_the_seeds_search_recipe_and_the_command_line_wins(tmp_path):
    args = parse_args(search_parser(), ["--space", "recurrent"])
    assert (args.dataset, args.batch_size, args.lr, args.weight_decay, args.grad_clip, args.epoch) == \
        ("ptb", 256, 20.0, 5e-7, 0.25, 50)
    assert (args.arch_lr, args.arch_beta1, args.arch_beta2, args.arch_weight_decay, args.nhid) == \
        (3e-3, 0.9, 0.999, 1e-3, 300)
    assert (args.dropout, args.dropouth, args.dropoutx, args.dropouti, args.dropoute) == (0.75, 0.25, 0.75, 0.2, 0.0)
    assert parse_args(search_parser(), ["--space", "recurrent", "--lr", "5"]).lr == 5.0
    config = tmp_path / "run.yaml"
    config.write_text("space: recurrent\nbatch_size: 12\n")
    args = parse_args(search_parser(), ["--config", str(config)])
    assert (args.batch_size, args.lr) == (12, 20.0)
    cnn = parse_args(search_parser(), [])
    assert (cnn.dataset, cnn.batch_size, cnn.lr, cnn.grad_clip, cnn.arch_beta1) == ("cifar10", 64, 0.025, 5.0, 0.5)


def test_recurrent_space_takes_the_seeds_training_recipe():
    args = parse_args(train_parser(), ["--space", "recurrent"])
    assert (args.batch_size, args.lr, args.weight_decay, args.grad_clip, args.nhid, args.dropoute, args.nonmono) == \
        (64, 20.0, 8e-7, 0.25, 850, 0.1, 5)


@pytest.mark.parametrize("argv, message", [
    (["--space", "recurrent", "--dataset", "cifar10"], "--space recurrent needs a text data set"),
    (["--dataset", "ptb"], "is a text corpus: add --space recurrent"),
    (["--space", "recurrent", "--dropouth", "1"], "--dropouth must be in [0, 1)"),
])
def test_space_and_data_set_must_agree(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(search_parser(), argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_original_unrolled_step_is_a_flag_of_the_recurrent_second_order_search():
    assert parse_args(search_parser(), ["--space", "recurrent"]).original_unrolled_step is False
    args = parse_args(search_parser(), ["--space", "recurrent", "--second-order", "--original-unrolled-step"])
    assert args.original_unrolled_step is True


@pytest.mark.parametrize("parser, argv, message", [
    (search_parser, ["--space", "recurrent", "--original-unrolled-step"], "add --second-order"),
    (search_parser, ["--second-order", "--original-unrolled-step"], "applies to --space recurrent only"),
    (train_parser, ["--space", "recurrent", "--original-unrolled-step"], "unrecognized arguments"),
])
def test_original_unrolled_step_elsewhere_is_refused(capsys, parser, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(parser(), argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


# ---------------------------------------------------------------- perplexity

def test_perplexity_is_the_mean_loss_over_the_words_predicted():
    """exp(sum of the words' losses / number of words predicted). The seed's evaluate() divides the sum by the
    rows of the source instead, one more than the rows it predicts."""
    ntoken, batch, bptt = 7, 3, 3
    rng = np.random.default_rng(0)
    source = rng.integers(0, ntoken, (8, batch)).astype(np.int32)  # windows of 3, 3 and 1 rows: 7 predicted
    graphs = GraphCache(lambda t: build_eval_model(NAMED_RECURRENT_GENOTYPES["DARTS_V2"], t, batch, ntoken, NHID,
                                                   training=False, rng=np.random.RandomState(0)))
    graphs[bptt]
    params = nn.get_parameters()
    # With a zero embedding the logits of every word are the decoder bias, whatever the cell does.
    params[f"{EMBEDDING_SCOPE}/{EMBEDDING_NAME}"].d = 0.0
    bias = rng.normal(size=ntoken)
    params["decoder/b"].d = bias
    log_p = bias - np.log(np.exp(bias).sum())
    predicted = source[1:]  # every row but the first is predicted once
    assert predicted.size == 7 * batch
    assert stream_loss(graphs, source, bptt) == pytest.approx(-log_p[predicted].mean(), rel=1e-5)


# ---------------------------------------------------------------- scripts on a tiny corpus

WORDS = {"det": ["the", "a"], "noun": ["cat", "dog", "bird", "fish"], "verb": ["sees", "likes", "eats"]}


def write_corpus(data_dir, lines=(60, 16, 12)):
    """data_dir/penn/{train,valid,test}.txt of 'det noun verb det noun' sentences, as PTB is laid out."""
    rng = np.random.default_rng(0)
    folder = data_dir / "penn"
    folder.mkdir(parents=True)
    for split, count in zip(SPLITS, lines):
        sentences = [" ".join(rng.choice(WORDS[kind]) for kind in ("det", "noun", "verb", "det", "noun"))
                     for _ in range(count)]
        (folder / f"{split}.txt").write_text("\n".join(sentences) + "\n")
    return str(data_dir)


@pytest.fixture
def no_pictures(monkeypatch):
    """Pictures take most of a tiny run's time; the search test draws them, the others skip them."""
    monkeypatch.setattr("utils.run.run.draw_run", lambda *args, **kwargs: [])
    monkeypatch.setattr("utils.recurrent.train.draw_run", lambda *args, **kwargs: [])


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("text"))


def tiny_model(corpus_dir, monitor, *extra):
    """The data and the model, which --evaluate reads too."""
    return ["--space", "recurrent", "--dataset", "ptb", "--data-dir", corpus_dir, "--nhid", "6", "-b", "8",
            "--bptt", "5", "--eval-batch-size", "4", "-m", str(monitor), *extra]


def tiny(corpus_dir, monitor, *extra):
    """A run: the model and its training's dropouts."""
    return tiny_model(corpus_dir, monitor, "--dropouth", "0.1", "--dropoutx", "0.1", *extra)


def series(monitor, name):
    return np.loadtxt(os.path.join(monitor, name.replace(" ", "-") + ".series.txt"), ndmin=2)


@pytest.mark.slow
def test_search_writes_the_cell_its_history_and_resumes_exactly(corpus_dir, tmp_path, no_pictures):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    darts_search.main(tiny(corpus_dir, straight, "--epoch", "2", "--bptt", "3",
                           "--model-arch-name", str(straight / "cell.json")))
    darts_search.main(tiny(corpus_dir, resumed, "--epoch", "1", "--bptt", "3",
                           "--model-arch-name", str(resumed / "cell.json")))
    darts_search.main(tiny(corpus_dir, resumed, "--epoch", "2", "--bptt", "3", "--resume",
                           "--model-arch-name", str(resumed / "cell.json")))

    history = np.load(straight / "alpha_history.npz")["recurrent"]
    assert history.shape == (3, 36, 5)
    assert not np.array_equal(history[0], history[2])
    np.testing.assert_array_equal(np.load(resumed / "alpha_history.npz")["recurrent"], history)
    np.testing.assert_array_equal(series(resumed, "Validation perplexity"), series(straight, "Validation perplexity"))
    cell = load_recurrent_genotype(str(straight / "cell.json"))
    assert cell == load_recurrent_genotype(str(straight / "recurrent_arch.json"))
    assert (straight / "genotype.txt").read_text().startswith("Genotype(recurrent=[")
    assert len(series(straight, "Training perplexity")) == 2
    darts_search.main(["--space", "recurrent", "-m", str(straight), "--alpha-epoch", "0"])
    assert load_recurrent_genotype(str(straight / "arch_alpha_epoch_000.json")) == derive_recurrent_genotype(history[0])
    drawn = {os.path.relpath(path, straight) for path in draw_run(str(straight))}
    assert {"curves.png", "alphas.png"} <= drawn and drawn & {"cells/recurrent.png", "cells/recurrent.dot"}


@pytest.mark.slow
def test_training_reports_perplexities_and_resumes_exactly(corpus_dir, tmp_path, no_pictures):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    summary = darts_train.main(tiny(corpus_dir, straight, "--epoch", "2", "--model-arch-name", "DARTS_V1"))
    darts_train.main(tiny(corpus_dir, resumed, "--epoch", "1", "--model-arch-name", "DARTS_V1"))
    assert darts_train.main(tiny(corpus_dir, resumed, "--epoch", "2", "--resume", "--model-arch-name",
                                 "DARTS_V1")) == summary

    # DARTS_V1 at nhid 6 with 10 words (9 + <eos>): embedding 10*6, decoder bias 10, W0 12x12, 8 of 6x12.
    assert summary["params"] == 10 * 6 + 10 + 12 * 12 + 8 * 6 * 12
    with open(straight / "summary.json") as f:
        assert json.load(f) == summary
    valid = series(straight, "Validation perplexity")[:, 1]
    assert summary["valid_ppl"] == pytest.approx(valid.min(), rel=1e-4)  # the series keeps 6 digits
    assert np.isfinite(summary["test_ppl"]) and summary["test_ppl"] > 1.0
    assert series(straight, "Test perplexity")[0, 1] == pytest.approx(summary["test_ppl"], rel=1e-4)

    evaluated = darts_train.main(tiny_model(corpus_dir, tmp_path / "eval", "--model-arch-name", "DARTS_V1",
                                      "--evaluate", str(straight / "best_params.h5")))
    assert evaluated["test_ppl"] == pytest.approx(summary["test_ppl"], rel=1e-5)


# Each recurrent script with a tiny run's own flags: the search writes its cell, training reads one.
def recurrent_run(script, corpus_dir, monitor):
    if script == "search":
        return darts_search.main, tiny(corpus_dir, monitor, "--bptt", "3", "--model-arch-name", str(monitor / "cell.json"))
    return darts_train.main, tiny(corpus_dir, monitor, "--model-arch-name", "DARTS_V1")


@pytest.mark.parametrize("script", ["search", "training"])
def test_a_recurrent_run_resumed_with_another_batch_size_exits_1_with_one_line(script, corpus_dir, tmp_path, capsys,
                                                                             no_pictures):
    main, argv = recurrent_run(script, corpus_dir, tmp_path)
    main(argv + ["--epoch", "1"])
    config = (tmp_path / "config.yaml").read_text()
    before = (tmp_path / "Validation-perplexity.series.txt").read_text()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(argv + ["-b", "4", "--resume", "--epoch", "2"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "batch_size (8 -> 4)" in err[0] and "--force-resume" in err[0], err
    # Refused before anything was written: the saved settings and series are the first run's.
    assert (tmp_path / "config.yaml").read_text() == config
    assert (tmp_path / "Validation-perplexity.series.txt").read_text() == before


@pytest.mark.parametrize("script, desc", [("search", "search epoch 1/1"), ("training", "train epoch 1/1")])
def test_an_unattended_recurrent_run_prints_a_progress_line_every_n_steps(script, desc, corpus_dir, tmp_path, capsys,
                                                                          no_pictures):
    main, argv = recurrent_run(script, corpus_dir, tmp_path)
    main(argv + ["--epoch", "1", "--progress-every", "2"])  # capsys: stderr is no terminal
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(desc)]
    done, total = zip(*(map(int, line.split("step ")[1].split()[0].split("/")) for line in lines))
    every_second = [step for step in done if step % 2 == 0]
    assert every_second == list(range(2, max(every_second) + 1, 2)) and max(every_second) >= total[0] - 2, lines
    # The last step's line, unless the search skipped the stream's short tail.
    assert set(done) - set(every_second) <= {total[0]} and len(set(total)) == 1
    assert all("ppl" in line for line in lines)


def test_summary_counts_the_weights_without_data(tmp_path):
    summary = darts_train.main(["--space", "recurrent", "--model-arch-name", "DARTS_V2", "--nhid", "16",
                                "--data-dir", str(tmp_path / "none"), "--summary", "-m", str(tmp_path)])
    # PTB's 10,000 words: embedding 10000*16 + decoder bias 10000 + W0 (32 x 32) + 8 W_i (16 x 32).
    assert summary["params"] == 10000 * 16 + 10000 + 32 * 32 + 8 * 16 * 32
    assert not (tmp_path / "none").exists()


def one_line_error(capsys, main, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    return err


def test_bad_cells_missing_files_and_divergence_are_one_line_errors(corpus_dir, tmp_path, capsys, monkeypatch,
                                                                    no_pictures):
    broken = tmp_path / "broken.json"
    broken.write_text("[[1, 0], [2")
    assert "invalid JSON" in one_line_error(capsys, darts_train.main,
                                            tiny(corpus_dir, tmp_path / "m", "--model-arch-name", str(broken)))
    unknown = tmp_path / "unknown.json"
    unknown.write_text("[[9, 0]]")
    assert "op" in one_line_error(capsys, darts_train.main,
                                  tiny(corpus_dir, tmp_path / "m", "--model-arch-name", str(unknown)))

    def refuse(url, *args, **kwargs):
        raise URLError("no network")
    monkeypatch.setattr("utils.data.datasets.urlopen", refuse)
    empty = tmp_path / "empty"
    argv = tiny(str(empty), tmp_path / "m", "--epoch", "1")
    argv[argv.index("--data-dir") + 1] = str(empty)
    assert "train.txt" in one_line_error(capsys, darts_search.main, argv)

    assert "training diverged in epoch 1" in one_line_error(
        capsys, darts_train.main, tiny(corpus_dir, tmp_path / "nan", "--epoch", "1", "--lr", "1e30",
                                       "--model-arch-name", "DARTS_V2"))


class Built(Exception):
    pass


def test_the_search_builds_its_step_with_the_original_unrolled_step_flag(corpus_dir, tmp_path, monkeypatch):
    built = {}

    def recording_step(*args, **kwargs):
        built["step"] = RecurrentSearchStep(*args, **kwargs)
        raise Built
    monkeypatch.setattr("utils.recurrent.search.RecurrentSearchStep", recording_step)
    for flags, expected in (([], False), (["--original-unrolled-step"], True)):
        with pytest.raises(Built):
            darts_search.main(tiny(corpus_dir, tmp_path, "--bptt", "3", "--second-order", *flags))
        assert built["step"].second_order and built["step"].original_unrolled_step is expected


def test_a_diverged_search_stops_with_one_line_and_keeps_the_last_finished_epoch(corpus_dir, tmp_path, capsys,
                                                                               monkeypatch, no_pictures):
    """As the CNN search: a NaN stops the run (exit 1, one line) before anything of its epoch is written, and
    --resume continues from the last finished epoch."""
    plain_step = RecurrentSearchStep.step

    def poisoned_step(self, train_batch, val_batch, lr, seed, epoch):
        if (epoch, train_batch.step) == (1, 2):
            weight = self.weights[SEARCH_EMBEDDING]
            weight.d = np.full(weight.shape, np.nan)
        return plain_step(self, train_batch, val_batch, lr, seed, epoch)
    monkeypatch.setattr(RecurrentSearchStep, "step", poisoned_step)
    cell = tmp_path / "cell.json"
    argv = tiny(corpus_dir, tmp_path, "--bptt", "3", "--epoch", "2", "--model-arch-name", str(cell))
    err = one_line_error(capsys, darts_search.main, argv)
    assert "search diverged in epoch 2, step 3 (" in err and "checkpoint of epoch 1 is kept" in err, err

    history = np.load(tmp_path / "alpha_history.npz")["recurrent"]
    assert history.shape == (2, 36, 5) and np.isfinite(history).all()
    assert len(series(tmp_path, "Training perplexity")) == 1 and not cell.exists()
    assert len(list((tmp_path / "arch").iterdir())) == 1

    monkeypatch.setattr(RecurrentSearchStep, "step", plain_step)
    darts_search.main(argv + ["--resume"])
    assert "after epoch 1" in capsys.readouterr().out
    assert np.isfinite(np.load(tmp_path / "alpha_history.npz")["recurrent"]).all() and cell.exists()


def test_a_search_diverging_in_its_first_epoch_says_nothing_was_saved():
    with pytest.raises(DivergedError, match=r"epoch 1, step 4 \(alpha nan at lr 20\); nothing was saved"):
        check_finite(np.array([0.0, np.nan]), "search", 0, 3, 20.0, "alpha")
    check_finite(np.zeros(2), "search", 3, 0, 20.0, "alpha")
    with pytest.raises(DivergedError, match="checkpoint of epoch 3 is kept"):
        check_finite(np.inf, "search", 3, 0, 20.0)


def test_demo_searches_trains_and_compares_with_the_unigram_model(corpus_dir, tmp_path, no_pictures):
    import scripts.demo_rnn
    test_ppl, unigram = scripts.demo_rnn.main(["--out", str(tmp_path), "--dataset", "ptb", "--data-dir", corpus_dir,
                                       "--search-nhid", "4", "--nhid", "6", "--batch-size", "4", "--bptt", "4",
                                       "--train-epochs", "1"])
    cell = load_recurrent_genotype(str(tmp_path / "recurrent_cell.json"))
    assert cell == load_recurrent_genotype(str(tmp_path / "train" / "recurrent_arch.json"))
    assert np.isfinite(test_ppl) and test_ppl > 1.0
    # The tiny corpus has 10 words (with <eos>) of which 'det' positions use 2: unigram is well above 2.
    assert 2.0 < unigram < 10.0


@pytest.mark.skipif(not cpu_kernels.available(), reason="the cpu kernels are not built")
@pytest.mark.parametrize("script", ["search", "train"])
@pytest.mark.parametrize("flag", ["true", "false"])
def test_the_recurrent_models_run_on_the_cpu_kernels_as_the_flag_says(corpus_dir, tmp_path, no_pictures,
                                                                       monkeypatch, script, flag):
    built = []
    for module, name in ((utils.recurrent.search, "build_search_model"), (utils.recurrent.train, "build_eval_model")):
        original = getattr(models.recurrent, name)

        def recording(*args, original=original, **kwargs):
            built.append(kwargs.get("cpu_kernels", False))
            return original(*args, **kwargs)
        monkeypatch.setattr(module, name, recording)
    main = darts_search.main if script == "search" else darts_train.main
    main(tiny(corpus_dir, tmp_path, "--epoch", "1", "--bptt", "3", "--cpu-kernels", flag,
              *(["--model-arch-name", "DARTS_V1"] if script == "train" else [])))
    assert built and set(built) == {flag == "true"}

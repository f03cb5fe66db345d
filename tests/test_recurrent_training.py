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
from args import parse_args, search_parser, train_parser
from models.recurrent import WEIGHT_SCOPE, build_search_model, create_alpha
from models.recurrent_genotype import derive_recurrent_genotype, load_recurrent_genotype
from utils.data.text import SPLITS, Batch
from utils.optim.solvers import SGD, Adam
from utils.pictures.run_pictures import draw_run
from utils.recurrent.language_model import GraphCache, feed, forward_backward
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


def search_setup(second_order, lr, clip, weight_decay=0.0):
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
                                  {}, second_order)
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


def finite_difference(alpha, objective):
    original = alpha.d.copy()
    grad = np.zeros_like(original)
    for index in ENTRIES:
        values = []
        for sign in (1, -1):
            shifted = original.copy()
            shifted[index] += sign * STEP
            alpha.d = shifted
            values.append(objective())
        grad[index] = (values[0] - values[1]) / (2 * STEP)
    alpha.d = original
    return grad


def relative_error(a, b):
    a, b = (np.array([x[index] for index in ENTRIES]) for x in (a, b))
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def restore_state(state, saved):
    for k, v in state.items():
        v.d = saved[k]


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

    def unrolled(factor):
        def objective():
            g = weight_gradient(stepper, train, stepper.train_hidden)
            for k, w in weights.items():
                w.d = saved[k] - xi * (factor * g[k] + wd * saved[k])
            value = nll(stepper, val, stepper.val_hidden)
            restore_state(state, saved)
            return value
        return objective
    numeric = finite_difference(alpha, unrolled(scale))
    # Measured 1.3e-2: the ReLU op's kinks (1e-3 with ReLU replaced by a smooth op).
    assert relative_error(grad, numeric) < 3e-2

    # Without the factor the objective is another one, which the gradient does not match.
    assert relative_error(grad, finite_difference(alpha, unrolled(1.0))) > 0.1  # measured 0.28


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
    darts_search.main(["--space", "recurrent", "-m", str(straight), "--alpha-epoch", "0",
                       "--model-arch-name", str(tmp_path / "e0.json")])
    assert load_recurrent_genotype(str(tmp_path / "e0.json")) == derive_recurrent_genotype(history[0])
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

    assert "NaN" in one_line_error(capsys, darts_train.main,
                                   tiny(corpus_dir, tmp_path / "nan", "--epoch", "1", "--lr", "1e30",
                                        "--model-arch-name", "DARTS_V2"))


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

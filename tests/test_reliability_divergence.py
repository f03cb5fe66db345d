"""Divergence is a first-class event: a loss that stops being finite ends a run with one line naming the epoch,
the step and the learning rate (exit status 1), the last finished epoch's checkpoint and parameters stay (never
NaN ones), the run's summary says `diverged`, and what aggregates runs (--seeds, pareto) lists it apart.

The runs are tiny: the embedded digits cut to a few batches, 3 cells at C = 4.
"""
import csv
import json
import os

import h5py
import nnabla as nn
import numpy as np
import pytest

import darts_plot
import darts_search
import darts_train
import utils.recurrent.train
from ops.divergence import DIVERGED, DivergedError, check_finite
from tests.conftest import tiny_search_runner
from tests.helpers import digits_head
from tests.reliability import assert_one_line_failure, drive, snapshot
from tests.test_recurrent_training import tiny, write_corpus
from utils.run.checkpoint import load_checkpoint
from utils.training.protocol import aggregate_runs, format_table

# 2 steps of 100 images an epoch.
TRAIN = ["--dataset", "digits", "--num-cells", "3", "--output-filter", "4", "-f", "0", "-b", "100",
         "--model-arch-name", "DARTS_V2", "--save-interval", "1"]


@pytest.fixture
def small_runs(monkeypatch):
    """Trainings on the first 200 digits, the pictures off."""
    data = digits_head(200)
    monkeypatch.setattr("utils.data.sources.load_dataset", lambda name, data_dir: data)
    monkeypatch.setattr("utils.run.run.draw_run", lambda *args, **kwargs: [])
    monkeypatch.setattr("utils.recurrent.train.draw_run", lambda *args, **kwargs: [])


def classifier(name):
    return "classifier" in name and "auxiliary" not in name


def poison_in_epoch(monkeypatch, module, epoch_index, when, weight=classifier):
    """Makes module.train_epoch (or search_epoch) start an epoch for which when(its args, epoch_index) holds
    with the last weight whose name `weight` accepts set to NaN: where a learning rate too high would take it.
    NaN in the classifier makes the loss NaN; a ReLU downstream turns NaN activations into 0 (the stem's)."""
    name = "search_epoch" if hasattr(module, "search_epoch") else "train_epoch"
    real = getattr(module, name)

    def poisoned(*args, **kwargs):
        if when(args, epoch_index):
            chosen = [v for n, v in nn.get_parameters(grad_only=True).items() if weight(n)][-1]
            chosen.d = np.full(chosen.shape, np.nan)
        return real(*args, **kwargs)
    monkeypatch.setattr(module, name, poisoned)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def all_finite(h5_path):
    with h5py.File(h5_path, "r") as f:
        arrays = []
        f.visititems(lambda name, item: arrays.append(item[()]) if isinstance(item, h5py.Dataset) else None)
    return arrays and all(np.isfinite(a).all() for a in arrays)


def test_the_check_names_epoch_step_and_learning_rate():
    check_finite(np.ones(3), "training", 0, 0, 0.1)
    with pytest.raises(DivergedError) as error:
        check_finite(np.nan, "training", 2, 11, 1e6)
    assert str(error.value) == ("the training diverged in epoch 3, step 12 (loss nan at lr 1e+06); the checkpoint "
                                "of epoch 2 is kept (--resume continues from it); lower --lr")
    assert error.value.record == {"run": "training", "epoch": 3, "step": 12, "lr": 1e6}
    with pytest.raises(DivergedError, match=r"\(alpha inf at lr 0.025\); nothing was saved before it"):
        check_finite(np.array([[0.0, np.inf]]), "search", 0, 0, 0.025, "alpha")


def test_a_huge_learning_rate_stops_the_training_with_one_line(small_runs, tmp_path):
    run = tmp_path / "run"
    outcome = drive(darts_train.main, TRAIN + ["--lr", "1e6", "--epoch", "2", "-m", str(run)])
    assert_one_line_failure(outcome, 1)
    line = outcome.error_lines[0]
    assert line.startswith("error: the training diverged in epoch 1, step ") and "at lr 1e+06)" in line, line
    assert "nothing was saved before it; lower --lr" in line
    summary = read_json(run / "summary.json")
    assert summary[DIVERGED]["epoch"] == 1 and summary[DIVERGED]["lr"] == 1e6
    assert summary["final_test_error"] is None and summary["best_test_error_oracle"] is None  # never 0.9
    assert not (run / "final_params.h5").exists() and not (run / "checkpoint.npz").exists()


def test_a_training_diverging_in_its_second_epoch_keeps_the_first_and_resumes(small_runs, tmp_path, monkeypatch):
    run = tmp_path / "run"
    argv = TRAIN + ["--epoch", "2", "-m", str(run)]
    poison_in_epoch(monkeypatch, darts_train, 1, lambda args, epoch: args[5] == epoch)
    outcome = drive(darts_train.main, argv)
    assert_one_line_failure(outcome, 1)
    assert ("the training diverged in epoch 2, step 1 (loss nan at lr 0.0125); the checkpoint of epoch 1 is kept "
            "(--resume continues from it)") in outcome.error_lines[0], outcome.error_lines  # cosine: 0.025 / 2
    assert read_json(run / "summary.json")[DIVERGED] == {"run": "training", "epoch": 2, "step": 1, "lr": 0.0125}
    assert load_checkpoint(str(run / "checkpoint.npz"), {}, {})["epoch"] == 1
    assert all_finite(run / "params_epoch_001.h5") and not (run / "params_epoch_002.h5").exists()
    assert not (run / "final_params.h5").exists()

    monkeypatch.undo()
    small_runs_again = digits_head(200)
    monkeypatch.setattr("utils.data.sources.load_dataset", lambda name, data_dir: small_runs_again)
    monkeypatch.setattr("utils.run.run.draw_run", lambda *args, **kwargs: [])
    resumed = drive(darts_train.main, argv + ["--resume"])
    assert resumed.code == 0, resumed.stderr
    summary = read_json(run / "summary.json")
    assert DIVERGED not in summary and summary["final_test_error"] is not None
    assert all_finite(run / "final_params.h5")


def test_a_nan_weight_the_loss_does_not_show_is_caught_before_it_is_saved(small_runs, tmp_path, monkeypatch):
    """The stem's NaN output meets a ReLU (nnabla's max(x, 0) gives 0 for NaN): the loss stays finite, the
    weight is NaN; the end of the epoch finds it before the checkpoint or a parameter file is written."""
    run = tmp_path / "run"
    poison_in_epoch(monkeypatch, darts_train, 1, lambda args, epoch: args[5] == epoch,
                    weight=lambda name: name == "stem/conv/conv/W")
    outcome = drive(darts_train.main, TRAIN + ["--epoch", "2", "-m", str(run)])
    assert_one_line_failure(outcome, 1)
    assert "the training diverged in epoch 2, step 2 (parameter stem/conv/conv/W nan at lr 0.0125)" in \
        outcome.error_lines[0], outcome.error_lines
    assert load_checkpoint(str(run / "checkpoint.npz"), {}, {})["epoch"] == 1
    assert not (run / "params_epoch_002.h5").exists() and not (run / "final_params.h5").exists()


def test_seeds_list_a_diverged_seed_apart(small_runs, tmp_path, monkeypatch):
    poison_in_epoch(monkeypatch, darts_train, 0, lambda args, epoch: args[4] == 1)  # seed 1, its first epoch
    outcome = drive(darts_train.main, TRAIN + ["--epoch", "1", "--seeds", "0,1", "-m", str(tmp_path / "seeds")])
    assert_one_line_failure(outcome, 1)
    assert "1 of 2 runs diverged (seed 1 in epoch 1, step 1, lr 0.025)" in outcome.error_lines[0]
    aggregate = read_json(tmp_path / "seeds" / "aggregate.json")
    assert aggregate[DIVERGED] == {"1": {"run": "training", "epoch": 1, "step": 1, "lr": 0.025}}
    final = aggregate["final_test_error"]
    assert final["n"] == 1 and list(final["per_seed"]) == ["0"] and final["std"] is None
    seed0 = read_json(tmp_path / "seeds" / "seed_0" / "summary.json")["final_test_error"]
    assert final["mean"] == seed0  # the diverged seed's would-be 0.9 counts nowhere
    row = next(line for line in outcome.stdout.splitlines() if line.startswith("final_test_error"))
    assert row.split()[-1] == "diverged" and "warning: 1 of 2 runs diverged" in outcome.stdout


def test_the_aggregate_counts_the_finished_runs_only():
    summaries = {0: {"params": 10, "final_test_error": 0.1}, 1: {DIVERGED: {"run": "training", "epoch": 3,
                                                                          "step": 12, "lr": 1e6}},
                 2: {"params": 10, "final_test_error": 0.3}}
    aggregate = aggregate_runs(summaries)
    entry = aggregate["final_test_error"]
    assert (entry["n"], entry["mean"], entry["per_seed"]) == (2, pytest.approx(0.2), {"0": 0.1, "2": 0.3})
    assert entry["std"] == pytest.approx(np.std([0.1, 0.3], ddof=1))
    table = format_table(aggregate)
    assert "warning: 1 of 3 runs diverged (seed 1 in epoch 3, step 12, lr 1e+06)" in table
    assert aggregate_runs({1: summaries[1]}) == {"seeds": [1], "params": None, DIVERGED: {"1": summaries[1][DIVERGED]}}


def test_pareto_leaves_a_diverged_run_out_with_a_warning(small_runs, tmp_path, capsys):
    diverged = tmp_path / "diverged"
    assert drive(darts_train.main, TRAIN + ["--lr", "1e6", "--epoch", "1", "-m", str(diverged)]).code == 1
    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "summary.json").write_text(json.dumps({"params": 100, "final_test_error": 0.2,
                                                       "best_test_error_oracle": 0.1}))
    out = tmp_path / "pareto.png"
    outcome = drive(darts_plot.main, ["pareto", str(finished), str(diverged), "-o", str(out)])
    assert outcome.code == 0 and out.exists(), outcome.stderr
    assert len(outcome.error_lines) == 1 and outcome.error_lines[0].startswith("warning: 1 of 2 runs diverged ("), \
        outcome.stderr
    with open(tmp_path / "pareto.csv", encoding="utf-8") as f:
        rows = {row["label"]: row for row in csv.DictReader(f)}
    assert rows["finished"]["test_accuracy"] == "0.9" and rows["finished"]["diverged"] == ""
    assert rows["diverged"]["test_accuracy"] == "" and rows["diverged"]["diverged"].startswith("epoch 1, step ")

    before = snapshot(tmp_path)
    alone = drive(darts_plot.main, ["pareto", str(diverged), "-o", str(tmp_path / "alone.png")])
    assert_one_line_failure(alone, 1)
    assert "every run given diverged" in alone.error_lines[0]
    assert snapshot(tmp_path) == before


@pytest.mark.slow
def test_a_search_diverging_in_its_second_epoch_keeps_the_first(tmp_path, monkeypatch):
    search = tiny_search_runner(monkeypatch)
    poison_in_epoch(monkeypatch, darts_search, 1, lambda args, epoch: args[-1] == epoch)
    out = tmp_path / "search"
    outcome = drive(lambda argv: search(out, *argv), ["--epoch", "2"])
    assert_one_line_failure(outcome, 1)
    line = outcome.error_lines[0]
    assert line.startswith("error: the search diverged in epoch 2, step 1 (alpha-step loss nan at lr 0.013)"), line
    assert line.endswith("the checkpoint of epoch 1 is kept (--resume continues from it); lower --lr or --arch-lr")
    assert read_json(out / "search_summary.json")[DIVERGED]["epoch"] == 2
    assert load_checkpoint(str(out / "checkpoint.npz"), {}, {})["epoch"] == 1
    history = np.load(out / "alpha_history.npz")
    assert all(np.isfinite(history[name]).all() and len(history[name]) == 2 for name in history.files)
    assert os.listdir(out / "arch") == ["epoch_001.json"] and not (out / "DARTS_arch.json").exists()


@pytest.mark.slow  # two searches and a selection
def test_a_diverged_search_seed_is_left_out_of_the_selection(tmp_path, monkeypatch):
    tiny_search_runner(monkeypatch)  # the digits and no pictures
    calls = []
    poison_in_epoch(monkeypatch, darts_search, 0, lambda args, epoch: not calls.append(1) and len(calls) == 1)
    argv = ["--dataset", "digits", "--batch-size", "16", "--num-cells", "3", "--output-filter", "4", "--epoch", "1",
            "--seeds", "0,1", "--select-epochs", "1", "-m", str(tmp_path / "seeds")]
    outcome = drive(darts_search.main, argv)
    assert_one_line_failure(outcome, 1)
    assert "1 of 2 searches diverged (seed_0 in epoch 1, step 1, lr 0.025)" in outcome.error_lines[0]
    selection = read_json(tmp_path / "seeds" / "selection.json")
    assert [entry["candidate"] for entry in selection["ranking"]] == ["seed_1"] and selection["winner"] == "seed_1"
    assert selection[DIVERGED]["seed_0"]["epoch"] == 1
    assert read_json(tmp_path / "seeds" / "seed_0" / "search_summary.json")[DIVERGED]["step"] == 1


@pytest.mark.slow  # the search's divergence is tested in the fast suite by the one above
def test_a_huge_learning_rate_stops_the_search_with_one_line(tmp_path, monkeypatch):
    search = tiny_search_runner(monkeypatch)
    outcome = drive(lambda argv: search(tmp_path / "s", *argv), ["--epoch", "1", "--lr", "1e6", "--lr-min", "0"])
    assert_one_line_failure(outcome, 1)
    assert outcome.error_lines[0].startswith("error: the search diverged in epoch 1, step ")
    assert "at lr 1e+06); nothing was saved before it" in outcome.error_lines[0]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("text"))


def test_the_recurrent_training_reports_its_roll_back(corpus, tmp_path, monkeypatch, small_runs):
    poison_in_epoch(monkeypatch, utils.recurrent.train, 1, lambda args, epoch: args[5] == epoch,
                    weight=lambda name: True)
    run = tmp_path / "rnn"
    outcome = drive(darts_train.main, tiny(corpus, run, "--epoch", "2", "--model-arch-name", "DARTS_V2"))
    assert outcome.code == 0, outcome.stderr
    warning = [line for line in outcome.stdout.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "in epoch 2, step 1, lr " in warning[0] and "rolled back" in warning[0], warning
    summary = read_json(run / "summary.json")
    assert [(r["epoch"], r["step"]) for r in summary["rollbacks"]] == [(2, 1)]
    assert np.isfinite(summary["test_ppl"])


def test_the_recurrent_training_without_weights_to_roll_back_to_stops(corpus, tmp_path, small_runs):
    run = tmp_path / "rnn"
    outcome = drive(darts_train.main, tiny(corpus, run, "--epoch", "1", "--lr", "1e30", "--model-arch-name",
                                           "DARTS_V2"))
    assert_one_line_failure(outcome, 1)
    assert outcome.error_lines[0].startswith("error: the training diverged in epoch 1, step ")
    assert "e+30); nothing was saved before it; lower --lr or --grad-clip" in outcome.error_lines[0]
    summary = read_json(run / "summary.json")
    assert summary[DIVERGED]["epoch"] == 1 and summary["test_ppl"] is None

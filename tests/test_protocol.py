"""The reporting protocol of darts_train.py: top-5 error, a validation split with its best checkpoint, the
oracle best test error, and repeated runs over seeds aggregated as mean ± sample std."""
import json

import h5py
import nnabla as nn
import nnabla.functions as F
import numpy as np
import pytest
import yaml

import darts_train
from args import parse_args, train_parser
from models.graph import build_graph
from utils.run import run as run_module
from utils.run.monitoring import series_path
from utils.training.error_record import empty_errors, record_epoch
from utils.training.evaluation import Scores, image_set_scores, top_k_misses
from utils.training.protocol import aggregate_runs, format_table

TINY = ["--dataset", "digits", "--num-cells", "2", "--output-filter", "4", "-f", "0", "-b", "200",
        "--auxiliary", "False", "--model-arch-name", "DARTS_V2"]


@pytest.fixture(autouse=True)
def no_pictures(monkeypatch):
    monkeypatch.setattr(run_module, "draw_run", lambda monitor_path: [])  # pictures are not what is tested here


def read_json(path):
    with open(path) as f:
        return json.load(f)


def series(monitor, name):
    return np.loadtxt(series_path(str(monitor), name), ndmin=2)[:, 1]


def read_h5(path):
    values = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: values.__setitem__(name, item[...]) if isinstance(item, h5py.Dataset) else None)
    return values


# ---------------------------------------------------------------- top-5

def test_image_set_scores_count_top5_misses_over_every_image():
    """A 'network' whose logits are its input pixels: the top-5 error is a count over the images."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (23, 10, 1, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, 23)
    nn.clear_parameters()
    graph = build_graph(lambda x: F.reshape(x, (x.shape[0], 10)), (8, 10, 1, 1))
    scores = image_set_scores(graph, images, labels, 8, mean=[0.0] * 10, std=[1.0] * 10)
    logits = images.reshape(23, 10).astype(np.float64)
    ranks = (logits > logits[np.arange(23), labels][:, None]).sum(axis=1)  # pixels larger than the label's
    assert scores.top5_error == pytest.approx(np.mean(ranks >= 5))
    assert scores.error == pytest.approx(np.mean(np.argmax(logits, axis=1) != labels))
    assert top_k_misses(logits, labels, 5) == np.sum(ranks >= 5)
    assert scores.top5_error < scores.error


# ---------------------------------------------------------------- error record

def test_record_keeps_final_oracle_and_the_epoch_chosen_by_validation():
    errors = empty_errors(validated=True)
    epochs = [(Scores(1.0, 0.30, 0.05), Scores(1.0, 0.40, 0.1)),
              (Scores(1.0, 0.20, 0.04), Scores(1.0, 0.35, 0.1)),  # best validation
              (Scores(1.0, 0.10, 0.03), Scores(1.0, 0.35, 0.1)),  # a tie keeps the earlier epoch
              (Scores(1.0, 0.25, 0.02), Scores(1.0, 0.50, 0.1))]
    improved = [record_epoch(errors, epoch, test, valid) for epoch, (test, valid) in enumerate(epochs)]
    assert improved == [True, True, False, False]
    assert errors == {"final_test_error": 0.25, "final_test_top5_error": 0.02, "best_test_error_oracle": 0.10,
                      "final_valid_error": 0.50, "best_valid_error": 0.35, "best_valid_epoch": 2,
                      "test_error_at_best_valid": 0.20, "test_top5_error_at_best_valid": 0.04}
    plain = empty_errors(validated=False)
    assert record_epoch(plain, 0, Scores(1.0, 0.3, 0.1)) is False and "best_valid_error" not in plain


# ---------------------------------------------------------------- aggregation

def fake_summary(final, oracle, params=1000):
    return {"params": params, "final_test_error": final, "best_test_error_oracle": oracle,
            "final_test_top5_error": final / 10}


def test_aggregate_is_the_mean_and_sample_std_over_seeds():
    summaries = {0: fake_summary(0.0270, 0.0260), 1: fake_summary(0.0280, 0.0265), 2: fake_summary(0.0290, 0.0270)}
    aggregate = aggregate_runs(summaries)
    final = aggregate["final_test_error"]
    assert final["mean"] == pytest.approx(0.0280)
    # Sample std of (-1, 0, 1) * 1e-3: sqrt(2 / (3 - 1)) * 1e-3; the population one would be sqrt(2/3) * 1e-3.
    assert final["std"] == pytest.approx(1e-3) and final["ddof"] == 1 and final["n"] == 3
    assert final["per_seed"] == {"0": 0.0270, "1": 0.0280, "2": 0.0290}
    assert aggregate["best_test_error_oracle"]["mean"] == pytest.approx(0.0265)
    assert aggregate["params"] == 1000 and aggregate["seeds"] == [0, 1, 2]
    assert "test_error_at_best_valid" not in aggregate  # runs without a validation split
    table = format_table(aggregate)
    assert "2.80 ± 0.10" in table and "ddof=1" in table and "1,000" in table
    assert table.splitlines()[1].split()[-3:] == ["2.70", "2.80", "2.90"]


def test_one_seed_has_no_std():
    assert aggregate_runs({5: fake_summary(0.1, 0.1)})["final_test_error"]["std"] is None


# ---------------------------------------------------------------- darts_train.py end to end

def test_train_portion_validates_every_epoch_and_keeps_the_best_by_validation(tmp_path):
    monitor = tmp_path / "run"
    summary = darts_train.main(TINY + ["--epoch", "2", "--train-portion", "0.7", "-m", str(monitor)])
    valid, test, top5 = series(monitor, "Validation error"), series(monitor, "Test error"), series(monitor, "Test top5 error")
    assert len(valid) == len(test) == len(top5) == 2
    best = int(np.argmin(valid))  # argmin takes the first of equal values, as the record does
    assert summary["best_valid_epoch"] == best + 1
    assert summary["test_error_at_best_valid"] == pytest.approx(test[best], abs=1e-6)
    assert summary["final_test_error"] == pytest.approx(test[-1], abs=1e-6)
    assert summary["final_test_top5_error"] == pytest.approx(top5[-1], abs=1e-6)
    assert summary["best_test_error_oracle"] == pytest.approx(test.min(), abs=1e-6)
    assert read_json(monitor / "summary.json") == summary
    # best_params.h5 is the network of the best validation epoch: evaluating it gives that epoch's test error.
    error = darts_train.main(TINY + ["--evaluate", str(monitor / "best_params.h5"), "-m", str(tmp_path / "eval")])
    assert error == pytest.approx(summary["test_error_at_best_valid"], abs=1e-6)
    evaluation = read_json(tmp_path / "eval" / "evaluation.json")
    assert 0 <= evaluation["top5_error"] <= evaluation["test_error"]


def test_without_a_split_there_is_no_best_checkpoint(tmp_path):
    summary = darts_train.main(TINY + ["--epoch", "1", "-m", str(tmp_path)])
    assert not (tmp_path / "best_params.h5").exists()
    assert not (tmp_path / "Validation-error.series.txt").exists()
    assert "best_valid_error" not in summary and "best_test_error" not in summary


def test_seeds_train_one_run_each_then_aggregate_and_resume(tmp_path, capsys):
    monitor = tmp_path / "seeds"
    aggregate = darts_train.main(TINY + ["--epoch", "1", "--seeds", "3,4", "-m", str(monitor)])
    summaries = {seed: read_json(monitor / f"seed_{seed}" / "summary.json") for seed in (3, 4)}
    assert aggregate == aggregate_runs(summaries) == read_json(monitor / "aggregate.json")
    assert read_json(monitor / "aggregate.json")["final_test_error"]["n"] == 2
    configs = {seed: yaml.safe_load((monitor / f"seed_{seed}" / "config.yaml").read_text()) for seed in (3, 4)}
    assert configs[3]["seed"] == 3 and configs[4]["seed"] == 4 and configs[3]["seeds"] is None
    assert yaml.safe_load((monitor / "config.yaml").read_text())["seeds"] == [3, 4]
    # Different seeds, different networks.
    params = [read_h5(monitor / f"seed_{seed}" / "final_params.h5") for seed in (3, 4)]
    assert any(not np.array_equal(params[0][name], params[1][name]) for name in params[0])
    assert "mean ± std (ddof=1)" in capsys.readouterr().out
    # Each run resumes from its own checkpoint: nothing is left to train, and the figures stay.
    again = darts_train.main(TINY + ["--epoch", "1", "--seeds", "3,4", "-m", str(monitor), "--resume"])
    assert again == aggregate


def test_seeds_from_yaml_and_bad_seed_lists(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text("seeds: [0, 1, 2]\n")
    assert parse_args(train_parser(), ["--config", str(config)]).seeds == [0, 1, 2]
    assert parse_args(train_parser(), ["--seeds", "5,7"]).seeds == [5, 7]
    for bad in ("1,x", "1,1"):
        with pytest.raises(SystemExit) as exit_info:
            parse_args(train_parser(), ["--seeds", bad])
        assert exit_info.value.code == 2
    config.write_text("seeds: [0, zero]\n")
    with pytest.raises(SystemExit):
        parse_args(train_parser(), ["--config", str(config)])

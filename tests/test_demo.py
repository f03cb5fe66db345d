"""scripts/demo.py end to end at a smaller size than `make demo`."""
import json

import numpy as np
import pytest

import darts_search
import darts_train
import scripts.demo
from args import parse_args, search_parser
from tests.conftest import tiny_search_runner
from utils.data.datasets import load_dataset


@pytest.mark.slow
def test_demo_pipeline_writes_everything_and_reports_the_test_error(tmp_path, monkeypatch, capsys):
    data = load_dataset("digits", "unused")
    data.train_x, data.train_y = data.train_x[:256], data.train_y[:256]
    small = lambda name, data_dir: data  # noqa: E731
    monkeypatch.setattr(darts_search, "load_dataset", small)
    monkeypatch.setattr(darts_train, "load_dataset", small, raising=False)
    monkeypatch.setattr("utils.data.datasets.load_dataset", small)

    test_error = scripts.demo.main(["--out", str(tmp_path), "--search-epochs", "1", "--train-epochs", "2"])

    out = capsys.readouterr().out
    assert f"test accuracy: {100 * (1 - test_error):.2f} %" in out
    assert (tmp_path / "DARTS_arch.json").exists()
    for picture in ("search/curves.png", "search/alphas.png", "search/cells/normal.png",
                    "search/cells/reduction.png", "train/curves.png"):
        assert (tmp_path / picture).stat().st_size > 5000, picture
    evaluation = json.loads((tmp_path / "train" / "evaluation.json").read_text())
    summary = json.loads((tmp_path / "train" / "summary.json").read_text())
    assert evaluation["test_error"] == test_error == summary["final_test_error"]


def adam_step_bound(t, beta1, beta2):
    """The largest |step| / lr that torch's Adam (eps -> 0) can take at step t, whatever the gradients.

    m_t = (1 - b1) sum_s b1^(t-s) g_s and v_t = (1 - b2) sum_s b2^(t-s) g_s^2; by Cauchy-Schwarz
    |sum_s b1^(t-s) g_s| <= sqrt(sum_j<t (b1^2 / b2)^j) sqrt(v_t / (1 - b2)), and the bias corrections give
    |m_hat| / sqrt(v_hat) <= (1 - b1) / (1 - b1^t) sqrt(sum_j<t (b1^2 / b2)^j) sqrt((1 - b2^t) / (1 - b2)).
    (1 at t = 1, where the step is lr * g / |g|.) Coupled weight decay is part of g, so it changes nothing.
    """
    return ((1 - beta1) / (1 - beta1 ** t) * sum((beta1 ** 2 / beta2) ** j for j in range(t)) ** 0.5
            * ((1 - beta2 ** t) / (1 - beta2)) ** 0.5)


def softmax(alphas):
    e = np.exp(alphas - alphas.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def op_weight_move(monitor_dir):
    """The largest |softmax weight after epoch 1 - initial one| over both cells' edges and ops."""
    with np.load(monitor_dir / "alpha_history.npz") as history:
        return max(np.abs(softmax(history[cell][1]) - softmax(history[cell][0])).max() for cell in history.files)


def test_the_demo_search_moves_the_op_weights_where_the_darts_alpha_rate_cannot(tmp_path, monkeypatch):
    """One epoch with the demo's alpha settings on 64 images (tiny_search_runner: 32 for the weights, 32 for
    the alphas, batch 16: 2 alpha steps).

    A softmax weight w_i moves by at most sum_j |dw_i / da_j| = 2 w_i (1 - w_i) <= 1/2 times the largest move
    of its edge's alphas, and Adam moves an alpha by at most lr * adam_step_bound(t) at step t: at DARTS's
    3e-4 no op weight can move by more than 1/2 * 3e-4 * (1 + 1.054) = 3.1e-4 in those 2 steps, a
    thousandth of a weight near 1/8 (the same run without the demo's flags moved them by 1.1e-4). The demo's
    settings must move them by more than that bound."""
    defaults = parse_args(search_parser(), [])
    steps = 64 // 2 // 16
    darts_bound = 0.5 * defaults.arch_lr * sum(adam_step_bound(t, defaults.arch_beta1, defaults.arch_beta2)
                                               for t in range(1, steps + 1))
    run = tiny_search_runner(monkeypatch)
    assert op_weight_move(run(tmp_path, "--epoch", "1", *scripts.demo.SEARCH_ALPHA_FLAGS)) > darts_bound

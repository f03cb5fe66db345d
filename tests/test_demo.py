"""scripts/demo.py end to end at a smaller size than `make demo`."""
import json

import pytest

import darts_search
import darts_train
import scripts.demo
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

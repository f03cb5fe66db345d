"""darts_plot.py pareto: parameters against test accuracy of trained runs, and its CSV."""
import csv
import json

import pytest

import darts_plot
from utils.pictures.pareto import group_colours, read_point, run_group


def fake_run(root, name, params, best, final=None, arch=None):
    directory = root / name
    directory.mkdir()
    (directory / "summary.json").write_text(json.dumps(
        {"params": params, "params_total": params + 10, "macs": 1, "final_test_error": final, "best_test_error_oracle": best}))
    if arch is not None:
        (directory / "config.yaml").write_text(f"model_arch_name: {arch}\nseed: 0\n")
    return str(directory)


def test_groups_from_the_architecture_name():
    assert run_group("cells/random_007.json") == "random"
    assert run_group("out/arch_lambda_0.5_simple.json") == "λ̃ = 0.5"
    assert run_group("arch_lambda_1_DARTS.json") == "λ̃ = 1"
    assert run_group("DARTS_V2") == "DARTS"
    colours, order = group_colours(["λ̃ = 1", "random", "λ̃ = 0", "DARTS", "λ̃ = 0.25"])
    assert order == ["λ̃ = 0", "λ̃ = 0.25", "λ̃ = 1"]
    assert colours["random"] == "black" and colours["DARTS"] == "grey"
    assert len({colours[g] for g in order}) == 3


def test_points_picture_and_csv(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    dirs = [fake_run(runs, "rand3", 40_000, 0.12, arch="cells/random_003.json"),
            fake_run(runs, "lam0_seed0", 150_000, 0.08, arch="arch_lambda_0_simple.json"),
            fake_run(runs, "lam1_seed0", 30_000, None, final=0.11, arch="arch_lambda_1_simple.json"),
            fake_run(runs, "darts_seed150", 100_000, 0.09)]
    out = tmp_path / "pareto.png"
    darts_plot.main(["pareto", *dirs, "-o", str(out)])
    assert capsys.readouterr().out.split() == [str(out), str(tmp_path / "pareto.csv")]
    assert out.stat().st_size > 10_000
    with open(tmp_path / "pareto.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["label"], r["group"], int(r["params"])) for r in rows] == [
        ("rand3", "random", 40_000), ("lam0_seed0", "λ̃ = 0", 150_000), ("lam1_seed0", "λ̃ = 1", 30_000),
        ("darts_seed150", "DARTS", 100_000)]
    # best_test_error_oracle first; final_test_error when there is no best yet.
    assert [float(r["test_accuracy"]) for r in rows] == pytest.approx([0.88, 0.92, 0.89, 0.91])


def test_unusable_runs_are_one_line_errors(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    no_error = fake_run(tmp_path, "fresh", 1000, None)
    for directory, message in ((str(empty), "does not exist"), (no_error, "no test error yet")):
        with pytest.raises(SystemExit) as error:
            darts_plot.main(["pareto", directory, "-o", str(tmp_path / "p.png")])
        assert error.value.code == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert read_point(fake_run(tmp_path, "ok", 5, 0.5))["group"] == "DARTS"

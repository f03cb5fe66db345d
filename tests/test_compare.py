"""darts_compare.py: every variant searched and its cell trained at one budget, the statistics over the seeds,
the three files, resume, and the one-line refusals."""
import dataclasses
import json
import math
import os

import pytest

import darts_compare
from args import compare_parser, compared_runs, parse_compare_args, search_parser
from ops.divergence import DIVERGED
from utils.run_files import COMPARISON, COMPARISON_PICTURE, COMPARISON_TABLE, FINAL_PARAMS, SUMMARY
from utils.search.comparison import compare, markdown_table
from utils.search.variant import epoch_counted_settings
from utils.search.variants import VARIANTS
from utils.search.variants.dadarts import DADARTS_PRESET

SETTINGS = {"seeds": [0, 1, 2], "dataset": "digits", "search_epochs": 2, "search_cells": 3, "search_channels": 8,
            "train_epochs": 3, "train_cells": 5, "train_channels": 16, "batch_size": 64, "lr": 0.025, "arch_lr": 0.03}


def runs_of(argv):
    parser = compare_parser()
    return compared_runs(parser, parse_compare_args(parser, argv))


def test_mean_and_sample_std_by_hand_and_a_diverged_seed_apart():
    results = {"darts": {0: {"test_error": 0.03, "weights": 1000}, 1: {"test_error": 0.05, "weights": 1300},
                         2: {"test_error": 0.10, "weights": 1600}},
               "dadarts": {0: {"test_error": 0.20, "weights": 900}, 1: {DIVERGED: {"run": "search", "epoch": 2,
                                                                                    "step": 3, "lr": 0.025}},
                           2: {"test_error": 0.30, "weights": 700}}}
    variants = compare(results, SETTINGS)["variants"]
    errors = [0.03, 0.05, 0.10]
    mean = sum(errors) / 3
    std = math.sqrt(sum((e - mean) ** 2 for e in errors) / 2)
    assert variants["darts"]["test_error"]["mean"] == pytest.approx(mean)
    assert variants["darts"]["test_error"]["std"] == pytest.approx(std)
    assert variants["darts"]["weights"]["mean"] == pytest.approx(1300) and variants["darts"]["weights"]["std"] == 300
    assert variants["dadarts"]["test_error"]["n"] == 2 and variants["dadarts"]["test_error"]["mean"] == 0.25
    assert variants["dadarts"]["test_error"]["std"] == pytest.approx(math.sqrt(0.005))
    assert set(variants["dadarts"][DIVERGED]) == {"1"} and set(variants["dadarts"]["per_seed"]) == {"0", "2"}
    table = markdown_table(compare(results, SETTINGS))
    assert f"| darts | {100 * mean:.2f} ± {100 * std:.2f} | 1,300 ± 300 | 3 | 3.00 (1,000) |" in table
    assert "| dadarts | 25.00 ± 7.07 | 800 ± 141 | 2 | 20.00 (900) | diverged | 30.00 (700) |" in table


def test_every_search_has_the_same_budget_and_every_training_the_same_settings():
    runs = runs_of(["--variants", ",".join(VARIANTS), "--seeds", "0,1"])
    parser = search_parser()
    own = set(parser.variant_flags) | set(DADARTS_PRESET) | {"variant", "monitor_path", "model_arch_name"}
    darts = next(search for variant, _, search, _ in runs if variant == "darts")
    for variant, seed, search, train in runs:
        shared = {dest for dest in vars(search) if dest not in own}
        assert {d: getattr(search, d) for d in shared} == {d: getattr(darts, d) for d in shared} | {"seed": seed}
        assert (search.epoch, search.batch_size, search.num_cells, search.output_filter) == (4, 64, 3, 8)
        assert search.variant == variant and search.monitor_path.endswith(f"{variant}/seed_{seed}/search")
        assert train.model_arch_name == f"{search.monitor_path}/DARTS_arch.json"
        assert (train.epoch, train.num_cells, train.output_filter + train.additional_filters_on_retrain,
                train.batch_size, train.seed) == (8, 5, 16, 64, seed)
    dadarts = next(search for variant, _, search, _ in runs if variant == "dadarts")
    assert dadarts.second_order and dadarts.hd_on_weights  # the --dadarts preset


def test_a_variant_s_epoch_settings_follow_the_search_and_its_own_flags_win():
    scaled = 0
    for variant, _, search, _ in runs_of(["--variants", ",".join(VARIANTS), "--seeds", "0", "--search-epochs", "10"]):
        defaults = {f.name: f.default for f in dataclasses.fields(VARIANTS[variant].Settings)}
        for name, epochs in epoch_counted_settings(VARIANTS[variant].Settings).items():
            assert getattr(search, name) == round(defaults[name] * 10 / epochs)
            scaled += 1
    assert scaled >= 3  # PC-DARTS's warm-up, DARTS-'s decay, beta-DARTS's ramp
    (_, _, search, _), = runs_of(["--variants", "dadarts", "--seeds", "0",
                                  "--variant-flags", "dadarts: --second-order false"])
    assert search.second_order is False and search.hd_on_weights


@pytest.mark.parametrize("argv, message", [
    (["--variants", "darts,nosuch"], "unknown variant 'nosuch'"),
    (["--variants", "darts,darts"], "a variant is given twice"),
    (["--seeds", "0,1,0"], "a seed is given twice"),
    (["--search-epochs", "0"], "--search-epochs must be at least 1, not 0"),
    (["--resume", "--restart"], "--restart and --resume exclude each other"),
    (["--variants", "darts", "--variant-flags", "dadarts: --second-order"], "'<variant>: <flags>' for a variant"),
    (["--variants", "darts", "--variant-flags", "darts: --epoch 50"], "--variant-flags darts: --epoch is not a "
                                                                      "setting of its own"),
    (["--variants", "dadarts", "--search-epochs", "2", "--variant-flags", "dadarts: --hd-start 5"],
     "the dadarts search of seed 0: --hd-start"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        darts_compare.main(argv + ["-m", "unused"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and message in err, err


@pytest.fixture
def fake_runs(monkeypatch):
    """darts_search.search and darts_train.train replaced by stubs that write a finished run's files and record
    (variant directory, resume): the comparison's own logic without a network."""
    calls = []

    def search(args):
        calls.append(("search", args.monitor_path, args.resume))
        os.makedirs(args.monitor_path, exist_ok=True)
        with open(f"{args.monitor_path}/DARTS_arch.json", "w") as f:
            f.write('{"arch_normal": {}, "arch_reduction": {}}')

    def train(args, arch):
        calls.append(("train", args.monitor_path, args.resume))
        os.makedirs(args.monitor_path, exist_ok=True)
        error = 0.01 * (1 + args.seed) * (2 if "dadarts" in args.monitor_path else 1)
        with open(f"{args.monitor_path}/{SUMMARY}", "w") as f:
            json.dump({"params": 1000 + args.seed, "final_test_error": error}, f)
        open(f"{args.monitor_path}/{FINAL_PARAMS}", "w").close()

    monkeypatch.setattr(darts_compare.darts_search, "search", search)
    monkeypatch.setattr(darts_compare.darts_train, "train", train)
    monkeypatch.setattr(darts_compare, "load_architecture", lambda path: None)
    return calls


def test_the_three_files_and_a_resume_that_keeps_finished_runs(fake_runs, tmp_path):
    out = tmp_path / "compare"
    argv = ["--variants", "darts,dadarts", "--seeds", "0,1", "-m", str(out)]
    comparison = darts_compare.main(argv)
    assert len(fake_runs) == 8 and not any(resume for _, _, resume in fake_runs)
    assert json.loads((out / COMPARISON).read_text()) == comparison
    assert comparison["variants"]["dadarts"]["per_seed"] == {"0": {"test_error": 0.02, "weights": 1000},
                                                             "1": {"test_error": 0.04, "weights": 1001}}
    row = "| dadarts | 3.00 ± 1.41 | 1,000 ± 1 | 2 | 2.00 (1,000) | 4.00 (1,001) |"
    assert row in (out / COMPARISON_TABLE).read_text()
    assert (out / COMPARISON_PICTURE).read_bytes()[:4] == b"\x89PNG"
    # An interruption during the training of dadarts seed 1: that training alone runs again, with --resume.
    (out / "dadarts/seed_1/train" / FINAL_PARAMS).unlink()
    fake_runs.clear()
    darts_compare.main(argv + ["--resume"])
    assert fake_runs == [("train", str(out / "dadarts/seed_1/train"), True)]
    with pytest.raises(SystemExit):  # a comparison is never started over silently
        darts_compare.main(argv)


@pytest.mark.slow
def test_a_tiny_comparison_end_to_end(monkeypatch, tmp_path):
    import utils.data.sources
    import utils.run.run
    from tests.helpers import digits_head
    data = digits_head(64)
    monkeypatch.setattr(darts_compare.darts_search, "load_dataset", lambda name, data_dir: data)
    monkeypatch.setattr(utils.data.sources, "load_dataset", lambda name, data_dir: data)
    monkeypatch.setattr(utils.run.run, "draw_run", lambda monitor_dir: [])
    out = tmp_path / "compare"
    comparison = darts_compare.main(["--variants", "darts,dadarts", "--seeds", "0,1", "--search-epochs", "1",
                                     "--train-epochs", "1", "--batch-size", "16", "--search-channels", "4",
                                     "--train-cells", "3", "--train-channels", "4", "-m", str(out)])
    for variant in ("darts", "dadarts"):
        for seed in (0, 1):
            summary = json.loads((out / variant / f"seed_{seed}" / "train" / SUMMARY).read_text())
            assert comparison["variants"][variant]["per_seed"][str(seed)] == {
                "test_error": summary["final_test_error"], "weights": summary["params"]}
            assert (out / variant / f"seed_{seed}" / "search" / "alpha_history.npz").exists()
    assert (out / COMPARISON_PICTURE).exists() and (out / COMPARISON_TABLE).exists()

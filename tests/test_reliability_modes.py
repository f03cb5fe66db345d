"""The inspection modes never overwrite a run's own outputs (issue 21).

darts_train.py --summary, --evaluate, --export and darts_search.py --alpha-epoch, --extract-lambda, each run
on a copy of a finished tiny training, plain search and complexity-controlled search: beside a run of
their own script's kind they exit 0 and add only their own file; pointed at the other script's run, or at
files that do not fit, they exit 1 (2 for a flag they do not read) with one line and add nothing. Either
way every file that was there is byte for byte as it was. The runs are built once, with paths relative to
their parent directory, so that their config.yaml files (whose paths a --config row reads) name the copy.
"""
import os
import pathlib
import shutil

import pytest

import darts_search
import darts_train
import utils.run.run
from tests.conftest import tiny_search_runner
from tests.reliability import assert_one_line_failure, drive, snapshot

# darts_train.py's tiny network: 3 cells, C = 4, on the embedded digits.
NETWORK = ["--dataset", "digits", "--num-cells", "3", "--output-filter", "4", "-f", "0", "-b", "100"]
TRAINED = NETWORK + ["--model-arch-name", "train/DARTS_arch.json"]
# A complexity-controlled search's network and λ range, which --extract-lambda reads too.
COMPLEXITY = ["--num-cells", "1", "--output-filter", "2", "--complexity-control", "--log10-lambda-min", "-3",
              "--log10-lambda-max", "-1"]
RECURRENT_SUMMARY = ["--space", "recurrent", "--model-arch-name", "DARTS_V2", "--nhid", "16", "--data-dir", "none",
                     "--summary"]


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory):
    """A directory holding train/ (one epoch), search/ (one epoch of plain DARTS) and complexity/ (one epoch
    of a complexity-controlled search), all finished."""
    base = tmp_path_factory.mktemp("finished")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(base)
        patch.setattr(utils.run.run, "draw_run", lambda monitor_dir: [])
        darts_train.main(NETWORK + ["--model-arch-name", "DARTS_V2", "--epoch", "1", "-m", "train"])
        tiny_search_runner(patch)(pathlib.Path("search"), "--epoch", "1")
        complexity_search = tiny_search_runner(patch, images=32)
        complexity_search(pathlib.Path("complexity"), *COMPLEXITY, "--batch-size", "8", "--epoch", "1")
    return base


# (script, argv, exit status, the files it adds, what its one error line says)
CASES = {
    # darts_train.py beside a training: its own file only.
    "summary beside a training": (darts_train, NETWORK + ["--model-arch-name", "DARTS_V2", "--summary", "-m", "train"],
                                  0, {"train/network_summary.json"}, None),
    "recurrent summary beside a training": (darts_train, RECURRENT_SUMMARY + ["-m", "train"], 0,
                                            {"train/network_summary.json"}, None),
    "evaluate beside a training": (darts_train, TRAINED + ["--evaluate", "train/final_params.h5", "-m", "train"], 0,
                                   {"train/evaluation.json"}, None),
    "evaluate into a new directory": (darts_train, TRAINED + ["--evaluate", "train/final_params.h5", "-m", "eval"], 0,
                                      {"eval/evaluation.json"}, None),
    "export beside a training": (darts_train, TRAINED + ["--export", "train/final_params.h5", "-m", "train"], 0,
                                 {"train/model.nnp"}, None),
    # ... parameters of another network: refused before anything is written.
    "evaluate parameters of another network": (
        darts_train, TRAINED + ["--num-cells", "4", "--evaluate", "train/final_params.h5", "-m", "train"], 1, set(),
        "does not fit this network"),
    "export parameters of another network": (
        darts_train, TRAINED + ["--num-cells", "4", "--export", "train/final_params.h5", "-m", "train"], 1, set(),
        "does not fit this network"),
    "summary into a file": (darts_train, NETWORK + ["--model-arch-name", "DARTS_V2", "--summary", "-m",
                                                    "train/summary.json"], 1, set(), "is a file, not a directory"),
    # ... pointed at a search.
    "summary in a search": (darts_train, NETWORK + ["--model-arch-name", "search/DARTS_arch.json", "--summary",
                                                    "-m", "search"], 1, set(), "is a search's run directory"),
    "recurrent summary in a search": (darts_train, RECURRENT_SUMMARY + ["-m", "search"], 1, set(),
                                      "is a search's run directory"),
    "evaluate in a search": (darts_train, TRAINED + ["--evaluate", "train/final_params.h5", "-m", "search"], 1,
                             set(), "is a search's run directory"),
    "evaluate a search's checkpoint": (
        darts_train, NETWORK + ["--model-arch-name", "search/DARTS_arch.json", "--evaluate", "search/checkpoint.npz",
                                "-m", "eval"], 1, set(), "is in a search's run directory"),
    "recurrent evaluate in a search": (
        darts_train, ["--space", "recurrent", "--model-arch-name", "DARTS_V2", "--evaluate", "train/final_params.h5",
                      "-m", "search"], 1, set(), "is a search's run directory"),
    "export in a search": (darts_train, TRAINED + ["--export", "train/final_params.h5", "-m", "search"], 1, set(),
                           "is a search's run directory"),
    "export a search's checkpoint": (
        darts_train, NETWORK + ["--model-arch-name", "search/DARTS_arch.json", "--export", "search/checkpoint.npz",
                                "-m", "export"], 1, set(), "is in a search's run directory"),
    # Not a mode, but the one way pointing darts_train.py at a search replaced its cell and config.yaml (then
    # failed on its checkpoint): a forced resume, refused now before anything is written (utils.run.run).
    "training resumed in a search": (darts_train, NETWORK + ["--model-arch-name", "DARTS_V2", "--epoch", "1", "-m",
                                                             "search", "--resume", "--force-resume"], 1, set(),
                                     "checkpoint"),
    # darts_search.py beside a search: its own file only, never the search's DARTS_arch.json.
    "alpha epoch of a search": (darts_search, ["-m", "search", "--alpha-epoch", "1"], 0,
                                {"search/arch_alpha_epoch_001.json"}, None),
    "alpha epoch 0 of a search": (darts_search, ["-m", "search", "--alpha-epoch", "0"], 0,
                                  {"search/arch_alpha_epoch_000.json"}, None),
    # The config names the search's --model-arch-name, which the initial alphas' cell once replaced.
    "alpha epoch with the search's config": (darts_search, ["--config", "search/config.yaml", "--alpha-epoch", "0"],
                                             0, {"search/arch_alpha_epoch_000.json"}, None),
    "alpha epoch of a complexity search": (darts_search, COMPLEXITY + ["-m", "complexity", "--alpha-epoch", "1"], 0,
                                           {"complexity/arch_alpha_epoch_001.json"}, None),
    "extract of a complexity search": (darts_search, COMPLEXITY + ["-m", "complexity", "--extract-lambda", "0.5"], 0,
                                       {"complexity/arch_lambda_0.5_simple.json"}, None),
    "extract with the search's config": (darts_search, ["--config", "complexity/config.yaml", "--extract-lambda",
                                                        "1"], 0, {"complexity/arch_lambda_1_simple.json"}, None),
    # ... the search's own output file is not the modes' to write.
    "alpha epoch to the search's cell": (darts_search, ["-m", "search", "--alpha-epoch", "1", "--model-arch-name",
                                                        "search/DARTS_arch.json"], 2, set(),
                                         "--model-arch-name does not apply to --alpha-epoch"),
    "extract to the search's cell": (darts_search, COMPLEXITY + ["-m", "complexity", "--extract-lambda", "0.5",
                                                                 "--model-arch-name", "complexity/DARTS_arch.json"],
                                     2, set(), "--model-arch-name does not apply to --extract-lambda"),
    # ... a search's files that do not fit, or a training.
    "alpha epoch out of range": (darts_search, ["-m", "search", "--alpha-epoch", "5"], 1, set(),
                                 "--alpha-epoch 5 is not in"),
    "recurrent alpha epoch of a CNN search": (darts_search, ["--space", "recurrent", "-m", "search", "--alpha-epoch",
                                                             "1"], 1, set(), "cannot read recurrent alpha history"),
    "extract of a plain search": (darts_search, ["--variant", "complexity", "-m", "search", "--extract-lambda", "0.5"],
                                  1, set(), "holds no hypernetwork"),
    "alpha epoch of a training": (darts_search, ["-m", "train", "--alpha-epoch", "1"], 1, set(),
                                  "is a training's run directory"),
    "extract of a training": (darts_search, ["--variant", "complexity", "-m", "train", "--extract-lambda", "0.5"], 1,
                              set(), "is a training's run directory"),
}


@pytest.mark.parametrize("case", CASES)
def test_an_inspection_mode_adds_only_its_own_file(case, finished_runs, tmp_path, monkeypatch):
    script, argv, code, added, message = CASES[case]
    for run in ("train", "search", "complexity"):
        shutil.copytree(finished_runs / run, tmp_path / run)
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    outcome = drive(script.main, argv)
    if code == 0:
        assert outcome.code == 0 and "Traceback" not in outcome.stderr, outcome.stderr
    else:
        assert_one_line_failure(outcome, code)
        assert message in outcome.stderr, outcome.stderr
    after = snapshot(tmp_path)
    assert {name: after.get(name) for name in before} == before
    assert {name.replace(os.sep, "/") for name in set(after) - set(before)} == added


def test_a_mode_replaces_only_its_own_earlier_file(finished_runs, tmp_path, monkeypatch):
    """A second --summary of another cell beside the training replaces the first one's network_summary.json
    (derived data) and still nothing of the training's."""
    shutil.copytree(finished_runs / "train", tmp_path / "train")
    monkeypatch.chdir(tmp_path)
    summary = NETWORK + ["--summary", "-m", "train"]
    first = drive(darts_train.main, summary + ["--model-arch-name", "DARTS_V2"])
    before = snapshot(tmp_path)
    second = drive(darts_train.main, summary + ["--model-arch-name", "DARTS_V1"])
    after = snapshot(tmp_path)
    assert first.code == second.code == 0
    changed = {name for name in before if after[name] != before[name]}
    assert changed == {os.path.join("train", "network_summary.json")} and set(after) == set(before)

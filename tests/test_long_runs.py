"""What long unattended runs rely on: progress lines without a terminal, safe resume, bounded parameter files."""
import os

import numpy as np
import pytest
import yaml

import darts_search
from utils.data.datasets import load_dataset
from utils.run.checkpoint import CheckpointError, save_checkpoint
from utils.run.context import ContextError, check_precision
from utils.run.run import Progress, Run, RunClock, keep_last_files
from utils.run_files import series_file

SERIES = ("Training loss", "Epoch time")


def test_without_a_terminal_a_line_every_n_steps_and_after_the_last(capsys):
    progress = Progress(7, "epoch 1/3", 3, RunClock(3), epoch=0)
    seen = []
    for step in progress:
        seen.append(step)
        progress.set_postfix(loss=f"{step / 10:.3f}")
    assert seen == list(range(7))
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("step ")[1].split()[0] for line in lines] == ["3/7", "6/7", "7/7"]
    assert all(line.startswith("epoch 1/3") for line in lines)
    assert "loss 0.200" in lines[0] and "loss 0.600" in lines[2]


def test_progress_over_a_list_yields_its_items_and_may_stop_early(capsys):
    progress = Progress(["a", "b", "c", "d", "e"], "epoch 1/1", 2, RunClock(1), epoch=0)
    seen = []
    for item in progress:
        if item == "d":
            break
        seen.append(item)
        progress.set_postfix(item=item)
    assert seen == ["a", "b", "c"]
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("step ")[1].split()[0] for line in lines] == ["2/5"] and "item b" in lines[0]


def test_resume_without_a_checkpoint_says_so_and_starts_afresh(tmp_path, capsys):
    run = Run(str(tmp_path), None, 3, SERIES)
    assert run.start({}, {}, resume=True) is None
    assert run.start_epoch == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "no checkpoint" in out[0]


def test_resume_without_a_checkpoint_never_truncates_an_earlier_runs_series(tmp_path):
    path = tmp_path / "Training-loss.series.txt"
    path.write_text("0 1.5\n1 1.2\n")
    run = Run(str(tmp_path), None, 3, SERIES)
    with pytest.raises(CheckpointError, match="no checkpoint.*Training-loss"):
        run.start({}, {}, resume=True)
    assert path.read_text() == "0 1.5\n1 1.2\n"


def run_with_saved_settings(tmp_path, settings):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(settings))
    (tmp_path / "checkpoint.npz").write_bytes(b"")  # only its existence matters here
    return Run(str(tmp_path), None, 3, SERIES), str(tmp_path / "config.yaml")


def test_resuming_with_changed_settings_is_refused_naming_them(tmp_path):
    saved = {"batch_size": 64, "lr": 0.025, "epoch": 50, "resume": False, "seed": 0}
    run, path = run_with_saved_settings(tmp_path, saved)
    changed = {**saved, "batch_size": 32, "lr": 0.05, "resume": True}
    with pytest.raises(CheckpointError) as err:
        run.check_resume_settings(changed, path, force=False)
    message = str(err.value)
    assert "batch_size (64 -> 32)" in message and "lr (0.025 -> 0.05)" in message
    assert "seed" not in message and "resume (" not in message and "\n" not in message
    run.check_resume_settings(changed, path, force=True)  # --force-resume accepts it


def test_resuming_with_a_longer_schedule_or_no_checkpoint_is_accepted(tmp_path):
    saved = {"batch_size": 64, "epoch": 50, "resume": False}
    run, path = run_with_saved_settings(tmp_path, saved)
    run.check_resume_settings({**saved, "epoch": 80, "resume": True}, path, force=False)
    os.remove(tmp_path / "checkpoint.npz")
    run.check_resume_settings({**saved, "batch_size": 8, "resume": True}, path, force=False)


def open_settings(tmp_path, **changes):
    return {"monitor_path": str(tmp_path), "model_save_path": None, "epoch": 3, "resume": False,
            "force_resume": False, "batch_size": 64, "config": "run.yaml", **changes}


def test_a_run_writes_its_settings_when_it_starts_and_refuses_a_resume_that_changes_them(tmp_path):
    settings = open_settings(tmp_path)
    run = Run.open(settings, SERIES)
    assert (run.monitor_path, run.save_dir, run.epochs) == (str(tmp_path), str(tmp_path), 3)
    assert os.listdir(tmp_path) == []  # opened, not started: a setup that fails now leaves nothing behind
    run.start({}, {}, resume=False)
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved == {k: v for k, v in settings.items() if k != "config"}  # --config is the file itself
    save_checkpoint(str(tmp_path / "checkpoint.npz"), {}, {}, {"epoch": 1})  # and the series of its epoch:
    for name in SERIES:
        (tmp_path / series_file(name)).write_text("1 0.5\n")
    with pytest.raises(CheckpointError, match="batch_size"):
        Run.open(open_settings(tmp_path, resume=True, batch_size=32), SERIES)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["batch_size"] == 64
    longer = Run.open(open_settings(tmp_path, resume=True, epoch=5), SERIES)  # a longer schedule resumes
    assert longer.start_epoch == 1  # read when the run opens, for the loaders built before start()
    forced = Run.open(open_settings(tmp_path, resume=True, batch_size=32, force_resume=True), SERIES)
    forced.start({}, {}, resume=True)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["batch_size"] == 32


def test_keep_last_deletes_only_the_oldest_numbered_files(tmp_path):
    for n in (1, 2, 10, 3, 11):
        (tmp_path / f"params_epoch_{n:03d}.h5").write_bytes(b"x")
    (tmp_path / "final_params.h5").write_bytes(b"x")
    (tmp_path / "params_epoch_best.h5").write_bytes(b"x")
    keep_last_files(str(tmp_path), "params_epoch_", ".h5", None)
    assert len(os.listdir(tmp_path)) == 7
    keep_last_files(str(tmp_path), "params_epoch_", ".h5", 2)
    assert sorted(os.listdir(tmp_path)) == ["final_params.h5", "params_epoch_010.h5", "params_epoch_011.h5",
                                            "params_epoch_best.h5"]


def test_half_precision_second_order_is_refused():
    with pytest.raises(ContextError, match="second-order"):
        check_precision("half", True)
    check_precision("half", False)
    check_precision("float", True)


@pytest.mark.slow
def test_a_search_resumed_with_another_batch_size_exits_1_with_one_line(tmp_path, monkeypatch, capsys):
    data = load_dataset("digits", "unused")
    data.train_x, data.train_y = data.train_x[:32], data.train_y[:32]
    monkeypatch.setattr(darts_search, "load_dataset", lambda name, data_dir: data)
    tiny = ["--dataset", "digits", "--num-cells", "1", "--output-filter", "2", "-m", str(tmp_path),
            "--model-arch-name", str(tmp_path / "arch.json"), "--epoch", "1"]
    darts_search.main(tiny + ["--batch-size", "8"])
    before = (tmp_path / "Training-loss.series.txt").read_text()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        darts_search.main(tiny + ["--batch-size", "4", "--resume", "--epoch", "2"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "batch_size (8 -> 4)" in err[0] and "--force-resume" in err[0]
    assert (tmp_path / "Training-loss.series.txt").read_text() == before
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["batch_size"] == 8
    assert np.loadtxt(tmp_path / "Training-loss.series.txt", ndmin=2).shape == (1, 2)

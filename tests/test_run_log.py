"""What a run prints and numbers, as a researcher reads its log: the time left of the epoch and of the whole
run, the genotype once, and epochs counted from 1 in the log, the series and the pictures alike."""
import os
import sys

import numpy as np
import pytest

import utils.run.run as run_module
from models.genotype import load_architecture, to_genotype_string
from tests.conftest import tiny_search_runner
from tests.helpers import series
from utils.pictures.curves import plot_curves
from utils.run.run import EPOCH_TIME, Progress, Run, RunClock
from utils.run_files import ALPHA_HISTORY, GENOTYPE, epoch_architecture


class FakeTime:
    """Stands in for run.py's time module: the clock moves only when the test moves it."""

    def __init__(self):
        self.now = 1000.0

    def time(self):
        return self.now


@pytest.fixture
def fake_time(monkeypatch):
    fake = FakeTime()
    monkeypatch.setattr(run_module, "time", fake)
    return fake


def third_epoch_of_a_resumed_run(fake_time):
    """A 4-epoch run resumed after its first epoch: its second epoch took 30 s in all (steps, validation,
    pictures); the third has 10 steps of 2 s. Returns its Progress, on 0-based epoch 2."""
    clock = RunClock(epochs=4, first_epoch=1)
    fake_time.now += 30
    return Progress(10, "train epoch 3/4", 5, clock, epoch=2)


def test_without_a_terminal_the_progress_line_gives_the_epochs_and_the_runs_time_left(fake_time, capsys):
    progress = third_epoch_of_a_resumed_run(fake_time)
    for _ in progress:
        fake_time.now += 2
        progress.set_postfix(loss="0.500")
    lines = capsys.readouterr().out.strip().splitlines()
    # Step 5: 40 s for 1.5 epochs, 1.5 epochs to go (40 s); 5 steps of 2 s left in the epoch.
    # Step 10: 50 s for 2 epochs, 1 to go (25 s).
    assert lines == ["train epoch 3/4  step 5/10  loss 0.500  2.00 s/step  epoch 00:10 left  run 00:40 left",
                     "train epoch 3/4  step 10/10  loss 0.500  2.00 s/step  epoch 00:00 left  run 00:25 left"]


def test_on_a_terminal_the_bar_gives_the_runs_time_left(fake_time, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    progress = third_epoch_of_a_resumed_run(fake_time)
    postfixes = []
    for _ in progress:
        postfixes.append(progress.bar.postfix)  # what the bar shows after the step before
        fake_time.now += 2
        progress.set_postfix(loss="0.500")
    assert postfixes[5] == "loss=0.500, run left=00:40"


def test_a_search_prints_its_genotype_once_and_counts_epochs_as_its_pictures_do(monkeypatch, tmp_path, capsys):
    run = tiny_search_runner(monkeypatch, images=32)
    out = run(tmp_path, "--epoch", "2", "--progress-every", "1", "--num-cells", "1", "--output-filter", "2")
    log = capsys.readouterr().out.splitlines()
    final = to_genotype_string(load_architecture(str(out / "DARTS_arch.json")))
    genotype_lines = [line for line in log if "Genotype(" in line]
    assert len(genotype_lines) == 1 and genotype_lines[0].endswith(final) and log[-1] == genotype_lines[0]
    # genotype.txt keeps the latest epoch's.
    last_epoch = load_architecture(str(out / epoch_architecture(2)))
    assert (out / GENOTYPE).read_text() == to_genotype_string(last_epoch) + "\n"
    progress_lines = [line for line in log if " step " in line]
    assert len(progress_lines) == 2 and all(" left  run " in line and line.endswith(" left") for line in progress_lines)

    # The log's "epoch 1/2" and "epoch 2/2" are the series' epochs 1 and 2, and the curves' and alphas.png's.
    assert [line.split()[1] for line in log if line.startswith("epoch ")] == ["1/2", "2/2"]
    assert series(out, "Validation error")[:, 0].tolist() == [1, 2]
    curves = plot_curves([str(out)], str(tmp_path / "curves.png"))
    assert all(line.get_xdata().tolist() == [1, 2] for ax in curves.axes for line in ax.get_lines())
    # alphas.png draws row e of the history at epoch e (tests/test_pictures.py): row 0 the initial alphas,
    # row e those after epoch e.
    assert len(np.load(out / ALPHA_HISTORY)["normal"]) == 3


def two_epochs_then_interrupted(monitor_dir):
    """A 3-epoch Run that finished two epochs (training loss 2.0, 1.0) and was interrupted in the third; its
    training-loss series file."""
    first = Run(str(monitor_dir), None, 3, ("Training loss", EPOCH_TIME))
    first.start({}, {}, resume=False)
    for epoch in first.remaining_epochs():
        if epoch == 2:
            break
        first.end_epoch(epoch, {"Training loss": 2.0 - epoch}, {}, "")
    return monitor_dir / "Training-loss.series.txt"


def resumed(monitor_dir):
    run = Run(str(monitor_dir), None, 3, ("Training loss", EPOCH_TIME))
    run.start({}, {}, resume=True)
    return run


def test_a_resume_keeps_the_series_lines_of_the_epochs_its_checkpoint_holds(tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "draw_run", lambda monitor_dir: [])
    path = two_epochs_then_interrupted(tmp_path)
    with open(path, "a") as f:
        f.write("3 99\n")  # the interrupted epoch's line
    assert resumed(tmp_path).start_epoch == 2
    np.testing.assert_array_equal(np.loadtxt(path, ndmin=2), [[1, 2.0], [2, 1.0]])
    assert os.path.exists(tmp_path / "checkpoint.npz")


def test_a_resume_renumbers_the_series_of_a_run_begun_when_they_counted_from_0(tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "draw_run", lambda monitor_dir: [])
    path = two_epochs_then_interrupted(tmp_path)
    path.write_text("0 2.0\n1 1.0\n")  # as the two finished epochs were written before
    resumed(tmp_path)
    np.testing.assert_array_equal(np.loadtxt(path, ndmin=2), [[1, 2.0], [2, 1.0]])

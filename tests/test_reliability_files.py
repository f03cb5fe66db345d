"""A run's files are written whole or not at all, and a damaged file is one line (issue 21).

Two finished tiny runs are built once (a training and a search of one epoch each, on the embedded digits,
with paths relative to their parent directory so that a copy is a run of its own); each case works on a
copy. A damaged file of every kind the scripts read (checkpoint, alpha history, parameters, series, JSON,
YAML, data) stops the script with exit status 1 (2 for a --config, a command-line error) and one line that
names the file, and leaves every file as it was. A write that fails (a full disk, no permission, a read-only
mount: the OSError a disk would give, raised where the write or its sync to disk happens) stops the run with
one line naming the file and the reason, keeps the old file, and leaves no temporary file behind.
"""
import builtins
import contextlib
import errno
import glob
import hashlib
import io
import os
import pathlib
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

import darts_plot
import darts_search
import darts_train
import utils.run.run
from ops.atomic_file import atomic_path, atomic_write, remove_stale_temporaries, temporary_name
from tests.conftest import tiny_search_runner
from tests.reliability import assert_one_line_failure, drive, snapshot
from utils.data import datasets
from utils.run.run import fail_cleanly

NETWORK = ["--dataset", "digits", "--num-cells", "3", "--output-filter", "4", "-f", "0", "-b", "100"]
TRAINING = NETWORK + ["--model-arch-name", "DARTS_V2", "--save-interval", "1", "-m", "train"]
SEARCH = pathlib.Path("search")


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory):
    """A directory holding train/ (one epoch, parameters saved every epoch) and search/ (one epoch), both
    finished."""
    base = tmp_path_factory.mktemp("finished")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(base)
        patch.setattr(utils.run.run, "draw_run", lambda monitor_dir: [])
        darts_train.main(TRAINING + ["--epoch", "1"])
        tiny_search_runner(patch)(SEARCH, "--epoch", "1")
    return base


@pytest.fixture
def runs(finished_runs, tmp_path, monkeypatch):
    """A copy of the finished runs as the working directory, the search's data and no pictures."""
    for run in ("train", "search"):
        shutil.copytree(finished_runs / run, tmp_path / run)
    monkeypatch.chdir(tmp_path)
    search = tiny_search_runner(monkeypatch)  # patches the search's data and turns the pictures off
    return tmp_path, search


def search_main(search):
    return lambda argv: search(SEARCH, *argv)


def temporaries(directory):
    return [p for p in glob.glob(os.path.join(str(directory), "**", ".*.tmp*"), recursive=True)]


# ------------------------------------------------------------------ damaged files

def cut_short(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def emptied(path):
    path.write_bytes(b"")


def random_bytes(path):
    path.write_bytes(np.random.default_rng(0).bytes(3000))


def line_replaced(text):
    def damage(path):
        lines = path.read_text().splitlines(keepends=True)
        path.write_text(text + "".join(lines[1:]))
    return damage


HAND_PLACED = b"not the archive"


def hand_placed_cifar(root):
    """A file of the CIFAR-10 archive's name that is not the published one, placed by hand in data/."""
    (root / "data").mkdir()
    (root / "data" / "cifar-10-binary.tar.gz").write_bytes(HAND_PLACED)


def damaged_mnist(root):
    folder = root / "data" / "mnist"
    folder.mkdir(parents=True)
    for remote in (datasets.SOURCES["mnist"].train_images, datasets.SOURCES["mnist"].train_labels,
                   datasets.SOURCES["mnist"].test_images, datasets.SOURCES["mnist"].test_labels):
        (folder / remote.filename).write_bytes(np.random.default_rng(1).bytes(500))


TRAIN_RESUME = ("train", TRAINING + ["--epoch", "1", "--resume"])
SEARCH_RESUME = ("search", ["--epoch", "1", "--resume"])
ALPHA_EPOCH = ("search_script", ["-m", "search", "--alpha-epoch", "1"])
EVALUATE = ("train_script", NETWORK + ["--model-arch-name", "train/DARTS_arch.json", "--evaluate",
                                       "train/final_params.h5", "-m", "eval"])
EXPORT = ("train_script", NETWORK + ["--model-arch-name", "train/DARTS_arch.json", "--export",
                                     "train/final_params.h5", "-m", "export"])
SUMMARY_OF = ("train_script", NETWORK + ["--model-arch-name", "search/DARTS_arch.json", "--summary", "-m", "summary"])
CURVES = ("plot", ["curves", "train", "-o", "curves.png"])
PARETO = ("plot", ["pareto", "train", "-o", "pareto.png"])
CONFIG = ("train_script", ["--config", "train/config.yaml", "-m", "again"])
CIFAR = ("train_script", ["--dataset", "cifar10", "--data-dir", "data", "--model-arch-name", "DARTS_V2",
                          "--num-cells", "3", "--output-filter", "4", "-f", "0", "--epoch", "1", "-m", "cifar"])
MNIST = ("train_script", ["--dataset", "mnist", "--data-dir", "data", "--model-arch-name", "DARTS_V2",
                          "--num-cells", "3", "--output-filter", "4", "-f", "0", "--epoch", "1", "-m", "mnist"])

# (file damaged, how, command, exit status, words of the one line)
DAMAGED = {
    "checkpoint cut short, training --resume": ("train/checkpoint.npz", cut_short, TRAIN_RESUME, 1,
                                               "cannot read checkpoint train/checkpoint.npz: it is damaged or cut "
                                               "short"),
    "checkpoint empty, training --resume": ("train/checkpoint.npz", emptied, TRAIN_RESUME, 1,
                                           "cannot read checkpoint train/checkpoint.npz: it is empty or cut short"),
    "checkpoint random bytes, training --resume": ("train/checkpoint.npz", random_bytes, TRAIN_RESUME, 1,
                                                  "train/checkpoint.npz: it is not a NumPy .npz file"),
    "checkpoint cut short, search --resume": ("search/checkpoint.npz", cut_short, SEARCH_RESUME, 1,
                                             "cannot read checkpoint search/checkpoint.npz: it is damaged or cut "
                                             "short"),
    "checkpoint empty, search --resume": ("search/checkpoint.npz", emptied, SEARCH_RESUME, 1,
                                         "cannot read checkpoint search/checkpoint.npz: it is empty or cut short"),
    "alpha history cut short, --alpha-epoch": ("search/alpha_history.npz", cut_short, ALPHA_EPOCH, 1,
                                               "cannot read alpha history search/alpha_history.npz: it is damaged"),
    "alpha history empty, --alpha-epoch": ("search/alpha_history.npz", emptied, ALPHA_EPOCH, 1,
                                           "search/alpha_history.npz: it is empty or cut short"),
    "alpha history random bytes, --alpha-epoch": ("search/alpha_history.npz", random_bytes, ALPHA_EPOCH, 1,
                                                  "search/alpha_history.npz: it is not a NumPy .npz file"),
    "parameters cut short, --evaluate": ("train/final_params.h5", cut_short, EVALUATE, 1,
                                         "cannot read parameter file 'train/final_params.h5'"),
    "parameters empty, --evaluate": ("train/final_params.h5", emptied, EVALUATE, 1,
                                     "cannot read parameter file 'train/final_params.h5'"),
    "parameters random bytes, --export": ("train/final_params.h5", random_bytes, EXPORT, 1,
                                          "cannot read parameter file 'train/final_params.h5'"),
    "series random bytes, training --resume": ("train/Training-loss.series.txt", random_bytes, TRAIN_RESUME, 1,
                                               "cannot read series file train/Training-loss.series.txt: it is not "
                                               "UTF-8 text"),
    "series with a damaged line, training --resume": ("train/Test-error.series.txt", line_replaced("1 0.5 x\n"),
                                                      TRAIN_RESUME, 1, "series file train/Test-error.series.txt is "
                                                      "damaged: line 1 is '1 0.5 x'"),
    "series emptied, training --resume": ("train/Test-loss.series.txt", emptied, TRAIN_RESUME, 1,
                                          "series file train/Test-loss.series.txt should hold one line for each of "
                                          "epochs 1..1"),
    "series with its epoch twice, search --resume": ("search/Validation-error.series.txt",
                                                     line_replaced("1 0.5\n1 0.5\n"), SEARCH_RESUME, 1,
                                                     "holds epochs 1, 1 (damaged, or written by two"),
    "series random bytes, darts_plot curves": ("train/Test-error.series.txt", random_bytes, CURVES, 1,
                                               "cannot read series file train/Test-error.series.txt"),
    "series with a line cut short, darts_plot curves": ("train/Test-error.series.txt", line_replaced("1\n"), CURVES, 1,
                                                        "series file train/Test-error.series.txt is truncated"),
    "architecture cut short, --summary": ("search/DARTS_arch.json", cut_short, SUMMARY_OF, 1,
                                          "search/DARTS_arch.json': invalid JSON"),
    "architecture random bytes, --summary": ("search/DARTS_arch.json", random_bytes, SUMMARY_OF, 1,
                                             "search/DARTS_arch.json' is not a text file"),
    "summary cut short, darts_plot pareto": ("train/summary.json", cut_short, PARETO, 1,
                                             "cannot read train/summary.json"),
    "summary random bytes, darts_plot pareto": ("train/summary.json", random_bytes, PARETO, 1,
                                                "cannot read train/summary.json"),
    "config random bytes, darts_plot pareto": ("train/config.yaml", random_bytes, PARETO, 1,
                                               "cannot read train/config.yaml: it is not UTF-8 text"),
    "config random bytes, --config": ("train/config.yaml", random_bytes, CONFIG, 2,
                                      "config file train/config.yaml is not UTF-8 text"),
    "config broken YAML, --config": ("train/config.yaml", line_replaced("epoch: [1\n"), CONFIG, 2,
                                     "broken YAML in config file train/config.yaml"),
    "saved config random bytes, training --resume": ("train/config.yaml", random_bytes, TRAIN_RESUME, 1,
                                                     "cannot read the saved settings train/config.yaml: it is not "
                                                     "UTF-8 text"),
    "saved config emptied, training --resume": ("train/config.yaml", emptied, TRAIN_RESUME, 1,
                                                "cannot read the saved settings train/config.yaml: it holds no "
                                                "settings"),
    "saved config broken YAML, search --resume": ("search/config.yaml", line_replaced("epoch: [1\n"), SEARCH_RESUME,
                                                  1, "cannot read the saved settings search/config.yaml"),
    # Placed by hand: never deleted, whatever is wrong with it, and the way on offline said.
    "CIFAR-10 archive placed by hand with another md5": (
        None, hand_placed_cifar, CIFAR, 1,
        f"data/cifar-10-binary.tar.gz: md5 {hashlib.md5(HAND_PLACED).hexdigest()} does not match the published "
        f"{datasets.SOURCES['cifar10'].archive.md5}; the file is kept: replace it with the official file"),
    "MNIST files placed by hand, random bytes": (None, damaged_mnist, MNIST, 1,
                                                 "data/mnist/train-images-idx3-ubyte.gz: not a readable gzip file"),
}


def script_main(kind, search):
    return {"train": darts_train.main, "train_script": darts_train.main, "search": search_main(search),
            "search_script": darts_search.main, "plot": darts_plot.main}[kind]


@pytest.mark.parametrize("case", DAMAGED)
def test_a_damaged_file_is_one_line_and_changes_nothing(case, runs):
    root, search = runs
    name, damage, (kind, argv), code, words = DAMAGED[case]
    damage(root / name if name else root)
    before = snapshot(root)

    outcome = drive(script_main(kind, search), argv)

    assert_one_line_failure(outcome, code)
    assert words in outcome.stderr, outcome.stderr
    assert snapshot(root) == before


# ------------------------------------------------------------------ failed writes

class FullDiskFile:
    """A file opened for writing on a disk that fills up: the first write puts half its bytes, then fails."""

    def __init__(self, file, failure):
        self._file, self._failure = file, failure

    def write(self, data):
        self._file.write(data[:len(data) // 2])
        self._file.flush()
        raise self._failure

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()


def fail_writes_of(monkeypatch, name, error_number, where):
    """Writes of the file `name` (a base name) fail with OSError(error_number), as a disk would say it, either
    where="write": at the first write to the file (or its temporary file), which puts part of its bytes (an
    .h5 file, which h5py writes in C: when h5py opens it for writing);
    "sync": when the file (or its temporary file) is synced to disk, after its bytes were written;
    "rename": when a temporary file is renamed to it."""
    failure = OSError(error_number, os.strerror(error_number))

    def aimed(path):  # the file, or a temporary file of it (.<name>.<pid>.tmp<ext>, or <name>.tmp of old)
        base = os.path.basename(os.fspath(path))
        return base == name or base.startswith((f".{name}.", f"{name}.")) and ".tmp" in base

    if where == "write":
        real_open, real_h5 = builtins.open, h5py.File

        def open_(file, mode="r", *args, **kwargs):
            opened = real_open(file, mode, *args, **kwargs)
            if isinstance(file, (str, os.PathLike)) and aimed(file) and any(m in mode for m in "wax"):
                return FullDiskFile(opened, failure)
            return opened

        def h5_file(file, mode="r", *args, **kwargs):
            if isinstance(file, (str, os.PathLike)) and aimed(file) and mode != "r":
                raise failure
            return real_h5(file, mode, *args, **kwargs)
        monkeypatch.setattr(builtins, "open", open_)
        monkeypatch.setattr(io, "open", open_)  # zipfile's, for np.savez to a file name
        monkeypatch.setattr(h5py, "File", h5_file)
    elif where == "sync":
        real_fsync = os.fsync

        def fsync(fd):
            number = fd if isinstance(fd, int) else fd.fileno()
            if aimed(os.readlink(f"/proc/self/fd/{number}")):
                raise failure
            return real_fsync(fd)
        monkeypatch.setattr(os, "fsync", fsync)
    else:
        real_replace = os.replace

        def replace(source, target, **kwargs):
            if aimed(target):
                raise failure
            return real_replace(source, target, **kwargs)
        monkeypatch.setattr(os, "replace", replace)


TRAIN_MORE = ("train", TRAINING + ["--epoch", "2", "--resume"])
SEARCH_MORE = ("search", ["--epoch", "2", "--resume"])

# (the file whose write fails, errno, where, command). config.yaml and summary.json are written before the
# first epoch, the others after an epoch's work: those of the search cost a search epoch each, and are slow.
FAILED_WRITES = {
    "config.yaml, full disk": ("train/config.yaml", errno.ENOSPC, "write", TRAIN_MORE),
    "config.yaml, permission denied": ("train/config.yaml", errno.EACCES, "write", TRAIN_MORE),
    "config.yaml, read-only file system": ("train/config.yaml", errno.EROFS, "write", TRAIN_MORE),
    "summary.json, quota exceeded": ("train/summary.json", errno.EDQUOT, "write", TRAIN_MORE),
    "summary.json, full disk at the rename": ("train/summary.json", errno.ENOSPC, "rename", TRAIN_MORE),
    "checkpoint, full disk at the sync": ("train/checkpoint.npz", errno.ENOSPC, "sync", TRAIN_MORE),
    "parameters of an epoch, full disk": ("train/params_epoch_002.h5", errno.ENOSPC, "write", TRAIN_MORE),
    "a series, full disk": ("train/Test-error.series.txt", errno.ENOSPC, "write", TRAIN_MORE),
}
SLOW_FAILED_WRITES = {
    "alpha history, full disk": ("search/alpha_history.npz", errno.ENOSPC, "write", SEARCH_MORE),
    "checkpoint, full disk at the rename": ("train/checkpoint.npz", errno.ENOSPC, "rename", TRAIN_MORE),
    "final parameters, full disk": ("train/final_params.h5", errno.ENOSPC, "write", TRAIN_MORE),
    "final parameters, full disk at the sync": ("train/final_params.h5", errno.ENOSPC, "sync", TRAIN_MORE),
    "architecture of an epoch, full disk": ("search/arch/epoch_002.json", errno.ENOSPC, "write", SEARCH_MORE),
    "genotype.txt, full disk": ("search/genotype.txt", errno.ENOSPC, "write", SEARCH_MORE),
    "search summary, full disk": ("search/search_summary.json", errno.ENOSPC, "write", SEARCH_MORE),
    "found architecture, read-only file system": ("search/DARTS_arch.json", errno.EROFS, "write", SEARCH_MORE),
}


@pytest.mark.parametrize("case", [*FAILED_WRITES, *(pytest.param(case, marks=pytest.mark.slow)
                                                     for case in SLOW_FAILED_WRITES)])
def test_a_failed_write_is_one_line_and_keeps_the_old_file(case, runs, monkeypatch):
    root, search = runs
    name, error_number, where, (kind, argv) = {**FAILED_WRITES, **SLOW_FAILED_WRITES}[case]
    old = (root / name).read_bytes() if (root / name).exists() else None
    fail_writes_of(monkeypatch, os.path.basename(name), error_number, where)

    outcome = drive(script_main(kind, search), argv)

    assert_one_line_failure(outcome, 1)
    assert f"{name}: {os.strerror(error_number)}" in outcome.stderr, outcome.stderr
    assert ((root / name).read_bytes() if (root / name).exists() else None) == old
    assert temporaries(root) == []


@pytest.mark.slow
def test_after_a_full_disk_during_the_checkpoint_write_the_run_resumes(runs, monkeypatch):
    """Part of the new checkpoint is written, then the disk is full: the part goes, the old checkpoint stays,
    and once there is room again the run resumes from it."""
    root, _ = runs
    old = (root / "train" / "checkpoint.npz").read_bytes()
    with monkeypatch.context() as disk:
        fail_writes_of(disk, "checkpoint.npz", errno.ENOSPC, "write")
        outcome = drive(darts_train.main, TRAINING + ["--epoch", "2", "--resume"])
    assert outcome.error_lines == ["error: cannot write train/checkpoint.npz: No space left on device"]
    assert (root / "train" / "checkpoint.npz").read_bytes() == old and temporaries(root) == []

    again = drive(darts_train.main, TRAINING + ["--epoch", "2", "--resume"])
    assert again.code == 0, again.stderr
    assert "resuming from train/checkpoint.npz after epoch 1" in again.stdout
    assert (root / "train" / "checkpoint.npz").read_bytes() != old


def test_a_failed_append_leaves_no_half_line(tmp_path, monkeypatch):
    from utils.run.monitoring import EpochSeries, series_path
    series = EpochSeries(str(tmp_path), ("Loss",))
    series.add(0, {"Loss": 0.5})
    fail_writes_of(monkeypatch, "Loss.series.txt", errno.ENOSPC, "write")
    with pytest.raises(OSError, match="cannot write .*Loss.series.txt: No space left on device"):
        series.add(1, {"Loss": 0.25})
    assert pathlib.Path(series_path(str(tmp_path), "Loss")).read_text() == "1 0.5\n"


def test_any_other_failure_of_the_file_system_is_one_line():
    with pytest.raises(SystemExit) as stop, contextlib.redirect_stderr(io.StringIO()) as err:
        with fail_cleanly():
            raise OSError(errno.EIO, os.strerror(errno.EIO), "runs/x/file")
    assert stop.value.code == 1 and err.getvalue() == "error: runs/x/file: Input/output error\n"


def test_a_temporary_file_a_killed_run_left_goes_when_the_run_resumes(runs):
    root, _ = runs
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = root / "train" / f".checkpoint.npz.{int(ended.stdout)}.tmp.npz"
    left.write_bytes(b"PK\x03\x04 half a checkpoint")
    outcome = drive(darts_train.main, TRAINING + ["--epoch", "1", "--resume"])
    assert outcome.code == 0, outcome.stderr
    assert temporaries(root) == []


# ------------------------------------------------------------------ the atomic writer itself

def test_an_atomic_write_replaces_the_file_whole_or_not_at_all(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write("new, half written")
            assert path.read_text() == "old"  # not before the block ends
            raise RuntimeError("killed")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["file.txt"]
    with atomic_write(path) as f:
        f.write("new")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["file.txt"]


def test_a_writer_by_name_gets_the_extension_it_goes_by(tmp_path):
    with atomic_path(tmp_path / "arrays.npz") as temporary:
        assert temporary.endswith(".npz") and os.path.basename(temporary).startswith(".arrays.npz.")
        np.savez(temporary, a=np.arange(3))  # np.savez would add .npz to any other name
    assert os.listdir(tmp_path) == ["arrays.npz"]
    np.testing.assert_array_equal(np.load(tmp_path / "arrays.npz")["a"], np.arange(3))


def test_temporaries_of_dead_processes_are_removed_and_of_live_ones_kept(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f".checkpoint.npz.{int(ended.stdout)}.tmp.npz"
    mine = tmp_path / temporary_name("summary.json")
    for path in (dead, mine, tmp_path / "checkpoint.npz", tmp_path / ".hidden"):
        path.write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path) == [str(dead)]
    assert sorted(os.listdir(tmp_path)) == sorted([mine.name, "checkpoint.npz", ".hidden"])

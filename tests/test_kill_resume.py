"""A run killed with SIGKILL anywhere, its writes included, and resumed ends as if it had never been killed.

darts_train.py and darts_search.py run as real processes on the embedded digits with tiny networks. Each
is run once without interruption, and once as a chain: killed at one point, resumed with --resume, killed
again at the next point, and so on, then resumed to its end. The points are moments inside the run's
writes (the instant a temporary file of the checkpoint, of an epoch's parameters or of the alpha history
appears, i.e. between its first byte and its rename) and random moments. The chain's results must equal
the uninterrupted run's bit for bit (parameters, alpha history, architecture, every series but the epoch
times), and no temporary file may be left. Slow: each process pays nnabla's start-up.
"""
import glob
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from utils.data.pipeline import BatchLoader

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAINING = [os.path.join(ROOT, "darts_train.py"), "--dataset", "digits", "--num-cells", "3", "--output-filter", "4",
            "-f", "0", "-b", "100", "--model-arch-name", "DARTS_V2", "--save-interval", "1", "--epoch", "4"]
# train-portion 0.9 leaves the alpha step 150 images: 4 steps an epoch of 32.
SEARCH = [os.path.join(ROOT, "darts_search.py"), "--dataset", "digits", "--num-cells", "1", "--output-filter", "2",
          "-b", "32", "--train-portion", "0.9", "--epoch", "4"]


def command(script, run_dir):
    argv = [sys.executable, *script, "-m", run_dir]
    return argv + (["--model-arch-name", os.path.join(run_dir, "DARTS_arch.json")] if script is SEARCH else [])


def run_to_the_end(script, run_dir, cwd, resume):
    done = subprocess.run(command(script, run_dir) + (["--resume"] if resume else []), cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done


def temporary_of(name):
    """A condition: a temporary file of `name` (a base name in the run directory) exists, after the run's first
    checkpoint (a run killed before it has nothing to resume: --restart starts it again)."""
    def appeared(run_dir):
        return (os.path.exists(os.path.join(run_dir, "checkpoint.npz"))
                and bool(glob.glob(os.path.join(run_dir, f".{name}.*.tmp*"))))
    appeared.describe = f"a temporary file of {name} appears"
    return appeared


def during_epoch(epoch, seconds):
    """A condition: `seconds` after epoch `epoch` (1-based, > 1) began, i.e. after the line of the epoch before it
    in the series of epoch times and a checkpoint."""
    began = {}

    def passed(run_dir):
        try:
            with open(os.path.join(run_dir, "Epoch-time.series.txt")) as f:
                lines = len(f.readlines())
        except FileNotFoundError:
            return False
        if lines >= epoch - 1 and os.path.exists(os.path.join(run_dir, "checkpoint.npz")):
            began.setdefault("at", time.monotonic())
        return "at" in began and time.monotonic() - began["at"] >= seconds
    passed.describe = f"{seconds:.3f} s into epoch {epoch}"
    return passed


def kill_when(script, run_dir, cwd, condition, resume):
    """Starts the script and SIGKILLs it as soon as condition(run_dir) holds (polled about every 0.5 ms); returns
    (whether a temporary file was left, i.e. the kill came inside a write; the damaged files it left), or None
    if the run ended first."""
    process = subprocess.Popen(command(script, run_dir) + (["--resume"] if resume else []), cwd=cwd,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while process.poll() is None:
            if condition(os.path.join(cwd, run_dir)):
                process.send_signal(signal.SIGKILL)
                process.wait()
                return bool(temporaries(os.path.join(cwd, run_dir))), damaged_files(os.path.join(cwd, run_dir))
            time.sleep(0.0005)
        return None
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stderr.close()


def temporaries(run_dir):
    """Temporary files: ops.atomic_file's hidden ones, and the <name>.tmp of writers before it."""
    return [path for pattern in (".*.tmp*", "*.tmp*", "*.partial")
            for path in glob.glob(os.path.join(run_dir, "**", pattern), recursive=True)]


def damaged_files(run_dir):
    """The files of a run (temporary files aside) that are not whole: parameters, arrays, JSON, YAML, series
    (a line cut short) and pictures (no PNG end) that do not read back."""
    import json

    import yaml
    damaged = []
    left = set(temporaries(run_dir))
    for path in glob.glob(os.path.join(run_dir, "**", "*"), recursive=True):
        if path in left or os.path.isdir(path):
            continue
        try:
            if path.endswith(".h5"):
                h5_arrays(path)
            elif path.endswith(".npz"):
                with np.load(path) as data:
                    [data[key] for key in data.files]
            elif path.endswith(".json"):
                with open(path) as f:
                    json.load(f)
            elif path.endswith(".yaml"):
                with open(path) as f:
                    assert isinstance(yaml.safe_load(f), dict)
            elif path.endswith(".series.txt"):
                with open(path) as f:
                    text = f.read()
                assert text == "" or text.endswith("\n") and all(len(line.split()) == 2 for line in text.splitlines())
            elif path.endswith(".png"):
                with open(path, "rb") as f:
                    assert f.read().endswith(b"IEND\xaeB`\x82")
        except Exception:  # noqa: B902 (whatever a reader raises, the file is damaged)
            damaged.append(os.path.relpath(path, run_dir))
    return damaged


def run_chain(script, run_dir, cwd, conditions):
    """Kills at each condition in turn (the first run fresh, the others resumed), then resumes to the end;
    returns [(condition's description, whether the kill came inside a write)]. No kill may leave a damaged file."""
    kills = []
    for number, condition in enumerate(conditions):
        killed = kill_when(script, run_dir, cwd, condition, resume=number > 0)
        assert killed is not None, f"the run ended before {condition.describe}"
        inside, damaged = killed
        assert damaged == [], f"killed when {condition.describe}: {damaged}"
        kills.append((condition.describe, inside))
    run_to_the_end(script, run_dir, cwd, resume=True)
    return kills


def h5_arrays(path):
    values = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: values.__setitem__(name, item[...]) if isinstance(item, h5py.Dataset) else None)
    return values


def results(run_dir):
    """What a run computed, by file: arrays of the .h5 and .npz files, the text of the rest (series but the
    epoch times, JSON, genotype)."""
    found = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "**", "*"), recursive=True)):
        name = os.path.relpath(path, run_dir)
        if name.endswith(".h5"):
            found[name] = h5_arrays(path)
        elif name.endswith(".npz") and not name.startswith("checkpoint"):
            with np.load(path) as data:
                found[name] = {key: data[key] for key in data.files}
        elif name.endswith((".series.txt", ".json", ".txt")) and not name.startswith("Epoch-time"):
            with open(path) as f:
                found[name] = f.read()
    return found


def assert_same_results(uninterrupted, chained):
    assert sorted(chained) == sorted(uninterrupted)
    for name, value in uninterrupted.items():
        if isinstance(value, dict):
            assert sorted(chained[name]) == sorted(value), name
            for key in value:
                np.testing.assert_array_equal(chained[name][key], value[key], err_msg=f"{name}: {key}")
        else:
            assert chained[name] == value, name


@pytest.mark.slow
def test_a_training_killed_three_times_ends_as_an_uninterrupted_one(tmp_path):
    rng = np.random.default_rng(0)
    run_to_the_end(TRAINING, "uninterrupted", str(tmp_path), resume=False)
    kills = run_chain(TRAINING, "chain", str(tmp_path), [
        temporary_of("checkpoint.npz"),  # epoch 2's checkpoint is being written: the resume is from epoch 1
        temporary_of("params_epoch_003.h5"),  # epoch 3's parameters are being written
        during_epoch(4, rng.uniform(0, 0.5)),  # anywhere in the last epoch's steps, pictures and writes
    ])
    assert [inside for _, inside in kills[:2]] == [True, True], kills
    assert_same_results(results(str(tmp_path / "uninterrupted")), results(str(tmp_path / "chain")))
    assert temporaries(str(tmp_path / "chain")) == []


@pytest.mark.slow
def test_a_search_killed_twice_ends_as_an_uninterrupted_one(tmp_path):
    rng = np.random.default_rng(1)
    run_to_the_end(SEARCH, "uninterrupted", str(tmp_path), resume=False)
    kills = run_chain(SEARCH, "chain", str(tmp_path), [
        temporary_of("alpha_history.npz"),  # the alphas of epoch 2 are being written
        during_epoch(3, rng.uniform(0, 0.5)),
    ])
    assert kills[0][1], kills
    assert_same_results(results(str(tmp_path / "uninterrupted")), results(str(tmp_path / "chain")))
    assert temporaries(str(tmp_path / "chain")) == []


def test_a_resumed_loader_continues_after_the_batches_it_had_given():
    """A search's epoch takes as many steps as its smaller half has batches, so the loader of the larger half
    is in the middle of one of its own epochs when a search epoch ends; its resume continues there."""
    images = np.random.default_rng(2).integers(0, 256, (10, 1, 8, 8), dtype=np.uint8)
    settings = dict(batch_size=3, mean=(0.5,), std=(0.25,), augment="darts", hflip=True, cutout_length=2, seed=5)
    whole = BatchLoader(images, np.arange(10), **settings)  # 3 steps an epoch
    given = [whole.next() for _ in range(8)]
    resumed = BatchLoader(images, np.arange(10), **settings, batches_drawn=4)  # in its second epoch, at step 1
    try:
        for x, y in given[4:]:
            next_x, next_y = resumed.next()
            np.testing.assert_array_equal(next_x, x)
            np.testing.assert_array_equal(next_y, y)
    finally:
        whole.close()
        resumed.close()

"""A run directory is a safe place (issue 21): how a run opens its directory.

The rows drive darts_search.py and darts_train.py as a user would (tests/reliability.py) against a copy of a
finished or interrupted tiny run, or at an unusable path, and assert the exit status, one line without a
traceback, and that every file there is byte-identical afterwards: a run that is refused, or that fails
before its setup is done, writes nothing and moves nothing.
"""
import os
import shutil
import subprocess
import sys

import pytest
import yaml

import darts_search
import darts_train
import scripts.demo
import utils.data.sources
import utils.run.run
from tests.conftest import ROOT, tiny_search_runner
from tests.helpers import digits_head
from tests.reliability import assert_one_line_failure, drive, snapshot
from tests.test_recurrent_training import tiny, write_corpus
from utils.run.checkpoint import save_checkpoint
from utils.run.config_file import changed_settings
from utils.run.run import Run
from utils.run.run_directory import RunDirectoryError, aside_name
from utils.run_files import ARCHITECTURE, CHECKPOINT, CONFIG, SEARCH_SUMMARY

# The tiny search of tests/conftest.py's tiny_search_runner (two steps an epoch on 64 digits) and a tiny
# training on the same images (four steps an epoch).
SEARCH = ["--dataset", "digits", "--batch-size", "16", "--num-cells", "3", "--output-filter", "4", "--seed", "3",
          "--epoch", "1"]
TRAIN = ["--dataset", "digits", "--batch-size", "16", "--num-cells", "3", "--output-filter", "4", "-f", "0",
         "--model-arch-name", "DARTS_V2", "--epoch", "1"]
HOLDS_A_RUN = "holds a run"


@pytest.fixture(scope="module")
def tiny_data():
    """The embedded digits cut to 64 training images for both scripts, and the pictures off, for the module."""
    patch = pytest.MonkeyPatch()
    tiny_search_runner(patch)
    patch.setattr(utils.data.sources, "load_dataset", lambda name, data_dir: digits_head(64))
    yield
    patch.undo()


def search(*argv):
    return drive(darts_search.main, SEARCH + [str(a) for a in argv])


def train(*argv):
    return drive(darts_train.main, TRAIN + [str(a) for a in argv])


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory):
    """{kind: directory} of tiny runs made once: a finished search (its cell in its directory) and one
    interrupted after its first of two epochs, a finished training, and a finished --seeds training."""
    base = tmp_path_factory.mktemp("runs")
    made = {"search": base / "search", "training": base / "training", "seeds": base / "seeds"}
    assert search("-m", made["search"], "--model-arch-name", made["search"] / ARCHITECTURE).code == 0
    assert train("-m", made["training"]).code == 0
    assert train("-m", made["seeds"], "--seeds", "0").code == 0
    # An interruption in epoch 2 of 2 leaves what epoch 1 left, with the 2-epoch settings.
    interrupted = made["interrupted"] = base / "interrupted"
    shutil.copytree(made["search"], interrupted)
    for name in (SEARCH_SUMMARY, ARCHITECTURE):
        os.remove(interrupted / name)
    config = yaml.safe_load((interrupted / CONFIG).read_text())
    config.update(epoch=2, monitor_path=str(interrupted), model_arch_name=str(interrupted / ARCHITECTURE))
    (interrupted / CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    return made


@pytest.fixture
def copy_of(runs, tmp_path):
    """copy_of(kind): a fresh copy of that run for one case, at tmp_path/<kind>."""
    def copy(kind):
        return shutil.copytree(runs[kind], tmp_path / kind)
    return copy


def in_run(directory):
    """The flags that point a search at its run directory as the run's own command did."""
    return ["-m", directory, "--model-arch-name", directory / ARCHITECTURE]


# (id, the run copied, the script, its flags after the run's directory flags, exit status, words of the message)
REFUSED = [
    ("rerun a finished search", "search", search, [], 1, [HOLDS_A_RUN, "add --resume to continue it",
                                                          "or --restart to start over", ".previous-1"]),
    ("rerun an interrupted search", "interrupted", search, ["--epoch", "2"], 1, [HOLDS_A_RUN, "config.yaml"]),
    ("rerun a finished training", "training", train, [], 1, [HOLDS_A_RUN, "--restart"]),
    ("rerun a --seeds training", "seeds", train, ["--seeds", "0"], 1, [HOLDS_A_RUN, "seed_0"]),
    ("--resume with --restart", "search", search, ["--resume", "--restart"], 2, ["exclude each other"]),
    ("--restart, setup fails: batch larger than the split", "search", search, ["--restart", "--batch-size", "5000"],
     1, ["--batch-size 5000 is larger than"]),
    ("--resume --force-resume, setup fails", "search", search,
     ["--resume", "--force-resume", "--batch-size", "5000"], 1, ["--batch-size 5000 is larger than"]),
    ("training --restart, setup fails", "training", train, ["--restart", "--batch-size", "5000"], 1,
     ["--batch-size 5000 is larger than"]),
    ("--resume with a changed setting", "search", search, ["--resume", "--lr", "0.1"], 1,
     ["lr (0.025 -> 0.1)", "add --force-resume"]),
    ("--resume of a --seeds run with a changed setting", "seeds", train,
     ["--seeds", "0", "--resume", "--lr", "0.1"], 1, ["lr (0.025 -> 0.1)"]),
    ("--resume, --model-arch-name a directory", "search", search, ["--resume", "--model-arch-name", "."], 1,
     ["--model-arch-name . is a directory"]),
    ("--resume, --model-save-path a file", "search", search, ["--resume", "-o", "{run}/config.yaml"], 1,
     ["--model-save-path", "is a file, not a directory"]),
]


@pytest.mark.parametrize("kind, script, flags, code, words", [row[1:] for row in REFUSED],
                         ids=[row[0] for row in REFUSED])
def test_a_refused_run_leaves_the_earlier_one_byte_identical(copy_of, kind, script, flags, code, words):
    directory = copy_of(kind)
    before = snapshot(directory.parent)
    own = in_run(directory) if script is search else ["-m", directory]
    outcome = script(*own, *[str(flag).format(run=directory) for flag in flags])
    assert_one_line_failure(outcome, code)
    assert all(word in outcome.stderr for word in words), outcome.stderr
    assert "monitor_path" not in outcome.stderr  # each copy is in another place than its run was: no change
    assert snapshot(directory.parent) == before  # nothing moved aside, written or truncated
    assert "epoch 1/" not in outcome.stdout  # refused before any work


def unusable(tmp_path, kind):
    """A path of `kind` that no run can write into."""
    if kind == "a file":
        (tmp_path / "taken").write_text("a file of the user's\n")
        return tmp_path / "taken"
    if kind == "below a file":
        (tmp_path / "taken").write_text("a file of the user's\n")
        return tmp_path / "taken" / "run"
    if kind == "read-only directory":
        if os.geteuid() == 0:
            pytest.skip("root writes into a directory without write permission")
        (tmp_path / "read-only").mkdir(mode=0o555)
        return tmp_path / "read-only" / "run"
    return {"under /proc": "/proc/no-such-run", "under /sys": "/sys/no-such-run"}[kind]


PATH_KINDS = ("a file", "below a file", "under /proc", "under /sys", "read-only directory")
UNUSABLE = [(script, flag, kind) for script, flag in ((search, "-m"), (search, "-o"), (search, "--model-arch-name"),
                                                     (train, "-m"), (train, "-o"))
            for kind in PATH_KINDS if (flag, kind) != ("--model-arch-name", "a file")]


@pytest.mark.parametrize("script, flag, kind", UNUSABLE,
                         ids=[f"{script.__name__} {flag} {kind}" for script, flag, kind in UNUSABLE])
def test_an_unusable_output_path_is_one_line_before_any_work(tiny_data, tmp_path, script, flag, kind):
    path = unusable(tmp_path, kind)
    monitor = tmp_path / "new-run"
    before = snapshot(tmp_path)
    outcome = script("-m", monitor, flag, path) if flag != "-m" else script("-m", path)
    assert_one_line_failure(outcome, 1)
    assert str(path) in outcome.stderr
    assert "epoch 1/" not in outcome.stdout
    assert snapshot(tmp_path) == before  # not a file written (at most the empty directory of the new run)


def test_model_arch_name_a_directory_stops_the_search_before_it_runs(tiny_data, tmp_path):
    outcome = search("-m", tmp_path / "run", "--model-arch-name", tmp_path)
    assert_one_line_failure(outcome, 1)
    assert f"--model-arch-name {tmp_path} is a directory" in outcome.stderr
    assert os.listdir(tmp_path / "run") == []  # not a file of the run written, let alone an epoch run


@pytest.mark.slow
def test_restart_moves_the_old_run_aside_byte_identical_and_starts_over(copy_of, tmp_path, monkeypatch):
    directory = copy_of("search")
    before = snapshot(directory)
    monkeypatch.chdir(tmp_path)  # where the default --model-arch-name used to write
    outcome = search("-m", directory, "--restart")
    assert outcome.code == 0, outcome.stderr
    aside = tmp_path / "search.previous-1"
    assert snapshot(aside) == before
    assert f"moved to {aside}" in outcome.stdout
    new = snapshot(directory)
    assert {CONFIG, CHECKPOINT, ARCHITECTURE} <= set(new)  # a whole new run, its cell in its own directory
    assert not (tmp_path / ARCHITECTURE).exists()
    # Given back to --config, the new run's settings would not move it aside again.
    assert "restart" not in yaml.safe_load(new[CONFIG]) and yaml.safe_load(new[CONFIG])["lr"] == 0.025


def test_restart_never_reuses_the_name_of_an_earlier_run_moved_aside(tmp_path):
    (tmp_path / "run.previous-1").mkdir()
    (tmp_path / "run.previous-3").write_text("")
    assert aside_name(str(tmp_path / "run")) == str(tmp_path / "run.previous-2")
    assert aside_name(str(tmp_path / "run") + "/") == str(tmp_path / "run.previous-2")


@pytest.mark.slow
def test_a_moved_or_copied_run_resumes_without_force_resume(runs, tmp_path):
    moved = tmp_path / "elsewhere" / "search"
    shutil.copytree(runs["search"], moved)
    original = snapshot(runs["search"])
    outcome = search(*in_run(moved), "--resume", "--data-dir", tmp_path / "data")
    assert outcome.code == 0, outcome.stderr
    assert f"resuming from {moved / CHECKPOINT} after epoch 1" in outcome.stdout
    assert "--force-resume" not in outcome.stdout + outcome.stderr
    assert snapshot(runs["search"]) == original


LOCK_HOLDER = ("import sys; sys.path.insert(0, sys.argv[1]); from utils.run.lock import DirectoryLock; "
               "lock = DirectoryLock(sys.argv[2], '--monitor-path'); print('locked', flush=True); sys.stdin.read()")


def test_a_second_process_on_the_run_directory_is_refused_and_a_killed_ones_lock_is_gone(copy_of):
    directory = copy_of("search")
    before = snapshot(directory)
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, ROOT, str(directory)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        outcome = search(*in_run(directory), "--resume")
        assert_one_line_failure(outcome, 1)
        assert f"--monitor-path {directory} is in use: another process is running there" in outcome.stderr
        assert snapshot(directory) == before
    finally:
        holder.kill()  # as kill -9: the process never releases the lock itself
        holder.wait()
    outcome = search(*in_run(directory), "--resume")
    assert outcome.code == 0, outcome.stderr


LOCK_TRY = ("import sys; sys.path.insert(0, sys.argv[1]); from ops.user_error import UserError; "
            "from utils.run.lock import DirectoryLock\n"
            "try:\n    DirectoryLock(sys.argv[2], '--monitor-path')\n"
            "except UserError as err:\n    sys.exit(f'error: {err}')")


def test_an_open_run_holds_its_directorys_lock_until_it_closes(tmp_path):
    settings = {"monitor_path": str(tmp_path / "run"), "model_save_path": None, "epoch": 1, "resume": False,
                "force_resume": False}
    run = Run.open(settings, ())

    def second_process():
        return subprocess.run([sys.executable, "-c", LOCK_TRY, ROOT, settings["monitor_path"]],
                              capture_output=True, text=True)
    refused = second_process()
    assert refused.returncode == 1 and "is in use" in refused.stderr, refused.stderr
    run.close()
    assert second_process().returncode == 0


# --- what a resume compares ------------------------------------------------------------------------------

def saved_run(directory, **settings):
    directory.mkdir(parents=True)
    (directory / CONFIG).write_text(yaml.safe_dump(settings))
    return str(directory / CONFIG)


def test_paths_that_moved_with_the_run_are_not_changes_but_what_it_computes_is(tmp_path):
    old = tmp_path / "old"
    saved = dict(monitor_path=str(old), model_save_path=str(old / "params"), data_dir="/data/a", lr=0.025,
                 model_arch_name=str(old / "cell.json"), batch_size=64)
    path = saved_run(old, **saved)
    new = str(tmp_path / "new")
    moved = dict(saved, monitor_path=new, model_save_path=os.path.join(new, "params"), data_dir="/mnt/b",
                 model_arch_name=os.path.join(new, "cell.json"))
    assert changed_settings(moved, path) == []
    # A cell from outside the run directory is what it trains, wherever the run is.
    assert changed_settings(dict(moved, model_arch_name=str(tmp_path / "other.json")), path) == [
        f"model_arch_name ({saved['model_arch_name']!r} -> {str(tmp_path / 'other.json')!r})"]
    # ... unless the run only writes it (the search's --model-arch-name): then it is where, not what.
    assert changed_settings(dict(moved, model_arch_name="x.json"), path, outputs=("model_arch_name",)) == []
    assert changed_settings(dict(moved, lr=0.1, batch_size=32), path) == ["lr (0.025 -> 0.1)",
                                                                          "batch_size (64 -> 32)"]
    # A --seeds run may gain seeds (each is a run of its own), and a run epochs.
    assert changed_settings(dict(moved, seeds=[0, 1, 2], epoch=9), saved_run(tmp_path / "s", **saved,
                                                                             seeds=[0, 1], epoch=5)) == []


def test_force_resume_accepts_changed_settings_naming_them_and_skips_no_other_check(tmp_path, capsys):
    directory = tmp_path / "run"
    saved_run(directory, monitor_path=str(directory), model_save_path=None, epoch=1, lr=0.025)
    save_checkpoint(str(directory / CHECKPOINT), {}, {}, {"epoch": 0})
    settings = dict(monitor_path=str(directory), model_save_path=None, epoch=1, lr=0.1, resume=True,
                    force_resume=True)
    Run.open(settings, ()).close()
    log = capsys.readouterr().out
    assert "--force-resume: resuming with settings that differ" in log and "lr (0.025 -> 0.1)" in log
    (directory / "taken").write_text("")
    with pytest.raises(RunDirectoryError, match="is a file"):
        Run.open(dict(settings, model_save_path=str(directory / "taken")), ())


@pytest.mark.slow
def test_the_demo_run_again_starts_over_and_keeps_the_first_run(tmp_path, monkeypatch, capsys):
    data = digits_head(128)  # the demo's batch of 64: a step on each half of the search's split
    monkeypatch.setattr(darts_search, "load_dataset", lambda name, data_dir: data)
    monkeypatch.setattr(utils.data.sources, "load_dataset", lambda name, data_dir: data)
    monkeypatch.setattr(utils.run.run, "draw_run", lambda monitor_dir: [])
    demo = ["--out", str(tmp_path), "--search-epochs", "1", "--train-epochs", "1"]
    scripts.demo.main(demo)
    first = {name: snapshot(tmp_path / name) for name in ("search", "train")}
    scripts.demo.main(demo)
    assert {name: snapshot(tmp_path / f"{name}.previous-1") for name in first} == first
    assert (tmp_path / "train" / "evaluation.json").exists()


def test_a_recurrent_search_writes_its_cell_in_its_directory_and_is_never_rerun_over(tmp_path, monkeypatch):
    monkeypatch.setattr(utils.run.run, "draw_run", lambda monitor_dir: [])
    monkeypatch.chdir(tmp_path)  # where the default --model-arch-name used to write
    corpus, monitor = write_corpus(tmp_path / "text"), tmp_path / "rnn-search"
    search_once = tiny(corpus, monitor, "--epoch", "1", "--bptt", "3")
    assert drive(darts_search.main, search_once).code == 0
    assert (monitor / "DARTS_rnn_arch.json").exists() and not (tmp_path / "DARTS_rnn_arch.json").exists()
    before = snapshot(monitor)
    outcome = drive(darts_search.main, search_once)
    assert_one_line_failure(outcome, 1)
    assert HOLDS_A_RUN in outcome.stderr and snapshot(monitor) == before


def run_settings(monitor, save=None, **flags):
    return {"monitor_path": str(monitor), "model_save_path": save and str(save), "epoch": 1, "resume": False,
            "restart": False, "force_resume": False, **flags}


def an_earlier_run(monitor, save):
    """A run's files: config.yaml in monitor, its checkpoint in save."""
    run = Run.open(run_settings(monitor, save), ())
    run.start({}, {}, resume=False)
    save_checkpoint(str(save / CHECKPOINT), {}, {}, {"epoch": 1})
    run.close()


@pytest.mark.parametrize("save_dir", ["the monitor path", "inside it", "elsewhere"])
def test_restart_moves_every_directory_of_the_earlier_run_once(tmp_path, save_dir):
    monitor = tmp_path / "run"
    save = {"the monitor path": monitor, "inside it": monitor / "params", "elsewhere": tmp_path / "params"}[save_dir]
    an_earlier_run(monitor, save)
    before = snapshot(tmp_path)
    with pytest.raises(RunDirectoryError, match="holds a run"):
        Run.open(run_settings(monitor, save), ())
    assert snapshot(tmp_path) == before
    run = Run.open(run_settings(monitor, save, restart=True), ())
    assert snapshot(tmp_path) == before  # nothing moves before the run starts
    run.start({}, {}, resume=False)
    run.close()
    moved = {os.path.relpath(path, tmp_path).replace(".previous-1", ""): data
             for path, data in ((os.path.join(tmp_path, name), data) for name, data in snapshot(tmp_path).items())
             if ".previous-1" in path}
    assert moved == before  # every file of the earlier run, byte for byte, under <dir>.previous-1
    assert not (save / CHECKPOINT).exists() and (monitor / CONFIG).exists()

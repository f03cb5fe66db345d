"""What every script's run shares: seeding, clean failure, and the epoch loop's bookkeeping.

Run owns a run's directories, its resume from the last checkpoint, its per-epoch series and the
end-of-epoch routine (series, checkpoint, log line, pictures), so that each script only says what
one of its epochs computes.
"""
import contextlib
import json
import os
import sys
import time

import nnabla as nn
import numpy as np
from tqdm import tqdm

from ops.atomic_file import atomic_write, remove_stale_temporaries
from ops.user_error import UserError
from utils.pictures.run_pictures import draw_run
from utils.run.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from utils.run.config_file import refuse_changed_settings, write_config
from utils.run.monitoring import EpochSeries, check_series, series_path
from utils.run.run_directory import RunDirectories
from utils.run_files import CELL_PICTURES, CHECKPOINT, CONFIG, EPOCH_ARCHITECTURES, EPOCH_TIME


def seed_everything(seed):
    """Seeds nnabla's generator (parameter initialisers) and returns a numpy RandomState for the caller."""
    nn.random.seed(seed)
    np.random.seed(seed)
    return np.random.RandomState(seed)


def caused_by_interrupt(error):
    """Whether `error` is a KeyboardInterrupt or comes of one (its __cause__ or __context__ chain holds one).

    Ctrl-C raises KeyboardInterrupt in whatever Python code runs, and during a forward or backward pass
    that is often a Python callback nnabla's C++ code calls (the forward, backward and grad-dependency
    methods of our cpu kernels' PythonFunctions): the callback cannot hand the exception back through
    C++, which goes on until nnabla's Cython layer finds an exception set and raises SystemError chained
    to it.
    """
    pending, seen = [error], set()
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        pending += [error.__cause__, error.__context__]
    return False


def describe_os_error(error):
    """An OSError as one line: the path(s) it names, then the system's reason."""
    reason = error.strerror or " ".join(str(error).split()) or type(error).__name__
    paths = [os.fspath(p) for p in (error.filename, error.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


@contextlib.contextmanager
def fail_cleanly():
    """Turns the errors a user can cause (ops.user_error.UserError) and the failures of the file system
    (OSError: a full disk, a read-only or unwritable path, a file where a directory should be) into one
    line on stderr and exit status 1, and an interruption (Ctrl-C, SIGINT), however nnabla passes it on,
    into one line and exit status 130."""
    try:
        yield
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except BaseException as err:
        if caused_by_interrupt(err):
            print("interrupted: run again with --resume to continue from the last finished epoch", file=sys.stderr)
            sys.exit(130)
        if isinstance(err, OSError):
            print(f"error: {describe_os_error(err)}", file=sys.stderr)
            sys.exit(1)
        raise


def write_json(path, data):
    """Whole file or the old one: a crash mid-write never leaves half a JSON file (ops.atomic_file)."""
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def _flag(name):
    return "--" + name.replace("_", "-")


class Run:
    """The output directories, checkpoint and series of one run of `epochs` epochs.

    monitor_path receives the series, pictures and JSON outputs; save_path (default monitor_path)
    the checkpoint and parameter files. series_names are the MonitorSeries written every epoch;
    EPOCH_TIME among them is filled in by end_epoch. A script opens its run with Run.open, builds what
    the run needs, then calls start(), the run's first write.
    """

    def __init__(self, monitor_path, save_path, epochs, series_names):
        self.monitor_path = monitor_path
        self.save_dir = save_path or monitor_path
        self.checkpoint_path = os.path.join(self.save_dir, CHECKPOINT)
        self.epochs = epochs
        self.series_names = series_names
        self.start_epoch = 0
        # Whether start() continues from the checkpoint (--resume, and one exists): the weights are then the
        # checkpoint's, whatever would set them otherwise (darts_train.py --init-params). Set by Run.open.
        self.resumes = False
        self.series = None
        self._state = None
        self._epoch_started = None
        self.clock = None
        self.settings = None  # written to config.yaml by start(), for a run opened by Run.open
        self.directories = None  # the RunDirectories of a run opened by Run.open
        self.outputs = ()
        self.parent = False
        # False on the ranks after the first of a data-parallel run: they read rank 0's checkpoint and write nothing.
        self.writes = True

    @classmethod
    def open(cls, settings, series_names, outputs=None, writes=True):
        """Every script's first step, before it reads a checkpoint or builds a graph: the run of `settings`
        ({name: value}, the script's vars(args)), of which nothing is written before start().

        Its monitor_path, model_save_path, epoch, resume, restart and force_resume settings open the run;
        outputs: {setting name: path} of the files the run writes at its end (the search's model_arch_name and
        the path it resolves to: utils.run_files.found_architecture), which a resume may change. Checked
        here, in this order: the directories and outputs can be written, no other process runs there, an
        earlier run there is continued (--resume), moved aside at start() (--restart) or refused
        (utils.run.run_directory); a resume's settings are those of the saved config.yaml
        (config_file.refuse_changed_settings: CheckpointError, --force-resume accepts changed ones) and its
        checkpoint is readable. start_epoch is then the checkpoint's, for the data loaders built before start().
        writes=False (the other ranks of a data-parallel run): none of those checks, no lock, no file written;
        the run resumes from the checkpoint rank 0 resumes from.
        """
        run = cls(settings["monitor_path"], settings["model_save_path"], settings["epoch"], series_names)
        run.writes = writes
        if not writes:
            run.resumes = bool(settings.get("resume")) and os.path.exists(run.checkpoint_path)
            run.start_epoch = load_checkpoint(run.checkpoint_path, {}, {})["epoch"] if run.resumes else 0
            return run
        run._open(settings, outputs)
        return run

    @classmethod
    def open_parent(cls, settings, outputs=None):
        """The directory of a --seeds run, whose runs are its seed_<s> directories (each opened by Run.open):
        checked, locked and kept as a run's is, its config.yaml written at once (it has no setup of its own),
        and on --resume its settings compared whenever config.yaml is there, as it has no checkpoint. (A settings
        without model_save_path, epoch or force_resume, darts_compare.py's, has none of them.)"""
        run = cls(settings["monitor_path"], settings.get("model_save_path"), settings.get("epoch"), ())
        run.parent = True
        run._open(settings, outputs)
        run._begin()
        return run

    def _open(self, settings, outputs):
        resume = bool(settings.get("resume"))
        directories = [(self.monitor_path, "--monitor-path")]
        if settings.get("model_save_path"):
            directories.append((self.save_dir, "--model-save-path"))
        outputs = outputs or {}
        self.directories = RunDirectories(directories, [(path, _flag(name)) for name, path in outputs.items()],
                                          resume, bool(settings.get("restart")))
        self.settings, self.outputs = settings, tuple(outputs)
        self.check_resume_settings(settings, os.path.join(self.monitor_path, CONFIG), settings.get("force_resume"))
        self.resumes = resume and os.path.exists(self.checkpoint_path)
        if self.resumes:
            self.start_epoch = load_checkpoint(self.checkpoint_path, {}, {})["epoch"]
            check_series(self.monitor_path, self.series_names, self.start_epoch)  # each can be kept
        elif resume:
            self._refuse_to_truncate_series()

    def check_resume_settings(self, settings, saved_config_path, force):
        """Refuses (CheckpointError) to resume a checkpoint with settings that differ from the saved ones.

        settings: {name: value} of this run; saved_config_path: the YAML file the first run wrote.
        Call it before the config file is written again. Settings in config_file.RESUMABLE_CHANGES and
        WHERE_SETTINGS, the run's outputs and paths that moved with the run directory may change; `force`
        (--force-resume) accepts any change, naming it in the run's log.
        """
        if not settings.get("resume") or not (self.parent or os.path.exists(self.checkpoint_path)):
            return
        refuse_changed_settings(settings, saved_config_path, self.outputs, force)

    def _refuse_to_truncate_series(self):
        existing = [p for p in (series_path(self.monitor_path, n) for n in self.series_names)
                    if os.path.exists(p) and os.path.getsize(p) > 0]
        if existing:
            raise CheckpointError(f"--resume: no checkpoint at {self.checkpoint_path}, and starting afresh "
                                  f"would truncate {existing[0]}; move the old run away or drop --resume")

    def _begin(self):
        """The run's first writes, once its setup has succeeded: an earlier run moved aside (--restart), its
        directories, config.yaml."""
        if self.directories is not None:
            self.directories.begin()
        os.makedirs(self.monitor_path, exist_ok=True)
        os.makedirs(self.save_dir, exist_ok=True)
        if self.settings is not None:
            write_config(self.settings, self.monitor_path)

    def close(self):
        """The end of the run: another process may run in its directories (the process's end lets it too)."""
        if self.directories is not None:
            self.directories.release()

    def start(self, params, solvers, resume):
        """Resumes params ({name: Variable}) and solvers ({name: Solver}) from the checkpoint when
        `resume` is set and one exists; returns the checkpoint's metadata, or None for a fresh start.

        The run's first write: a script calls it once its setup (data, graphs, loaders) has succeeded, so that
        a failed setup leaves an earlier run as it was. --restart moves that run aside here; config.yaml is
        written, and the series files are opened afterwards, cut back to the epochs the checkpoint holds. A
        resume without a checkpoint says so and starts afresh, unless series files of an earlier
        run are there: those are never truncated by a resume (CheckpointError instead). Temporary files a
        killed process left in the run's directories go first. A run that does not write only resumes.
        """
        if not self.writes:
            self._state = (params, solvers)
            return load_checkpoint(self.checkpoint_path, params, solvers) if self.resumes else None
        for directory in (self.monitor_path, self.save_dir, os.path.join(self.monitor_path, EPOCH_ARCHITECTURES),
                          os.path.join(self.monitor_path, CELL_PICTURES)):
            remove_stale_temporaries(directory)
        self._state = (params, solvers)
        meta = None
        if resume and os.path.exists(self.checkpoint_path):
            meta = load_checkpoint(self.checkpoint_path, params, solvers)
            self.start_epoch = meta["epoch"]
            print(f"resuming from {self.checkpoint_path} after epoch {self.start_epoch}")
        elif resume:
            self._refuse_to_truncate_series()
            print(f"--resume: no checkpoint at {self.checkpoint_path}; starting from the first epoch")
        self._begin()
        self.series = EpochSeries(self.monitor_path, self.series_names, first_epoch=self.start_epoch)
        return meta

    def remaining_epochs(self):
        """The 0-based epochs still to run; each one's duration is measured for EPOCH_TIME, and the run's
        time left by self.clock, from the first of them on."""
        self.clock = RunClock(self.epochs, self.start_epoch)
        for epoch in range(self.start_epoch, self.epochs):
            self._epoch_started = time.time()
            yield epoch

    def end_epoch(self, epoch, values, meta, message):
        """Series, an atomic checkpoint (with `meta`, which may hold {"arrays": {name: ndarray}}), the
        log line `message` and the pictures. At most the epoch after this one is lost to an interruption.
        """
        values = {**values, EPOCH_TIME: time.time() - self._epoch_started}
        if not self.writes:
            return values
        self.series.add(epoch, values)
        params, solvers = self._state
        save_checkpoint(self.checkpoint_path, params, solvers, {"epoch": epoch + 1, **meta})
        print(f"epoch {epoch + 1}/{self.epochs}  {message}  {values[EPOCH_TIME]:.1f}s", flush=True)
        draw_run(self.monitor_path)
        return values


class RunClock:
    """The time a whole run of `epochs` epochs has left, extrapolated from the wall-clock time its epochs
    took in this process, which began with 0-based epoch `first_epoch` (the checkpoint's after a resume).
    Once an epoch has ended, its validation, checkpoint and pictures count too, not only its steps.
    """

    def __init__(self, epochs, first_epoch=0):
        self.epochs = epochs
        self.first_epoch = first_epoch
        self.started = time.time()

    def seconds_left(self, epoch, fraction):
        """The run's seconds left when `fraction` of the steps of 0-based epoch `epoch` are done; None before
        any step."""
        done = epoch - self.first_epoch + fraction
        if done <= 0:
            return None
        return (time.time() - self.started) / done * (self.epochs - epoch - fraction)


def format_duration(seconds):
    """[H:]MM:SS as tqdm writes it, '?' for an unknown duration."""
    return "?" if seconds is None else tqdm.format_interval(seconds)


class Progress:
    """The steps of epoch `epoch` (0-based) of a run timed by `clock` (a RunClock): tqdm's bar when
    stderr is a terminal, with the whole run's time left after the epoch's; otherwise (nohup, a cluster
    job), where the bar is off, a line every `every` steps and after the last one, on stdout with the
    epoch lines (stderr stays for errors), with the time left of the epoch and of the run.

    steps: their number (the loop gets 0, 1, ...) or a list of them (the loop gets each in turn). A
    loop may break early; the bar closes with it.
    """

    def __init__(self, steps, desc, every, clock, epoch):
        items = range(steps) if isinstance(steps, int) else steps
        self.steps = len(items)
        self.desc = desc
        self.every = every
        self.clock = clock
        self.epoch = epoch
        self.terminal = sys.stderr.isatty()
        self.bar = tqdm(items, desc=desc, leave=False, disable=not self.terminal)
        self.postfix = {}

    def __iter__(self):
        started = time.time()
        try:
            for done, item in enumerate(self.bar, start=1):
                yield item
                run_left = format_duration(self.clock.seconds_left(self.epoch, done / self.steps))
                if self.terminal:  # tqdm's bar shows the epoch's time left itself
                    self.bar.set_postfix({**self.postfix, "run left": run_left}, refresh=False)
                elif done % self.every == 0 or done == self.steps:
                    values = "  ".join(f"{k} {v}" for k, v in self.postfix.items())
                    per_step = (time.time() - started) / done
                    print(f"{self.desc}  step {done}/{self.steps}  {values}  {per_step:.2f} s/step  "
                          f"epoch {format_duration(per_step * (self.steps - done))} left  run {run_left} left",
                          flush=True)
        finally:
            self.bar.close()

    def set_postfix(self, **values):
        """Values shown after the step that sets them, e.g. the running loss."""
        self.postfix = values


def epoch_file_number(name, prefix, suffix):
    """N of a file named prefix + N + suffix, or None."""
    if name.startswith(prefix) and name.endswith(suffix) and name[len(prefix):len(name) - len(suffix)].isdigit():
        return int(name[len(prefix):len(name) - len(suffix)])
    return None


def keep_last_files(directory, prefix, suffix, keep):
    """Deletes all but the `keep` highest-numbered files prefix<N>suffix in `directory` (None keeps all)."""
    if keep is None:
        return
    numbered = sorted((n, name) for name in os.listdir(directory)
                      if (n := epoch_file_number(name, prefix, suffix)) is not None)
    for _, name in numbered[:max(len(numbered) - keep, 0)]:
        os.remove(os.path.join(directory, name))

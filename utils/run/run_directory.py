"""A run's directories, checked and locked before the run writes anything, and an earlier run in them kept.

A run writes into --monitor-path (and --model-save-path, when given); before it reads its data or builds
a graph, RunDirectories makes sure that it can (each directory created if missing, a file written and
removed in it; each file the run will write, such as the search's --model-arch-name, neither a directory
nor in a place that cannot be written), that no other process runs there (utils.run.lock), and that it
will not write over an earlier run: a directory that holds one (config.yaml, a checkpoint, series, the
seed_<s> runs of --seeds) is continued with --resume, moved aside to <dir>.previous-<N> with --restart
(never deleted), or refused. The move waits for begin(), which the run calls once its setup succeeded,
so a run that fails before then leaves the earlier one where and as it was.
"""
import contextlib
import os

from ops.atomic_file import temporary_name
from ops.user_error import UserError
from utils.run.lock import DirectoryLock
from utils.run_files import CHECKPOINT, CONFIG, SERIES_SUFFIX, seed_directory


class RunDirectoryError(UserError):
    """A run directory or output path that the run cannot or must not use; one line."""


def _reason(error):
    return error.strerror or " ".join(str(error).split()) or type(error).__name__


def usable_directory(path, flag):
    """Creates directory `path` if it is missing and writes and removes a file in it; RunDirectoryError
    naming `flag` (the setting that gave the path) if it cannot, e.g. a file in its place, a path under
    /proc, a read-only mount or a directory without write permission."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise RunDirectoryError(f"{flag} {path} is a file, not a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise RunDirectoryError(f"{flag} {path}: cannot create the directory ({_reason(err)})") from None
    probe = os.path.join(path, temporary_name("write-test"))  # ops.atomic_file removes one a kill left
    try:
        with open(probe, "wb"):
            pass
        os.remove(probe)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.remove(probe)
        raise RunDirectoryError(f"{flag} {path}: cannot write in the directory ({_reason(err)})") from None


def usable_output_file(path, flag):
    """Makes sure that the run can write file `path` at its end (its directory created, as the writer would);
    RunDirectoryError naming `flag` if it names a directory or a place that cannot be written."""
    if os.path.isdir(path):
        raise RunDirectoryError(f"{flag} {path} is a directory: name the file to write")
    usable_directory(os.path.dirname(path) or os.curdir, f"{flag} {path}: its directory")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise RunDirectoryError(f"{flag} {path}: the file cannot be written (permission denied)")


def run_files(directory):
    """The names of a run's files in `directory`: config.yaml and the checkpoint first, then series files and
    the seed_<s> directories of --seeds, sorted; [] if it holds none or does not exist."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    seed_prefix = seed_directory("")
    found = [name for name in names if name in (CONFIG, CHECKPOINT) or name.endswith(SERIES_SUFFIX)
             or (name.startswith(seed_prefix) and os.path.isdir(os.path.join(directory, name)))]
    return sorted(found, key=lambda name: (name not in (CONFIG, CHECKPOINT), name))


def aside_name(directory):
    """<directory>.previous-<N>, N the lowest number not taken: where --restart moves an earlier run."""
    base = os.path.normpath(directory)
    if os.path.basename(base) in (os.curdir, os.pardir):
        base = os.path.abspath(base)
    number = 1
    while os.path.lexists(f"{base}.previous-{number}"):
        number += 1
    return f"{base}.previous-{number}"


class RunDirectories:
    """The directories of one run, checked and locked (see the module's docstring).

    directories: [(path, flag)], the monitor directory first, a distinct save directory after it;
    outputs: [(path, flag)] of files the run writes at its end; resume, restart: --resume, --restart.
    """

    def __init__(self, directories, outputs, resume, restart):
        if resume and restart:
            raise ValueError("--resume and --restart exclude each other")
        self.restart = restart
        self.directories = self._distinct(directories)
        for path, flag in self.directories:
            usable_directory(path, flag)
        for path, flag in outputs:
            usable_output_file(path, flag)
        self._locks = [DirectoryLock(path, flag) for path, flag in self.directories]
        self.earlier = [(path, run_files(path)) for path, _ in self._outermost() if run_files(path)]
        if self.earlier and not (resume or restart):
            path, files = self.earlier[0]
            shown = ", ".join(files[:2]) + (f" and {len(files) - 2} more" if len(files) > 2 else "")
            raise RunDirectoryError(f"{path} holds a run ({shown}): add --resume to continue it, or --restart to "
                                    f"start over (the old run is moved to {aside_name(path)})")

    @staticmethod
    def _distinct(directories):
        seen, distinct = set(), []
        for path, flag in directories:
            if os.path.realpath(path) not in seen:
                seen.add(os.path.realpath(path))
                distinct.append((path, flag))
        return distinct

    def _outermost(self):
        """The directories not inside another of the run's: moving those moves the rest."""
        real = [os.path.realpath(path) for path, _ in self.directories]
        return [(path, flag) for (path, flag), here in zip(self.directories, real)
                if not any(here.startswith(other + os.sep) for other in real)]

    def begin(self):
        """The run's first write: with --restart, each directory holding an earlier run is moved aside (its
        files as they were) and made again, empty and locked. Returns [(old path, new path)]."""
        if not self.restart:
            return []
        moved = []
        for path, _ in self.earlier:
            aside = aside_name(path)
            try:
                os.rename(path, aside)
            except OSError as err:
                raise RunDirectoryError(f"--restart cannot move {path} to {aside} ({_reason(err)})") from None
            moved.append((path, aside))
            print(f"--restart: the earlier run in {path} was moved to {aside}", flush=True)
        self.earlier = []
        if moved:  # the new directories are locked before the moved ones are let go
            for path, _ in self.directories:
                os.makedirs(path, exist_ok=True)
            moved_locks, self._locks = self._locks, [DirectoryLock(path, flag) for path, flag in self.directories]
            for lock in moved_locks:
                lock.release()
        return moved

    def release(self):
        """Lets another process run in these directories (the end of the run, or of the process, does it too)."""
        for lock in self._locks:
            lock.release()
        self._locks = []

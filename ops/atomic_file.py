"""Files written whole or not at all: every file a run writes goes through atomic_path or atomic_write.

A file is written under a temporary name in its own directory, flushed to disk, then renamed over its
name (a rename within one directory is atomic), so that a reader, a crash or a kill -9 finds the old
file or the new one, never a part of one. A write that fails (a full disk, a read-only mount, no
permission) removes its temporary file, leaves the old file as it was and raises WriteError, one line
naming the file. It lives in the lowest layer so that the writers of every layer (models' architecture
files included) share it.

A temporary name is hidden (a leading dot, so that no glob of a run's files and no picture finds it),
carries the writing process's id, and ends in the target's extension, which nn.save_parameters,
savefig and np.savez go by: .final_params.h5.<pid>.tmp.h5. One that a killed process left is removed
by remove_stale_temporaries when a run next opens its directory.
"""
import contextlib
import os
import re

from ops.user_error import UserError

_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>[0-9]+)\.tmp(?P<ext>\.[^.]*)?$")


class WriteError(UserError, OSError):
    """A file that could not be written (errno and strerror as the OSError's); the old file is kept."""

    def __init__(self, path, error):
        reason = error.strerror or " ".join(str(error).split()) or type(error).__name__
        super().__init__(error.errno, reason, os.fspath(path))

    def __str__(self):
        return f"cannot write {self.filename}: {self.strerror}"


def temporary_name(name):
    """The hidden name a file `name` is written under before it is renamed into place."""
    return f".{name}.{os.getpid()}.tmp{os.path.splitext(name)[1]}"


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path next to `path`, for a writer that writes by file name; once the block has written it,
    it is synced to disk and renamed to `path`. If the block or the rename fails, the temporary file is
    removed, `path` keeps its old contents, and an OSError comes out as a WriteError naming `path`.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, temporary_name(os.path.basename(path)))
    try:
        yield temporary
        _sync(temporary)
        os.replace(temporary, path)
    except BaseException as error:  # noqa: B902 (an interruption, too, must not leave the temporary file)
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        if isinstance(error, OSError) and not isinstance(error, WriteError):
            raise WriteError(path, error) from error
        raise
    _sync_directory(directory)


@contextlib.contextmanager
def atomic_write(path, mode="w", **open_arguments):
    """open(path, mode) ('w' or 'wb') for writing through atomic_path: the file appears whole when the block ends."""
    with atomic_path(path) as temporary, open(temporary, mode, **open_arguments) as f:
        yield f


def _sync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_directory(directory):
    # The rename itself reaches the disk with the directory; not every file system can sync one, and the
    # file is in place either way.
    with contextlib.suppress(OSError):
        _sync(directory)


def _process_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(directory):
    """Removes the temporary files in `directory` (not below it) that a process which no longer runs left
    (a kill -9 during a write); returns their paths. A missing directory has none."""
    removed = []
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for name in names:
        match = _TEMPORARY.match(name)
        if match is None or int(match["pid"]) == os.getpid() or _process_exists(int(match["pid"])):
            continue
        path = os.path.join(directory, name)
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            os.remove(path)
            removed.append(path)
    return removed

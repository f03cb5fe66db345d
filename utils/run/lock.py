"""The lock a run holds on its directory for its life, so that a second process cannot write the same run.

It is a flock(2) on the directory itself, not on a lock file in it: taking it writes nothing, so a run
refused for any reason leaves the directory exactly as it was, and there is no file to clean up. The
operating system releases it when the process ends however it ends (kill -9 included), so the lock of a
killed run never blocks its --resume. It is advisory: only the scripts' runs take it.

flock conflicts between open file descriptions, so a lock this process still holds from an earlier run
(in a test or a notebook: a run that failed leaves its Run alive in the traceback) would refuse this
process's next run of the same directory. _HELD maps each locked directory to this process's lock on it,
and a new lock of the same directory by this process replaces the old one: one process runs one run of a
directory at a time.
"""
import fcntl
import os
import weakref

from ops.user_error import UserError


class RunLockedError(UserError):
    """Another process holds the lock of a run directory; one line."""


# (st_dev, st_ino) of a directory -> this process's DirectoryLock on it (weak: a lock nobody holds is released).
_HELD = weakref.WeakValueDictionary()


class DirectoryLock:
    """An exclusive flock on `directory` (which exists), taken at once or refused with RunLockedError."""

    def __init__(self, directory, flag):
        """flag: the setting that named the directory, for the message (e.g. --monitor-path)."""
        self.directory = directory
        self._fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        stat = os.fstat(self._fd)
        key = (stat.st_dev, stat.st_ino)
        earlier = _HELD.get(key)
        if earlier is not None:
            earlier.release()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            raise RunLockedError(f"{flag} {directory} is in use: another process is running there (it holds the "
                                 f"directory's lock); wait for it to end, or give another {flag}") from None
        _HELD[key] = self

    def release(self):
        """Lets another process (or run) have the directory; the OS does it too when this process ends."""
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor of the open file releases its flock
            self._fd = None

    def __del__(self):
        self.release()

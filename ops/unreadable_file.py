"""One line for a file that cannot be read: missing, empty, cut short, damaged, or of another kind.

A reader of a file that a run wrote or a user placed (checkpoint, alpha history, parameters, series, JSON,
YAML, data) reads it inside `reading(path, what)`, which turns whatever the parser raises (numpy's
BadZipFile, EOFError or "pickled data", h5py's OSError, a UnicodeDecodeError, a missing key...) into one
UserError line that names the file and says what is wrong with it. It lives in the lowest layer so that
the readers of every layer share it.
"""
import contextlib
import zipfile
import zlib

from ops.user_error import UserError

# What parsers raise on a file that is not what they expect. A reader adds its parser's own (yaml.YAMLError).
READ_ERRORS = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error)


class UnreadableFileError(UserError):
    """A file that cannot be read; the message names it and says why."""


def one_line(text):
    return " ".join(str(text).split())


def describe_read_error(error):
    """What is wrong with a file, in words, from the exception reading it raised."""
    if isinstance(error, FileNotFoundError):
        return "it does not exist"
    if isinstance(error, IsADirectoryError):
        return "it is a directory"
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, EOFError):
        return "it is empty or cut short"
    if isinstance(error, (zipfile.BadZipFile, zlib.error)):
        return f"it is damaged or cut short ({one_line(error)})"
    if isinstance(error, UnicodeDecodeError):
        return f"it is not UTF-8 text ({error.reason} at byte {error.start})"
    if isinstance(error, ValueError) and "pickled" in str(error):
        # numpy's words for a file that does not start as an .npz or .npy does
        return "it is not a NumPy .npz file (damaged, or another kind of file)"
    if isinstance(error, KeyError):
        return f"it has no {error.args[0]!r} (a file of another kind, or damaged)"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return one_line(error) or type(error).__name__


@contextlib.contextmanager
def reading(path, what, error=UnreadableFileError, errors=(), hint=""):
    """Turns a READ_ERRORS (or `errors`) exception of the block that reads `path` into `error` (a UserError
    class): "cannot read <what> <path>: <what is wrong>[; <hint>]"."""
    try:
        yield
    except READ_ERRORS + tuple(errors) as raised:
        if isinstance(raised, UserError):  # already one line of the reader's own
            raise
        message = f"cannot read {what} {path}: {describe_read_error(raised)}"
        raise error(message + (f"; {hint}" if hint else "")) from None

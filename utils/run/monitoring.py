"""Per-epoch series files that stay consistent with the last checkpoint on resume.

A series file has nnabla.monitor.MonitorSeries' format, a line `<epoch> <value as %g>` an epoch, which
darts_plot.py and NNabla's own tools read. It is written here rather than by MonitorSeries, which empties
its file when created: opening a run's series never truncates one in place (the lines kept are written
back through ops.atomic_file), and an epoch's line is appended and synced to disk before the checkpoint
of that epoch is written.
"""
import contextlib
import os

from ops.atomic_file import WriteError, atomic_write
from ops.unreadable_file import reading
from ops.user_error import UserError
from utils.run_files import series_file


class SeriesFileError(UserError):
    """A series file that a resume cannot continue; the message names it and says what to do."""


# What a damaged series file can be resumed by: the run goes on without that series' earlier values.
_MOVE_AWAY = "move it away to resume without its earlier values"


def series_path(monitor_path, name):
    return os.path.join(monitor_path, series_file(name))


class EpochSeries:
    """One series file per name, indexed by epoch as the log counts them, from 1 (the 0-based epoch e of a
    loop is written as e + 1), like the checkpoint, arch/epoch_NNN.json and alpha_history.npz's rows.

    On resume the lines of the `first_epoch` epochs the checkpoint holds are kept and the lines of an epoch
    that was interrupted go; a file that does not hold exactly one line for each of those epochs (damaged,
    or written by two runs at once) is a SeriesFileError before any file is touched (check_series finds it
    before a run writes anything at all).
    """

    def __init__(self, monitor_path, names, first_epoch=0):
        self.paths = {name: series_path(monitor_path, name) for name in names}
        kept = {name: "".join(kept_lines(path, first_epoch)) for name, path in self.paths.items()}
        os.makedirs(monitor_path, exist_ok=True)
        for name, text in kept.items():
            if not _holds(self.paths[name], text):
                with atomic_write(self.paths[name], "w", encoding="utf-8") as f:
                    f.write(text)

    def add(self, epoch, values):
        """The values of the 0-based epoch `epoch`."""
        for name, value in values.items():
            append_line(self.paths[name], f"{epoch + 1} {float(value):g}\n")


def check_series(monitor_path, names, first_epoch):
    """SeriesFileError if a run resumed after epoch `first_epoch` could not keep the series `names`; reads only."""
    for name in names:
        kept_lines(series_path(monitor_path, name), first_epoch)


def append_line(path, line):
    """Appends `line` to the file at `path` and syncs it to disk; a failed append leaves the file as it was."""
    size = os.path.getsize(path) if os.path.exists(path) else 0
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
    except OSError as error:
        with contextlib.suppress(OSError):  # no half line left for the next append to continue
            os.truncate(path, size)
        raise WriteError(path, error) from error


def _holds(path, text):
    """Whether the file at `path` exists and holds exactly `text`."""
    if not os.path.exists(path) or os.path.getsize(path) != len(text.encode("utf-8")):
        return False
    with open(path, encoding="utf-8") as f:
        return f.read() == text


def kept_lines(path, epoch):
    """The lines of epochs 1..epoch of the series file at `path` ([] without one, or for epoch 0)."""
    if epoch == 0 or not os.path.exists(path):
        return []
    with reading(path, "series file", SeriesFileError, hint=_MOVE_AWAY), open(path, encoding="utf-8") as f:
        text = f.read()
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        # A line is appended whole and synced before its epoch's checkpoint: one cut short was never checkpointed.
        lines.pop()
    epochs, numbered = [], [(number, line) for number, line in enumerate(lines, start=1) if line.split()]
    lines = [line for _, line in numbered]
    for number, line in numbered:
        fields = line.split()
        try:
            if len(fields) != 2:
                raise ValueError
            epochs.append(int(fields[0]))
            float(fields[1])
        except ValueError:
            raise SeriesFileError(f"series file {path} is damaged: line {number} is {line.strip()!r}, not "
                                  f"'<epoch> <value>'; {_MOVE_AWAY}") from None
    if epochs and epochs[0] == 0:
        # Written before series counted from 1: each line moves up by one, so that a run begun then and
        # resumed now keeps every epoch it finished.
        epochs = [e + 1 for e in epochs]
        lines = [" ".join([str(e)] + line.split()[1:]) + "\n" for e, line in zip(epochs, lines)]
    kept = [(e, line) for e, line in zip(epochs, lines) if e <= epoch]
    if [e for e, _ in kept] != list(range(1, epoch + 1)):
        held = ", ".join(str(e) for e, _ in kept[:8]) + (", ..." if len(kept) > 8 else "") or "none"
        raise SeriesFileError(f"series file {path} should hold one line for each of epochs 1..{epoch} of the "
                              f"checkpoint, but holds epochs {held} (damaged, or written by two runs at once); "
                              f"{_MOVE_AWAY}")
    return [line for _, line in kept]

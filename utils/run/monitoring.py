"""Per-epoch nnabla.monitor series that stay consistent with the last checkpoint on resume."""
import os

from nnabla.monitor import Monitor, MonitorSeries

from utils.run_files import series_file


def series_path(monitor_path, name):
    return os.path.join(monitor_path, series_file(name))


class EpochSeries:
    """One MonitorSeries per name, indexed by epoch.

    MonitorSeries truncates its file when created, so on resume the lines of the epochs before
    `first_epoch` are read first and written back; lines of an epoch that was interrupted go.
    """

    def __init__(self, monitor_path, names, first_epoch=0):
        kept = {name: self._lines_before(series_path(monitor_path, name), first_epoch) for name in names}
        monitor = Monitor(monitor_path)
        self.series = {name: MonitorSeries(name, monitor, interval=1, verbose=False) for name in names}
        for name, lines in kept.items():
            with open(series_path(monitor_path, name), "a") as f:
                f.writelines(lines)

    @staticmethod
    def _lines_before(path, epoch):
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [line for line in f if line.split() and int(line.split()[0]) < epoch]

    def add(self, epoch, values):
        for name, value in values.items():
            self.series[name].add(epoch, value)

"""Per-epoch nnabla.monitor series that stay consistent with the last checkpoint on resume."""
import os

from nnabla.monitor import Monitor, MonitorSeries

from utils.run_files import series_file


def series_path(monitor_path, name):
    return os.path.join(monitor_path, series_file(name))


class EpochSeries:
    """One MonitorSeries per name, indexed by epoch as the log counts them, from 1 (the 0-based epoch
    e of a loop is written as e + 1), like the checkpoint, arch/epoch_NNN.json and alpha_history.npz's rows.

    MonitorSeries truncates its file when created, so on resume the lines of the `first_epoch` epochs
    the checkpoint holds are read first and written back; lines of an epoch that was interrupted go.
    """

    def __init__(self, monitor_path, names, first_epoch=0):
        kept = {name: self._lines_up_to(series_path(monitor_path, name), first_epoch) for name in names}
        monitor = Monitor(monitor_path)
        self.series = {name: MonitorSeries(name, monitor, interval=1, verbose=False) for name in names}
        for name, lines in kept.items():
            with open(series_path(monitor_path, name), "a") as f:
                f.writelines(lines)

    @staticmethod
    def _lines_up_to(path, epoch):
        if not os.path.exists(path):
            return []
        with open(path) as f:
            lines = [line for line in f if line.split()]
        if lines and int(lines[0].split()[0]) == 0:
            # Written before series counted from 1: each line moves up by one, so that a run begun then and
            # resumed now keeps every epoch it finished.
            lines = [" ".join([str(int(line.split()[0]) + 1)] + line.split()[1:]) + "\n" for line in lines]
        return [line for line in lines if int(line.split()[0]) <= epoch]

    def add(self, epoch, values):
        """The values of the 0-based epoch `epoch`."""
        for name, value in values.items():
            self.series[name].add(epoch + 1, value)

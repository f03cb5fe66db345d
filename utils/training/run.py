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

from models.genotype import ArchitectureError
from utils.data.datasets import DataError
from utils.pictures.run_pictures import draw_run
from utils.training.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, save_checkpoint
from utils.training.context import ContextError
from utils.training.monitoring import EpochSeries

EPOCH_TIME = "Epoch time"


def seed_everything(seed):
    """Seeds nnabla's generator (parameter initialisers) and returns a numpy RandomState for the caller."""
    nn.random.seed(seed)
    np.random.seed(seed)
    return np.random.RandomState(seed)


@contextlib.contextmanager
def fail_cleanly():
    """Turns the errors a user can cause into one line on stderr and exit status 1."""
    try:
        yield
    except (ArchitectureError, CheckpointError, ContextError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: run again with --resume to continue from the last finished epoch", file=sys.stderr)
        sys.exit(130)


def write_json(path, data):
    """Whole file or the old one: a crash mid-write never leaves half a JSON file."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


class Run:
    """The output directories, checkpoint and series of one run of `epochs` epochs.

    monitor_path receives the series, pictures and JSON outputs; save_path (default monitor_path)
    the checkpoint and parameter files. series_names are the MonitorSeries written every epoch;
    EPOCH_TIME among them is filled in by end_epoch.
    """

    def __init__(self, monitor_path, save_path, epochs, series_names):
        self.monitor_path = monitor_path
        self.save_dir = save_path or monitor_path
        os.makedirs(self.monitor_path, exist_ok=True)
        os.makedirs(self.save_dir, exist_ok=True)
        self.checkpoint_path = os.path.join(self.save_dir, CHECKPOINT_NAME)
        self.epochs = epochs
        self.series_names = series_names
        self.start_epoch = 0
        self.series = None
        self._state = None
        self._epoch_started = None

    def start(self, params, solvers, resume):
        """Resumes params ({name: Variable}) and solvers ({name: Solver}) from the checkpoint when
        `resume` is set and one exists; returns the checkpoint's metadata, or None for a fresh start.

        The series files are opened afterwards, cut back to the epochs the checkpoint holds.
        """
        self._state = (params, solvers)
        meta = None
        if resume and os.path.exists(self.checkpoint_path):
            meta = load_checkpoint(self.checkpoint_path, params, solvers)
            self.start_epoch = meta["epoch"]
            print(f"resuming from {self.checkpoint_path} after epoch {self.start_epoch}")
        self.series = EpochSeries(self.monitor_path, self.series_names, first_epoch=self.start_epoch)
        return meta

    def remaining_epochs(self):
        """The 0-based epochs still to run; each one's duration is measured for EPOCH_TIME."""
        for epoch in range(self.start_epoch, self.epochs):
            self._epoch_started = time.time()
            yield epoch

    def end_epoch(self, epoch, values, meta, message):
        """Series, an atomic checkpoint (with `meta`, which may hold {"arrays": {name: ndarray}}), the
        log line `message` and the pictures. At most the epoch after this one is lost to an interruption.
        """
        values = {**values, EPOCH_TIME: time.time() - self._epoch_started}
        self.series.add(epoch, values)
        params, solvers = self._state
        save_checkpoint(self.checkpoint_path, params, solvers, {"epoch": epoch + 1, **meta})
        print(f"epoch {epoch + 1}/{self.epochs}  {message}  {values[EPOCH_TIME]:.1f}s", flush=True)
        draw_run(self.monitor_path)
        return values

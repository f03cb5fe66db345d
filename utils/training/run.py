"""Pieces every script shares: seeding, static graphs, running means and clean failure."""
import contextlib
import logging
import sys

import nnabla as nn
import numpy as np


# nnabla logs every data source and iterator it creates at INFO; a run's own lines are what matter.
logging.getLogger("nnabla").setLevel(logging.WARNING)


def seed_everything(seed):
    """Seeds nnabla's generator (parameter initialisers) and returns a numpy RandomState for the caller."""
    nn.random.seed(seed)
    np.random.seed(seed)
    return np.random.RandomState(seed)


def classification_error(logits, labels):
    return float(np.mean(np.argmax(logits, axis=1) != labels.reshape(-1)))


class RunningMean:
    def __init__(self):
        self.total = 0.0
        self.count = 0

    def add(self, value, count=1):
        self.total += value * count
        self.count += count

    @property
    def mean(self):
        return self.total / max(self.count, 1)


@contextlib.contextmanager
def fail_cleanly():
    """Turns the errors a user can cause into one line on stderr and exit status 1."""
    from models.genotype import ArchitectureError
    from utils.training.checkpoint import CheckpointError
    from utils.training.context import ContextError
    from utils.data.datasets import DataError
    try:
        yield
    except (ArchitectureError, CheckpointError, ContextError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: run again with --resume to continue from the last finished epoch", file=sys.stderr)
        sys.exit(130)

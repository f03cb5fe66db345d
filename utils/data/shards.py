"""Each rank's shard of a data-parallel run's batches.

Every rank draws the same global batch (the order and the augmentation are functions of (seed, epoch, step),
utils.data.pipeline) and keeps its own contiguous part, so the N shards of a step are one global batch of
--batch-size images, augmented exactly as a run on one device augments it.
"""
import numpy as np

from utils.data.datasets import DataError


def shard_size(batch_size, size):
    """The images each of `size` ranks takes of a global batch of batch_size; refuses an uneven split."""
    if batch_size % size:
        raise DataError(f"--batch-size {batch_size} is the global batch of a data-parallel run: make it a multiple "
                        f"of the {size} ranks")
    return batch_size // size


class RankShard:
    """A loader's batches (x, y) cut to rank `rank`'s part; a smaller last batch of an epoch (ImageNet's) is
    split as evenly as it goes. Everything else (steps_per_epoch, epoch, close) is the loader's."""

    def __init__(self, loader, rank, size):
        self._loader = loader
        self._rank = rank
        self._size = size

    def next(self):
        x, y = self._loader.next()
        return np.array_split(x, self._size)[self._rank], np.array_split(y, self._size)[self._rank]

    def __getattr__(self, name):
        return getattr(self._loader, name)


def rank_shard(loader, rank, size):
    """The loader itself for one process."""
    return loader if size == 1 else RankShard(loader, rank, size)

"""Training/architecture split, batch loaders and vectorised augmentation.

Training batches come through nnabla's DataIterator, which prefetches in a
thread. Reproducible, resumable runs need every batch to be a pure function of
(seed, epoch, step): the order of an epoch is drawn from (seed, epoch) alone and
the augmentation of a batch from (seed, epoch, step) alone, never from a random
state carried over from earlier batches.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from nnabla.utils.data_iterator import data_iterator
from nnabla.utils.data_source import DataSource

from utils.data.datasets import DataError

# Tags that keep the shuffling and augmentation random streams apart.
_ORDER_STREAM = 0
_AUGMENT_STREAM = 1


def split_indices(n, train_portion, seed):
    """Disjoint (weights_idx, arch_idx) covering range(n); train_portion of it trains the weights."""
    n_weights = int(np.floor(n * train_portion))
    if not 0 < n_weights < n:
        raise DataError(f"--train-portion {train_portion} of {n} images leaves one side empty")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:n_weights]), np.sort(order[n_weights:])


def _epoch_order(n, seed, epoch):
    return np.random.default_rng([seed, _ORDER_STREAM, epoch]).permutation(n)


def _batch_rng(seed, epoch, step):
    return np.random.default_rng([seed, _AUGMENT_STREAM, epoch, step])


class _Normaliser:
    """(x / 255 - mean) / std per channel, folded into one multiply and one add."""

    def __init__(self, mean, std):
        mean = np.asarray(mean, dtype=np.float64).reshape(-1, 1, 1)
        std = np.asarray(std, dtype=np.float64).reshape(-1, 1, 1)
        self._scale = (1.0 / (255.0 * std)).astype(np.float32)
        self._shift = (-mean / std).astype(np.float32)

    def __call__(self, images_u8):
        if images_u8.shape[1] != len(self._scale):
            raise ValueError(f"{images_u8.shape[1]} channels but mean/std for {len(self._scale)}")
        x = images_u8.astype(np.float32)
        x *= self._scale
        x += self._shift
        return x


class _Augmenter:
    """Random crop after zero padding, horizontal flip, then cutout, all per image.

    The padding is H // 8 (4 on 32x32, as in DARTS), and the cutout side is
    cutout_length scaled by H / 32, so one setting means the same on every
    data set. Cutout zeroes the normalised image, as the DARTS code does.
    """

    def __init__(self, normalise, hflip, cutout_length):
        self._normalise = normalise
        self._hflip = hflip
        self._cutout_length = cutout_length

    def __call__(self, images_u8, rng):
        batch, channels, height, width = images_u8.shape
        pad = height // 8
        padded = np.zeros((batch, channels, height + 2 * pad, width + 2 * pad), np.uint8)
        padded[:, :, pad:pad + height, pad:pad + width] = images_u8
        # windows[b, c, dy, dx] is the crop at offset (dy, dx): picking one
        # window per image copies whole rows instead of gathering pixels.
        windows = sliding_window_view(padded, (height, width), axis=(2, 3))
        dy = rng.integers(0, 2 * pad + 1, batch)
        dx = rng.integers(0, 2 * pad + 1, batch)
        crops = windows[np.arange(batch), :, dy, dx]
        if self._hflip:
            flip = rng.random(batch) < 0.5
            crops[flip] = crops[flip, :, :, ::-1]
        x = self._normalise(crops)
        if self._cutout_length > 0:
            x *= self._cutout_keep_mask(batch, height, width, rng)
        return x

    def _cutout_keep_mask(self, batch, height, width, rng):
        side = max(1, round(self._cutout_length * height / 32))
        # The square is exactly `side` wide; DARTS's centre +- side // 2 gives
        # the same square for even sides and one pixel less for odd ones.
        top = rng.integers(0, height, batch) - side // 2
        left = rng.integers(0, width, batch) - side // 2
        rows = np.arange(height)
        cols = np.arange(width)
        in_rows = (rows >= top[:, None]) & (rows < top[:, None] + side)
        in_cols = (cols >= left[:, None]) & (cols < left[:, None] + side)
        cut = in_rows[:, :, None] & in_cols[:, None, :]
        return (~cut).astype(np.float32)[:, None]


class _EpochOrderSource(DataSource):
    """(uint8 image, label) per position, in an order drawn from (seed, epoch) only.

    DataIterator calls reset() once when it is built and again each time the
    position reaches size, so counting resets tells the epoch. size is a whole
    number of batches, so no batch straddles two epochs, and each epoch drops
    its own random tail.
    """

    def __init__(self, images_u8, labels, batch_size, seed, start_epoch):
        super().__init__(shuffle=True)
        self._images = images_u8
        self._labels = np.asarray(labels, dtype=np.int32).reshape(-1, 1)
        self._size = len(images_u8) // batch_size * batch_size
        self._variables = ("x", "y")
        self._seed = seed
        self._epoch = start_epoch - 1

    def reset(self):
        self._epoch += 1
        self._order = _epoch_order(len(self._images), self._seed, self._epoch)[:self._size]
        super().reset()

    def _get_data(self, position):
        index = self._order[position]
        return self._images[index], self._labels[index]


class BatchLoader:
    """Endless shuffled, augmented, normalised training batches: x float32 (B,C,H,W), y int32 (B,1)."""

    def __init__(self, images_u8, labels, batch_size, mean, std, *, augment, hflip,
                 cutout_length, seed, start_epoch=0):
        if len(images_u8) != len(labels):
            raise ValueError(f"{len(images_u8)} images but {len(labels)} labels")
        self.steps_per_epoch = len(images_u8) // batch_size
        if self.steps_per_epoch == 0:
            raise DataError(f"--batch-size {batch_size} is larger than the {len(images_u8)} images "
                            f"this run draws its batches from")
        self._normalise = _Normaliser(mean, std)
        self._augmenter = _Augmenter(self._normalise, hflip, cutout_length) if augment else None
        self._seed = seed
        self.epoch = start_epoch
        self._next_epoch, self._next_step = start_epoch, 0
        self._iterator = data_iterator(
            _EpochOrderSource(images_u8, labels, batch_size, seed, start_epoch),
            batch_size, with_memory_cache=False, use_thread=True)

    def next(self):
        images_u8, labels = self._iterator.next()
        # No batch straddles two epochs, so counting steps tells which (epoch, step) this is.
        epoch, step = self._next_epoch, self._next_step
        self._next_step += 1
        if self._next_step == self.steps_per_epoch:
            self._next_epoch, self._next_step = epoch + 1, 0
        self.epoch = epoch
        if self._augmenter is None:
            return self._normalise(images_u8), labels
        return self._augmenter(images_u8, _batch_rng(self._seed, epoch, step)), labels

    def close(self):
        self._iterator.close()


def eval_batches(images_u8, labels, batch_size, mean, std):
    """Every sample once, in order: (x, y, n_valid); the last batch is zero-padded to batch_size."""
    normalise = _Normaliser(mean, std)
    labels = np.asarray(labels, dtype=np.int32).reshape(-1, 1)
    for start in range(0, len(images_u8), batch_size):
        x = normalise(images_u8[start:start + batch_size])
        y = labels[start:start + batch_size]
        n_valid = len(x)
        if n_valid < batch_size:
            x = np.concatenate([x, np.zeros((batch_size - n_valid,) + x.shape[1:], np.float32)])
            y = np.concatenate([y, np.zeros((batch_size - n_valid, 1), np.int32)])
        yield x, y, n_valid

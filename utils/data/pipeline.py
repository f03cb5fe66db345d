"""Training/architecture split, batch loaders and vectorised augmentation.

Training batches come through nnabla's DataIterator, which prefetches in a
thread. Reproducible, resumable runs need every batch to be a pure function of
(seed, epoch, step): the order of an epoch is drawn from (seed, epoch) alone and
the augmentation of a batch from (seed, epoch, step) alone, never from a random
state carried over from earlier batches.
"""
import numpy as np
from nnabla.utils.data_iterator import data_iterator
from nnabla.utils.data_source import DataSource
from numpy.lib.stride_tricks import sliding_window_view

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


def cutout_keep_mask(batch, height, width, cutout_length, rng):
    """(B, 1, H, W) mask, 0 in one square per image. The side is cutout_length scaled by H / 32."""
    side = max(1, round(cutout_length * height / 32))
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
            x *= cutout_keep_mask(batch, height, width, self._cutout_length, rng)
        return x


# The seeds' RandomAffine(degrees=15, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=0.1) (S-D2).
AFFINE_DEGREES = 15.0
AFFINE_TRANSLATE = 0.1
AFFINE_SCALE = (0.9, 1.1)
AFFINE_SHEAR_DEGREES = 0.1  # torchvision reads a single number as an x-shear angle in degrees


def draw_affine_parameters(batch, height, width, rng):
    """Per image: rotation and x-shear (radians), scale, and whole-pixel shifts (tx, ty), as torchvision draws them."""
    angle = np.deg2rad(rng.uniform(-AFFINE_DEGREES, AFFINE_DEGREES, batch))
    shear = np.deg2rad(rng.uniform(-AFFINE_SHEAR_DEGREES, AFFINE_SHEAR_DEGREES, batch))
    scale = rng.uniform(*AFFINE_SCALE, batch)
    tx = np.rint(rng.uniform(-AFFINE_TRANSLATE * width, AFFINE_TRANSLATE * width, batch))
    ty = np.rint(rng.uniform(-AFFINE_TRANSLATE * height, AFFINE_TRANSLATE * height, batch))
    return angle, shear, scale, tx, ty


def affine_warp(images, angle, shear, scale, tx, ty):
    """Each image moved by p -> c + t + scale R(angle) S(shear) (p - c) about its centre c, nearest pixel, 0 outside.

    Coordinates are (x right, y down), so a positive angle turns the picture clockwise on screen.
    Every output pixel reads the input at the inverse map of its own position, all images at once.
    """
    batch, channels, height, width = images.shape
    cos, sin = np.cos(angle), np.sin(angle)
    rotation = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    shearing = np.zeros((batch, 2, 2))
    shearing[:, 0, 0] = shearing[:, 1, 1] = 1.0
    shearing[:, 0, 1] = np.tan(shear)
    inverse = np.linalg.inv(scale[:, None, None] * rotation @ shearing)
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    ys, xs = np.mgrid[0:height, 0:width].reshape(2, 1, -1)
    dx = xs - cx - tx[:, None]
    dy = ys - cy - ty[:, None]
    src_x = np.rint(inverse[:, 0, 0, None] * dx + inverse[:, 0, 1, None] * dy + cx).astype(np.int64)
    src_y = np.rint(inverse[:, 1, 0, None] * dx + inverse[:, 1, 1, None] * dy + cy).astype(np.int64)
    inside = (src_x >= 0) & (src_x < width) & (src_y >= 0) & (src_y < height)
    index = np.where(inside, src_y * width + src_x, 0)[:, None, :]
    flat = images.reshape(batch, channels, height * width)
    warped = np.take_along_axis(flat, np.broadcast_to(index, flat.shape), axis=2) * inside[:, None, :]
    return warped.reshape(images.shape).astype(images.dtype)


class _AffineAugmenter:
    """The seeds' (Fashion-)MNIST augmentation: random affine, vertical flip if `vflip`, then cutout.

    No padding, crop or horizontal flip (S-D2).
    """

    def __init__(self, normalise, vflip, cutout_length):
        self._normalise = normalise
        self._vflip = vflip
        self._cutout_length = cutout_length

    def __call__(self, images_u8, rng):
        batch, _, height, width = images_u8.shape
        warped = affine_warp(images_u8, *draw_affine_parameters(batch, height, width, rng))
        if self._vflip:
            flip = rng.random(batch) < 0.5
            warped[flip] = warped[flip, :, ::-1, :]
        x = self._normalise(warped)
        if self._cutout_length > 0:
            x *= cutout_keep_mask(batch, height, width, self._cutout_length, rng)
        return x


AUGMENTATIONS = ("darts", "affine")


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
                 cutout_length, seed, start_epoch=0, vflip=False, batches_drawn=None):
        """augment: None (normalise only), "darts" (crop, horizontal flip if hflip, cutout) or "affine"
        (random affine, vertical flip if vflip, cutout).

        A resumed run starts at its first epoch not run, start_epoch; or, if it draws fewer batches an epoch
        than steps_per_epoch (the search, whose two loaders take as many steps as the smaller one has), after
        the batches_drawn batches the run had drawn, which replaces start_epoch.
        """
        if len(images_u8) != len(labels):
            raise ValueError(f"{len(images_u8)} images but {len(labels)} labels")
        self.steps_per_epoch = len(images_u8) // batch_size
        if self.steps_per_epoch == 0:
            raise DataError(f"--batch-size {batch_size} is larger than the {len(images_u8)} images "
                            f"this run draws its batches from")
        self._normalise = _Normaliser(mean, std)
        if augment == "darts":
            self._augmenter = _Augmenter(self._normalise, hflip, cutout_length)
        elif augment == "affine":
            self._augmenter = _AffineAugmenter(self._normalise, vflip, cutout_length)
        elif augment is None:
            self._augmenter = None
        else:
            raise ValueError(f"unknown augmentation {augment!r}; choose from {', '.join(AUGMENTATIONS)} or None")
        self._seed = seed
        first_step = 0
        if batches_drawn is not None:
            start_epoch, first_step = divmod(batches_drawn, self.steps_per_epoch)
        self.epoch = start_epoch
        self._next_epoch, self._next_step = start_epoch, first_step
        self._iterator = data_iterator(
            _EpochOrderSource(images_u8, labels, batch_size, seed, start_epoch),
            batch_size, with_memory_cache=False, use_thread=True)
        for _ in range(first_step):  # the drawn batches of the epoch: unaugmented, their order is all that counts
            self._iterator.next()

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

"""ImageNet from an ImageFolder tree: scanning, JPEG decoding and augmentation, parallel batch loaders.

The tree is DIR/train/<class>/* and DIR/val/<class>/*; class k is the k-th folder name in sorted
order, so labels are the same on every machine. Augmentation reproduces torchvision's
RandomResizedCrop(224), RandomHorizontalFlip and ColorJitter(0.4, 0.4, 0.4, 0.2) on PIL images
(evaluation: shorter side resized to 256, centre crop 224), then the ImageNet normalisation.

Decoding runs in worker processes (nnabla's data iterator only prefetches in one thread, which
JPEG decoding would saturate). Every training image is a pure function of (seed, epoch, position in
the epoch): the order of an epoch comes from (seed, epoch) and each image's augmentation from its own
numpy Generator seeded with (seed, epoch, position), so results do not depend on the number of
workers and a resumed run sees exactly the batches it would have seen.

Unreadable files (corrupt, truncated, not an image) are found when they are decoded, not by opening
all 1.3M files up front, and are warned about once each, naming the file:
- in a training batch, the slot takes the next readable image of the tree (index + 1, + 2, ...) with
  the slot's own augmentation draws, so the batch keeps its size and stays deterministic;
- in evaluation the file is left out: the counts cover readable images only.
"""
import multiprocessing
import os
import signal
import warnings
from collections import deque
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance

from ops.atomic_file import atomic_write
from utils.data.datasets import DataError
from utils.run_files import CLASS_LIST

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_SIZE = 224
RESIZE_SIZE = 256

# torchvision's RandomResizedCrop defaults.
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
CROP_TRIES = 10
# ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2).
JITTER = 0.4
HUE_JITTER = 0.2

# Tags that keep the shuffling and augmentation random streams apart.
_ORDER_STREAM = 0
_AUGMENT_STREAM = 1
# Exceptions PIL raises on files that are not (whole) images.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)
# torchvision resizes PIL images bilinearly.
_BILINEAR = Image.Resampling.BILINEAR


class UnreadableImageWarning(UserWarning):
    """A file of the tree could not be decoded and was skipped."""


@dataclass(frozen=True)
class ImageFolder:
    classes: tuple  # sorted folder names; the label of a class is its index
    train: tuple  # ((path, label), ...) in (class, file name) order
    val: tuple


# ---------------------------------------------------------------- scanning

def scan_image_folder(root):
    """The train and val splits of DIR/{train,val}/<class>/*; DataError on a tree that cannot be used."""
    train_dir, val_dir = os.path.join(root, "train"), os.path.join(root, "val")
    for split_dir in (train_dir, val_dir):
        if not os.path.isdir(split_dir):
            raise DataError(f"no folder {split_dir}; an ImageNet tree is DIR/train/<class>/* and DIR/val/<class>/*")
    train = _scan_split(train_dir)
    val = _scan_split(val_dir)
    if list(train) != list(val):
        only_train = sorted(set(train) - set(val))[:3]
        only_val = sorted(set(val) - set(train))[:3]
        raise DataError(f"the classes of {val_dir} differ from those of {train_dir}: "
                        f"first only in train: {only_train or 'none'}, first only in val: {only_val or 'none'}")
    classes = tuple(train)

    def samples(files_by_class):
        return tuple((path, label) for label, name in enumerate(classes) for path in files_by_class[name])
    return ImageFolder(classes, samples(train), samples(val))


def _scan_split(split_dir):
    """{class name: sorted file paths} for the class folders of split_dir, in sorted order."""
    names = sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir() and not entry.name.startswith("."))
    if not names:
        raise DataError(f"{split_dir} has no class folders")
    files = {}
    for name in names:
        files[name] = _files_under(os.path.join(split_dir, name))
        if not files[name]:
            raise DataError(f"class folder {os.path.join(split_dir, name)} is empty")
    return files


def _files_under(folder):
    """Every file below folder (hidden ones aside), sorted by path; non-images are caught when decoded."""
    paths = []
    for parent, dirs, filenames in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        paths.extend(os.path.join(parent, f) for f in filenames if not f.startswith("."))
    return sorted(paths)


def write_class_list(classes, directory):
    """Writes the class names, one a line in label order, to directory/classes.txt; returns the path."""
    path = os.path.join(directory, CLASS_LIST)
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.writelines(f"{name}\n" for name in classes)
    return path


def read_class_list(path):
    with open(path, encoding="utf-8") as f:
        return tuple(line.rstrip("\n") for line in f)


# ---------------------------------------------------------------- decoding and augmentation

def decode(path):
    """The file as an RGB PIL image (greyscale and CMYK JPEGs are converted, as torchvision's loader does)."""
    with Image.open(path) as image:
        return image.convert("RGB")


def random_resized_crop_box(width, height, rng, scale=CROP_SCALE, ratio=CROP_RATIO):
    """(left, top, w, h) drawn as torchvision's RandomResizedCrop.get_params does.

    Up to ten draws of an area fraction in `scale` and a log-uniform aspect ratio in `ratio`; when none
    fits, the largest centred box whose aspect ratio is clamped into `ratio`.
    """
    area = width * height
    log_ratio = (np.log(ratio[0]), np.log(ratio[1]))
    for _ in range(CROP_TRIES):
        target_area = area * rng.uniform(*scale)
        aspect = np.exp(rng.uniform(*log_ratio))
        w = int(round(np.sqrt(target_area * aspect)))
        h = int(round(np.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, w, h
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def adjust_hue(image, hue_factor):
    """Shifts the hue by hue_factor turns (in [-0.5, 0.5]) in PIL's 8-bit HSV, wrapping around."""
    h, s, v = image.convert("HSV").split()
    shift = np.uint8(int(hue_factor * 255) % 256)
    hue = Image.fromarray(np.asarray(h, dtype=np.uint8) + shift, "L")  # uint8 addition wraps
    return Image.merge("HSV", (hue, s, v)).convert("RGB")


def color_jitter(image, rng, strength=JITTER, hue_strength=HUE_JITTER):
    """torchvision's ColorJitter: a random order of the four adjustments, factors drawn before any is applied."""
    order = rng.permutation(4)
    brightness, contrast, saturation = rng.uniform(max(0.0, 1 - strength), 1 + strength, 3)
    hue = rng.uniform(-hue_strength, hue_strength)
    for which in order:
        if which == 0:
            image = ImageEnhance.Brightness(image).enhance(brightness)
        elif which == 1:
            image = ImageEnhance.Contrast(image).enhance(contrast)
        elif which == 2:
            image = ImageEnhance.Color(image).enhance(saturation)
        else:
            image = adjust_hue(image, hue)
    return image


def train_transform(image, rng, crop_size=CROP_SIZE):
    """Random resized crop, flip with probability 1/2, colour jitter: uint8 (3, crop, crop)."""
    left, top, w, h = random_resized_crop_box(image.width, image.height, rng)
    image = image.resize((crop_size, crop_size), _BILINEAR, box=(left, top, left + w, top + h))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return _chw(color_jitter(image, rng))


def eval_transform(image, crop_size=CROP_SIZE, resize_size=RESIZE_SIZE):
    """Shorter side resized to resize_size, then the centred crop_size square: uint8 (3, crop, crop)."""
    width, height = image.size
    if width <= height:
        size = (resize_size, int(resize_size * height / width))
    else:
        size = (int(resize_size * width / height), resize_size)
    image = image.resize(size, _BILINEAR)
    top = int(round((size[1] - crop_size) / 2.0))
    left = int(round((size[0] - crop_size) / 2.0))
    return _chw(image.crop((left, top, left + crop_size, top + crop_size)))


def _chw(image):
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))


def normalise(images_u8, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """(x / 255 - mean) / std per channel of a uint8 (B, 3, H, W) batch, as float32."""
    scale = (1.0 / (255.0 * np.asarray(std, dtype=np.float64))).astype(np.float32).reshape(-1, 1, 1)
    shift = (-np.asarray(mean, dtype=np.float64) / np.asarray(std)).astype(np.float32).reshape(-1, 1, 1)
    x = images_u8.astype(np.float32)
    x *= scale
    x += shift
    return x


def augment_rng(seed, epoch, position):
    return np.random.default_rng([seed, _AUGMENT_STREAM, epoch, position])


def epoch_order(n, seed, epoch):
    return np.random.default_rng([seed, _ORDER_STREAM, epoch]).permutation(n)


@dataclass(frozen=True)
class _Task:
    """A chunk of one batch for a worker: files and, for training, each slot's (seed, epoch, position)."""
    paths: tuple
    rng_keys: tuple  # None for evaluation
    crop_size: int
    resize_size: int


def _transform_file(path, rng_key, crop_size, resize_size):
    """uint8 (3, crop, crop), or the error message when the file cannot be decoded."""
    try:
        image = decode(path)
    except _DECODE_ERRORS as error:
        return f"{type(error).__name__}: {error}"
    if rng_key is None:
        return eval_transform(image, crop_size, resize_size)
    return train_transform(image, augment_rng(*rng_key), crop_size)


def _run_task(task):
    """(uint8 (n, 3, crop, crop) with unreadable slots zero, {slot: error message})."""
    images = np.zeros((len(task.paths), 3, task.crop_size, task.crop_size), np.uint8)
    errors = {}
    keys = task.rng_keys or (None,) * len(task.paths)
    for slot, (path, key) in enumerate(zip(task.paths, keys)):
        result = _transform_file(path, key, task.crop_size, task.resize_size)
        if isinstance(result, str):
            errors[slot] = result
        else:
            images[slot] = result
    return images, errors


# ---------------------------------------------------------------- worker pool

def _ignore_interrupts():
    # Ctrl-C reaches the whole process group; the main process alone decides what to do with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _DecodePool:
    """num_workers spawned processes running _run_task, or the calling process itself when it is 0.

    Spawned rather than forked: forking a process that holds CUDA contexts or running threads (nnabla's
    prefetch) is unsafe.
    """

    def __init__(self, num_workers):
        if num_workers < 0:
            raise DataError(f"the number of decoding workers must be 0 or more, not {num_workers}")
        self.num_workers = num_workers
        self._pool = (multiprocessing.get_context("spawn").Pool(num_workers, initializer=_ignore_interrupts)
                      if num_workers else None)

    def submit(self, tasks):
        """A handle for wait(): the results of the tasks, computed in order."""
        if self._pool is None:
            return [_run_task(task) for task in tasks]
        return [self._pool.apply_async(_run_task, (task,)) for task in tasks]

    def wait(self, handle):
        return handle if self._pool is None else [result.get() for result in handle]

    def chunks(self, count):
        """Slices cutting range(count) into one piece a worker."""
        bounds = np.linspace(0, count, max(1, self.num_workers) + 1).astype(int)
        return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]

    def close(self):
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None


_warned_paths = set()


def _warn_unreadable(path, message):
    """One warning per file and process, however many epochs meet it."""
    if path not in _warned_paths:
        _warned_paths.add(path)
        warnings.warn(f"skipping unreadable image {path} ({message})", UnreadableImageWarning, stacklevel=3)


def _labels_array(samples):
    return np.asarray([label for _, label in samples], dtype=np.int32).reshape(-1, 1)


# ---------------------------------------------------------------- loaders

class TrainLoader:
    """Endless shuffled, augmented, normalised batches: x float32 (B, 3, crop, crop), y int32 (B, 1).

    Each epoch is a fresh permutation of the samples, cut into batches of batch_size but the last, which
    holds the rest (last_batch_size images), so every image is seen once an epoch: quark0's DataLoader keeps
    that smaller batch too (drop_last=False). `prefetch` batches are decoded ahead while the caller trains.
    Close it (or use it in a `with` block) to end the worker processes.
    """

    def __init__(self, samples, batch_size, *, seed, num_workers, start_epoch=0, crop_size=CROP_SIZE,
                 prefetch=2):
        self._paths = tuple(path for path, _ in samples)
        self._labels = _labels_array(samples)
        if not self._paths:
            raise DataError("there are no training images")
        self.batch_size = batch_size
        self.steps_per_epoch = (len(self._paths) + batch_size - 1) // batch_size
        self.last_batch_size = len(self._paths) - (self.steps_per_epoch - 1) * batch_size
        self._seed = seed
        self._crop_size = crop_size
        self._prefetch = max(1, prefetch)
        self._order = (None, None)  # (epoch, permutation): one epoch's order is kept
        self._unreadable = set()  # dataset indices
        self.epoch = start_epoch
        self._next = (start_epoch, 0)
        self._pending = deque()
        self._pool = _DecodePool(num_workers)

    def _indices(self, epoch, step):
        if self._order[0] != epoch:
            self._order = (epoch, epoch_order(len(self._paths), self._seed, epoch))
        return self._order[1][step * self.batch_size:(step + 1) * self.batch_size]

    def _submit(self, epoch, step):
        indices = self._indices(epoch, step)
        first = step * self.batch_size
        keys = tuple((self._seed, epoch, first + slot) for slot in range(len(indices)))
        tasks = [_Task(tuple(self._paths[i] for i in indices[part]), keys[part], self._crop_size, 0)
                 for part in self._pool.chunks(len(indices))]
        return epoch, indices, keys, self._pool.submit(tasks)

    def _collect(self, submitted):
        epoch, indices, keys, handle = submitted
        results = self._pool.wait(handle)
        images = np.concatenate([chunk for chunk, _ in results])
        indices = indices.copy()
        offset = 0
        for chunk, errors in results:
            for slot, message in errors.items():
                position = offset + slot
                images[position], indices[position] = self._substitute(indices[position], message, keys[position])
            offset += len(chunk)
        return normalise(images), self._labels[indices]

    def _substitute(self, index, message, key):
        """The next readable image after `index` (wrapping), augmented with the slot's own draws."""
        n = len(self._paths)
        self._mark_unreadable(index, message)
        for candidate in (index + k for k in range(1, n)):
            candidate %= n
            if candidate in self._unreadable:
                continue
            result = _transform_file(self._paths[candidate], key, self._crop_size, 0)
            if not isinstance(result, str):
                return result, candidate
            self._mark_unreadable(candidate, result)
        raise DataError("no training image of the tree can be decoded")

    def _mark_unreadable(self, index, message):
        self._unreadable.add(index)
        _warn_unreadable(self._paths[index], message)

    def batch(self, epoch, step):
        """Batch `step` of `epoch`, computed now; the same (epoch, step) always gives the same batch."""
        return self._collect(self._submit(epoch, step))

    def next(self):
        while len(self._pending) < self._prefetch:
            epoch, step = self._next
            self._pending.append(self._submit(epoch, step))
            self._next = (epoch, step + 1) if step + 1 < self.steps_per_epoch else (epoch + 1, 0)
        submitted = self._pending.popleft()
        self.epoch = submitted[0]
        return self._collect(submitted)

    def close(self):
        self._pending.clear()
        self._pool.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def eval_batches(samples, batch_size, *, num_workers, crop_size=CROP_SIZE, resize_size=RESIZE_SIZE):
    """Every readable sample once, in order: (x, y, n_valid); the last batch is zero-padded to batch_size.

    Its worker processes end with the generator (exhausted, closed or collected).
    """
    labels = _labels_array(samples)
    paths = tuple(path for path, _ in samples)
    pool = _DecodePool(num_workers)

    def submit(start):
        stop = min(start + batch_size, len(paths))
        tasks = [_Task(paths[start:stop][part], None, crop_size, resize_size)
                 for part in pool.chunks(stop - start)]
        return start, pool.submit(tasks)

    try:
        starts = deque(range(0, len(paths), batch_size))
        pending = deque(submit(starts.popleft()) for _ in range(min(2, len(starts))))
        images, kept = [], []
        while pending:
            start, handle = pending.popleft()
            if starts:
                pending.append(submit(starts.popleft()))
            offset = start
            for chunk, errors in pool.wait(handle):
                for slot in range(len(chunk)):
                    if slot in errors:
                        _warn_unreadable(paths[offset + slot], errors[slot])
                    else:
                        images.append(chunk[slot])
                        kept.append(offset + slot)
                offset += len(chunk)
            while len(images) >= batch_size or (not pending and images):
                n_valid = min(batch_size, len(images))
                x = np.zeros((batch_size, 3, crop_size, crop_size), np.float32)
                y = np.zeros((batch_size, 1), np.int32)
                x[:n_valid] = normalise(np.stack(images[:n_valid]))
                y[:n_valid] = labels[kept[:n_valid]]
                del images[:n_valid], kept[:n_valid]
                yield x, y, n_valid
    finally:
        pool.close()

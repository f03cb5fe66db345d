"""Image classification data sets by name: where they come from, download, readers.

Every set is returned as uint8 images (N, C, H, W) and int32 labels, read with
numpy in bulk. The official files are cached in a data directory; files already
there are used as they are, whatever their number of records, and anything
missing is downloaded from the official address and checked against its
published md5.
"""
import gzip
import hashlib
import os
import shutil
import tarfile
from dataclasses import dataclass
from urllib.error import URLError
from urllib.request import urlopen

import numpy as np
from tqdm import tqdm

from ops.user_error import UserError

DATASET_NAMES = ("cifar10", "cifar100", "fashion-mnist", "mnist", "digits")


class DataError(UserError, ValueError):
    """One-line, user-facing message (scripts print it and exit 1)."""


@dataclass
class Dataset:
    name: str
    train_x: np.ndarray  # uint8 (N, C, H, W)
    train_y: np.ndarray  # int32 (N,)
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    mean: tuple  # per channel, in [0, 1] pixel units
    std: tuple
    hflip: bool  # whether a horizontal flip keeps an image in its class
    vflip: bool = False  # whether the affine augmentation flips vertically (the seeds do for Fashion-MNIST)


@dataclass(frozen=True)
class RemoteFile:
    url: str
    md5: str

    @property
    def filename(self):
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class CifarSource:
    archive: RemoteFile
    folder: str  # the folder the archive unpacks to, inside data_dir
    train_files: tuple
    test_files: tuple
    label_offset: int  # CIFAR-100 records carry the coarse label before the fine one


@dataclass(frozen=True)
class IdxSource:
    # MNIST and Fashion-MNIST use the same file names, so each gets its own folder.
    folder: str
    train_images: RemoteFile
    train_labels: RemoteFile
    test_images: RemoteFile
    test_labels: RemoteFile


@dataclass(frozen=True)
class _Info:
    shape: tuple
    num_classes: int
    mean: tuple
    std: tuple
    hflip: bool
    vflip: bool = False


_INFO = {
    "cifar10": _Info((3, 32, 32), 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True),
    "cifar100": _Info((3, 32, 32), 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True),
    # The seeds' (var_nas, DADARTS) statistics for the two digit sets.
    "fashion-mnist": _Info((1, 28, 28), 10, (0.28604063146254594,), (0.35302426207299326,), True, vflip=True),
    "mnist": _Info((1, 28, 28), 10, (0.13066051707548254,), (0.30810780244715075,), False),
    # mean/std of digits are measured on its training split when it is loaded.
    "digits": _Info((1, 8, 8), 10, None, None, False),
}

_CIFAR_BASE = "https://www.cs.toronto.edu/~kriz/"
_MNIST_BASE = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # the mirror torchvision uses
_FASHION_BASE = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"


def _idx_source(folder, base, md5s):
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    return IdxSource(folder, *(RemoteFile(base + n, m) for n, m in zip(names, md5s)))


# Tests swap entries of this table to serve small archives from file:// URLs.
SOURCES = {
    "cifar10": CifarSource(
        RemoteFile(_CIFAR_BASE + "cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530"),
        "cifar-10-batches-bin",
        tuple(f"data_batch_{i}.bin" for i in range(1, 6)), ("test_batch.bin",),
        label_offset=0),
    "cifar100": CifarSource(
        RemoteFile(_CIFAR_BASE + "cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8"),
        "cifar-100-binary", ("train.bin",), ("test.bin",),
        label_offset=1),
    # md5s: torchvision's MNIST resource list.
    "mnist": _idx_source("mnist", _MNIST_BASE, (
        "f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
        "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c")),
    # md5s: the README of zalandoresearch/fashion-mnist.
    "fashion-mnist": _idx_source("fashion-mnist", _FASHION_BASE, (
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
        "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310")),
}


def _info(name):
    if name not in _INFO:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    return _INFO[name]


def dataset_info(name):
    """((C, H, W), num_classes) of a data set, without reading or downloading anything."""
    info = _info(name)
    return info.shape, info.num_classes


def load_dataset(name, data_dir):
    info = _info(name)
    if name == "digits":
        return _load_digits()
    data_dir = os.path.expanduser(data_dir)
    source = SOURCES[name]
    if isinstance(source, CifarSource):
        (train_x, train_y), (test_x, test_y) = _load_cifar(name, source, data_dir)
    else:
        (train_x, train_y), (test_x, test_y) = _load_idx(name, source, data_dir)
    # Files placed by hand may be anything: catch the wrong ones here, not deep in training.
    for split, images, labels in (("training", train_x, train_y), ("test", test_x, test_y)):
        if images.shape[1:] != info.shape:
            raise DataError(f"{name}: {split} images are {images.shape[1:]}, expected {info.shape}; "
                            f"the files in {data_dir} are not {name}")
        if labels.size and labels.max() >= info.num_classes:
            raise DataError(f"{name}: {split} label {labels.max()} is out of range for "
                            f"{info.num_classes} classes; the files in {data_dir} are not {name}")
    return Dataset(name, train_x, train_y, test_x, test_y, info.num_classes,
                   info.mean, info.std, info.hflip, info.vflip)


# ---------------------------------------------------------------- digits

# 30 test images per class, drawn with a fixed seed: 300 test and 1497 training
# images, every class equally represented in the test set.
_DIGITS_TEST_PER_CLASS = 30
_DIGITS_SPLIT_SEED = 0


def _load_digits():
    from sklearn.datasets import load_digits  # slow import, needed only here

    bunch = load_digits()
    # Pixels are counts 0..16; scale them onto the usual 0..255.
    images = np.rint(bunch.data * (255.0 / 16.0)).astype(np.uint8).reshape(-1, 1, 8, 8)
    labels = bunch.target.astype(np.int32)
    rng = np.random.default_rng(_DIGITS_SPLIT_SEED)
    is_test = np.zeros(len(labels), dtype=bool)
    for digit in range(10):
        members = np.flatnonzero(labels == digit)
        is_test[rng.choice(members, _DIGITS_TEST_PER_CLASS, replace=False)] = True
    train_x = images[~is_test]
    pixels = train_x / 255.0
    info = _INFO["digits"]
    return Dataset("digits", train_x, labels[~is_test], images[is_test], labels[is_test],
                   info.num_classes, (float(pixels.mean()),), (float(pixels.std()),), info.hflip)


# ---------------------------------------------------------------- CIFAR binary

_CIFAR_PIXELS = 3 * 32 * 32


def _load_cifar(name, source, data_dir):
    folder = os.path.join(data_dir, source.folder)
    if not os.path.isdir(folder):
        archive = os.path.join(data_dir, source.archive.filename)
        if os.path.isfile(archive):
            check_md5(archive, source.archive.md5)
        else:
            download(name, source.archive, archive,
                     f"{source.archive.filename} (or the extracted {source.folder}/) in {data_dir}")
        _extract_members(archive, source.folder, source.train_files + source.test_files, data_dir)
    return (_read_cifar_files(folder, source.train_files, source.label_offset),
            _read_cifar_files(folder, source.test_files, source.label_offset))


def _read_cifar_files(folder, filenames, label_offset):
    record_size = label_offset + 1 + _CIFAR_PIXELS
    images, labels = [], []
    for filename in filenames:
        path = os.path.join(folder, filename)
        if not os.path.isfile(path):
            raise DataError(f"missing file {path}")
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size == 0 or raw.size % record_size:
            raise DataError(f"{path}: {raw.size} bytes is not a whole number of "
                            f"{record_size}-byte records; the file is truncated or not this data set")
        records = raw.reshape(-1, record_size)
        labels.append(records[:, label_offset].astype(np.int32))
        # Each record stores the red plane, then green, then blue: already (C, H, W).
        images.append(records[:, label_offset + 1:].reshape(-1, 3, 32, 32))
    return np.concatenate(images), np.concatenate(labels)


def _extract_members(archive, folder, filenames, data_dir):
    """Unpack folder/<filename> for each wanted file, and nothing else.

    Writing to paths built here, rather than trusting the archive's own paths,
    keeps a hostile archive from writing outside data_dir. The files go to a
    scratch folder renamed at the end, so an interrupted run never leaves a
    folder that looks complete.
    """
    scratch = os.path.join(data_dir, folder + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for filename in filenames:
                member = f"{folder}/{filename}"
                try:
                    stream = tar.extractfile(member)
                except KeyError:
                    stream = None
                if stream is None:
                    raise DataError(f"{archive} has no file {member}")
                with stream, open(os.path.join(scratch, filename), "wb") as out:
                    shutil.copyfileobj(stream, out, 1 << 20)
        os.replace(scratch, os.path.join(data_dir, folder))
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataError(f"could not extract {archive}: {error}") from error
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------- gzip IDX

_IDX_UBYTE = 0x08


def _load_idx(name, source, data_dir):
    folder = os.path.join(data_dir, source.folder)
    remotes = (source.train_images, source.train_labels, source.test_images, source.test_labels)
    place = f"{', '.join(r.filename for r in remotes)} in {folder}"
    paths = []
    for remote in remotes:
        path = os.path.join(folder, remote.filename)
        if not os.path.isfile(path):
            download(name, remote, path, place)
        paths.append(path)
    train = _read_idx_pair(paths[0], paths[1])
    test = _read_idx_pair(paths[2], paths[3])
    return train, test


def _read_idx_pair(images_path, labels_path):
    images = _read_idx(images_path, ndim=3)
    labels = _read_idx(labels_path, ndim=1)
    if len(images) != len(labels):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} "
                        f"has {len(labels)} labels")
    return images[:, None], labels.astype(np.int32)


def _read_idx(path, ndim):
    """An IDX file of unsigned bytes: 0, 0, type code, ndim, then ndim big-endian uint32 sizes."""
    try:
        with gzip.open(path, "rb") as stream:
            # A bytearray keeps the arrays viewing it writable, like the CIFAR ones.
            raw = bytearray(stream.read())
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: not a readable gzip file ({error})") from error
    header_size = 4 + 4 * ndim
    if len(raw) < header_size or raw[:4] != bytes((0, 0, _IDX_UBYTE, ndim)):
        raise DataError(f"{path}: bad IDX magic {raw[:4].hex()}, expected 0000{_IDX_UBYTE:02x}{ndim:02x}")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims))
    if len(raw) - header_size != expected:
        raise DataError(f"{path}: header says {'x'.join(map(str, dims))} = {expected} bytes "
                        f"but the file holds {len(raw) - header_size}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims)


# ---------------------------------------------------------------- download

def download(name, remote, path, place):
    """Fetch remote into path, checked against its md5 before it takes the name, so that an interrupted or
    damaged download leaves nothing under it; on failure say what to place where, by hand."""
    partial = path + ".partial"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with urlopen(remote.url, timeout=60) as response, open(partial, "wb") as out:
            size = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=size, unit="B", unit_scale=True, desc=remote.filename) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        actual = file_md5(partial)
        if actual != remote.md5:
            raise DataError(f"{path}: md5 {actual} does not match the published {remote.md5}; the download was "
                            f"damaged and is discarded: run again, or place {place}")
        os.replace(partial, path)
    except (URLError, OSError, ValueError) as error:
        if os.path.exists(partial):
            os.remove(partial)
        if isinstance(error, DataError):
            raise
        reason = error.reason if isinstance(error, URLError) else error
        raise DataError(f"{name}: could not download {remote.url} ({reason}); "
                        f"place {place}") from error


def file_md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_md5(path, expected):
    """A file placed by hand must be the published one; one that is not is kept (it may be the only copy, and
    offline no other can be had) and reported."""
    actual = file_md5(path)
    if actual != expected:
        raise DataError(f"{path}: md5 {actual} does not match the published {expected}; the file is kept: replace "
                        f"it with the official file, or delete it to have it downloaded again")

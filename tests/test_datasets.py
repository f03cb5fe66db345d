"""Readers, cache and download of utils.data.datasets, on small files in the official formats."""
import dataclasses
import gzip
import hashlib
import io
import os
import struct
import tarfile
from urllib.error import URLError

import numpy as np
import pytest

from utils.data import datasets
from utils.data.datasets import DataError, RemoteFile, dataset_info, load_dataset

CIFAR10_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]


def cifar10_bytes(images, labels):
    # Written plane by plane from the format's description, independently of the reader.
    return b"".join(
        bytes([int(label)]) + image[0].tobytes() + image[1].tobytes() + image[2].tobytes()
        for image, label in zip(images, labels))


def cifar100_bytes(images, coarse, fine):
    return b"".join(
        bytes([int(c), int(f)]) + image.tobytes() for image, c, f in zip(images, coarse, fine))


def random_images(rng, n, shape):
    return rng.integers(0, 256, (n,) + shape, dtype=np.uint8)


def write_cifar10_folder(folder, rng, per_file=3):
    """Writes the six CIFAR-10 files; returns {filename: (images, labels)}."""
    os.makedirs(folder, exist_ok=True)
    written = {}
    for filename in CIFAR10_FILES:
        images = random_images(rng, per_file, (3, 32, 32))
        labels = rng.integers(0, 10, per_file)
        with open(os.path.join(folder, filename), "wb") as f:
            f.write(cifar10_bytes(images, labels))
        written[filename] = (images, labels)
    return written


def idx_bytes(array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def write_idx_folder(folder, rng, n_train=5, n_test=3):
    os.makedirs(folder, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte.gz": random_images(rng, n_train, (28, 28)),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": random_images(rng, n_test, (28, 28)),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    for filename, array in arrays.items():
        with open(os.path.join(folder, filename), "wb") as f:
            f.write(idx_bytes(array))
    return arrays


def md5_of(path):
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def serve(monkeypatch, name, **changes):
    """Points a data set's source at local files: the real download code then reads file:// URLs."""
    monkeypatch.setitem(datasets.SOURCES, name, dataclasses.replace(datasets.SOURCES[name], **changes))


@pytest.fixture
def no_network(monkeypatch):
    def refuse(url, *args, **kwargs):
        raise URLError("no network")
    monkeypatch.setattr(datasets, "urlopen", refuse)


# ---------------------------------------------------------------- readers

def test_cifar10_channel_order_follows_the_record_layout(tmp_path):
    record = bytearray([7]) + bytes([10]) * 1024 + bytes([20]) * 1024 + bytes([30]) * 1024
    record[1 + 0 * 1024 + 0 * 32 + 1] = 99   # red, row 0, column 1
    record[1 + 2 * 1024 + 5 * 32 + 3] = 77   # blue, row 5, column 3
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for filename in CIFAR10_FILES:
        (folder / filename).write_bytes(bytes(record))

    data = load_dataset("cifar10", str(tmp_path))

    image = data.train_x[0]
    assert image[0, 0, 1] == 99 and image[2, 5, 3] == 77
    assert (image[1] == 20).all()
    assert image[0, 0, 0] == 10 and image[2, 0, 0] == 30
    assert data.train_y.tolist() == [7] * 5 and data.test_y.tolist() == [7]


def test_cifar10_round_trips_every_pixel_and_label_in_file_order(tmp_path):
    written = write_cifar10_folder(tmp_path / "cifar-10-batches-bin", np.random.default_rng(0))

    data = load_dataset("cifar10", str(tmp_path))

    train = [written[f] for f in CIFAR10_FILES[:5]]
    np.testing.assert_array_equal(data.train_x, np.concatenate([im for im, _ in train]))
    np.testing.assert_array_equal(data.train_y, np.concatenate([lb for _, lb in train]))
    np.testing.assert_array_equal(data.test_x, written["test_batch.bin"][0])
    np.testing.assert_array_equal(data.test_y, written["test_batch.bin"][1])
    assert data.train_x.dtype == np.uint8 and data.train_y.dtype == np.int32
    assert data.train_x.shape == (15, 3, 32, 32)
    assert (data.num_classes, data.hflip) == (10, True)
    assert data.mean == (0.4914, 0.4822, 0.4465) and data.std == (0.2470, 0.2435, 0.2616)


def test_cifar100_uses_the_fine_label(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    train_images = random_images(rng, 4, (3, 32, 32))
    fine = np.array([42, 99, 0, 57])
    (folder / "train.bin").write_bytes(cifar100_bytes(train_images, [3, 19, 0, 7], fine))
    test_images = random_images(rng, 2, (3, 32, 32))
    (folder / "test.bin").write_bytes(cifar100_bytes(test_images, [1, 2], [88, 11]))

    data = load_dataset("cifar100", str(tmp_path))

    np.testing.assert_array_equal(data.train_x, train_images)
    assert data.train_y.tolist() == fine.tolist()
    np.testing.assert_array_equal(data.test_x, test_images)
    assert data.test_y.tolist() == [88, 11]
    assert data.num_classes == 100


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_files_round_trip(tmp_path, name):
    arrays = write_idx_folder(tmp_path / name, np.random.default_rng(2))

    data = load_dataset(name, str(tmp_path))

    np.testing.assert_array_equal(data.train_x[:, 0], arrays["train-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(data.train_y, arrays["train-labels-idx1-ubyte.gz"])
    np.testing.assert_array_equal(data.test_x[:, 0], arrays["t10k-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(data.test_y, arrays["t10k-labels-idx1-ubyte.gz"])
    assert data.train_x.shape == (5, 1, 28, 28) and data.train_x.dtype == np.uint8
    assert data.train_y.dtype == np.int32
    assert data.hflip == (name == "fashion-mnist")


def test_digits_is_embedded_and_split_by_class():
    data = load_dataset("digits", "/nonexistent")

    assert data.train_x.shape == (1497, 1, 8, 8) and data.test_x.shape == (300, 1, 8, 8)
    assert data.train_x.dtype == np.uint8 and data.train_y.dtype == np.int32
    assert data.train_x.max() == 255 and data.num_classes == 10 and not data.hflip
    assert np.bincount(data.test_y).tolist() == [30] * 10
    assert 0 < data.mean[0] < 1 and 0 < data.std[0] < 1
    again = load_dataset("digits", "/nonexistent")
    np.testing.assert_array_equal(data.test_x, again.test_x)


def test_dataset_info_names_every_set_and_rejects_others():
    assert dataset_info("cifar10") == ((3, 32, 32), 10)
    assert dataset_info("cifar100") == ((3, 32, 32), 100)
    assert dataset_info("mnist") == ((1, 28, 28), 10)
    assert dataset_info("fashion-mnist") == ((1, 28, 28), 10)
    assert dataset_info("digits") == ((1, 8, 8), 10)
    with pytest.raises(DataError, match="imagenet"):
        dataset_info("imagenet")


# ---------------------------------------------------------------- broken files

def test_cifar_file_that_is_not_whole_records_is_named(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar10_folder(folder, np.random.default_rng(3))
    with open(folder / "data_batch_3.bin", "ab") as f:
        f.write(b"\x00" * 100)

    with pytest.raises(DataError, match="data_batch_3.bin"):
        load_dataset("cifar10", str(tmp_path))


def test_idx_file_shorter_than_its_header_says_is_named(tmp_path):
    folder = tmp_path / "mnist"
    write_idx_folder(folder, np.random.default_rng(4))
    path = folder / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-28]))

    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz.*header"):
        load_dataset("mnist", str(tmp_path))


def test_idx_file_with_a_bad_magic_is_named(tmp_path):
    folder = tmp_path / "mnist"
    write_idx_folder(folder, np.random.default_rng(5))
    # A labels file where an images file belongs: the magic says 1 dimension, not 3.
    os.replace(folder / "train-labels-idx1-ubyte.gz", folder / "train-images-idx3-ubyte.gz")

    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz.*magic"):
        load_dataset("mnist", str(tmp_path))


def test_labels_beyond_the_class_count_are_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    rng = np.random.default_rng(10)
    write_cifar10_folder(folder, rng)
    # CIFAR-100-like labels in CIFAR-10 files.
    (folder / "test_batch.bin").write_bytes(cifar10_bytes(random_images(rng, 2, (3, 32, 32)), [3, 57]))

    with pytest.raises(DataError, match="label 57"):
        load_dataset("cifar10", str(tmp_path))


# ---------------------------------------------------------------- download

def cifar10_archive(tmp_path, rng):
    """A cifar-10-binary.tar.gz in the official layout, in its own folder."""
    written = write_cifar10_folder(tmp_path / "build" / "cifar-10-batches-bin", rng)
    archive = tmp_path / "served" / "cifar-10-binary.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "build" / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
    return archive, written


def test_download_verifies_and_extracts_a_cifar_archive(tmp_path, monkeypatch):
    archive, written = cifar10_archive(tmp_path, np.random.default_rng(6))
    serve(monkeypatch, "cifar10", archive=RemoteFile(archive.as_uri(), md5_of(archive)))
    data_dir = tmp_path / "data"

    data = load_dataset("cifar10", str(data_dir))

    np.testing.assert_array_equal(data.test_x, written["test_batch.bin"][0])
    np.testing.assert_array_equal(data.train_y[:3], written["data_batch_1.bin"][1])
    assert sorted(os.listdir(data_dir)) == ["cifar-10-batches-bin", "cifar-10-binary.tar.gz"]


def test_download_of_idx_files_checks_each_one(tmp_path, monkeypatch):
    served = tmp_path / "served"
    arrays = write_idx_folder(served, np.random.default_rng(7))
    remotes = {
        field: RemoteFile((served / filename).as_uri(), md5_of(served / filename))
        for field, filename in zip(("train_images", "train_labels", "test_images", "test_labels"), arrays)}
    serve(monkeypatch, "mnist", **remotes)

    data = load_dataset("mnist", str(tmp_path / "data"))

    np.testing.assert_array_equal(data.test_x[:, 0], arrays["t10k-images-idx3-ubyte.gz"])
    assert sorted(os.listdir(tmp_path / "data" / "mnist")) == sorted(arrays)


def test_checksum_mismatch_deletes_the_download_and_names_both_sums(tmp_path, monkeypatch):
    archive, _ = cifar10_archive(tmp_path, np.random.default_rng(8))
    serve(monkeypatch, "cifar10", archive=RemoteFile(archive.as_uri(), "0" * 32))
    data_dir = tmp_path / "data"

    with pytest.raises(DataError) as error:
        load_dataset("cifar10", str(data_dir))

    message = str(error.value)
    assert "cifar-10-binary.tar.gz" in message and "0" * 32 in message and md5_of(archive) in message
    assert not (data_dir / "cifar-10-binary.tar.gz").exists()
    assert not (data_dir / "cifar-10-batches-bin").exists()


def test_archive_placed_by_hand_is_checked_and_extracted_without_network(tmp_path, monkeypatch, no_network):
    archive, written = cifar10_archive(tmp_path, np.random.default_rng(9))
    serve(monkeypatch, "cifar10", archive=dataclasses.replace(datasets.SOURCES["cifar10"].archive,
                                                              md5=md5_of(archive)))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    os.replace(archive, data_dir / "cifar-10-binary.tar.gz")

    data = load_dataset("cifar10", str(data_dir))

    np.testing.assert_array_equal(data.test_y, written["test_batch.bin"][1])


def test_archive_without_an_expected_file_is_reported(tmp_path, monkeypatch):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-bin/data_batch_1.bin")
        info.size = 3073
        tar.addfile(info, io.BytesIO(b"\x00" * 3073))
    serve(monkeypatch, "cifar10", archive=RemoteFile(archive.as_uri(), md5_of(archive)))

    with pytest.raises(DataError, match="data_batch_2.bin"):
        load_dataset("cifar10", str(tmp_path / "data"))
    assert not (tmp_path / "data" / "cifar-10-batches-bin").exists()


@pytest.mark.parametrize("name, to_place, folder", [
    ("cifar10", "cifar-10-binary.tar.gz (or the extracted cifar-10-batches-bin/)", ""),
    ("cifar100", "cifar-100-binary.tar.gz (or the extracted cifar-100-binary/)", ""),
    ("mnist", "train-images-idx3-ubyte.gz", "mnist"),
    ("fashion-mnist", "t10k-labels-idx1-ubyte.gz", "fashion-mnist"),
])
def test_no_network_and_no_files_says_what_to_place_where(tmp_path, no_network, name, to_place, folder):
    with pytest.raises(DataError) as error:
        load_dataset(name, str(tmp_path))

    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{name}: could not download ") and "no network" in message
    assert to_place in message
    assert message.endswith(str(tmp_path / folder) if folder else str(tmp_path))
    assert not any(p.name.endswith(".partial") for p in tmp_path.rglob("*"))

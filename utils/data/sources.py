"""What a training run reads, whatever the data set: its input shape and classes, training batches, test batches.

Two kinds: the in-memory data sets of utils.data.datasets (CIFAR, MNIST, the embedded digits), and an
ImageFolder tree (ImageNet) decoded by worker processes. Both give training loaders with next() and
close(), and test batches as (x, y, n_valid) with the last batch padded.
"""
import os

import numpy as np

from utils.data import imagenet
from utils.data.datasets import DataError, dataset_info, load_dataset
from utils.data.pipeline import BatchLoader, eval_batches, split_indices

IMAGENET = "imagenet"
IMAGENET_CLASSES = 1000


class ArraySource:
    """train_portion P (optional): train on a seeded P of the training set, validate on the rest."""

    def __init__(self, data, train_portion=None, seed=0):
        self.data = data
        self.input_shape = data.train_x.shape[1:]
        self.num_classes = data.num_classes
        self.train_idx = np.arange(len(data.train_y))
        self.valid_idx = None
        if train_portion is not None:
            self.train_idx, self.valid_idx = split_indices(len(data.train_y), train_portion, seed)

    def train_loader(self, batch_size, seed, start_epoch, cutout_length, augment="darts"):
        data, idx = self.data, self.train_idx
        return BatchLoader(data.train_x[idx], data.train_y[idx], batch_size, data.mean, data.std, augment=augment,
                           hflip=data.hflip, vflip=data.vflip, cutout_length=cutout_length, seed=seed,
                           start_epoch=start_epoch)

    def validation_batches(self, batch_size):
        data, idx = self.data, self.valid_idx
        return eval_batches(data.train_x[idx], data.train_y[idx], batch_size, data.mean, data.std)

    def test_batches(self, batch_size):
        return eval_batches(self.data.test_x, self.data.test_y, batch_size, self.data.mean, self.data.std)

    def describe(self, monitor_path):
        pass


class ImageFolderSource:
    """DIR/train/<class>/* trains, DIR/val/<class>/* tests; images are cropped to image_size squares."""

    def __init__(self, root, image_size, num_workers):
        self.folder = imagenet.scan_image_folder(root)
        self.image_size = image_size
        self.num_workers = num_workers
        self.input_shape = (3, image_size, image_size)
        self.num_classes = len(self.folder.classes)

    def train_loader(self, batch_size, seed, start_epoch, cutout_length, augment="darts"):
        if augment == "affine":
            raise DataError("--augment affine is for the digit sets; ImageNet has its own augmentation")
        if cutout_length:
            raise DataError("cutout is not part of the ImageNet recipe; run with --cutout false")
        return imagenet.TrainLoader(self.folder.train, batch_size, seed=seed, num_workers=self.num_workers,
                                    start_epoch=start_epoch, crop_size=self.image_size)

    def test_batches(self, batch_size):
        # Resize to 256 before a 224 crop, scaled for other sizes.
        resize = round(self.image_size * imagenet.RESIZE_SIZE / imagenet.CROP_SIZE)
        return imagenet.eval_batches(self.folder.val, batch_size, num_workers=self.num_workers,
                                     crop_size=self.image_size, resize_size=resize)

    def describe(self, monitor_path):
        """The class list, so that a label means the same class on every machine."""
        imagenet.write_class_list(self.folder.classes, monitor_path)


def open_source(dataset, data_dir, image_size, num_workers, train_portion=None, seed=0):
    if dataset == IMAGENET:
        if train_portion is not None:
            raise DataError("--train-portion is not offered for imagenet, which has its own val/ tree")
        return ImageFolderSource(os.path.expanduser(data_dir), image_size, num_workers)
    return ArraySource(load_dataset(dataset, data_dir), train_portion, seed)


def source_info(dataset, image_size):
    """((C, H, W), num_classes) without reading anything: what --summary needs."""
    if dataset == IMAGENET:
        return (3, image_size, image_size), IMAGENET_CLASSES
    return dataset_info(dataset)

"""The seeds' (Fashion-)MNIST augmentation, --augment affine (S-D2)."""
import numpy as np
import pytest

from args import parse_args, search_parser, train_parser
from utils.data.datasets import dataset_info
from utils.data.pipeline import BatchLoader, affine_warp, draw_affine_parameters

FMNIST_MEAN, FMNIST_STD = 0.28604063146254594, 0.35302426207299326


def affine_batches(images, count, vflip, seed=0, cutout_length=0, mean=FMNIST_MEAN, std=FMNIST_STD):
    loader = BatchLoader(images, np.zeros(len(images)), len(images), (mean,), (std,), augment="affine",
                         hflip=True, vflip=vflip, cutout_length=cutout_length, seed=seed)
    try:
        return [loader.next()[0] for _ in range(count)]
    finally:
        loader.close()


def no_move(batch):
    zeros = np.zeros(batch)
    return zeros, zeros, np.ones(batch), zeros, zeros


def test_warp_identity_shift_and_quarter_turn():
    image = np.arange(1, 26, dtype=np.uint8).reshape(1, 1, 5, 5)
    np.testing.assert_array_equal(affine_warp(image, *no_move(1)), image)
    angle, shear, scale, tx, ty = no_move(1)
    shifted = affine_warp(image, angle, shear, scale, tx + 2, ty - 1)
    expected = np.zeros_like(image)
    expected[..., 0:4, 2:5] = image[..., 1:5, 0:3]  # 2 right, 1 up, zeros where nothing comes from
    np.testing.assert_array_equal(shifted, expected)
    # With y pointing down, a positive angle turns the picture clockwise on screen.
    turned = affine_warp(image, np.array([np.pi / 2]), shear, scale, tx, ty)
    np.testing.assert_array_equal(turned[0, 0], np.rot90(image[0, 0], k=-1))
    doubled = affine_warp(image, angle, shear, np.array([2.0]), tx, ty)
    assert doubled[0, 0, 2, 2] == image[0, 0, 2, 2] and doubled[0, 0, 0, 0] == image[0, 0, 1, 1]


def test_parameters_cover_the_seeds_ranges():
    angle, shear, scale, tx, ty = draw_affine_parameters(4000, 28, 28, np.random.default_rng(0))
    assert np.abs(np.rad2deg(angle)).max() <= 15 and np.abs(np.rad2deg(angle)).max() > 14.9
    assert np.abs(np.rad2deg(shear)).max() <= 0.1
    assert scale.min() >= 0.9 and scale.max() <= 1.1 and scale.max() - scale.min() > 0.19
    assert set(np.unique(tx)) == set(range(-3, 4)) and set(np.unique(ty)) == set(range(-3, 4))  # round(±2.8)
    assert abs(np.rad2deg(angle).std() - 30 / np.sqrt(12)) < 0.3  # uniform on [-15, 15]


def test_batches_are_deterministic_per_seed_epoch_and_step():
    images = np.random.default_rng(1).integers(0, 256, (8, 1, 28, 28), dtype=np.uint8)
    first, again = affine_batches(images, 2, vflip=True), affine_batches(images, 2, vflip=True)
    assert first[0].shape == (8, 1, 28, 28) and first[0].dtype == np.float32
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first[0], affine_batches(images, 1, vflip=True, seed=1)[0])


def test_vertical_flip_only_when_asked():
    """Bright top half, dark bottom: neither a 15° turn nor a 3-pixel shift moves the brightness across."""
    images = np.zeros((64, 1, 28, 28), np.uint8)
    images[:, :, :14] = 200
    for vflip in (False, True):
        x, = affine_batches(images, 1, vflip=vflip, mean=0.0, std=1.0)
        flipped = x[:, 0, :14].mean(axis=(1, 2)) < x[:, 0, 14:].mean(axis=(1, 2))
        if vflip:
            assert 16 < flipped.sum() < 48  # half of 64, well inside 4 standard deviations
        else:
            assert not flipped.any()


def test_normalisation_statistics_and_cutout_last():
    value = 120
    images = np.full((32, 1, 28, 28), value, np.uint8)
    x, = affine_batches(images, 1, vflip=True)
    inside = (value / 255 - FMNIST_MEAN) / FMNIST_STD
    outside = -FMNIST_MEAN / FMNIST_STD
    # The centre never leaves the picture; the corners often do (rotation, shift or shrinking).
    np.testing.assert_allclose(x[:, 0, 14, 14], inside, rtol=1e-5)
    assert np.isclose(x[:, 0, 0, 0], outside).any()
    assert (np.isclose(x, inside, rtol=1e-5) | np.isclose(x, outside, rtol=1e-5)).all()
    cut, = affine_batches(images, 1, vflip=True, cutout_length=16)
    # Cutout zeroes the normalised image (a 14x14 square on 28x28 maps), after the affine fill.
    assert ((cut == 0).sum(axis=(1, 2, 3)) > 0).all()


@pytest.mark.parametrize("parser", [search_parser, train_parser])
def test_the_flag_defaults_to_affine_for_the_digit_sets(parser):
    assert parse_args(parser(), ["--dataset", "fashion-mnist"]).augment == "affine"
    assert parse_args(parser(), ["--dataset", "mnist"]).augment == "affine"
    assert parse_args(parser(), ["--dataset", "cifar10"]).augment == "darts"
    assert parse_args(parser(), ["--dataset", "mnist", "--augment", "darts"]).augment == "darts"


def test_the_seeds_statistics_are_the_data_sets():
    from utils.data.datasets import _INFO
    assert _INFO["fashion-mnist"].mean == (FMNIST_MEAN,) and _INFO["fashion-mnist"].vflip
    assert _INFO["mnist"].std == (0.30810780244715075,) and not _INFO["mnist"].vflip
    assert dataset_info("mnist")[0] == (1, 28, 28)

"""Split, augmentation, and the batch loaders of utils.data.pipeline."""
import numpy as np
import pytest

from utils.data.pipeline import BatchLoader, eval_batches, split_indices

MEAN3, STD3 = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def random_images(n, shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n,) + shape, dtype=np.uint8)


def batches(images, labels, batch_size, count, mean=MEAN3, std=STD3, **options):
    """`count` batches from a fresh loader, plus the epoch reported with each."""
    settings = dict(augment="darts", hflip=True, cutout_length=16, seed=0)
    settings.update(options)
    loader = BatchLoader(images, labels, batch_size, mean, std, **settings)
    try:
        out = []
        for _ in range(count):
            x, y = loader.next()
            out.append((x, y, loader.epoch))
        return out
    finally:
        loader.close()


def one_batch_of_copies(image, batch_size, **options):
    """A batch whose inputs are all the same image, so any difference comes from augmentation."""
    images = np.repeat(image[None], batch_size, axis=0)
    channels = image.shape[0]
    (x, _, _), = batches(images, np.zeros(batch_size), batch_size, 1,
                         mean=(0.0,) * channels, std=(1.0,) * channels, **options)
    return x


def to_pixels(x):
    """Inverse of normalisation with mean 0, std 1."""
    return np.rint(x * 255).astype(np.int64)


def crop_offsets(outputs, image, pad, allow_flip):
    """(dy, dx, flipped) of each output, found by matching against every crop of the padded image."""
    channels, height, width = image.shape
    padded = np.zeros((channels, height + 2 * pad, width + 2 * pad), np.int64)
    padded[:, pad:pad + height, pad:pad + width] = image
    found = []
    for out in outputs:
        matches = [(dy, dx, flipped)
                   for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                   for flipped in ((False, True) if allow_flip else (False,))
                   if np.array_equal(out, (padded[:, dy:dy + height, dx:dx + width][..., ::-1]
                                           if flipped else padded[:, dy:dy + height, dx:dx + width]))]
        assert len(matches) == 1, "output is not one shifted copy of the input"
        found.append(matches[0])
    return found


# ---------------------------------------------------------------- split

def test_split_is_disjoint_covers_everything_and_honours_the_portion():
    weights_idx, arch_idx = split_indices(1001, 0.5, seed=3)

    assert len(weights_idx) == 500 and len(arch_idx) == 501
    assert not set(weights_idx) & set(arch_idx)
    assert sorted(np.concatenate([weights_idx, arch_idx]).tolist()) == list(range(1001))
    assert len(split_indices(1000, 0.8, seed=3)[0]) == 800


def test_split_depends_on_the_seed_only():
    first = split_indices(500, 0.5, seed=1)
    np.testing.assert_array_equal(first[0], split_indices(500, 0.5, seed=1)[0])
    assert not np.array_equal(first[0], split_indices(500, 0.5, seed=2)[0])


@pytest.mark.parametrize("portion", [0.0, 1.0, 0.001])
def test_split_refuses_an_empty_side(portion):
    with pytest.raises(ValueError):
        split_indices(100, portion, seed=0)


# ---------------------------------------------------------------- augmentation

def test_each_copy_of_an_image_is_augmented_differently():
    x = one_batch_of_copies(random_images(1, (3, 32, 32))[0], 64)

    assert len({sample.tobytes() for sample in x}) == 64


@pytest.mark.parametrize("size, pad", [(32, 4), (28, 3), (8, 1)])
def test_crop_is_a_shifted_copy_with_every_offset_used(size, pad):
    image = random_images(1, (1, size, size), seed=size)[0]
    x = one_batch_of_copies(image, 256, hflip=False, cutout_length=0)

    offsets = crop_offsets(to_pixels(x), image, pad, allow_flip=False)

    assert {dy for dy, _, _ in offsets} == set(range(2 * pad + 1))
    assert {dx for _, dx, _ in offsets} == set(range(2 * pad + 1))


def test_flip_mirrors_about_half_the_images():
    image = random_images(1, (3, 32, 32), seed=5)[0]
    x = one_batch_of_copies(image, 200, hflip=True, cutout_length=0)

    flipped = [f for _, _, f in crop_offsets(to_pixels(x), image, 4, allow_flip=True)]

    assert 60 < sum(flipped) < 140


def test_without_hflip_nothing_is_mirrored():
    image = random_images(1, (3, 32, 32), seed=6)[0]
    x = one_batch_of_copies(image, 100, hflip=False, cutout_length=0)

    crop_offsets(to_pixels(x), image, 4, allow_flip=False)


@pytest.mark.parametrize("size, channels, side", [(32, 3, 16), (28, 1, 14), (8, 1, 4)])
def test_cutout_zeroes_a_square_after_normalisation(size, channels, side):
    # A flat grey image with a non-zero normalised value: the only exact zeros are cutout's.
    images = np.full((128, channels, size, size), 200, np.uint8)
    mean, std = (0.1,) * channels, (0.2,) * channels
    (x, _, _), = batches(images, np.zeros(128), 128, 1, mean=mean, std=std,
                         hflip=False, cutout_length=16)

    full_squares = 0
    centres = set()
    for sample in x:
        cut = sample == 0
        assert (cut == cut[0]).all(), "cutout must cover every channel alike"
        rows, cols = np.flatnonzero(cut[0].any(axis=1)), np.flatnonzero(cut[0].any(axis=0))
        assert cut[0].sum() == len(rows) * len(cols) > 0, "cut region is not a rectangle"
        assert np.array_equal(rows, np.arange(rows[0], rows[-1] + 1))
        assert np.array_equal(cols, np.arange(cols[0], cols[-1] + 1))
        for span in (rows, cols):
            # Smaller than the side only where the border clips it.
            assert len(span) == side or (len(span) < side and (span[0] == 0 or span[-1] == size - 1))
        full_squares += len(rows) == side and len(cols) == side
        centres.add((rows[0], cols[0]))
        # Outside the square: the image, or the zero padding the crop shifted in.
        kept = sample[~cut]
        assert (np.isclose(kept, (200 / 255 - 0.1) / 0.2) | np.isclose(kept, -0.1 / 0.2)).all()
    assert full_squares > 0 and len(centres) > 10


def test_without_augmentation_batches_are_only_normalised():
    images = random_images(40, (3, 32, 32), seed=7)
    for x, y, _ in batches(images, np.arange(40), 8, 5, augment=None):
        expected = (images[y[:, 0]] / 255.0 - np.array(MEAN3)[:, None, None]) / np.array(STD3)[:, None, None]
        np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-5)
        assert x.dtype == np.float32 and y.dtype == np.int32 and y.shape == (8, 1)


# ---------------------------------------------------------------- epochs and resume

def test_every_epoch_is_a_fresh_shuffle_dropping_its_own_tail():
    images = random_images(43, (3, 8, 8))
    loader_batches = batches(images, np.arange(43), 8, 5 * 4)

    epochs = [np.concatenate([y[:, 0] for _, y, _ in loader_batches[e * 5:(e + 1) * 5]]) for e in range(4)]
    assert [e for _, _, e in loader_batches] == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5
    for labels in epochs:
        assert len(set(labels.tolist())) == 40
    assert len({tuple(labels) for labels in epochs}) == 4
    assert len({frozenset(range(43)) - set(labels.tolist()) for labels in epochs}) > 1


def test_a_loader_started_at_epoch_k_repeats_the_batches_of_a_run_from_zero():
    images = random_images(50, (3, 32, 32), seed=8)
    labels = np.arange(50)
    from_zero = batches(images, labels, 16, 3 * 3, seed=4)
    resumed = batches(images, labels, 16, 3, seed=4, start_epoch=2)

    for (x0, y0, e0), (x1, y1, e1) in zip(from_zero[6:], resumed):
        assert e0 == e1 == 2
        np.testing.assert_array_equal(y0, y1)
        np.testing.assert_array_equal(x0, x1)


def test_the_seed_changes_order_and_augmentation():
    images = np.repeat(random_images(1, (3, 32, 32), seed=9), 32, axis=0)
    (xa, ya, _), = batches(images, np.arange(32), 32, 1, seed=1)
    (xb, yb, _), = batches(images, np.arange(32), 32, 1, seed=2)
    (xc, yc, _), = batches(images, np.arange(32), 32, 1, seed=1)

    assert not np.array_equal(ya, yb) and not np.array_equal(xa, xb)
    np.testing.assert_array_equal(xa, xc)


def test_a_set_smaller_than_a_batch_is_refused():
    with pytest.raises(ValueError):
        BatchLoader(random_images(5, (1, 8, 8)), np.zeros(5), 8, (0.5,), (0.5,),
                    augment=None, hflip=False, cutout_length=0, seed=0)


# ---------------------------------------------------------------- evaluation

def test_eval_batches_cover_every_sample_once_in_order():
    images = random_images(23, (3, 8, 8), seed=10)
    labels = np.arange(23) % 10

    out = list(eval_batches(images, labels, 8, MEAN3, STD3))

    assert [n for _, _, n in out] == [8, 8, 7]
    assert all(x.shape == (8, 3, 8, 8) and y.shape == (8, 1) for x, y, _ in out)
    x_valid = np.concatenate([x[:n] for x, _, n in out])
    y_valid = np.concatenate([y[:n, 0] for _, y, n in out])
    np.testing.assert_array_equal(y_valid, labels)
    expected = (images / 255.0 - np.array(MEAN3)[:, None, None]) / np.array(STD3)[:, None, None]
    np.testing.assert_allclose(x_valid, expected, rtol=1e-5, atol=1e-5)
    assert not out[-1][0][7:].any()

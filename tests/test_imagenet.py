"""ImageNet transfer: the ImageFolder tree and its errors, augmentation, loaders, loss, network size, recipe.

Unreadable files are warned about once per process, so each of them is met by one test only.
"""
import io
import json
import os

import nnabla as nn
import numpy as np
import pytest
import yaml
from PIL import Image

from models.eval_network import AUX_SCOPE, IMAGENET, DropPath, build_test_graph, build_train_graph, eval_network
from models.genotype import load_architecture
from models.graph import label_smoothing_cross_entropy
from tests.helpers import bn, conv_bn, dil_conv, factorized_reduce, sep_conv
from utils.data.datasets import DataError
from utils.data.imagenet import (IMAGENET_MEAN, IMAGENET_STD, TrainLoader, UnreadableImageWarning, adjust_hue,
                                 eval_batches, eval_transform, random_resized_crop_box, read_class_list,
                                 scan_image_folder, train_transform, write_class_list)
from utils.optim.solvers import SGD, exponential_lr
from utils.run.run import RunClock
from utils.training.evaluation import top_k_misses
from utils.training.model_stats import count_parameters, macs_per_image, parameters_by_scope
from utils.training.network_training import GraphsBySize, train_epoch

DARTS_V2 = load_architecture("DARTS_V2")
CLASSES = ("n01", "n02", "n10")  # sorted as strings
TRAIN_SIZES = ((40, 30), (30, 52), (64, 48), (33, 33))  # (width, height)
VAL_SIZES = ((50, 37), (37, 50), (36, 36))
CROP, RESIZE = 32, 36
# Bounds of a normalised pixel, per channel.
LOW = (0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
HIGH = (1 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)


def jpeg_bytes(rng, width, height):
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def write_tree(root, rng, classes=CLASSES):
    for split, sizes in (("train", TRAIN_SIZES), ("val", VAL_SIZES)):
        for name in classes:
            os.makedirs(root / split / name)
            for i, size in enumerate(sizes):
                (root / split / name / f"{i}.JPEG").write_bytes(jpeg_bytes(rng, *size))


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """3 classes of 4 train and 3 val JPEGs; train/n02 has a truncated JPEG, val/n01 a text file."""
    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    write_tree(root, rng)
    (root / "train" / "n02" / "1b_truncated.JPEG").write_bytes(jpeg_bytes(rng, 40, 40)[:600])
    (root / "val" / "n01" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def folder(tree):
    return scan_image_folder(str(tree))


@pytest.fixture
def fresh_parameters():
    nn.clear_parameters()
    yield
    nn.clear_parameters()


# ---------------------------------------------------------------- the tree

def test_scan_gives_sorted_classes_and_every_file_with_its_label(tree, folder, tmp_path):
    assert folder.classes == CLASSES
    assert len(folder.train) == 3 * 4 + 1 and len(folder.val) == 3 * 3 + 1
    assert [label for _, label in folder.train] == [0] * 4 + [1] * 5 + [2] * 4
    assert folder.train[6][0] == str(tree / "train" / "n02" / "1b_truncated.JPEG")  # "." sorts before "b"
    assert all(os.path.basename(os.path.dirname(path)) == CLASSES[label] for path, label in folder.val)
    path = write_class_list(folder.classes, str(tmp_path))
    assert open(path).read() == "n01\nn02\nn10\n"
    assert read_class_list(path) == CLASSES


def test_scan_errors_are_one_line_data_errors(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "train" / "a" / "0.JPEG").write_bytes(jpeg_bytes(rng, 8, 8))
    with pytest.raises(DataError, match=r"no folder .*val"):
        scan_image_folder(str(tmp_path))
    for name in ("a", "c", "d"):
        (tmp_path / "val" / name).mkdir(parents=True)
        (tmp_path / "val" / name / "0.JPEG").write_bytes(jpeg_bytes(rng, 8, 8))
    (tmp_path / "train" / "b").mkdir()
    with pytest.raises(DataError, match=r"class folder .*train.b is empty"):
        scan_image_folder(str(tmp_path))
    (tmp_path / "train" / "b" / "0.JPEG").write_bytes(jpeg_bytes(rng, 8, 8))
    with pytest.raises(DataError, match=r"only in train: \['b'\], first only in val: \['c', 'd'\]") as error:
        scan_image_folder(str(tmp_path))
    assert "\n" not in str(error.value)


# ---------------------------------------------------------------- augmentation

def test_crop_boxes_follow_random_resized_crop():
    rng = np.random.default_rng(0)
    for _ in range(200):
        left, top, w, h = random_resized_crop_box(60, 45, rng)
        assert 0 <= left and left + w <= 60 and 0 <= top and top + h <= 45
        # Rounding w and h moves the area and ratio a little beyond the drawn ones.
        assert 0.08 * 0.8 <= w * h / (60 * 45) <= 1.0
        assert 3 / 4 * 0.85 <= w / h <= 4 / 3 * 1.15
    # No box of a tenth of a 400x20 strip has an aspect ratio under 4/3: the fallback is the centred
    # box of the strip's height and ratio 4/3.
    assert random_resized_crop_box(400, 20, rng) == ((400 - 27) // 2, 0, 27, 20)


def test_hue_shift_turns_red_to_green_and_blue():
    red = Image.new("RGB", (4, 4), (255, 0, 0))
    assert np.argmax(np.asarray(adjust_hue(red, 1 / 3))[0, 0]) == 1
    assert np.argmax(np.asarray(adjust_hue(red, -1 / 3))[0, 0]) == 2
    np.testing.assert_array_equal(np.asarray(adjust_hue(red, 0.0)), np.asarray(red))


def test_train_transform_shapes_and_draws(folder):
    image = Image.open(folder.train[0][0]).convert("RGB")
    out = train_transform(image, np.random.default_rng(3), CROP)
    assert out.shape == (3, CROP, CROP) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, train_transform(image, np.random.default_rng(3), CROP))
    assert not np.array_equal(out, train_transform(image, np.random.default_rng(4), CROP))


def test_eval_transform_is_the_deterministic_centre_crop():
    # Columns 0..59 of a 60x45 image coloured by column: resized to 48x36, the crop keeps columns 8..39.
    columns = np.repeat(np.repeat(np.arange(60, dtype=np.uint8)[None, :, None] * 4, 45, axis=0), 3, axis=2)
    image = Image.fromarray(columns)
    out = eval_transform(image, CROP, RESIZE)
    assert out.shape == (3, CROP, CROP) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, eval_transform(image, CROP, RESIZE))
    assert np.all(out == out[:, :1, :])  # every row alike
    # Resized column j covers source columns around (j + 0.5) * 60 / 48 - 0.5.
    expected = 4 * ((np.arange(8, 40) + 0.5) * 60 / 48 - 0.5)
    np.testing.assert_allclose(out[0, 0], expected, atol=2)


# ---------------------------------------------------------------- loaders

def batches(samples, num_workers, seed=0, count=4, start_epoch=0):
    with TrainLoader(samples, 4, seed=seed, num_workers=num_workers, start_epoch=start_epoch,
                     crop_size=CROP) as loader:
        return [loader.next() for _ in range(count)]


def test_train_batches_are_normalised_and_a_function_of_the_seed(folder):
    readable = [s for s in folder.train if "truncated" not in s[0]]
    first = batches(readable, 0)
    for x, y in first:
        assert x.shape == (4, 3, CROP, CROP) and x.dtype == np.float32 and y.shape == (4, 1)
        assert np.all(x >= LOW.reshape(3, 1, 1) - 1e-5) and np.all(x <= HIGH.reshape(3, 1, 1) + 1e-5)
    # 12 images make 3 batches an epoch; the fourth starts epoch 1 in another order.
    assert sorted(np.concatenate([y for _, y in first[:3]]).ravel()) == [0] * 4 + [1] * 4 + [2] * 4
    for (x1, y1), (x2, y2) in zip(first, batches(readable, 0)):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(first[0][0], batches(readable, 0, seed=1, count=1)[0][0])


def test_parallel_workers_and_resumed_runs_give_the_serial_batches(folder):
    readable = [s for s in folder.train if "truncated" not in s[0]]
    serial = batches(readable, 0, count=5)
    for (x1, y1), (x2, y2) in zip(serial, batches(readable, 2, count=5)):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    resumed = batches(readable, 0, count=2, start_epoch=1)
    for (x1, y1), (x2, y2) in zip(serial[3:], resumed):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def test_each_epoch_ends_with_a_smaller_batch_of_the_rest(folder):
    # quark0's DataLoader keeps the last partial batch (drop_last=False): 12 images in batches of 5 are 5, 5, 2.
    readable = [s for s in folder.train if "truncated" not in s[0]]
    with TrainLoader(readable, 5, seed=0, num_workers=0, crop_size=CROP) as loader:
        epoch = [loader.next() for _ in range(3)]
        assert [len(y) for _, y in epoch] == [5, 5, 2] and loader.epoch == 0
        assert (loader.steps_per_epoch, loader.last_batch_size) == (3, 2)
        assert epoch[2][0].shape == (2, 3, CROP, CROP)
        assert sorted(np.concatenate([y for _, y in epoch]).ravel()) == [0] * 4 + [1] * 4 + [2] * 4
        x, y = loader.next()
        assert len(y) == 5 and loader.epoch == 1
    # The smaller batch is a function of (seed, epoch, step) like the others, so a resumed run meets it too.
    with TrainLoader(readable, 5, seed=0, num_workers=0, start_epoch=1, crop_size=CROP) as loader:
        np.testing.assert_array_equal(loader.batch(0, 2)[0], epoch[2][0])


def test_an_unreadable_training_file_is_replaced_by_the_next_one_with_one_warning(folder):
    bad = next(i for i, (path, _) in enumerate(folder.train) if "truncated" in path)
    with pytest.warns(UnreadableImageWarning, match="1b_truncated.JPEG") as record:
        with TrainLoader(folder.train, 13, seed=0, num_workers=0, crop_size=CROP) as loader:
            for epoch in range(2):
                x, y = loader.batch(epoch, 0)
                assert np.isfinite(x).all() and x.shape[0] == 13
                # The truncated file's slot holds file bad + 1 (label 1), so class 1 counts 5 - 1 + 1.
                assert np.bincount(y.ravel(), minlength=3).tolist() == [4, 5, 4]
    assert len([w for w in record if issubclass(w.category, UnreadableImageWarning)]) == 1
    assert folder.train[bad + 1][1] == 1


def test_eval_batches_cover_the_readable_files_in_order(folder):
    with pytest.warns(UnreadableImageWarning, match="notes.txt"):
        out = list(eval_batches(folder.val, 4, num_workers=0, crop_size=CROP, resize_size=RESIZE))
    assert [n for _, _, n in out] == [4, 4, 1]
    labels = np.concatenate([y[:n] for _, y, n in out]).ravel()
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    x, y, _ = out[-1]
    assert np.all(x[1:] == 0) and np.all(y[1:] == 0)
    expected = eval_transform(Image.open(folder.val[-1][0]).convert("RGB"), CROP, RESIZE)
    np.testing.assert_allclose(x[0] * np.array(IMAGENET_STD).reshape(3, 1, 1) * 255
                               + np.array(IMAGENET_MEAN).reshape(3, 1, 1) * 255, expected, atol=1e-3)
    parallel = list(eval_batches(folder.val, 4, num_workers=2, crop_size=CROP, resize_size=RESIZE))
    for (x1, y1, n1), (x2, y2, n2) in zip(out, parallel):
        assert n1 == n2
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


# ---------------------------------------------------------------- loss and metrics

@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.5])
def test_label_smoothing_matches_numpy(epsilon, fresh_parameters):
    rng = np.random.default_rng(0)
    z = nn.Variable((5, 7))
    y = nn.Variable((5, 1))
    z.d = rng.normal(size=z.shape) * 3
    y.d = rng.integers(0, 7, (5, 1))
    loss = label_smoothing_cross_entropy(z, y, epsilon)
    loss.forward()
    log_p = z.d - z.d.max(axis=1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    target = np.full((5, 7), epsilon / 7)
    target[np.arange(5), y.d.ravel().astype(int)] += 1 - epsilon
    assert float(loss.d) == pytest.approx(np.mean(np.sum(-target * log_p, axis=1)), rel=1e-5)


def test_top_k_misses_counts_labels_outside_the_k_largest():
    logits = np.array([[0.1, 0.5, 0.3, 0.9], [4.0, 3.0, 2.0, 1.0], [0.0, 1.0, 2.0, 3.0]])
    labels = np.array([[2], [3], [3]])
    assert top_k_misses(logits, labels, 1) == 2
    assert top_k_misses(logits, labels, 2) == 2
    assert top_k_misses(logits, labels, 3) == 1
    assert top_k_misses(logits, labels, 4) == 0


def test_learning_rate_decays_by_0_97_each_epoch():
    lr = 0.1
    for epoch in range(30):
        assert exponential_lr(epoch, 0.1, 0.97) == pytest.approx(lr, rel=1e-12)
        lr *= 0.97
    assert exponential_lr(2, 0.5, 0.97) == pytest.approx(0.5 * 0.97 ** 2)


# ---------------------------------------------------------------- the network


def test_small_network_has_its_hand_counted_weights(fresh_parameters):
    # C=8, 3 cells on 32x32: the stem gives s0 (8, 8x8) and s1 (8, 4x4); cell 0 normal at C=8,
    # cells 1 and 2 reductions at C=16 and 32; the head reads cell 2's 1x1 map.
    x = nn.Variable((2, 3, 32, 32))
    logits, aux = eval_network(x, DARTS_V2, 10, 8, 3, test=False, auxiliary=True, ends=IMAGENET)
    counts = parameters_by_scope(nn.get_parameters(grad_only=True))
    assert counts["stem0"] == conv_bn(3, 4, 3) + conv_bn(4, 8, 3)
    assert counts["stem1"] == conv_bn(8, 8, 3)
    # s0 is twice the size of s1, so cell 0's preprocess0 is a FactorizedReduce.
    assert counts["cell0"] == factorized_reduce(8, 8) + conv_bn(8, 8, 1) + 5 * sep_conv(8, 3) + dil_conv(8, 3)
    assert counts["cell1"] == conv_bn(8, 16, 1) + conv_bn(32, 16, 1)
    assert counts["cell2"] == factorized_reduce(32, 32) + conv_bn(64, 32, 1)
    assert counts["classifier"] == 128 * 10 + 10
    # Pooled to 1x1, the second conv is 1x1; no batch norm after it.
    assert counts[AUX_SCOPE] == 128 * 128 + bn(128) + 128 * 768 + 768 * 10 + 10
    assert set(counts) == {"stem0", "stem1", "cell0", "cell1", "cell2", "classifier", AUX_SCOPE}
    assert logits.shape == aux.shape == (2, 10)


def test_darts_v2_in_the_mobile_setting_has_the_original_size(fresh_parameters):
    x = nn.Variable((1, 3, 224, 224))
    logits, _ = eval_network(x, DARTS_V2, 1000, 48, 14, test=False, auxiliary=True, ends=IMAGENET)
    weights = nn.get_parameters(grad_only=True)
    # quark0's train_imagenet.py logs "param size = 4.718752MB" (auxiliary head excluded).
    assert count_parameters(weights, exclude_scope=AUX_SCOPE) == 4_718_752
    # The head reads cell 9's 7x7 map: 5x5/2 pooling gives 2x2, the 2x2 conv 1x1.
    assert parameters_by_scope(weights)[AUX_SCOPE] == 192 * 4 * 128 + bn(128) + 128 * 768 * 4 + 768 * 1000 + 1000
    assert macs_per_image(logits) < 600_000_000


def test_a_training_step_and_an_evaluation_on_the_tree(folder, fresh_parameters):
    readable = [s for s in folder.train if "truncated" not in s[0]]
    train = build_train_graph(DARTS_V2, (4, 3, CROP, CROP), 3, 8, 3, auxiliary=True, aux_weight=0.4,
                              ends=IMAGENET, label_smoothing=0.1)
    with TrainLoader(readable, 4, seed=0, num_workers=0, crop_size=CROP) as loader:
        train.x.d, train.y.d = loader.next()
    train.loss.forward()
    train.loss.backward()
    assert np.isfinite(float(train.loss.d)) and float(train.loss.d) > 0
    test = build_test_graph(DARTS_V2, (4, 3, CROP, CROP), 3, 8, 3, ends=IMAGENET)
    images = [s for s in folder.val if s[0].endswith(".JPEG")]
    seen = 0
    for x, y, n_valid in eval_batches(images, 4, num_workers=0, crop_size=CROP, resize_size=RESIZE):
        test.x.d, test.y.d = x, y
        test.logits.forward()
        seen += n_valid - top_k_misses(test.logits.d[:n_valid], y[:n_valid], 3)
    assert seen == 9  # every label is among the top 3 of 3 classes


def test_an_epoch_trains_on_every_image_with_a_graph_for_the_smaller_last_batch(folder, fresh_parameters):
    readable = [s for s in folder.train if "truncated" not in s[0]]
    drop_path = DropPath()
    drop_path.set_prob(0.3)
    graphs = GraphsBySize(lambda size: build_train_graph(DARTS_V2, (size, 3, CROP, CROP), 3, 8, 3, auxiliary=True,
                                                         aux_weight=0.4, drop_path=drop_path, ends=IMAGENET,
                                                         label_smoothing=0.1), 5)
    parameters = dict(nn.get_parameters(grad_only=False))
    used, losses, errors = [], [], []

    def recorded_graphs(size):
        used.append(graphs(size))
        return used[-1]
    optimizer = SGD(nn.get_parameters(grad_only=True), 0.1, 0.9, 3e-5, 5.0)
    step = optimizer.step

    def recorded_step():
        losses.append(float(used[-1].loss.d))
        errors.append(np.mean(np.argmax(used[-1].logits.d, axis=1) != used[-1].y.d.ravel()))
        step()
    optimizer.step = recorded_step
    with TrainLoader(readable, 5, seed=0, num_workers=0, crop_size=CROP) as loader:
        loss, error = train_epoch(recorded_graphs, loader, optimizer, drop_path, 0, 0, "epoch", RunClock(1))
    assert [graph.x.shape[0] for graph in used] == [5, 5, 2]
    assert used[0] is used[1] and used[2] is graphs(2)
    # Means over the 12 images, as quark0's AvgrageMeter.update(value, n) keeps them.
    assert loss == pytest.approx((5 * losses[0] + 5 * losses[1] + 2 * losses[2]) / 12, rel=1e-6)
    assert error == pytest.approx((5 * errors[0] + 5 * errors[1] + 2 * errors[2]) / 12, rel=1e-6)
    # The second graph shares the first one's parameters, and its drop-path noise was drawn.
    assert dict(nn.get_parameters(grad_only=False)) == parameters
    tail_noise = [v.d for v in drop_path.noise if v.shape[0] == 2]
    assert tail_noise and not np.all(np.concatenate(tail_noise) == 0.5)


@pytest.mark.parametrize("size, final_map, aux_map, aux_window", [
    (224, 7, 7, ((5, 5), (2, 2))),  # quark0's AvgPool2d(7) and AvgPool2d(5, stride=2)
    (256, 8, 8, ((5, 5), (3, 3))),  # the original's windows would leave out the 8x8 map's last row and column
    (160, 5, 5, ((5, 5), (1, 1))),  # where the original stops: the maps are smaller than its windows
    (112, 4, 4, ((4, 4), (1, 1))),
])
def test_pooling_windows_at_image_sizes(size, final_map, aux_map, aux_window, fresh_parameters):
    x = nn.Variable((1, 3, size, size))
    logits, aux = eval_network(x, DARTS_V2, 10, 8, 3, test=False, auxiliary=True, ends=IMAGENET)
    pools = []

    def find_pools(function):
        if function.info.type_name in ("GlobalAveragePooling", "AveragePooling"):
            pools.append(function)
    logits.visit(find_pools)
    aux.visit(find_pools)
    (global_pool,), (aux_pool,) = ([f for f in pools if f.info.type_name == name]
                                   for name in ("GlobalAveragePooling", "AveragePooling"))
    assert global_pool.inputs[0].shape[2:] == (final_map, final_map)
    assert aux_pool.inputs[0].shape[2:] == (aux_map, aux_map)
    assert (tuple(aux_pool.info.args["kernel"]), tuple(aux_pool.info.args["stride"])) == aux_window
    assert aux_pool.info.args["including_pad"] is False
    assert logits.shape == aux.shape == (1, 10)


# ---------------------------------------------------------------- darts_train.py --dataset imagenet

def test_darts_train_trains_and_evaluates_on_an_image_folder(tmp_path, capsys):
    import darts_train
    root = tmp_path / "tree"
    write_tree(root, np.random.default_rng(5))
    # 12 training images in batches of 5: the last batch has 2.
    common = ["--dataset", "imagenet", "--data-dir", str(root), "--image-size", "32", "--num-workers", "0",
              "--model-arch-name", "DARTS_V2", "--num-cells", "3", "--output-filter", "8",
              "--batch-size", "5", "-m", str(tmp_path / "run")]
    summary = darts_train.main(common + ["--epoch", "1", "--weight-decay", "1e-4"])
    # The ImageNet recipe without its flags (no cutout, label smoothing 0.1, lr 0.1 times 0.97 an epoch), the
    # flags given where they differ from it, all in the config.yaml the run wrote.
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert {key: config[key] for key in ("lr", "lr_schedule", "lr_decay", "label_smoothing", "cutout",
                                         "drop_path_prob", "additional_filters_on_retrain", "momentum")} == {
        "lr": 0.1, "lr_schedule": "exponential", "lr_decay": 0.97, "label_smoothing": 0.1, "cutout": False,
        "drop_path_prob": 0.0, "additional_filters_on_retrain": 0, "momentum": 0.9}
    assert (config["epoch"], config["num_cells"], config["output_filter"], config["batch_size"],
            config["weight_decay"]) == (1, 3, 8, 5, 1e-4)
    assert "lr 0.10000 " in capsys.readouterr().out
    assert (tmp_path / "run" / "classes.txt").read_text() == "n01\nn02\nn10\n"
    top5 = np.loadtxt(tmp_path / "run" / "Test-top5-error.series.txt", ndmin=2)
    assert top5.shape == (1, 2) and top5[0, 1] == 0.0  # 3 classes: every label is in the top 5
    error = darts_train.main(common + ["--evaluate", str(tmp_path / "run" / "final_params.h5")])
    assert error == summary["final_test_error"]
    evaluation = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert evaluation["test_images"] == 9 and evaluation["top5_error"] == 0.0


def test_summary_of_the_mobile_setting_reads_no_data(tmp_path, capsys):
    """--dataset imagenet alone is the mobile setting: 14 cells at C = 48."""
    import darts_train
    summary = darts_train.main(["--dataset", "imagenet", "--data-dir", str(tmp_path / "nothing"),
                                "--model-arch-name", "DARTS_V2", "--summary", "-m", str(tmp_path)])
    assert summary["params"] == 4_718_752
    assert summary["macs"] < 600_000_000


def test_a_missing_tree_and_cutout_are_one_line_errors(tmp_path, capsys):
    import darts_train
    base = ["--dataset", "imagenet", "--model-arch-name", "DARTS_V2", "--num-cells", "3", "-f", "0",
            "-m", str(tmp_path / "run"), "--num-workers", "0", "--image-size", "32", "--batch-size", "2"]
    # Cutout is refused with the flags (exit 2), before the tree is read.
    for extra, message, code in ((["--data-dir", str(tmp_path / "absent")], "no folder", 1),
                                 (["--data-dir", str(tmp_path / "tree"), "--cutout", "true"], "cutout", 2)):
        if "--cutout" in extra:
            write_tree(tmp_path / "tree", np.random.default_rng(6))
        with pytest.raises(SystemExit) as exit_info:
            darts_train.main(base + extra)
        assert exit_info.value.code == code
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err

"""The search network's size and the data split the search draws its batches from."""
import nnabla as nn
import numpy as np
import pytest

import darts_search
from models.search_network import alpha_parameters, create_alphas, search_network, softmax_weights, weight_parameters
from utils.data.datasets import load_dataset
from utils.search.bilevel import BilevelOptimizer


def test_search_network_has_the_originals_weight_count():
    """quark0's search network at C=16, 8 cells, 10 classes has 1,930,618 weights (alphas excluded)."""
    nn.clear_parameters()
    alphas = create_alphas(np.random.RandomState(0))
    search_network(nn.Variable((1, 3, 32, 32)), softmax_weights(alphas), 10, channels=16, num_cells=8)
    assert sum(v.size for v in weight_parameters().values()) == 1_930_618
    assert sum(v.size for v in alpha_parameters().values()) == 2 * 14 * 8
    nn.clear_parameters()


@pytest.fixture
def numbered_images(monkeypatch):
    """64 constant 8x8 images, image i filled with the value 3 * i, so that a batch tells which images it holds."""
    data = load_dataset("digits", "unused")
    n = 64
    data.train_x = np.repeat(np.arange(0, 3 * n, 3, dtype=np.uint8), 8 * 8).reshape(n, 1, 8, 8)
    data.train_y = np.arange(n, dtype=np.int32) % data.num_classes
    monkeypatch.setattr(darts_search, "load_dataset", lambda name, data_dir: data)
    return data


@pytest.mark.slow
def test_the_weight_and_alpha_steps_draw_from_the_two_disjoint_halves(tmp_path, monkeypatch, numbered_images):
    drawn = {"train": set(), "val": set()}
    original_step = BilevelOptimizer.step
    mean, std = numbered_images.mean[0], numbered_images.std[0]

    def recording_step(self, train_batch, val_batch):
        for key, (x, _) in (("train", train_batch), ("val", val_batch)):
            # The centre pixel survives the crop after padding, and a flip of a constant image is itself.
            values = np.rint((x[:, 0, 4, 4] * std + mean) * 255).astype(int)
            drawn[key].update((values // 3).tolist())
        return original_step(self, train_batch, val_batch)
    monkeypatch.setattr(BilevelOptimizer, "step", recording_step)

    darts_search.main(["--dataset", "digits", "--batch-size", "8", "--num-cells", "3", "--output-filter", "4",
                       "--epoch", "1", "-m", str(tmp_path / "run"), "--model-arch-name", str(tmp_path / "a.json")])
    assert drawn["train"] and drawn["val"]
    assert not drawn["train"] & drawn["val"]
    # 4 steps of 8 from each half of 32: every image of the split is drawn, once per epoch.
    assert drawn["train"] | drawn["val"] == set(range(64))

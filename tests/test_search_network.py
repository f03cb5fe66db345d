"""The search network's size and the data split the search draws its batches from."""
import nnabla as nn
import numpy as np
import pytest

import darts_search
from models.search_network import alpha_parameters, create_alphas, search_network, softmax_weights, weight_parameters
from ops import cpu_sums
from ops.operations import OpMode
from utils.data.datasets import load_dataset
from utils.search.bilevel import BilevelOptimizer
from utils.training.model_stats import count_macs


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


def graph_gradients(loss, params):
    for p in params.values():
        p.grad.zero()
    loss.forward()
    loss.backward()
    return float(loss.d), {name: p.g.copy() for name, p in params.items()}


@pytest.mark.parametrize("per_sample", [False, True])
def test_the_mixed_op_on_the_cpu_kernels_equals_it_on_nnabla_s(per_sample, monkeypatch):
    """Weights shared by the batch, or one mixture per sample (Gumbel mixing): equal loss and gradients, the
    alphas' included, with every mixed op's sum one CpuWeightedSum."""
    import nnabla.functions as F

    from models.mixing import Mixing
    from ops import cpu_kernels
    monkeypatch.setattr(cpu_kernels, "MIN_ELEMENTS", 0)  # the network is tiny
    monkeypatch.setattr(cpu_sums, "MIN_ELEMENTS", 0)
    nn.clear_parameters()
    rng = np.random.default_rng(8)
    alphas = create_alphas(np.random.RandomState(8))
    for alpha in alphas.values():
        alpha.d = rng.standard_normal(alpha.shape)  # far from uniform mixing, which would hide a wrong weight
    mixing = Mixing("gumbel")
    weights = mixing.sampled(alphas, 4) if per_sample else softmax_weights(alphas)
    mixing.resample(seed=8, epoch=0, step=0)
    x = nn.Variable.from_numpy_array(rng.standard_normal((4, 3, 8, 8)).astype(np.float32))
    labels = nn.Variable.from_numpy_array(rng.integers(0, 10, (4, 1)))

    def loss(cpu_kernels):
        return F.mean(F.softmax_cross_entropy(search_network(x, weights, 10, 4, 2, cpu_kernels=cpu_kernels), labels))
    theirs, ours = loss(False), loss(True)
    names = []
    ours.visit(lambda f: names.append(f.info.type_name))
    assert names.count("CpuWeightedSum") == 2 * 14
    assert count_macs(ours) == count_macs(theirs)
    params = nn.get_parameters(grad_only=True)
    expected_loss, expected = graph_gradients(theirs, params)
    got_loss, got = graph_gradients(ours, params)
    assert got_loss == pytest.approx(expected_loss, rel=1e-5)
    for name in params:
        scale = np.abs(expected[name]).max()
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-3, atol=1e-4 * scale, err_msg=name)
    nn.clear_parameters()


def test_below_the_size_threshold_the_mixed_op_keeps_nnabla_s_sum(monkeypatch):
    from models.search_network import mixed_op

    def kinds(x):
        nn.clear_parameters()
        y = mixed_op(x, nn.Variable((1, 7)), 4, 1, OpMode(affine=False, test=False, cpu_kernels=True))
        names = []
        y.visit(lambda f: names.append(f.info.type_name))
        nn.clear_parameters()
        return names
    small = kinds(nn.Variable((2, 4, 8, 8)))
    assert "CpuWeightedSum" not in small and "Affine" in small
    monkeypatch.setattr(cpu_sums, "MIN_ELEMENTS", 2 * 4 * 8 * 8)
    large = kinds(nn.Variable((2, 4, 8, 8)))
    assert "CpuWeightedSum" in large and "Affine" not in large and "Stack" not in large

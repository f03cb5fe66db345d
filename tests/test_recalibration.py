"""The hard-discretized network is validated on batch-norm statistics of its own (utils/search/recalibration.py),
computed on the weights' half of the training set, and the supernet's statistics come back untouched."""
import nnabla as nn
import nnabla.functions as F
import numpy as np
import pytest

from models.graph import build_graph
from models.search_network import weight_parameters
from ops import cpu_kernels
from tests.helpers import digits_head, series
from utils.data.pipeline import eval_batches, split_indices
from utils.run.checkpoint import load_checkpoint
from utils.run_files import CHECKPOINT
from utils.search.recalibration import calibration_batches
from utils.search.variant import SearchSetup, SearchVariant
from utils.search.variants.dadarts import Dadarts, DadartsSettings
from utils.training.evaluation import image_set_scores

SHAPE, CLASSES, CHANNELS, CELLS = (8, 1, 8, 8), 3, 4, 1


@pytest.fixture
def fresh():
    nn.clear_parameters()
    yield
    nn.clear_parameters()


def statistics():
    """{name: Variable} of the network's running means and variances, found by name."""
    return {name: v for name, v in nn.get_parameters(grad_only=False).items() if name.endswith(("/mean", "/var"))}


def values(variables):
    return {name: v.d.copy() for name, v in variables.items()}


def searched_variant(Variant, settings, seed=0, cpu_kernels=False):
    """A variant with alphas far from uniform, its graphs built, and statistics left by supernet passes
    in training mode (as the alpha step leaves them) on inputs unlike the batches used below."""
    variant = Variant(settings, SearchSetup(SHAPE, CLASSES, CHANNELS, CELLS, seed=0, rng=np.random.RandomState(0),
                                            cpu_kernels=cpu_kernels))
    rng = np.random.RandomState(seed + 1)
    for alpha in variant.alphas.values():
        alpha.d = rng.randn(*alpha.shape) * 2
    supernet = build_graph(lambda x: variant.network(x, frozen=False, purpose="alphas"), SHAPE)
    for _ in range(3):
        supernet.x.d = rng.randn(*SHAPE) * 3 + 2
        supernet.logits.forward(clear_buffer=True)
    return variant


def batches(count, seed=10):
    rng = np.random.RandomState(seed)
    return [rng.randn(*SHAPE).astype(np.float32) for _ in range(count)]


def hand_recalibration(train_graph, xs):
    """{name: mean over xs of each batch's statistic}: nnabla's training-mode forward moves a statistic s to
    0.9 s + 0.1 b, so from s = 0 it leaves b / 10."""
    stats = statistics()
    per_batch = []
    for x in xs:
        for v in stats.values():
            v.d = 0.0
        train_graph.x.d = x
        train_graph.logits.forward(clear_buffer=True)
        per_batch.append({name: v.d / 0.1 for name, v in stats.items()})
    return {name: np.mean([b[name] for b in per_batch], axis=0) for name in stats}


# The search's default builds the training-mode graphs on ops/cpu_kernels, whose batch norm has its own update.
@pytest.mark.parametrize("kernels", [False, pytest.param(True, marks=pytest.mark.skipif(
    not cpu_kernels.available(), reason="the cpu kernels are not built (make kernels)"))])
def test_the_discretized_network_is_scored_on_its_own_statistics_and_the_supernets_come_back(fresh, kernels,
                                                                                           monkeypatch):
    variant = searched_variant(SearchVariant, SearchVariant.Settings(), cpu_kernels=kernels)
    monkeypatch.setattr(cpu_kernels, "MIN_ELEMENTS", 0)  # the discretized graphs on them, small as they are
    supernet_stats = values(statistics())
    xs = batches(3)
    seen = []

    def score(graph):
        seen.append((graph, values(statistics())))
        return "scores"
    assert variant.discretized_scores(score, lambda: iter(xs)) == "scores"
    (graph, scored_on), = seen
    assert graph is variant.discretized_graph(test=True)
    # The supernet's statistics are back, to the bit.
    for name, v in statistics().items():
        np.testing.assert_array_equal(v.d, supernet_stats[name], err_msg=name)

    # The stem's: the mean over the batches of each batch's channel means and unbiased variances.
    stem_w = weight_parameters()["stem/conv/conv/W"]
    outs = []
    for x in xs:
        out = F.convolution(nn.Variable.from_numpy_array(x), stem_w, pad=(1, 1))
        out.forward()
        outs.append(out.d.transpose(1, 0, 2, 3).reshape(out.shape[1], -1))
    np.testing.assert_allclose(scored_on["net/stem/bn/bn/mean"].ravel(), np.mean([o.mean(1) for o in outs], 0),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(scored_on["net/stem/bn/bn/var"].ravel(), np.mean([o.var(1, ddof=1) for o in outs], 0),
                               rtol=1e-4)
    # Every statistic the discretized network reads: the mean of its batch statistics over the batches.
    expected = hand_recalibration(variant.discretized_graph(test=False), xs)
    read = [name for name in expected if np.any(expected[name])]
    assert 0 < len(read) < len(expected) / 2  # the kept ops', the stem's, the preprocessing's
    for name in read:
        np.testing.assert_allclose(scored_on[name], expected[name], rtol=1e-4, atol=1e-6, err_msg=name)
        assert not np.allclose(scored_on[name], supernet_stats[name], rtol=1e-2), name


def test_one_batch_gives_the_training_mode_network_on_that_batch(fresh):
    """Recalibrated on a batch, the eval-mode network computes what the training-mode one does on it (up to
    the unbiased variance's n / (n - 1)); on the supernet's statistics it does not."""
    variant = searched_variant(SearchVariant, SearchVariant.Settings(), seed=3)
    x = batches(1, seed=4)[0]
    train = variant.discretized_graph(test=False)
    kept = values(statistics())
    train.x.d = x
    train.logits.forward(clear_buffer=True)
    expected = train.logits.d.copy()
    for name, v in statistics().items():
        v.d = kept[name]

    def score(graph):
        graph.x.d = x
        graph.logits.forward(clear_buffer=True)
        return graph.logits.d.copy()
    recalibrated = variant.discretized_scores(score, lambda: iter([x]))
    supernets = score(variant.discretized_graph(test=True))
    scale = np.abs(expected).max()
    assert np.abs(recalibrated - expected).max() < 0.1 * scale
    assert np.abs(supernets - expected).max() > 0.3 * scale


@pytest.mark.parametrize("variant_class, settings, scored", [
    (SearchVariant, SearchVariant.Settings(), 2),
    (Dadarts, DadartsSettings(hd_on_weights=True), 1),
])
def test_the_supernet_is_validated_on_its_statistics_the_discretized_network_on_its_own(
        fresh, variant_class, settings, scored):
    variant = searched_variant(variant_class, settings)
    variant.start_epoch(0, 1)
    supernet_stats = values(statistics())
    seen = []

    def score(graph):
        seen.append((graph, values(statistics())))
        return len(seen)
    validation, discretized = variant.validation_scores(score, lambda: iter(batches(2)))
    assert len(seen) == scored
    assert seen[discretized - 1][0] is variant.discretized_graph(test=True)
    own = seen[discretized - 1][1]
    assert any(not np.array_equal(own[name], supernet_stats[name]) for name in own)
    if scored == 1:  # under hard discretization the network the weights train is the discretized one
        assert validation == discretized
    else:
        graph, stats = seen[validation - 1]
        assert graph is variant.validation_graph()
        for name in stats:
            np.testing.assert_array_equal(stats[name], supernet_stats[name])


def test_calibration_batches_are_the_full_batches_in_order_without_padding():
    images = np.arange(10 * 4, dtype=np.uint8).reshape(10, 1, 2, 2)
    normalised = [x for x, _, _ in eval_batches(images, np.zeros(10), 4, (0.0,), (1.0,))]
    got = list(calibration_batches(images, 4, (0.0,), (1.0,)))
    assert len(got) == 2  # 10 images: two full batches, the last two images left out
    np.testing.assert_array_equal(np.stack(got), np.stack(normalised[:2]))


@pytest.mark.slow
def test_a_search_reports_the_discretized_network_on_statistics_of_its_own(tiny_search, tmp_path):
    """The epoch's figures are those of the discretized network of the checkpoint's alphas and weights,
    recalibrated by hand on the full batches of the weights' half."""
    out = tiny_search(tmp_path / "run", "--variant", "dadarts", "--hd-on-weights", "--epoch", "1")
    nn.clear_parameters()
    setup = SearchSetup((16, 1, 8, 8), 10, 4, 3, seed=3, rng=np.random.RandomState(0))
    variant = Dadarts(DadartsSettings(hd_on_weights=True), setup)
    variant.validation_graph()  # creates every parameter of the supernet
    params = nn.get_parameters(grad_only=False)
    load_checkpoint(str(out / CHECKPOINT), {name[len("net/"):] if name.startswith("net/") else name: v
                                            for name, v in params.items()}, {})
    data = digits_head(64)
    weights_idx, arch_idx = split_indices(64, 0.5, 3)
    xs = [x for x, _, n in eval_batches(data.train_x[weights_idx], data.train_y[weights_idx], 16, data.mean,
                                        data.std) if n == 16]
    recalibrated = hand_recalibration(variant.discretized_graph(test=False), xs)
    for name, v in statistics().items():
        v.d = recalibrated[name]
    scores = image_set_scores(variant.discretized_graph(test=True), data.train_x[arch_idx], data.train_y[arch_idx],
                              16, data.mean, data.std)
    assert series(out, "Validation loss")[0, 1] == pytest.approx(scores.loss, rel=1e-4)
    assert series(out, "Discretized validation error")[0, 1] == pytest.approx(scores.error)

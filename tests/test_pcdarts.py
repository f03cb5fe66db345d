"""PC-DARTS: the partial-channel edge, the edge-normalised mixing and derivation against numpy transcriptions of
the original's model_search.py (github yuhuixu1993/PC-DARTS), the warm-up of train_search.py, the one-line errors."""
import nnabla as nn
import numpy as np
import pytest

import darts_search
from models.genotype import EDGES
from models.network import cell_channels
from models.search_network import ALPHA_NAMES, BUILT_OPS, weight_parameters
from ops.operations import OP_NAMES, ZERO_OP, OpMode
from utils.optim.solvers import SGD, Adam
from utils.search.bilevel import BilevelOptimizer, build_search_graphs
from utils.search.variant import SearchSetup
from utils.search.variants.pcdarts import Pcdarts, PcdartsSettings, partial_channel_edge

SHAPE, CLASSES, CHANNELS, CELLS = (4, 1, 8, 8), 3, 8, 3
MAX_POOL, SKIP = OP_NAMES.index("max_pool_3x3"), OP_NAMES.index("skip_connect")


@pytest.fixture
def fresh():
    nn.clear_parameters()
    yield
    nn.clear_parameters()


def pcdarts(k=4, warmup=15, channels=CHANNELS):
    return Pcdarts(PcdartsSettings(pc_k=k, pc_warmup_epochs=warmup),
                   SearchSetup(SHAPE, CLASSES, channels, CELLS, seed=0, rng=np.random.RandomState(0)))


# Transcriptions of model_search.py, in our op order ('none' is column ZERO_OP, not 0).
def max_pool_numpy(x, kernel, stride, pad):
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
    h = (x.shape[2] + 2 * pad - kernel) // stride + 1
    w = (x.shape[3] + 2 * pad - kernel) // stride + 1
    return np.array([[[[padded[b, c, i * stride:i * stride + kernel, j * stride:j * stride + kernel].max()
                        for j in range(w)] for i in range(h)] for c in range(x.shape[1])] for b in range(x.shape[0])])


def batch_norm_numpy(x):  # BatchNorm2d(affine=False) in training mode
    return (x - x.mean(axis=(0, 2, 3), keepdims=True)) / np.sqrt(x.var(axis=(0, 2, 3), keepdims=True) + 1e-5)


def original_edge(x, skip_weight, pool_weight, k, stride, edge_weight):
    """Cell.forward's weights2[e] * MixedOp.forward(x, weights) with weights on skip_connect (stride 1) and
    max_pool_3x3 (followed by its BatchNorm2d) only."""
    channels = x.shape[1]
    xtemp, xtemp2 = x[:, :channels // k], x[:, channels // k:]
    temp1 = pool_weight * batch_norm_numpy(max_pool_numpy(xtemp, 3, stride, 1))
    if stride == 1:
        temp1 = temp1 + skip_weight * xtemp
    ans = np.concatenate([temp1, xtemp2 if temp1.shape[2] == x.shape[2] else max_pool_numpy(xtemp2, 2, 2, 0)], 1)
    b, c, h, w = ans.shape
    ans = ans.reshape(b, k, c // k, h, w).transpose(0, 2, 1, 3, 4).reshape(b, c, h, w)  # channel_shuffle
    return edge_weight * ans


def original_weights2(beta):
    """Network.forward's weights2: a softmax over the first node's 2 edges, then the next 3, 4, 5."""
    def softmax(v):
        e = np.exp(v - v.max())
        return e / e.sum()
    weights2, n, start = softmax(beta[0:2]), 3, 2
    for _ in range(3):
        end = start + n
        weights2 = np.concatenate([weights2, softmax(beta[start:end])])
        start, n = end, n + 1
    return weights2


def original_parse(weights, weights2):
    """Network.genotype()'s _parse: [(op, input node)], two per node, on W * W2 with 'none' left out."""
    gene, n, start = [], 2, 0
    for i in range(4):
        end = start + n
        W = weights[start:end].copy()
        for j in range(n):
            W[j, :] = W[j, :] * weights2[start + j]
        edges = sorted(range(i + 2), key=lambda x: -max(W[x][k] for k in range(len(W[x])) if k != ZERO_OP))[:2]
        for j in edges:
            k_best = None
            for k in range(len(W[j])):
                if k != ZERO_OP and (k_best is None or W[j][k] > W[j][k_best]):
                    k_best = k
            gene.append((k_best, j))
        start, n = end, n + 1
    return gene


@pytest.mark.parametrize("k, stride, shape, cpu_kernels", [
    (4, 1, (3, 8, 6, 6), False), (4, 2, (3, 8, 6, 6), False), (2, 1, (3, 8, 6, 6), False),
    (2, 2, (3, 8, 6, 6), False), (4, 1, (8, 16, 24, 24), True)])  # large enough for the kernels' weighted sums
def test_the_edge_is_the_originals_partial_channels_bypass_and_shuffle(fresh, k, stride, shape, cpu_kernels):
    rng = np.random.RandomState(k + stride)
    x = rng.randn(*shape).astype(np.float32)
    skip_weight, pool_weight, edge_weight = (0.7 if stride == 1 else 0.0), 0.4, 0.3  # stride 2: a conv on skip
    row = np.zeros((1, len(BUILT_OPS)), np.float32)
    row[0, SKIP], row[0, MAX_POOL] = skip_weight * edge_weight, pool_weight * edge_weight  # beta~ folded in
    xv = nn.Variable.from_numpy_array(x)
    mode = OpMode(affine=False, test=False, cpu_kernels=cpu_kernels)
    out = partial_channel_edge(xv, nn.Variable.from_numpy_array(row), shape[1], stride, mode, k,
                               nn.Variable.from_numpy_array(np.array([edge_weight], np.float32)))
    out.forward()
    expected = original_edge(x, skip_weight, pool_weight, k, stride, edge_weight)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.d, expected, rtol=1e-4, atol=1e-5)


def test_the_variant_builds_its_ops_with_c_over_k_channels(fresh):
    variant = pcdarts(k=4)
    variant.network(nn.Variable(SHAPE), frozen=False, purpose="weights")
    shapes = {name: v.shape for name, v in weight_parameters().items() if "/edge0/sep_conv_3x3/" in name}
    for cell, (channels, _) in enumerate(cell_channels(CHANNELS, CELLS)):  # every op's weights at C / K
        pointwise = [shape for name, shape in shapes.items() if name.startswith(f"cell{cell}/") and len(shape) == 4]
        assert pointwise and all(shape[:2] == (channels // 4, channels // 4) for shape in pointwise)


def test_the_mixing_weights_are_softmax_alpha_times_the_edge_normalised_betas(fresh):
    variant = pcdarts()
    rng = np.random.RandomState(1)
    for name, array in variant.alphas.items():
        array.d = rng.randn(*array.shape)
    mixing = variant.mixing("alphas")
    for name in ALPHA_NAMES:
        beta = variant.alphas[name.replace("alpha", "beta")].d
        alpha = variant.alphas[name].d
        softmax = np.exp(alpha) / np.exp(alpha).sum(axis=1, keepdims=True)
        mixing[name].forward()
        np.testing.assert_allclose(mixing[name].d, softmax * original_weights2(beta)[:, None], rtol=1e-5)


def test_the_betas_start_as_the_originals(fresh):
    variant = pcdarts()
    for name in ("beta_normal", "beta_reduction"):
        assert variant.alphas[name].shape == (len(EDGES),)
        assert 1e-4 < np.std(variant.alphas[name].d) < 1e-2  # 1e-3 * N(0, 1)


@pytest.mark.parametrize("seed", range(3))
def test_the_derivation_is_the_originals_on_w_times_w2(seed):
    rng = np.random.RandomState(seed)
    # Alphas close together and betas far apart: the edges are ranked by the betas, as only W * W2 ranks them.
    values = {"alpha_normal": rng.randn(14, 8) * 0.1, "alpha_reduction": rng.randn(14, 8) * 0.1,
              "beta_normal": rng.randn(14) * 3, "beta_reduction": rng.randn(14) * 3}
    arch = Pcdarts.derive(PcdartsSettings(), values)
    without_betas = Pcdarts.derive(PcdartsSettings(), {**values, "beta_normal": np.zeros(14),
                                                       "beta_reduction": np.zeros(14)})
    assert arch != without_betas  # else this case could not tell whether the betas are used
    for name, cell in (("normal", arch.normal), ("reduction", arch.reduction)):
        alpha = values[f"alpha_{name}"]
        softmax = np.exp(alpha) / np.exp(alpha).sum(axis=1, keepdims=True)
        gene = original_parse(softmax, original_weights2(values[f"beta_{name}"]))
        assert [pair for node in sorted(cell) for pair in cell[node]] == gene


def step_search(variant, steps=1):
    """One search step of `variant` on random batches; returns the search's BilevelOptimizer."""
    graphs = build_search_graphs(variant.network, SHAPE, False, variant.alpha_penalty)
    weights = weight_parameters()
    optimizer = BilevelOptimizer(graphs, weights, weights, variant.alphas, SGD(weights, 0.1, 0.9, 3e-4, 5.0),
                                 Adam(variant.alphas, 0.1, 0.5, 0.999, 1e-3), steps=variant)
    rng = np.random.RandomState(0)

    def batch():
        return rng.randn(*SHAPE).astype(np.float32), rng.randint(0, CLASSES, (SHAPE[0], 1))
    for _ in range(steps):
        optimizer.step(batch(), batch())
    return optimizer


def test_the_alphas_and_betas_stay_frozen_in_the_warm_up_and_train_after_it(fresh):
    variant = pcdarts(warmup=1)
    variant.start_epoch(0, 2)
    optimizer = step_search(variant)  # builds the graphs, whose parameters exist from then on
    arch = {name: a.d.copy() for name, a in variant.alphas.items()}
    weights = {name: w.d.copy() for name, w in optimizer.weights.items()}
    optimizer.step(*[(np.random.randn(*SHAPE).astype(np.float32), np.zeros((SHAPE[0], 1), int))] * 2)
    assert all(np.array_equal(variant.alphas[name].d, arch[name]) for name in arch)
    assert not all(np.array_equal(optimizer.weights[name].d, weights[name]) for name in weights)
    variant.start_epoch(1, 2)
    optimizer.step(*[(np.random.randn(*SHAPE).astype(np.float32), np.zeros((SHAPE[0], 1), int))] * 2)
    assert all(not np.array_equal(variant.alphas[name].d, arch[name]) for name in arch)


@pytest.mark.parametrize("extra, message", [
    (["--epoch", "15"], "--pc-warmup-epochs 15 would leave the alphas untrained"),
    (["--epoch", "3", "--pc-warmup-epochs", "3"], "--pc-warmup-epochs 3 would leave"),
    (["--pc-warmup-epochs", "0", "--output-filter", "6"], "--output-filter 6 is not a multiple of --pc-k 4"),
    (["--pc-warmup-epochs", "0", "--pc-k", "0"], "--pc-k"),
])
def test_impossible_settings_are_one_line_errors(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        darts_search.main(["--dataset", "digits", "--variant", "pcdarts", "-m", str(tmp_path / "bad"), *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_the_recipe_is_the_originals_unless_a_flag_is_given():
    args = darts_search.parse_args(darts_search.search_parser(), ["--variant", "pcdarts"])
    assert (args.batch_size, args.lr, args.lr_min, args.arch_lr, args.pc_k, args.pc_warmup_epochs) == \
        (256, 0.1, 0.0, 6e-4, 4, 15)
    assert darts_search.parse_args(darts_search.search_parser(), ["--variant", "pcdarts", "-b", "64"]).batch_size == 64

"""PC-DARTS (Xu et al., ICLR 2020): partial channel connections, edge normalisation, a warm-up of the weights.

What it changes of plain DARTS, pass by pass (the original: github yuhuixu1993/PC-DARTS, the top-level
model_search.py and train_search.py, which V100_python1.0/ only ports to a newer torch):
- every edge (model_search.py MixedOp.forward): only the first C/K channels of its input go through the
  mixed op, whose ops are built with C/K channels; the other C - C/K bypass it, max-pooled 2x2 on a
  reduction cell's stride-2 edges; the two parts are concatenated and channel-shuffled in K groups
  (channel j * K + g of the output is channel g * C/K + j of the concatenation);
- every pass mixes with softmax(alpha) * beta~ per edge row, where beta~ (Cell.forward's weights2) is a
  softmax of one beta per edge over the edges into each node (the first node's 2, the next 3, 4 and 5).
  The original multiplies the whole shuffled edge output by beta~, the bypass included; the mixed op being
  linear in its weight row, beta~ is folded into the row here, and the edge scales its bypass by beta~;
- the betas are architecture arrays of their own (`beta_normal`, `beta_reduction`, (14,), 1e-3 * N(0, 1)
  as the alphas), trained by the alpha optimizer and recorded with the alphas;
- the alpha step: none in the first --pc-warmup-epochs epochs (train_search.py: `if epoch >= 15`);
- the derivation (Network.genotype): the top-k rule on softmax(alpha) * beta~;
- the hard-discretized network is the derived cell on these edges (kept ops at weight 1, bypass included);
- the recipe: train_search.py's defaults where they differ from quark0's.
"""
import dataclasses

import nnabla as nn
import nnabla.functions as F
import nnabla.initializer as I
import numpy as np

from models.derivation import RANKING_RULES, derive_by_rule, derive_from_weights
from models.discretization import node_rows, softmax_rows
from models.genotype import EDGES, NODES
from models.graph import build_graph
from models.network import cell_channels, edge_stride
from models.search_network import ALPHA_NAMES, ARCH_SCOPE, create_alphas, mixed_op, search_network, softmax_weights
from ops import cpu_sums
from ops.operations import SEARCH_OPS
from utils.run.command_line import AT_LEAST_ONE, NOT_NEGATIVE
from utils.search.variant import DartsSettings, SearchVariant, cell_ops, register_variant, setting

# The edge normalisation's array of each cell type.
BETA_NAMES = {"alpha_normal": "beta_normal", "alpha_reduction": "beta_reduction"}

@dataclasses.dataclass(frozen=True)
class PcdartsSettings(DartsSettings):
    pc_k: int = setting(4, "K: 1/K of each edge's channels go through its mixed op, the rest bypass it "
                           "(1: all channels, no bypass)", within=AT_LEAST_ONE)
    pc_warmup_epochs: int = setting(15, "the alphas (and betas) are frozen in the first N epochs, only the weights "
                                        "train", metavar="N", within=NOT_NEGATIVE, of_search_epochs=50)

    def problems(self, args):
        problems = super().problems(args)
        if self.pc_k >= 1 and args.output_filter % self.pc_k:
            problems.append(f"--output-filter {args.output_filter} is not a multiple of --pc-k {self.pc_k}: the "
                            f"channel shuffle needs K groups of equal size")
        if self.pc_warmup_epochs >= args.epoch:
            problems.append(f"--pc-warmup-epochs {self.pc_warmup_epochs} would leave the alphas untrained: --epoch "
                            f"{args.epoch} runs epochs 0 to {args.epoch - 1} (0-based)")
        return problems


def normalised_edges(beta):
    """beta~ of a (14,) beta Variable: a softmax over the edges into each node (model_search.py's weights2)."""
    return F.concatenate(*[F.softmax(F.slice(beta, (rows[0],), (rows[-1] + 1,)), axis=0)
                           for rows in map(node_rows, NODES)], axis=0)


def normalised_edges_numpy(beta):
    """normalised_edges of a numpy (14,) beta."""
    beta = np.asarray(beta, dtype=np.float64)
    out = np.empty_like(beta)
    for rows in map(node_rows, NODES):
        exp = np.exp(beta[rows] - beta[rows].max())
        out[rows] = exp / exp.sum()
    return out


def channel_shuffle(x, groups):
    """model_search.py's channel_shuffle: (B, groups, C/groups, H, W), the two channel axes swapped."""
    b, c, h, w = x.shape
    return F.reshape(F.transpose(F.reshape(x, (b, groups, c // groups, h, w)), (0, 2, 1, 3, 4)), (b, c, h, w))


def partial_channel_edge(x, edge_weights, channels, stride, mode, k, edge_scale=None):
    """One PC-DARTS edge: the mixed op (models.search_network.mixed_op, ops of channels / k channels) on
    the first channels / k channels of x, the others bypassing it (max-pooled 2x2 at stride 2) scaled by
    `edge_scale` (beta~, as the original scales the whole edge; its row is already in edge_weights), then
    the channel shuffle in k groups.

    The 2x2 pooling counts a last odd row or column (ignore_border=False): the stride-2 ops' outputs are
    ceil(H / 2) high; the original, whose MaxPool2d floors, fails on odd sizes.
    """
    part = channels // k
    b, c, h, w = x.shape
    mixed = mixed_op(F.slice(x, (0, 0, 0, 0), (b, part, h, w)), edge_weights, part, stride, mode)
    if k == 1:
        return mixed
    bypass = F.slice(x, (0, part, 0, 0), (b, c, h, w))
    if stride == 2:
        bypass = F.max_pooling(bypass, (2, 2), stride=(2, 2), ignore_border=False)
    if edge_scale is not None:
        bypass = scaled(bypass, edge_scale, mode)
    return channel_shuffle(F.concatenate(mixed, bypass, axis=1), k)


def scaled(x, scale, mode):
    """scale (one element) * x, summed as the mixed op sums (nnabla's broadcasting Mul2 took a third of a
    PC-DARTS step and its backward more)."""
    row = F.reshape(scale, (1, 1))
    if mode.cpu_kernels and cpu_sums.worthwhile(x):
        return cpu_sums.weighted_sum([x], row)
    return F.reshape(F.affine(row, F.reshape(x, (1, -1))), x.shape)


class EdgesInBuildOrder:
    """search_network's `edge` for PC-DARTS: it knows each edge's beta~ from the order in which the network
    builds its edges (cell after cell, each cell's edges in EDGES order), which it checks against every
    edge's stride and channels, and then that every edge was built (finished())."""

    def __init__(self, scales, k, num_classes, channels, num_cells):
        self.k = k
        self.scales = scales
        self.expected = [(cell_type, edge, edge_stride(reduction, EDGES[edge][0]), cell_c)
                         for cell_c, reduction in cell_channels(channels, num_cells)
                         for cell_type in [ALPHA_NAMES[1] if reduction else ALPHA_NAMES[0]]
                         for edge in range(len(EDGES))]
        self.built = 0

    def edge(self, x, edge_weights, channels, stride, mode):
        cell_type, index, expected_stride, expected_channels = self.expected[self.built]
        if (stride, channels) != (expected_stride, expected_channels):
            raise RuntimeError(f"PC-DARTS edge {self.built}: the network builds its edges in an order it does not "
                               f"expect (stride {stride}, {channels} channels)")
        self.built += 1
        scale = F.slice(self.scales[cell_type], (index,), (index + 1,))
        return partial_channel_edge(x, edge_weights, channels, stride, mode, self.k, scale)

    def finished(self):
        if self.built != len(self.expected):
            raise RuntimeError(f"PC-DARTS: {self.built} edges built of {len(self.expected)}")


@register_variant
class Pcdarts(SearchVariant):
    name = "pcdarts"
    title = "PC-DARTS (--variant pcdarts)"
    Settings = PcdartsSettings
    # train_search.py's defaults where they differ from quark0's: --batch_size 256, --learning_rate 0.1,
    # --learning_rate_min 0.0 (V100_python1.0/'s is 0.001, quark0's), --arch_learning_rate 6e-4; momentum,
    # weight decays, epochs, grad clip, train portion and Adam's betas are quark0's.
    recipe = {"batch_size": 256, "lr": 0.1, "lr_min": 0.0, "arch_lr": 6e-4}

    def create_alphas(self, rng):
        """The two (14, 8) alphas, then the two (14,) betas, each 1e-3 * N(0, 1) (Network._initialize_alphas)."""
        alphas = create_alphas(rng)
        with nn.parameter_scope(ARCH_SCOPE):
            for cell_type, beta in BETA_NAMES.items():
                alphas[beta] = nn.parameter.get_parameter_or_create(
                    beta, (len(EDGES),), I.NormalInitializer(1e-3, rng=rng), need_grad=True)
        return alphas

    def mixing(self, purpose):
        """{alpha name: softmax(alpha) * beta~ per row, beta name: beta~}: the bypass reads beta~ alone."""
        weights = softmax_weights({name: self.alphas[name] for name in ALPHA_NAMES})
        scales = {name: normalised_edges(self.alphas[beta]) for name, beta in BETA_NAMES.items()}
        return {**{name: weights[name] * F.reshape(scales[name], (len(EDGES), 1)) for name in ALPHA_NAMES},
                **{BETA_NAMES[name]: scales[name] for name in ALPHA_NAMES}}

    def supernet(self, x, weights, frozen=False, test=False):
        edges = EdgesInBuildOrder({name: weights[beta] for name, beta in BETA_NAMES.items()}, self.settings.pc_k,
                                  *self.setup.sizes)
        logits = search_network(x, {name: weights[name] for name in ALPHA_NAMES}, *self.setup.sizes, frozen=frozen,
                                test=test, classifier=self.classifier, cpu_kernels=self.setup.cpu_kernels,
                                edge=edges.edge)
        edges.finished()
        return logits

    def start_epoch(self, epoch, epochs):
        self.trains_alphas = epoch >= self.settings.pc_warmup_epochs

    def discretized_graph(self, test):
        """These edges with the derived cell's ops at weight 1 (beta~ 1) and the other edges at 0."""
        if test not in self._discrete:
            weights = {name: nn.Variable((len(EDGES), len(SEARCH_OPS))) for name in ALPHA_NAMES}
            weights.update({beta: nn.Variable((len(EDGES),)) for beta in BETA_NAMES.values()})
            graph = build_graph(lambda x: self.supernet(x, weights, test=test), self.setup.input_shape)
            self._discrete[test] = weights, graph
        weights, graph = self._discrete[test]
        for name, kept in cell_ops(self.cell()).items():
            one_hot = np.zeros(weights[name].shape, dtype=np.float32)
            for edge, op_id in kept.items():
                one_hot[edge, SEARCH_OPS.index(op_id)] = 1.0
            weights[name].d = one_hot
            weights[BETA_NAMES[name]].d = one_hot.max(axis=1)
        return graph

    @staticmethod
    def derive(settings, values):
        """The original's rule (top-k) on softmax(alpha) * beta~, and the other rankings of edges too; the
        per-edge rules on the alphas alone, whose choices beta~ does not change."""
        if settings.derivation not in RANKING_RULES:
            return derive_by_rule(values["alpha_normal"], values["alpha_reduction"], settings.derivation)
        return derive_from_weights(*[edge_normalised_weights(values[name], values[BETA_NAMES[name]])
                                     for name in ALPHA_NAMES], settings.derivation)


def edge_normalised_weights(alpha, beta):
    """(14, 8) numpy softmax(alpha) * beta~ per row, the weights Network.genotype() ranks (W * W2)."""
    return softmax_rows(alpha) * normalised_edges_numpy(beta)[:, None]

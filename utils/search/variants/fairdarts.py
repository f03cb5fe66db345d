"""FairDARTS (Chu et al., ECCV 2020; github xiaomi-automl/FairDARTS, fairdarts/): independent sigmoid weights,
the zero-one loss, derivation by threshold.

What it changes of plain DARTS, pass by pass:
- mixing: every pass (weight step, alpha step, validation) mixes each op with sigmoid(alpha), not with the
  softmax over its edge (model_search.py, Network.forward). The original's search space has no 'none'; our
  zero op adds nothing to an edge's sum whatever its weight, so its column is left out of everything below;
- the alphas start at 0 (model_search.py, _initialize_alphas: torch.zeros), every weight at 0.5;
- the alpha step's loss adds w01 * L01 over the sigmoids of both cells' 7 real ops, concatenated
  (separate_loss.py, architect.py): ConvSeparateLoss (--sep_loss l2, the default)
  L01 = -mean((sigmoid(alpha) - 0.5)^2), TriSeparateLoss (l1) L01 = -mean(|sigmoid(alpha) - 0.5|), with the
  constant weight w01 = --aux_loss_weight = 10 (no schedule). The original adds it to the weight step's loss
  as well, where it only leaves gradients in the alphas that the next alpha step zeroes first: no effect;
- its series: L01 of the alphas after each epoch (the original logs it as spe_loss);
- derivation (utils.py, parse, --parse_method threshold_sparse, --op_threshold 0.85): each node ranks its
  input edges by their strongest sigmoid and takes the first two; each of them keeps its strongest op if
  that sigmoid is >= the threshold, so a node has two, one or no inputs. As the original's evaluation cell
  (model.py, DCOCell) does, an edge from a node without inputs is dropped, and the cell's output concatenates
  the nodes with inputs. Where no node keeps an input (the original could not build that cell), node 2 keeps
  its two ranked edges at their strongest ops, threshold ignored, so that the cell can be trained. Ties go
  to the earlier op in the original's order (max, avg, skip, sep3, sep5, dil3, dil5), then the lower input
  node, as there. --parse-method darts: no threshold, the --derivation rule (DARTS's top-k by default: the
  two ranked edges at their strongest ops, as the original's 'darts' parse) on the sigmoids, 'none' left out;
- the discretized validation runs the derived cell (the hard discretization of a softmax means nothing for
  sigmoid weights, and the zero op's alpha, never trained, would win every edge whose real alphas fell below 0).
"""
import dataclasses

import nnabla as nn
import nnabla.functions as F
import nnabla.initializer as I
import numpy as np

from models.derivation import RANKING_RULES, derive_by_rule, derive_from_weights
from models.discretization import node_rows
from models.genotype import EDGES, NODES, Architecture
from models.search_network import ALPHA_NAMES, ARCH_SCOPE, BUILT_OPS
from ops.operations import OP_NAMES, SEARCH_OPS
from utils.run.command_line import NOT_NEGATIVE, UNIT
from utils.search.variant import (DartsSettings, SearchVariant, cell_ops, register_variant, setting,
                                  zero_op_left_out)

# Our op ids in the order of the original's PRIMITIVES (fairdarts/genotypes.py), which has no 'none':
# the columns the sigmoids, the zero-one loss and the derivation read.
ORIGINAL_OPS = tuple(OP_NAMES.index(name) for name in ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
                                                       "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"))
assert sorted(ORIGINAL_OPS) == list(BUILT_OPS)  # the same ops, the zero op's column (the last) aside
EDGES_PER_NODE = 2  # "|Edge| <= 2" (the original's README)


@dataclasses.dataclass(frozen=True)
class FairdartsSettings(DartsSettings):
    aux_loss_weight: float = setting(10.0, "w01, the zero-one loss's weight in the alpha step's loss (the "
                                           "original's --aux_loss_weight)", within=NOT_NEGATIVE)
    zero_one_loss: str = setting("l2", "l2: -mean((sigmoid - 0.5)^2), the original's default; l1: "
                                       "-mean(|sigmoid - 0.5|) (its --sep_loss)", choices=("l2", "l1"))
    op_threshold: float = setting(0.85, "a kept edge's strongest op needs a sigmoid of at least this",
                                  within=UNIT)
    parse_method: str = setting("threshold_sparse", "threshold_sparse: each node's two strongest edges, each "
                                                    "kept if its op passes --op-threshold; darts: the --derivation "
                                                    "rule on the sigmoids", choices=("threshold_sparse", "darts"))

    def problems(self, args):
        problems = super().problems(args)
        if self.parse_method == "darts":
            problems += self.unused(("op_threshold",), "--parse-method darts keeps edges whatever their sigmoid")
        else:
            problems += self.unused(("derivation",), "--parse-method threshold_sparse derives by the threshold")
        if self.aux_loss_weight == 0:
            problems += self.unused(("zero_one_loss",), "--aux-loss-weight is 0")
        return problems


def op_sigmoids(alpha):
    """(14, 7) numpy sigmoids of a (14, 8) alpha array's real ops, in the original's op order."""
    return 1.0 / (1.0 + np.exp(-np.asarray(alpha, dtype=np.float64)[:, ORIGINAL_OPS]))


def sigmoid_weights(alpha):
    """(14, 8) numpy op weights of an alpha array: the sigmoids, 'none' at 0."""
    weights = np.zeros(np.shape(alpha))
    weights[:, ORIGINAL_OPS] = op_sigmoids(alpha)
    return weights


def zero_one_value(values, kind):
    """L01 (unweighted) of {name: (14, 8) alphas}, both cells' sigmoids together."""
    distance = np.concatenate([op_sigmoids(values[name]) for name in ALPHA_NAMES]) - 0.5
    return float(-np.mean(distance ** 2) if kind == "l2" else -np.mean(np.abs(distance)))


def ranked_cell(weights, threshold):
    """{node: [(op_id, input_node), ...]} of (14, 7) sigmoids: each node's two edges with the strongest
    sigmoid (stable: the lower input node on ties), each at its strongest op if that reaches `threshold`."""
    cell = {}
    for node in NODES:
        block = weights[node_rows(node)]
        edges = sorted(range(node), key=lambda j: -block[j].max())[:EDGES_PER_NODE]
        cell[node] = [(ORIGINAL_OPS[int(np.argmax(block[j]))], j) for j in edges
                      if threshold is None or block[j].max() >= threshold]
    return cell


def trainable(cell, weights):
    """`cell` without the edges from nodes that have no inputs (in node order, so that a node left empty by
    that is skipped too); if no node keeps an input, node 2 with its two ranked edges."""
    for node in NODES:
        cell[node] = [(op_id, j) for op_id, j in cell[node] if j < NODES[0] or cell[j]]
    if not any(cell.values()):
        cell[NODES[0]] = ranked_cell(weights, None)[NODES[0]]
    return cell


def threshold_cell(alpha, threshold, parse_method):
    weights = op_sigmoids(alpha)
    return trainable(ranked_cell(weights, threshold if parse_method == "threshold_sparse" else None), weights)


def derive_fair(settings, values):
    """The Architecture of {name: (14, 8) alphas} by the original's threshold parse, or by the --derivation rule
    on the sigmoids ('none' left out; sigmoid being monotone, the per-edge rules read the alphas)."""
    if settings.parse_method == "darts":
        if settings.derivation in RANKING_RULES:
            return derive_from_weights(*[sigmoid_weights(values[name]) for name in ALPHA_NAMES], settings.derivation)
        left_out = zero_op_left_out(values)
        return derive_by_rule(left_out["alpha_normal"], left_out["alpha_reduction"], settings.derivation)
    normal, reduction = (threshold_cell(values[name], settings.op_threshold, settings.parse_method)
                         for name in ALPHA_NAMES)
    return Architecture(normal, reduction, tuple(n for n in NODES if normal[n]),
                        tuple(n for n in NODES if reduction[n]))


@register_variant
class Fairdarts(SearchVariant):
    """Sigmoid mixing everywhere, the zero-one loss on the alpha step, threshold derivation."""
    name = "fairdarts"
    title = "FairDARTS (--variant fairdarts)"
    Settings = FairdartsSettings
    series = ("Zero-one loss",)
    # fairdarts/train_search.py's defaults where they differ from quark0's: --batch_size 128,
    # --learning_rate 0.005, --arch_learning_rate 3e-3, Adam betas (--arch_lr_gamma 0.9, 0.999).
    recipe = {"batch_size": 128, "lr": 0.005, "arch_lr": 3e-3, "arch_beta1": 0.9}

    def create_alphas(self, rng):
        """The two (14, 8) arrays at 0, as the original's (rng unused: nothing is drawn)."""
        with nn.parameter_scope(ARCH_SCOPE):
            return {name: nn.parameter.get_parameter_or_create(name, (len(EDGES), len(SEARCH_OPS)),
                                                               I.ConstantInitializer(0.0), need_grad=True)
                    for name in ALPHA_NAMES}

    def mixing(self, purpose):
        return {name: F.sigmoid(alpha) for name, alpha in self.alphas.items()}

    def alpha_penalty(self):
        if self.settings.aux_loss_weight == 0:
            return None
        real_ops = len(BUILT_OPS)  # the first columns; the mean does not depend on their order
        distance = F.concatenate(*[F.sigmoid(alpha)[:, :real_ops] for alpha in self.alphas.values()], axis=0) - 0.5
        term = distance ** 2 if self.settings.zero_one_loss == "l2" else F.abs(distance)
        return -self.settings.aux_loss_weight * F.mean(term)

    def epoch_values(self):
        return {"Zero-one loss": zero_one_value(self.alpha_values(), self.settings.zero_one_loss)}

    def discretized_ops(self):
        """The derived cell's ops (the 'none' column, which FairDARTS never trains, plays no part)."""
        return cell_ops(self.cell())

    @staticmethod
    def derive(settings, values):
        return derive_fair(settings, values)

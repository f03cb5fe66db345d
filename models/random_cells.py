"""Random cells of var_nas' random-search baseline (I8).

Draw p of N gets q = p / (N - 1), rising from 0 to 1; each of its 28 edges (14 normal, then 14
reduction, in alpha-row order) takes a parametric op (sep3, sep5, dil3, dil5) with probability 1 - q,
else a free one (max pool, avg pool, skip, none), uniformly within the group. Every edge is kept, so
the cells are complete DAGs like the 'simple' extraction's. The cells are returned as Architectures,
so they are written in our JSON order (var_nas' notebook writes (normal, reduce) where its loader
reads [reduce, normal], Q-V6).
"""
import numpy as np

from models.genotype import EDGES, NODES, Architecture
from ops.operations import OP_NAMES
from ops.user_error import UserError

PARAMETRIC_OPS = tuple(OP_NAMES.index(n) for n in ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"))
FREE_OPS = tuple(OP_NAMES.index(n) for n in ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "none"))


class RandomCellsError(UserError, ValueError):
    """A number of cells to draw that cannot be drawn."""


def free_op_probability(draw, count):
    """q of draw `draw` (0-based) of `count`: 0 for the first, 1 for the last."""
    return draw / (count - 1) if count > 1 else 0.0


def _random_cell(rng, q):
    cell = {node: [] for node in NODES}
    for input_node, node in EDGES:
        group = FREE_OPS if rng.random() < q else PARAMETRIC_OPS
        cell[node].append((int(group[rng.integers(len(group))]), input_node))
    return cell


def random_architectures(count, seed):
    """[(q, Architecture)] of `count` draws from one generator seeded by `seed`."""
    if count < 1:
        raise RandomCellsError(f"the number of cells to draw must be at least 1, got {count}")
    rng = np.random.default_rng(seed)
    draws = []
    for draw in range(count):
        q = free_op_probability(draw, count)
        normal = _random_cell(rng, q)
        draws.append((q, Architecture(normal=normal, reduction=_random_cell(rng, q))))
    return draws


def random_cell_file_name(draw):
    """random_<NNN>.json; the pareto picture counts runs trained on these as random cells."""
    return f"random_{draw:03d}.json"

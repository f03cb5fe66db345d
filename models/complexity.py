"""The expected parameter count of the search network's cells and var_nas' complexity penalty (I5).

P = Σ_cells Σ_edges Σ_ops softmax(α_type)_{e,o} |θ_{cell,e,o}|, where |θ| is the weight count of the
candidate op as the search really builds it (models.search_network.candidate_op, batch normalisation
without affine parameters) at that cell's channel count and that edge's stride. The counts are read
off ops built once in a scratch parameter scope, so they follow the op table instead of a copy of it.
Only the candidate ops count: a cell's preprocessing is the same for every architecture.
"""
from collections import OrderedDict
from functools import lru_cache

import nnabla as nn
import nnabla.functions as F
import numpy as np

from models.genotype import EDGES, NODES
from models.network import cell_channels, edge_stride
from models.search_network import ALPHA_NAMES, candidate_op
from ops.operations import SEARCH_OPS, OpMode

# Big enough for a stride-2 op; weight counts do not depend on the map size.
_SCRATCH_MAP = 4
_CELL_ALPHA = {False: "alpha_normal", True: "alpha_reduction"}


@lru_cache(maxsize=None)
def candidate_parameter_counts(channels, stride):
    """Weights of each op of SEARCH_OPS, in alpha-column order, built at `channels` with `stride`.

    The scratch weights draw from nnabla's generator; its state is put back, so building the table
    never changes the initial weights of a seeded run.
    """
    counts = []
    generator_state = nn.random.prng.get_state()
    for op_id in SEARCH_OPS:
        scratch = OrderedDict()
        with nn.parameter_scope("", scope=scratch):
            candidate_op(op_id, nn.Variable((1, channels, _SCRATCH_MAP, _SCRATCH_MAP)), channels, stride,
                         OpMode(affine=False, test=False))
            counts.append(sum(v.size for v in nn.get_parameters(grad_only=True).values()))
    nn.random.prng.set_state(generator_state)
    return np.array(counts, dtype=np.int64)


def parameter_table(channels, num_cells):
    """{alpha name: (14, 8) array}: per edge and op, its weight count summed over the cells of that type."""
    table = {name: np.zeros((len(EDGES), len(SEARCH_OPS)), np.int64) for name in ALPHA_NAMES}
    for cell_channel_count, reduction in cell_channels(channels, num_cells):
        for row, (input_node, _) in enumerate(EDGES):
            table[_CELL_ALPHA[reduction]][row] += candidate_parameter_counts(
                cell_channel_count, edge_stride(reduction, input_node))
    return table


def expected_parameters(alphas, table):
    """P(α) as a graph term (shape ()): Σ softmax(α) * table over both cell types."""
    total = None
    for name, alpha in alphas.items():
        counts = nn.Variable.from_numpy_array(table[name].astype(np.float32))
        term = F.sum(F.softmax(alpha, axis=1) * counts)
        total = term if total is None else total + term
    return total


def complexity_penalty(alphas, lam, table):
    """λ·P with the raw λ (a (1,) variable such as models.hypernetwork.LambdaInput.lam), shape (1,).

    var_nas adds it to the alpha objective: plain softmax, no temperature, no Gumbel noise (Q-V5).
    """
    penalty = lam * F.reshape(expected_parameters(alphas, table), (1,))
    penalty.persistent = True  # kept through the bilevel passes' buffer clearing, so it can be logged
    return penalty


def architecture_parameters(arch, channels, num_cells):
    """Weight count of the ops an architecture's edges keep, over all cells (var_nas' calc_param_number)."""
    total = 0
    for cell_channel_count, reduction in cell_channels(channels, num_cells):
        cell = arch.reduction if reduction else arch.normal
        for node in NODES:
            for op_id, input_node in cell[node]:
                counts = candidate_parameter_counts(cell_channel_count, edge_stride(reduction, input_node))
                total += int(counts[SEARCH_OPS.index(op_id)])
    return total

"""Batch-norm statistics of its own for the hard-discretized network, while it is validated.

The discretized network reads the supernet's parameters, running statistics included. Those are the
supernet's: the alpha step (and, outside hard discretization, the weight step) updates them in training
mode with the supernet's activations, which are not the discrete network's (a cell mixing eight ops at
about 1/8 each does not output what its kept ops do, and every BN after it sees the difference).
Validated in eval mode on them, the discretized network is not the network its error names. So its
statistics are recomputed before it is validated, in training mode over batches of the weights' half
of the training set (PyTorch's cumulative average, momentum=None, "precise BN"), and the supernet's are
put back afterwards: the search never sees the recalibrated values, and a resumed run stays exact.
"""
import contextlib

import nnabla as nn
import numpy as np

from models.search_network import all_weight_state, weight_parameters
from utils.data.pipeline import eval_batches
from utils.optim.array_graphs import ArrayGraph, copy_graph

# The decay of the running statistics: PF.batch_normalization's default, which ops.operations.batch_norm
# keeps for its cpu kernels too. A training-mode forward moves a statistic s to DECAY * s + (1 - DECAY) * b.
BN_DECAY = 0.9


def running_statistics():
    """{name: Variable}: the supernet's batch-norm running means and variances (its state no solver trains)."""
    trained = weight_parameters()
    return {name: v for name, v in all_weight_state().items() if name not in trained}


def calibration_batches(images_u8, batch_size, mean, std):
    """The full batches of `images_u8` in order, normalised as the validation normalises them (no
    augmentation, no random draw); a partial last batch is left out, so that no padding enters the
    statistics. (A search refuses a split smaller than one batch.)"""
    count = len(images_u8) // batch_size * batch_size
    for x, _, _ in eval_batches(images_u8[:count], np.zeros(count), batch_size, mean, std):
        yield x


class Recalibration:
    """Gives a training-mode graph's eval-mode twin the graph's own statistics for a while.

    statistics: {name: Variable} of every running statistic the graphs may read (running_statistics()).
    The whole-network moves are graphs built once over the arrays (utils.optim.array_graphs): a save, a
    restore and a scaling, each one nnabla call. The mean over K batches of the batch statistics b_k
    comes from the forward's own update: from s = 0, scaling s by 1 / DECAY before each further batch
    leaves s = (1 - DECAY) * k * mean(b_1..b_k) after batch k, so a last scaling by 1 / ((1 - DECAY) K)
    leaves the mean. The statistics the graph does not read stay 0 until they are restored.
    """

    def __init__(self, statistics):
        arrays = [v.data for v in statistics.values()]
        saved = [nn.NdArray(a.shape) for a in arrays]
        self._save = copy_graph(arrays, saved)
        self._restore = copy_graph(saved, arrays)
        self._scale = ArrayGraph(lambda s, factor: s * factor, [arrays], [arrays], scalars=("factor",))

    @contextlib.contextmanager
    def recalibrated(self, train_graph, batches):
        """Within: the statistics train_graph reads are their means over `batches` (input arrays of its
        batch shape, at least one); afterwards, every statistic is exactly as it was."""
        self._save.run()
        try:
            self._scale.run(factor=0.0)
            count = 0
            for x in batches:
                if count:
                    self._scale.run(factor=1.0 / BN_DECAY)
                train_graph.x.d = x
                train_graph.logits.forward(clear_buffer=True)
                count += 1
            if not count:
                raise ValueError("batch-norm recalibration needs at least one batch")
            self._scale.run(factor=1.0 / ((1.0 - BN_DECAY) * count))
            yield
        finally:
            self._restore.run()

"""β-DARTS (Ye et al., CVPR 2022): the beta-decay regulariser on the alphas, its weight ramped up every epoch.

What it changes of plain DARTS, pass by pass:
- the alpha step's loss adds λ · L_β, where L_β is the mean over the edges of both cells of the logsumexp
  over the ops of the raw alphas (Sunshine-Ye/Beta-DARTS optimizers/darts/architect.py, `mlc_loss`:
  mean(logsumexp(alpha, dim=-1))), and λ = max · epoch / N for the 0-based epoch, fed at the start of every
  epoch (`_backward_step`: `0 + 50*epoch/100`: max 50 and N 100 whatever the run's number of epochs);
- the original adds it to its first-order alpha step only (its unrolled step drops it); here the second-order
  step's loss has it too, so that --second-order is β-DARTS rather than plain second-order DARTS;
- the original hands `mlc_loss` the list of the two alpha arrays, on which torch.logsumexp raises (its
  NAS-Bench-201 model keeps one tensor under the same name, which is where it ran): L_β here is the mean
  over all 28 edges, what it computes on the two arrays stacked (the mean of the two cells' means);
- the original's DARTS space (sota/cnn/spaces.py 's5', SDARTS's) has no 'none': every edge mixes the softmax
  of its 7 other alphas, L_β's logsumexp runs over those 7, and the cell is derived (and discretized) from
  them, the 'none' column, which nothing trains, left out (--beta-decay-none-op searches all 8 as DARTS);
- its series: λ and L_β (unweighted) after each epoch.
The weight step and the derivation rule are plain DARTS's.
"""
import dataclasses

import nnabla as nn
import nnabla.functions as F
import numpy as np

from models.search_network import ALPHA_NAMES, BUILT_OPS, softmax_weights
from utils.run.command_line import AT_LEAST_ONE, NOT_NEGATIVE
from utils.search.variant import (DartsSettings, SearchVariant, kept_ops_of, register_variant, setting,
                                  zero_op_left_out)

# The columns of the ops the original searches: all but the zero op, the last (see beta_decay_none_op).
SEARCHED = len(BUILT_OPS)


@dataclasses.dataclass(frozen=True)
class BetaDartsSettings(DartsSettings):
    beta_decay_max: float = setting(50.0, "the beta-decay weight's maximum: lambda = max * epoch / "
                                          "--beta-decay-epochs (0-based epoch), the original's 50",
                                    within=NOT_NEGATIVE)
    beta_decay_epochs: int = setting(100, "N of lambda = max * epoch / N: the original's 100, fixed whatever "
                                          "--epoch (give --epoch's value to ramp over this run)",
                                     metavar="N", within=AT_LEAST_ONE, of_search_epochs=50)
    beta_decay_none_op: bool = setting(False, "search the zero op 'none' too, as DARTS (the original's DARTS space "
                                              "has no 'none': every edge mixes its other 7 ops)")

    def weight(self, epoch):
        """λ of `epoch` (0-based): the original's 0 + max * epoch / N."""
        return self.beta_decay_max * epoch / self.beta_decay_epochs


def beta_decay_loss(alphas):
    """L_β: the mean over the edges of every (edges, ops) array of logsumexp over its ops, a scalar Variable.

    logsumexp(a) = a_k - log_softmax(a)_k for every op k; the mean over k of that is stable and differentiable
    (nnabla has no logsumexp function).
    """
    stacked = F.concatenate(*alphas, axis=0)
    return F.mean(stacked - F.log_softmax(stacked, axis=1))


def searched_alphas(alphas, none_op):
    """The alpha Variables the mixing and L_β read: each whole, or without its zero op's column."""
    return alphas if none_op else {name: alpha[:, :SEARCHED] for name, alpha in alphas.items()}


def beta_decay_value(values):
    """L_β of numpy (edges, ops) arrays."""
    stacked = np.concatenate(values, axis=0)
    top = stacked.max(axis=1, keepdims=True)
    return float(np.mean(top[:, 0] + np.log(np.exp(stacked - top).sum(axis=1))))


@register_variant
class BetaDarts(SearchVariant):
    """λ is fed at the start of every epoch; the penalty is a term of the alpha step's graph."""
    name = "beta-darts"
    title = "β-DARTS (--variant beta-darts)"
    Settings = BetaDartsSettings
    series = ("Beta-decay weight", "Beta-decay loss")

    def __init__(self, settings, setup):
        super().__init__(settings, setup)
        self.weight = nn.Variable((), need_grad=False)
        self.weight.d = settings.weight(0)

    def mixing(self, purpose):
        """Softmax over every edge's searched ops; without 'none', its weight is a 0 column appended."""
        weights = softmax_weights(searched_alphas(self.alphas, self.settings.beta_decay_none_op))
        if self.settings.beta_decay_none_op:
            return weights
        return {name: F.pad(w, (0, self.alphas[name].shape[1] - SEARCHED)) for name, w in weights.items()}

    def alpha_penalty(self):
        alphas = searched_alphas(self.alphas, self.settings.beta_decay_none_op)
        return self.weight * beta_decay_loss([alphas[name] for name in ALPHA_NAMES])

    def start_epoch(self, epoch, epochs):
        self.weight.d = self.settings.weight(epoch)

    def epoch_values(self):
        searched = slice(None) if self.settings.beta_decay_none_op else slice(SEARCHED)
        return {"Beta-decay weight": float(self.weight.d),
                "Beta-decay loss": beta_decay_value([self.alphas[name].d[:, searched] for name in ALPHA_NAMES])}

    def discretized_ops(self):
        values = self.alpha_values()
        return kept_ops_of(values if self.settings.beta_decay_none_op else zero_op_left_out(values))

    @staticmethod
    def derive(settings, values):
        return SearchVariant.derive(settings, values if settings.beta_decay_none_op else zero_op_left_out(values))

"""DARTS− (Chu et al., ICLR 2021): an auxiliary skip connection on every edge, its weight β decaying to 0.

What it changes of plain DARTS, pass by pass:
- every mixed edge of every pass (weight step, alpha step, virtual and Hessian passes, validation) adds
  β · skip(x) to the softmax mixture of its ops, outside the softmax: the mixture's own skip_connect stays.
  At stride 1 the auxiliary skip is the identity, at stride 2 (a reduction cell's edges from its inputs) a
  FactorizedReduce of its own weights, trained by the weight step (Meituan-AutoML/DARTS- src/search/
  model_search.py, MixedOp: `res += self.auxiliary_op(x) * beta_decay_scheduler.decay_rate`);
- β is fed at the start of every epoch, linear in the 0-based epoch (src/utils.py DecayScheduler, 'linear',
  with the run script's --skip_beta 1 and the defaults T_start 0, T_stop = T_max 50, fixed whatever --epochs):
  β = skip_beta for epoch < T_start, skip_beta · (T_max − epoch) / (T_max − T_start) up to T_max, then 0.
  In a 50-epoch search β goes 1, 0.98, ..., 0.02: it reaches 0 only at epoch T_max, after the search;
- its series: β of each epoch.
The derivation is plain DARTS's (the original's genotype() reads the alphas alone, the auxiliary skip has none);
so is the discretized network, which has no auxiliary skip. The original's search flags that are not
quark0's (--auxiliary_skip --decay linear) are this variant itself: its recipe is empty.
"""
import dataclasses

import nnabla as nn

from models.search_network import mixed_op
from ops.operations import identity
from utils.run.command_line import AT_LEAST_ONE, NOT_NEGATIVE
from utils.search.variant import DartsSettings, SearchVariant, register_variant, setting


@dataclasses.dataclass(frozen=True)
class DartsMinusSettings(DartsSettings):
    skip_beta: float = setting(1.0, "the auxiliary skip's weight beta before its decay (the original's --skip_beta)",
                               within=NOT_NEGATIVE)
    skip_decay_start: int = setting(0, "the epoch (0-based) beta starts to decay from --skip-beta "
                                       "(the original's --decay_start_epoch)", metavar="EPOCH",
                                    within=NOT_NEGATIVE)
    skip_decay_epochs: int = setting(50, "beta reaches 0 at this epoch (0-based): the original's --decay_max_epoch "
                                         "50, fixed whatever --epoch (give --epoch's value to decay over this run)",
                                     metavar="EPOCH", within=AT_LEAST_ONE, of_search_epochs=50)

    def problems(self, args):
        problems = super().problems(args)
        if self.skip_decay_start >= self.skip_decay_epochs:
            problems.append(f"--skip-decay-start {self.skip_decay_start} must be below --skip-decay-epochs "
                            f"{self.skip_decay_epochs}: beta decays between the two")
        return problems

    def beta(self, epoch):
        """β of `epoch` (0-based): DecayScheduler 'linear' with T_stop = T_max, where β is 0 and stays."""
        start, end = self.skip_decay_start, self.skip_decay_epochs
        if epoch < start:
            return self.skip_beta
        return self.skip_beta * (end - min(epoch, end)) / (end - start)


def auxiliary_skip(x, channels, stride, mode):
    """The identity, or at stride 2 a FactorizedReduce with weights of its own (not the mixture's skip_connect's)."""
    with nn.parameter_scope("auxiliary_skip"):
        return identity(x, channels, stride, mode)


@register_variant
class DartsMinus(SearchVariant):
    """β is an nnabla Variable fed at the start of every epoch, read by every edge of every graph."""
    name = "darts-minus"
    title = "DARTS− (--variant darts-minus)"
    Settings = DartsMinusSettings
    series = ("Auxiliary skip beta",)

    def __init__(self, settings, setup):
        super().__init__(settings, setup)
        self.beta = nn.Variable((1, 1, 1, 1), need_grad=False)  # broadcast over an edge's (B, C, H, W) output
        self.beta.d = settings.beta(0)

    def edge(self, x, edge_weights, channels, stride, mode):
        return mixed_op(x, edge_weights, channels, stride, mode) + self.beta * auxiliary_skip(x, channels, stride, mode)

    def start_epoch(self, epoch, epochs):
        self.beta.d = self.settings.beta(epoch)

    def epoch_values(self):
        return {"Auxiliary skip beta": float(self.beta.d.flat[0])}

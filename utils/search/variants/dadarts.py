"""DADARTS (S-H): per-pass top-k mixing weights, hard discretization of the weight step, DAL on the alpha step.

What it changes of plain DARTS, pass by pass:
- mixing: a pass for which top-k is asked mixes with ops.topk.topk_transform_cell of the softmax, at a
  temperature fed every epoch (its own virtual-step graph when the virtual step's top-k differs from the
  weight step's);
- the weight step and the validation run only the kept ops (hard discretization: each node's top-2
  edges at their argmax op, 'none' included) from --hd-start on, unless top-k is on the weights, which
  wins as in the seed;
- the alpha step's loss adds dal_factor * sum over cells of DAL(softmax(alpha)), measured against the
  hard discretization fed before every alpha step;
- its series: the temperature and DAL; with any top-k, the transformed weights are recorded too.
"""
import dataclasses

import nnabla as nn

from models.discretization import dal_loss_sum, dal_value, hard_discretization, softmax_rows
from models.search_network import ALPHA_NAMES, softmax_weights
from ops.topk import TopKError, check_topk_settings, topk_transform_cell
from utils.run.command_line import NOT_NEGATIVE
from utils.run_files import TOPK_HISTORY
from utils.search.variant import DartsSettings, SearchVariant, register_variant, setting


@dataclasses.dataclass(frozen=True)
class DadartsSettings(DartsSettings):
    hd_on_weights: bool = setting(False, "weight steps and validation run only the kept ops (hard discretization)")
    hd_start: int = setting(0, "hard discretization from epoch N (0-based)", metavar="N", within=NOT_NEGATIVE)
    topk_on_alphas: bool = setting(False, "the alpha step mixes with top-k transformed weights")
    topk_on_weights: bool = setting(False, "the weight step mixes with top-k transformed weights")
    topk_on_virtualstep: bool = setting(False, "the second-order virtual step mixes with top-k transformed weights")
    topk_k_edge: int = setting(1, "top-k over the ops of each edge (0: none)", within=NOT_NEGATIVE)
    topk_k_node: int = setting(2, "top-k over the (edge, op) pairs of each node (0: none)", within=NOT_NEGATIVE)
    topk_option: int = setting(1, "1: w * p_edge * p_node; 2: w * topk(p_edge)", choices=(1, 2))
    just_topk: bool = setting(False, "mix with the top-k mask alone, without the weights")
    topk_grad: str = setting("exact", "seed: the DADARTS gradient, which lacks the factor T (for comparison only)",
                             choices=("exact", "seed"))
    topk_temperature: float = setting(1.0, "the top-k temperature T", within=NOT_NEGATIVE)
    linear_temperature_increase: bool = setting(
        False, "T = --linear-temperature-max * epoch / epochs (0 in the first epoch)")
    linear_temperature_max: float = setting(200.0, "the last epoch's T with --linear-temperature-increase",
                                            within=NOT_NEGATIVE)
    dal_on_alphas: bool = setting(False, "add the discretization additional loss to the alpha step")
    dal_factor: float = setting(1.0, "the DAL's weight in the alpha loss", within=NOT_NEGATIVE)
    dal_starting_epoch: int = setting(0, "the first epoch (0-based) with DAL", within=NOT_NEGATIVE)
    linear_dal_factor_increase: bool = setting(False, "DAL factor = --dal-factor-max * epoch / epochs")
    dal_factor_max: float = setting(1.0, "the last epoch's DAL factor with --linear-dal-factor-increase",
                                    within=NOT_NEGATIVE)
    dal_cells: str = setting("both", "normal: regularise the normal cell only, as the DADARTS code does",
                             choices=("both", "normal"))

    def problems(self, args):
        last_epoch = f"--epoch {args.epoch} runs epochs 0 to {args.epoch - 1} (0-based)"
        preset = " (--dadarts sets it: add --hd-on-weights false)" if getattr(args, "dadarts", False) else ""
        checks = [
            (self.hd_on_weights or self.hd_start == 0, "--hd-start needs --hd-on-weights"),
            (not self.hd_on_weights or self.hd_start < args.epoch,
             f"--hd-start {self.hd_start} would never take effect: {last_epoch}"),
            (not (self.hd_on_weights and self.topk_on_weights),
             f"--hd-on-weights would never take effect: --topk-on-weights wins over it, as in DADARTS{preset}"),
            (not self.dal_on_alphas or self.dal_starting_epoch < args.epoch,
             f"--dal-starting-epoch {self.dal_starting_epoch} would never take effect: {last_epoch}"),
            (args.second_order or not self.topk_on_virtualstep,
             "--topk-on-virtualstep needs --second-order: first order has no virtual step"),
        ]
        problems = super().problems(args) + [message for ok, message in checks if not ok]
        if self.uses_topk:
            try:
                check_topk_settings(self.topk_k_edge, self.topk_k_node, self.topk_option, self.topk_grad)
            except TopKError as err:
                problems.append(str(err))
        return problems + self.unused_settings(args)

    def unused_settings(self, args):
        """Messages of settings that were changed but are never read under the others."""
        unused = []
        if not self.uses_topk:
            # The temperature is the top-k's only; --dadarts switches the linear increase on itself.
            switch = () if getattr(args, "dadarts", False) else ("linear_temperature_increase",)
            unused += self.unused(("topk_k_edge", "topk_k_node", "topk_option", "just_topk", "topk_grad",
                                   "topk_temperature", "linear_temperature_max") + switch,
                                  "no top-k is on (--topk-on-alphas, --topk-on-weights, --topk-on-virtualstep)")
        elif self.linear_temperature_increase:
            unused += self.unused(("topk_temperature",), "--linear-temperature-increase sets the temperature")
        else:
            unused += self.unused(("linear_temperature_max",), "it needs --linear-temperature-increase")
        if not self.dal_on_alphas:
            unused += self.unused(("dal_factor", "dal_starting_epoch", "linear_dal_factor_increase", "dal_factor_max",
                                   "dal_cells"), "it needs --dal-on-alphas")
        elif self.linear_dal_factor_increase:
            unused += self.unused(("dal_factor",), "--linear-dal-factor-increase sets the DAL factor")
        else:
            unused += self.unused(("dal_factor_max",), "it needs --linear-dal-factor-increase")
        return unused

    def topk_on(self, purpose):
        return {"weights": self.topk_on_weights, "virtual": self.topk_on_virtualstep,
                "alphas": self.topk_on_alphas}[purpose]

    @property
    def uses_topk(self):
        return self.topk_on_weights or self.topk_on_alphas or self.topk_on_virtualstep

    def temperature(self, epoch, epochs):
        """T of `epoch` (0-based): max * epoch / epochs with the linear increase (so T = 0 in epoch 0,
        where every top-k mask is 0.5, Q-D2), else the fixed temperature."""
        if self.linear_temperature_increase:
            return self.linear_temperature_max * epoch / epochs
        return self.topk_temperature

    def dal_weight(self, epoch, epochs):
        """The DAL factor of `epoch`: 0 before --dal-starting-epoch, max * epoch / epochs with the linear increase."""
        if not self.dal_on_alphas or epoch < self.dal_starting_epoch:
            return 0.0
        if self.linear_dal_factor_increase:
            return self.dal_factor_max * epoch / epochs
        return self.dal_factor

    def hard_discretized_weights(self, epoch):
        """Whether the weight step and the validation run the discrete network in `epoch`.

        A top-k on the weights wins over the hard discretization, as in the seed.
        """
        return self.hd_on_weights and not self.topk_on_weights and epoch >= self.hd_start


# What --dadarts sets, unless the flag is given: the DADARTS README's command (S-H H6), and second order,
# which the DADARTS code always runs (its controller calls the unrolled alpha gradient at every step).
DADARTS_PRESET = {"dal_on_alphas": True, "topk_on_alphas": True, "linear_temperature_increase": True,
                  "hd_on_weights": True, "second_order": True}


@register_variant
class Dadarts(SearchVariant):
    """The temperature and the DAL factor are fed every epoch, the DAL targets before every alpha step."""
    name = "dadarts"
    title = "DADARTS (--variant dadarts)"
    Settings = DadartsSettings
    series = ("Temperature", "DAL")

    def __init__(self, settings, setup):
        super().__init__(settings, setup)
        self.temperature = nn.Variable((), need_grad=False)
        self.dal_factor = nn.Variable((), need_grad=False)
        self.temperature.d, self.dal_factor.d = settings.temperature(0, 1), 0.0
        self._dal_targets = {name: nn.Variable(self.alphas[name].shape, need_grad=False) for name in ALPHA_NAMES}
        self._dal_cells = ALPHA_NAMES if settings.dal_cells == "both" else ALPHA_NAMES[:1]
        self.hard = False

    def _topk(self, weights):
        s = self.settings
        return {name: topk_transform_cell(w, s.topk_k_edge, s.topk_k_node, self.temperature, s.topk_option,
                                          s.just_topk, s.topk_grad)
                for name, w in weights.items()}

    def mixing(self, purpose):
        weights = super().mixing(purpose)
        return self._topk(weights) if self.settings.topk_on(purpose) else weights

    @property
    def separate_virtual(self):
        return self.settings.topk_on_virtualstep != self.settings.topk_on_weights

    def alpha_penalty(self):
        if not self.settings.dal_on_alphas:
            return None
        weights = softmax_weights(self.alphas)
        return self.dal_factor * dal_loss_sum([(weights[name], self._dal_targets[name]) for name in self._dal_cells])

    def dal_value(self):
        """DAL of the current alphas (unweighted), as the alpha step sees it."""
        return dal_value([softmax_rows(self.alphas[name].d) for name in self._dal_cells])

    def start_epoch(self, epoch, epochs):
        self.temperature.d = self.settings.temperature(epoch, epochs)
        self.dal_factor.d = self.settings.dal_weight(epoch, epochs)
        self.hard = self.settings.hard_discretized_weights(epoch)

    def before_alpha_step(self):
        if self.settings.dal_on_alphas:
            for name in self._dal_cells:
                self._dal_targets[name].d = hard_discretization(softmax_rows(self.alphas[name].d))

    def weight_step_graph(self, supernet_graph):
        return self.discretized_graph(test=False) if self.hard else supernet_graph

    def validation_graph(self):
        return self.discretized_graph(test=True) if self.hard else super().validation_graph()

    def epoch_values(self):
        return {"Temperature": float(self.temperature.d), "DAL": self.dal_value()}

    def transformed_weights(self):
        """{name: (14, 8) numpy}: the top-k transformed weights of the current alphas."""
        values = {}
        for name, out in self._topk(softmax_weights(self.alphas)).items():
            out.forward(clear_buffer=True)
            values[name] = out.d.copy()
        return values

    def histories(self):
        if not self.settings.uses_topk:
            return super().histories()
        return {**super().histories(), TOPK_HISTORY: self.transformed_weights}

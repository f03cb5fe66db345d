"""DADARTS in the search: which mixing weights each pass uses, hard discretization, DAL and their schedules.

One concept carries it: the architecture-weight transform of a pass, what turns the alphas into the
mixing weights that pass runs with (S-H):
- softmax, plain DARTS's;
- top-k: ops.topk.topk_transform_cell of the softmax, at a temperature fed every epoch;
- hard discretization: the weight step and the validation run only the kept ops (each node's top-2
  edges at their argmax op, 'none' included, models.discretization), on a discrete graph that reads
  the supernet's parameters and is rebuilt only when the kept ops change.
Top-k wins over hard discretization where both are asked for a pass, as in the seed.

DAL, dal_factor * sum over cells of DAL(softmax(alpha)), is added to the alpha step's loss; the hard
discretization it measures against is fed before every alpha step.
"""
from dataclasses import dataclass

import nnabla as nn

from models.discretization import dal_loss_sum, dal_value, hard_discretization, kept_edges, softmax_rows
from models.genotype import EDGES
from models.graph import build_graph
from models.network import dense_classifier
from models.search_network import ALPHA_NAMES, discrete_search_network, search_network, softmax_weights
from ops.topk import topk_transform_cell

PURPOSES = ("weights", "virtual", "alphas")


@dataclass(frozen=True)
class DadartsSettings:
    """The DADARTS flags of a search (args.py); all off is plain DARTS."""
    topk_on_weights: bool = False
    topk_on_alphas: bool = False
    topk_on_virtualstep: bool = False
    topk_k_edge: int = 1
    topk_k_node: int = 2
    topk_option: int = 1
    just_topk: bool = False
    topk_grad: str = "exact"
    topk_temperature: float = 1.0
    linear_temperature_increase: bool = False
    linear_temperature_max: float = 200.0
    hd_on_weights: bool = False
    hd_start: int = 0
    dal_on_alphas: bool = False
    dal_factor: float = 1.0
    dal_starting_epoch: int = 0
    linear_dal_factor_increase: bool = False
    dal_factor_max: float = 1.0
    dal_cells: str = "both"

    @classmethod
    def from_args(cls, args):
        return cls(**{name: getattr(args, name) for name in cls.__dataclass_fields__})

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


def kept_ops(alphas):
    """{name: {edge: op_id}} of the hard discretization of the alphas' softmax (an edge may keep 'none')."""
    return kept_ops_of({name: alphas[name].d for name in ALPHA_NAMES})


def kept_ops_of(values):
    """kept_ops of numpy alphas ({name: (14, 8) array})."""
    kept = {}
    for name in ALPHA_NAMES:
        cell = kept_edges(softmax_rows(values[name]))
        kept[name] = {EDGES.index((input_node, node)): op_id
                      for node, edges in cell.items() for op_id, input_node in edges}
    return kept


class DiscreteGraph:
    """The static discrete graph of the current hard discretization, rebuilt only when it changes."""

    def __init__(self, input_shape, num_classes, channels, num_cells, test, classifier=dense_classifier,
                 cpu_kernels=False):
        self._build_args = (num_classes, channels, num_cells)
        self._classifier = classifier
        self._cpu_kernels = cpu_kernels
        self._input_shape = input_shape
        self._test = test
        self._kept = None
        self._graph = None
        self.builds = 0

    def graph(self, kept):
        if kept != self._kept:
            def logits(x):
                return discrete_search_network(x, kept, *self._build_args, test=self._test,
                                               classifier=self._classifier, cpu_kernels=self._cpu_kernels)
            self._graph = build_graph(logits, self._input_shape)
            self._kept = kept
            self.builds += 1
        return self._graph


class ArchitectureWeights:
    """The mixing weights of every pass of a search, and what the steps feed between them.

    Variables fed from outside: the top-k temperature and the DAL factor (per epoch), the hard
    discretizations DAL compares with (before every alpha step). Also owns the validation graphs:
    the supernet in eval mode, and the discrete networks of the current hard discretization.
    cpu_kernels: how those graphs are built (ops.operations.OpMode).
    """

    def __init__(self, settings, alphas, input_shape, num_classes, channels, num_cells, cpu_kernels=False):
        self._sizes = (num_classes, channels, num_cells)
        self._cpu_kernels = cpu_kernels
        self._input_shape = input_shape
        self._supernet_test = None
        self.settings = settings
        self.alphas = alphas
        self.temperature = nn.Variable((), need_grad=False)
        self.dal_factor = nn.Variable((), need_grad=False)
        self.temperature.d, self.dal_factor.d = settings.temperature(0, 1), 0.0
        self._dal_targets = {name: nn.Variable(alphas[name].shape, need_grad=False) for name in ALPHA_NAMES}
        self._dal_cells = ALPHA_NAMES if settings.dal_cells == "both" else ALPHA_NAMES[:1]
        self.discrete_train = DiscreteGraph(input_shape, num_classes, channels, num_cells, test=False,
                                            cpu_kernels=cpu_kernels)
        self.discrete_test = DiscreteGraph(input_shape, num_classes, channels, num_cells, test=True,
                                           cpu_kernels=cpu_kernels)
        self.hard = False

    def mixing(self, purpose):
        """{name: (14, 8) Variable}: the mixing weights a graph built for `purpose` (PURPOSES) uses."""
        weights = softmax_weights(self.alphas)
        if not self.settings.topk_on(purpose):
            return weights
        s = self.settings
        return {name: topk_transform_cell(w, s.topk_k_edge, s.topk_k_node, self.temperature, s.topk_option,
                                          s.just_topk, s.topk_grad)
                for name, w in weights.items()}

    def transformed_weights(self):
        """The top-k transformed weights of the current alphas (for pictures), or None without top-k."""
        if not self.settings.uses_topk:
            return None
        s = self.settings
        values = {}
        for name, w in softmax_weights(self.alphas).items():
            out = topk_transform_cell(w, s.topk_k_edge, s.topk_k_node, self.temperature, s.topk_option,
                                      s.just_topk, s.topk_grad)
            out.forward(clear_buffer=True)
            values[name] = out.d.copy()
        return values

    def alpha_penalty(self):
        """The DAL term of the alpha step's loss (None without --dal-on-alphas)."""
        if not self.settings.dal_on_alphas:
            return None
        weights = softmax_weights(self.alphas)
        pairs = [(weights[name], self._dal_targets[name]) for name in self._dal_cells]
        return self.dal_factor * dal_loss_sum(pairs)

    def dal_value(self):
        """DAL of the current alphas (unweighted), as the alpha step sees it."""
        return dal_value([softmax_rows(self.alphas[name].d) for name in self._dal_cells])

    def start_epoch(self, epoch, epochs):
        self.temperature.d = self.settings.temperature(epoch, epochs)
        self.dal_factor.d = self.settings.dal_weight(epoch, epochs)
        self.hard = self.settings.hard_discretized_weights(epoch)

    # The BilevelOptimizer's steps interface (utils.search.bilevel.PlainSteps).
    def before_alpha_step(self):
        if self.settings.dal_on_alphas:
            for name in self._dal_cells:
                self._dal_targets[name].d = hard_discretization(softmax_rows(self.alphas[name].d))

    def weight_step_graph(self, supernet_graph):
        if not self.hard:
            return supernet_graph
        return self.discretized_graph(test=False)

    def discretized_graph(self, test):
        """The discrete network of the current alphas' hard discretization, in training or eval mode."""
        return (self.discrete_test if test else self.discrete_train).graph(kept_ops(self.alphas))

    def validation_graph(self):
        """What the epoch's validation runs: the network the weights train, in eval mode."""
        if self.hard:
            return self.discretized_graph(test=True)
        if self._supernet_test is None:
            def logits(x):
                return search_network(x, self.mixing("weights"), *self._sizes, test=True,
                                      cpu_kernels=self._cpu_kernels)
            self._supernet_test = build_graph(logits, self._input_shape)
        return self._supernet_test


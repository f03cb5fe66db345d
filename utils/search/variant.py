"""A search variant: everything in which the members of the DARTS family differ, behind one interface.

SearchVariant is plain DARTS (Liu et al., 2019). A variant subclasses it, overrides only the hooks it
changes, declares its settings once (a Settings dataclass of `setting` fields, which gives the flags,
the YAML keys, the defaults and the checks) and registers itself with @register_variant. The search
loop (darts_search.py) calls the hooks and knows no variant. The hooks, by pass:

- the mixing weights: `mixing(purpose)` for the graphs of the weight step ("weights"), the
  second-order virtual step ("virtual", its own graph only when `separate_virtual`) and the alpha step
  with its Hessian passes ("alphas"); `edge` builds one mixed edge from its row of weights;
- the alpha step: `trains_alphas` says whether a step has one (set per epoch); `alpha_penalty()` is added
  to its loss; `before_alpha_step()` feeds what its graphs read, before every alpha step;
- the weight step: `weight_step_graph(supernet_graph)` is the graph it trains; `before_weight_step(batch)`
  runs once that graph is fed with the training batch;
- the recipe: `recipe`, the original's defaults of the run's shared flags (--batch-size, --lr, ...);
- the architecture parameters: `create_alphas` (more arrays than the two (14, 8) alphas are recorded,
  checkpointed and handed to `derive` as well);
- per epoch: `start_epoch` sets schedules; `validation_graph()` and `discretized_graph(test)` are what
  is validated (`validation_scores` scores both, the discretized network on batch-norm statistics of
  its own); `epoch_values()` fills the variant's `series`; `histories()` names the alpha arrays
  recorded after every epoch;
- the result: `derive(values)` turns the alphas into a cell.
"""
import dataclasses

import nnabla.functions as F
import numpy as np

from models.derivation import DERIVATIONS, derive_by_rule
from models.discretization import kept_edges, softmax_rows
from models.genotype import EDGES
from models.graph import build_graph
from models.network import dense_classifier
from models.search_network import (ALPHA_NAMES, create_alphas, discrete_search_network, mixed_op, search_network,
                                   softmax_weights)
from ops.operations import ZERO_OP
from utils.run.communicator import ONE_PROCESS
from utils.run_files import ALPHA_HISTORY
from utils.search.bilevel import PlainSteps
from utils.search.recalibration import Recalibration, running_statistics


def setting(default, help, choices=None, metavar=None, within=None, of_search_epochs=None):
    """A field of a variant's Settings: the flag --<name-with-dashes> and the YAML key <name>. A number
    without choices gives its range `within` (a utils.run.command_line.Range), which problems() checks.
    of_search_epochs: N when the setting counts epochs of its original's N-epoch search (a warm-up, the end
    of a decay), which a search of another length may scale (darts_compare.py does)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "metavar": metavar,
                                                        "within": within, "of_search_epochs": of_search_epochs})


def epoch_counted_settings(Settings):
    """{name: N} of Settings' fields that count epochs of an N-epoch search (setting's of_search_epochs)."""
    return {f.name: f.metadata["of_search_epochs"] for f in dataclasses.fields(Settings)
            if f.metadata.get("of_search_epochs")}


class VariantSettings:
    """The base of a variant's Settings, a frozen dataclass of `setting` fields."""

    @classmethod
    def from_args(cls, args):
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})

    def problems(self, args):
        """Messages of settings out of their range, that cannot work together, or that would never take effect
        (args: the whole run's settings). A variant adds its own to these."""
        return [problem for f in dataclasses.fields(self) if f.metadata.get("within") is not None
                if (problem := f.metadata["within"].problem(_flag(f.name), getattr(self, f.name)))]

    def changed(self, name):
        """Whether setting `name` differs from its default: a setting someone chose (on the command line or
        in --config; a preset sets only switches), which must then take effect."""
        field = next(f for f in dataclasses.fields(self) if f.name == name)
        return getattr(self, name) != field.default

    def unused(self, names, because):
        """The message for those of `names` that were changed but are never read `because` ..., or []."""
        changed = [_flag(name) for name in names if self.changed(name)]
        return [f"{' and '.join(changed)} would never take effect: {because}"] if changed else []


def _flag(name):
    return "--" + name.replace("_", "-")


@dataclasses.dataclass(frozen=True)
class DartsSettings(VariantSettings):
    """Plain DARTS's settings; a variant's Settings may extend them (its flags are then only its new fields)."""
    derivation: str = setting("top-k", "how cells are derived from the alphas (top-k is DARTS's; simple, every "
                                       "edge at its argmax op with 'none', is var_nas's for its DARTS baseline)",
                              DERIVATIONS)


@dataclasses.dataclass(frozen=True)
class SearchSetup:
    """What every variant is built with: the batch's input shape, the network's size, the run's seed and
    numpy generator (which creates the alphas), and how graphs are built (ops.operations.OpMode).
    all_reduce: a data-parallel run's (utils.run.communicator), nothing in one process; a variant that computes
    something from the training batch outside the solvers' steps (SDARTS-ADV's attack) averages it over the
    ranks with it, one call over a list of NdArrays, so that every rank, holding its shard, takes the same
    decision as one process on the whole batch."""
    input_shape: tuple
    num_classes: int
    channels: int
    num_cells: int
    seed: int
    rng: object
    cpu_kernels: bool = False
    all_reduce: object = ONE_PROCESS.all_reduce

    @property
    def sizes(self):
        return self.num_classes, self.channels, self.num_cells


def kept_ops_of(values):
    """{name: {edge: op_id}}: the hard discretization of each (14, 8) numpy alpha array's softmax (each
    node's two strongest edges at their strongest op, 'none' included)."""
    kept = {}
    for name in ALPHA_NAMES:
        cell = kept_edges(softmax_rows(values[name]))
        kept[name] = {EDGES.index((input_node, node)): op_id
                      for node, edges in cell.items() for op_id, input_node in edges}
    return kept


# How far below an edge's other alphas a left-out column is put: exp(-1000) is 0 in float64.
_LEFT_OUT = 1000.0


def zero_op_left_out(values):
    """{name: numpy array} with the zero op's column of each alpha array far below its other alphas: a
    softmax of it gives 'none' weight 0 and the other ops the softmax of their own alphas, and no argmax
    picks it. For the variants whose original searches without 'none' (FairDARTS, beta-DARTS's space):
    any derivation rule or hard discretization then chooses among the searched ops only."""
    left_out = dict(values)
    for name in ALPHA_NAMES:
        value = np.array(values[name], dtype=np.float64)
        value[:, ZERO_OP] = np.delete(value, ZERO_OP, axis=1).min() - _LEFT_OUT
        left_out[name] = value
    return left_out


def cell_ops(arch):
    """{name: {edge: op_id}} of an Architecture's two cells: the ops kept_ops_of's layout gives a derived cell."""
    return {name: {EDGES.index((input_node, node)): op_id for node, pairs in cell.items()
                   for op_id, input_node in pairs}
            for name, cell in zip(ALPHA_NAMES, (arch.normal, arch.reduction))}


class DiscreteGraph:
    """The static graph of a hard discretization, rebuilt only when the kept ops change."""

    def __init__(self, setup, test, classifier):
        self._setup = setup
        self._test = test
        self._classifier = classifier
        self._kept = None
        self._graph = None
        self.builds = 0

    def graph(self, kept):
        if kept != self._kept:
            def logits(x):
                return discrete_search_network(x, kept, *self._setup.sizes, test=self._test,
                                               classifier=self._classifier, cpu_kernels=self._setup.cpu_kernels)
            self._graph = build_graph(logits, self._setup.input_shape)
            self._kept = kept
            self.builds += 1
        return self._graph


class SearchVariant(PlainSteps):
    """Plain DARTS: softmax mixing in every pass, the supernet trained and validated, top-k derivation.

    Create it after nn.clear_parameters() and before the graphs: it creates the alphas from setup.rng.
    The hooks between the two steps (trains_alphas, before_alpha_step, weight_step_graph,
    before_weight_step) are utils.search.bilevel.PlainSteps'.
    """
    name = "darts"
    title = "DARTS"
    Settings = DartsSettings
    series = ()  # the series a variant adds to the search's (epoch_values() gives their values)
    recipe = {}  # {flag dest: value}: defaults of the run's shared flags under this variant (its original's)

    def __init__(self, settings, setup):
        self.settings = settings
        self.setup = setup
        self.alphas = self.create_alphas(setup.rng)
        self.classifier = dense_classifier
        self._supernet_test = None
        self._discrete = {}
        self._recalibration = None

    def create_alphas(self, rng):
        """{name: parameter} under the "arch" scope, which the alpha optimizer trains: the two (14, 8) alpha
        arrays (ALPHA_NAMES), and any array of the variant's own (PC-DARTS's edge betas)."""
        return create_alphas(rng)

    # The graphs of the steps.
    def mixing(self, purpose):
        """{name: (14, 8) Variable, or (B, 14, 8) one per sample}: the weights a `purpose` graph mixes with."""
        return softmax_weights(self.alphas)

    @property
    def separate_virtual(self):
        """Whether the virtual step mixes differently from the weight step, and so needs its own graph."""
        return False

    edge = staticmethod(mixed_op)  # edge(x, edge_weights, channels, stride, mode): one mixed edge

    def network(self, x, frozen, purpose, test=False):
        """The supernet's logits for `x`, mixing as `purpose` says. Only the alpha step's graphs carry the
        alphas' gradient: the weight step and the virtual step train the weights, and what their backward passes
        would leave in the alphas' gradients is zeroed before every alpha step, so it is not computed."""
        weights = self.mixing(purpose)
        if purpose != "alphas":
            weights = {name: without_gradient(w) for name, w in weights.items()}
        return self.supernet(x, weights, frozen=frozen, test=test)

    def supernet(self, x, weights, frozen=False, test=False):
        return search_network(x, weights, *self.setup.sizes, frozen=frozen, test=test, classifier=self.classifier,
                              cpu_kernels=self.setup.cpu_kernels, edge=self.edge)

    def alpha_penalty(self):
        """A scalar Variable added to the alpha step's loss (not to the Hessian passes), or None."""
        return None

    # Per epoch.
    def start_epoch(self, epoch, epochs):
        pass

    def validation_graph(self):
        """What the epoch's validation runs: the network the weights train, in eval mode."""
        if self._supernet_test is None:
            self._supernet_test = build_graph(lambda x: self.network(x, frozen=False, purpose="weights", test=True),
                                              self.setup.input_shape)
        return self._supernet_test

    def alpha_values(self):
        """{name: numpy array} of every architecture parameter: what is recorded, derived and discretized."""
        return {name: alpha.d.copy() for name, alpha in self.alphas.items()}

    def discretized_ops(self):
        """{name: {edge: op_id}} the discretized network keeps: the hard discretization of alpha_values()."""
        return kept_ops_of(self.alpha_values())

    def discretized_graph(self, test):
        """The network of discretized_ops(), in training or eval mode."""
        if test not in self._discrete:
            self._discrete[test] = DiscreteGraph(self.setup, test, self.classifier)
        return self._discrete[test].graph(self.discretized_ops())

    def discretized_scores(self, score, calibration):
        """score(graph) of the eval-mode discretized network, on batch-norm statistics of its own: their
        means over the calibration() batches in training mode (utils.search.recalibration). The supernet's
        statistics, which the alpha step moves with the supernet's activations, are put back afterwards."""
        train = self.discretized_graph(test=False)
        if self._recalibration is None:  # built on first use: after a resume has written the arrays it reads,
            self._recalibration = Recalibration(running_statistics())  # and after every statistic exists
        with self._recalibration.recalibrated(train, calibration()):
            return score(self.discretized_graph(test=True))

    def validation_scores(self, score, calibration):
        """(scores of validation_graph(), discretized_scores()). Where the network the weights train is the
        discretized one (DADARTS's hard discretization), it is scored once, on its own statistics."""
        discretized = self.discretized_scores(score, calibration)
        graph = self.validation_graph()
        return (discretized if graph is self.discretized_graph(test=True) else score(graph)), discretized

    def epoch_values(self):
        """{series name: value} of the variant's own series after an epoch."""
        return {}

    def histories(self):
        """{file name: function giving {name: array}}: the arrays recorded after every epoch."""
        return {ALPHA_HISTORY: self.alpha_values}

    def cell(self):
        """The cell of the current alphas."""
        return self.derive(self.settings, self.alpha_values())

    @staticmethod
    def derive(settings, values):
        """The cell of {name: numpy array} (alpha_values(), or a recorded epoch's) under `settings`."""
        return derive_by_rule(values["alpha_normal"], values["alpha_reduction"], settings.derivation)


def without_gradient(variable):
    """variable's values, recomputed by every forward pass, through which no backward pass goes."""
    copy = F.identity(variable)  # a variable of its own: the one given may also serve a graph that needs its gradient
    copy.need_grad = False
    return copy


def declared_settings(Variant):
    """The fields of Variant.Settings that the variant declares itself, not those of the variant it extends:
    its own flags."""
    inherited = {f.name for base in Variant.__mro__[1:] if hasattr(base, "Settings")
                 for f in dataclasses.fields(base.Settings)}
    return [f for f in dataclasses.fields(Variant.Settings) if f.name not in inherited]


VARIANTS = {}


def register_variant(cls):
    """Class decorator: makes a SearchVariant subclass choosable as --variant <cls.name>."""
    if cls.name in VARIANTS:
        raise ValueError(f"a search variant named {cls.name!r} is registered twice")
    VARIANTS[cls.name] = cls
    return cls


register_variant(SearchVariant)

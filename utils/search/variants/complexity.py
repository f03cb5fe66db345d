"""Complexity-controlled DARTS (var_nas, S-I) in the search: a sibling of utils.search.variants.dadarts.ArchitectureWeights.

It plugs into the same machinery: darts_search.py builds every graph through network(x, frozen,
purpose) with `mixing(purpose)` and `classifier`, build_search_graphs adds `alpha_penalty()` to the
alpha loss, and BilevelOptimizer calls `before_alpha_step()` and `weight_step_graph()` every step.

- The alphas are a Hypernetwork's, functions of the normalised budget λ̃; the classifier is a
  piecewise-linear function of λ̃ too (models.hypernetwork).
- Before every alpha step one λ = 10^U(a, b) is drawn and the Gumbel noise resampled, both from
  (seed, epoch, step) only, so a resumed run draws the same; the weight step that follows uses the
  same λ. Every step draws its own λ (no sample of a step shares another step's λ, Q-V1).
- Training passes (weight, virtual and alpha step) mix with a Mixing's sampled weights (per sample
  in gumbel mode); validation mixes with its expected weights at λ̃ = 0, deterministic (Q-V4).
- The alpha step's loss adds λ·P (models.complexity), first and second order; the Hessian passes
  differentiate the training loss without it.
"""
from dataclasses import dataclass

import nnabla as nn
import numpy as np

from models.complexity import complexity_penalty, parameter_table
from models.discretization import softmax_rows
from models.extraction import extract_architecture
from models.graph import build_graph
from models.hypernetwork import Hypernetwork, LambdaInput, piecewise_linear_classifier
from models.mixing import Mixing
from models.search_network import ALPHA_NAMES, search_network
from utils.search.variants.dadarts import DiscreteGraph, kept_ops_of
from utils.training.evaluation import RunningMean

# Keeps the λ draws apart from the data pipeline's (0, 1), drop path's (2) and the Gumbel noise's (3) streams.
LAMBDA_STREAM = 4
# The λ̃ whose alphas the search records every epoch (alpha_history.npz holds λ̃ = 0, the largest cells).
HISTORY_LAMBDAS = (0.0, 0.5, 1.0)
# The λ̃ of the deterministic validation, of the per-epoch derivation and of the final --model-arch-name.
VALIDATION_LAMBDA = 0.0


def history_name(lam_tilde):
    """alpha_history.npz for λ̃ = 0 (what --alpha-epoch and alphas.png read), alpha_history_lambda_<λ̃>.npz else."""
    return "alpha_history.npz" if lam_tilde == 0 else f"alpha_history_lambda_{lam_tilde:g}.npz"


@dataclass(frozen=True)
class ComplexitySettings:
    """The --complexity-control flags of a search (args.py)."""
    log10_lambda_min: float = -8.0
    log10_lambda_max: float = -4.0
    sampling_mode: str = "gumbel"
    temperature_start: float = 1.0
    temperature_delta: float = -0.016
    extract_mode: str = "simple"

    @classmethod
    def from_args(cls, args):
        return cls(**{name: getattr(args, name) for name in cls.__dataclass_fields__})


class ComplexityControl:
    """The mixing weights, classifier, penalty and per-step feeding of a complexity-controlled search.

    `sizes` = (num_classes, channels, num_cells). Create it after nn.clear_parameters() and before the
    graphs: it creates the hypernetwork's parameters (under "arch") from `rng`. cpu_kernels: how its
    graphs are built (ops.operations.OpMode).
    """

    def __init__(self, settings, seed, rng, input_shape, num_classes, channels, num_cells, cpu_kernels=False):
        self.settings = settings
        self._cpu_kernels = cpu_kernels
        self.seed = seed
        self.lambda_input = LambdaInput(settings.log10_lambda_min, settings.log10_lambda_max)
        self.hypernetwork = Hypernetwork(self.lambda_input, rng)
        self.alphas = self.hypernetwork.alphas
        self.classifier = piecewise_linear_classifier(self.lambda_input, rng)
        self.sampler = Mixing(settings.sampling_mode, settings.temperature_start, settings.temperature_delta)
        self.table = parameter_table(channels, num_cells)
        self._sizes = (num_classes, channels, num_cells)
        self._input_shape = input_shape
        self._penalty = None
        self._validation = None
        self._discrete = {test: DiscreteGraph(input_shape, num_classes, channels, num_cells, test, self.classifier,
                                              cpu_kernels)
                          for test in (False, True)}
        self.epoch, self.step = 0, 0
        self.penalty_mean = RunningMean()

    # What darts_search.py's network(x, frozen, purpose) and build_search_graphs read.
    def mixing(self, purpose):
        """Every training pass samples (per sample in gumbel mode); validation_graph uses the expected weights."""
        return self.sampler.sampled(self.alphas, self._input_shape[0])

    def alpha_penalty(self):
        """λ·P of the current λ and hypernetwork alphas, as a scalar term of the alpha loss."""
        if self._penalty is None:
            self._penalty = complexity_penalty(self.alphas, self.lambda_input.lam, self.table)
        return nn.functions.reshape(self._penalty, ())

    def start_epoch(self, epoch, epochs):
        self.sampler.set_epoch(epoch)
        self.epoch, self.step = epoch, 0
        self.penalty_mean = RunningMean()

    # The BilevelOptimizer's steps interface (utils.search.bilevel.PlainSteps).
    def before_alpha_step(self):
        self.lambda_input.draw(np.random.default_rng([self.seed, LAMBDA_STREAM, self.epoch, self.step]))
        self.sampler.resample(self.seed, self.epoch, self.step)
        self.step += 1

    def weight_step_graph(self, supernet_graph):
        # Called right after the alpha step, whose forward left λ·P in the persistent penalty.
        if self._penalty is not None:
            self.penalty_mean.add(float(self._penalty.d[0]))
        return supernet_graph

    # Per epoch.
    def alpha_values(self, lam_tilde=VALIDATION_LAMBDA):
        """{name: (14, 8) numpy alphas} at λ̃."""
        return self.hypernetwork.alphas_at(lam_tilde)

    def histories(self):
        """{history file name: a function giving {"normal", "reduction"}: the alphas at that λ̃}, one per HISTORY_LAMBDAS."""
        def arrays(lam_tilde):
            values = self.alpha_values(lam_tilde)
            return {"normal": values["alpha_normal"], "reduction": values["alpha_reduction"]}
        return {history_name(lam_tilde): (lambda lam_tilde=lam_tilde: arrays(lam_tilde)) for lam_tilde in HISTORY_LAMBDAS}

    def expected_parameters(self, lam_tilde):
        """P at λ̃: the expected weight count of the cells' ops under softmax(α(λ̃))."""
        values = self.alpha_values(lam_tilde)
        return float(sum((softmax_rows(values[name]) * self.table[name]).sum() for name in ALPHA_NAMES))

    def epoch_values(self):
        return {"Temperature": float(self.sampler.temperature.d.reshape(-1)[0]),
                "Complexity penalty": self.penalty_mean.mean,
                "Expected parameters at lambda 0": self.expected_parameters(0.0),
                "Expected parameters at lambda 1": self.expected_parameters(1.0)}

    def derived(self):
        """The cell at λ̃ = 0 in the --extract-mode: the per-epoch architecture and the final --model-arch-name."""
        return extract_architecture(self.alpha_values(VALIDATION_LAMBDA), self.settings.extract_mode)

    def validation_graph(self):
        """The supernet in eval mode, mixing with the expected weights; validate at λ̃ = VALIDATION_LAMBDA."""
        self.lambda_input.set_normalised(VALIDATION_LAMBDA)
        if self._validation is None:
            def logits(x):
                return search_network(x, self.sampler.expected(self.alphas), *self._sizes, test=True,
                                      classifier=self.classifier, cpu_kernels=self._cpu_kernels)
            self._validation = build_graph(logits, self._input_shape)
        return self._validation

    def discretized_graph(self, test):
        """The discrete network of the hard discretization at λ̃ = VALIDATION_LAMBDA (its classifier at that λ̃)."""
        graph = self._discrete[test].graph(kept_ops_of(self.alpha_values(VALIDATION_LAMBDA)))
        self.lambda_input.set_normalised(VALIDATION_LAMBDA)
        return graph

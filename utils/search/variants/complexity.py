"""Complexity-controlled DARTS (var_nas, S-I): alphas as functions of the complexity budget λ.

What it changes of plain DARTS, pass by pass:
- the alphas are a Hypernetwork's, piecewise-linear functions of the normalised budget λ̃; so is the
  classifier (models.hypernetwork);
- before every alpha step one λ = 10^U(a, b) is drawn and the Gumbel noise resampled, both from
  (seed, epoch, step) only, so a resumed run draws the same; the weight step that follows uses the
  same λ. Every step draws its own λ (no sample of a step shares another step's λ, Q-V1). The noise is
  one sample per graph and step (w+ and w- share one), or with --fresh-noise-every-pass, as in var_nas,
  a new one at every pass (models.mixing);
- training passes (weight, virtual and alpha step) mix with a Mixing's sampled weights (per sample in
  gumbel mode); validation mixes with its expected weights at λ̃ = 0, deterministic (Q-V4);
- the alpha step's loss adds λ·P (models.complexity), first and second order; the Hessian passes
  differentiate the training loss without it;
- it records the alphas at several λ̃, and derives the cell at λ̃ = 0 by the --extract-mode.
"""
import dataclasses

import nnabla as nn
import numpy as np

from models.complexity import complexity_penalty, parameter_table
from models.derivation import EXTRACTION_MODES, derive_by_rule
from models.discretization import softmax_rows
from models.graph import build_graph
from models.hypernetwork import Hypernetwork, LambdaInput, piecewise_linear_classifier
from models.mixing import MIXING_MODES, Mixing
from models.search_network import ALPHA_NAMES
from utils.run.command_line import ANY
from utils.run_files import lambda_alpha_history
from utils.search.variant import SearchVariant, VariantSettings, register_variant, setting
from utils.training.evaluation import RunningMean

# Keeps the λ draws apart from the data pipeline's (0, 1), drop path's (2) and the Gumbel noise's (3) streams.
LAMBDA_STREAM = 4
# The λ̃ whose alphas the search records every epoch (alpha_history.npz holds λ̃ = 0, the largest cells).
HISTORY_LAMBDAS = (0.0, 0.5, 1.0)
# The λ̃ of the deterministic validation, of the per-epoch derivation and of the final --model-arch-name.
VALIDATION_LAMBDA = 0.0


@dataclasses.dataclass(frozen=True)
class ComplexitySettings(VariantSettings):
    log10_lambda_min: float = setting(-8.0, "log10 of the smallest complexity weight lambda drawn", within=ANY)
    log10_lambda_max: float = setting(-4.0, "log10 of the largest complexity weight lambda drawn", within=ANY)
    sampling_mode: str = setting("gumbel", "training passes mix with per-sample Gumbel-softmax samples, "
                                           "softmax(alpha / t) or the raw alphas", MIXING_MODES)
    temperature_start: float = setting(1.0, "t = start + delta * epoch", within=ANY)
    temperature_delta: float = setting(-0.016, "the per-epoch change of t", within=ANY)
    extract_mode: str = setting("simple", "simple: every edge keeps its argmax op ('none' included); "
                                          "DARTS: two edges per node", EXTRACTION_MODES)
    fresh_noise_every_pass: bool = setting(
        False, "var_nas' Gumbel noise, to reproduce its numbers: a new sample at every pass of a second-order "
               "step (the virtual step, the alpha step, w+, w-, the weight step); by default w+ and w- share one "
               "sample, so their difference measures the Hessian, not the noise (models.mixing)")

    def problems(self, args):
        # The temperature is linear in the epoch, so positive throughout when it is at both ends; naive
        # mixing reads no temperature.
        naive = self.sampling_mode == "naive"
        checks = [
            (self.log10_lambda_max - self.log10_lambda_min >= 1,
             "--log10-lambda-max must exceed --log10-lambda-min by at least 1 (one knot per decade)"),
            (naive or self.temperature_start > 0, "--temperature-start must be positive"),
            (naive or self.temperature_start + self.temperature_delta * (args.epoch - 1) > 0,
             "--temperature-start + --temperature-delta * (epochs - 1) must be positive"),
            (not self.fresh_noise_every_pass or self.sampling_mode == "gumbel",
             "--fresh-noise-every-pass draws Gumbel noise: it needs --sampling-mode gumbel"),
            (not self.fresh_noise_every_pass or args.second_order,
             "--fresh-noise-every-pass changes the second-order step (a first-order step's two passes read "
             "samples of their own either way): add --second-order"),
        ]
        unused = self.unused(("temperature_start", "temperature_delta"),
                             "--sampling-mode naive mixes with the raw alphas, at no temperature") if naive else []
        return super().problems(args) + [message for ok, message in checks if not ok] + unused


@register_variant
class ComplexityControl(SearchVariant):
    name = "complexity"
    title = "complexity control (var_nas; --variant complexity)"
    Settings = ComplexitySettings
    series = ("Temperature", "Complexity penalty", "Expected parameters at lambda 0",
              "Expected parameters at lambda 1")

    def __init__(self, settings, setup):
        super().__init__(settings, setup)
        self.classifier = piecewise_linear_classifier(self.lambda_input, setup.rng)
        self.sampler = Mixing(settings.sampling_mode, settings.temperature_start, settings.temperature_delta,
                              fresh_every_pass=settings.fresh_noise_every_pass)
        self.table = parameter_table(setup.channels, setup.num_cells)
        self._penalty = None
        self.epoch, self.step = 0, 0
        self.penalty_mean = RunningMean()

    def create_alphas(self, rng):
        self.lambda_input = LambdaInput(self.settings.log10_lambda_min, self.settings.log10_lambda_max)
        self.hypernetwork = Hypernetwork(self.lambda_input, rng)
        return self.hypernetwork.alphas

    def mixing(self, purpose):
        """Every training pass samples (per sample in gumbel mode); validation_graph uses the expected weights."""
        return self.sampler.sampled(self.alphas, self.setup.input_shape[0])

    def alpha_penalty(self):
        """λ·P of the current λ and hypernetwork alphas, as a scalar term of the alpha loss."""
        if self._penalty is None:
            self._penalty = complexity_penalty(self.alphas, self.lambda_input.lam, self.table)
        return nn.functions.reshape(self._penalty, ())

    def start_epoch(self, epoch, epochs):
        self.sampler.set_epoch(epoch)
        self.epoch, self.step = epoch, 0
        self.penalty_mean = RunningMean()

    def before_alpha_step(self):
        self.lambda_input.draw(np.random.default_rng([self.setup.seed, LAMBDA_STREAM, self.epoch, self.step]))
        self.sampler.resample(self.setup.seed, self.epoch, self.step)
        self.step += 1

    def weight_step_graph(self, supernet_graph):
        # Called right after the alpha step, whose forward left λ·P in the persistent penalty.
        if self._penalty is not None:
            self.penalty_mean.add(float(self._penalty.d[0]))
        return supernet_graph

    def alpha_values(self, lam_tilde=VALIDATION_LAMBDA):
        """{name: (14, 8) numpy alphas} at λ̃."""
        return self.hypernetwork.alphas_at(lam_tilde)

    def histories(self):
        """The alphas at each of HISTORY_LAMBDAS."""
        return {lambda_alpha_history(lam_tilde): (lambda lam_tilde=lam_tilde: self.alpha_values(lam_tilde))
                for lam_tilde in HISTORY_LAMBDAS}

    def expected_parameters(self, lam_tilde):
        """P at λ̃: the expected weight count of the cells' ops under softmax(α(λ̃))."""
        values = self.alpha_values(lam_tilde)
        return float(sum((softmax_rows(values[name]) * self.table[name]).sum() for name in ALPHA_NAMES))

    def epoch_values(self):
        return {"Temperature": float(self.sampler.temperature.d.reshape(-1)[0]),
                "Complexity penalty": self.penalty_mean.mean,
                "Expected parameters at lambda 0": self.expected_parameters(0.0),
                "Expected parameters at lambda 1": self.expected_parameters(1.0)}

    @staticmethod
    def derive(settings, values):
        return derive_by_rule(values["alpha_normal"], values["alpha_reduction"], settings.extract_mode)

    def validation_graph(self):
        """The supernet in eval mode, mixing with the expected weights; validate at λ̃ = VALIDATION_LAMBDA."""
        self.lambda_input.set_normalised(VALIDATION_LAMBDA)
        if self._supernet_test is None:
            self._supernet_test = build_graph(
                lambda x: self.supernet(x, self.sampler.expected(self.alphas), test=True), self.setup.input_shape)
        return self._supernet_test

    def discretized_graph(self, test):
        """The discrete network at λ̃ = VALIDATION_LAMBDA (its classifier at that λ̃)."""
        graph = super().discretized_graph(test)
        self.lambda_input.set_normalised(VALIDATION_LAMBDA)
        return graph

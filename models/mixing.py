"""Mixing weights with a temperature, and per-sample Gumbel-softmax sampling (var_nas I4).

A Mixing turns alphas into the mixing weights search_network takes, {name: (14, 8)} shared by the
batch or {name: (B, 14, 8)} one mixture per sample, in two flavours: `sampled(alphas, batch_size)` for
training passes and `expected(alphas)` for passes that must be deterministic (validation, fixing
var_nas' Q-V4, which samples there too). The modes:

- 'gumbel': each sample b draws its own relaxed architecture,
  w_{b,e,.} = softmax((log softmax(α_e) + g_{b,e,.}) / t), g standard Gumbel; expected: softmax(α),
  the probabilities the relaxed samples approach as t falls;
- 'softmax': softmax(α / t), shared by the batch, both ways;
- 'naive': the raw α, shared by the batch, both ways.

The temperature t = t0 + δ·epoch and the Gumbel noise are fed into variables, so a graph is built
once. The noise of a step is drawn from (seed, epoch, step) alone, so a resumed run draws the same.

When the noise is drawn: by default once a step for every sampled graph (`resample`), so every pass
that runs a graph within one step reads one sample. In a second-order step the finite difference
(∇α L(w+) − ∇α L(w−)) / 2ε then differentiates the loss of one sample at two weights, and the virtual
step and the weight step (one graph) train on one sample. var_nas draws a new sample at every forward
(its rsample in forward): w+ and w− read different samples, so the difference holds the change of the
noise as well, divided by ε. `fresh_every_pass=True` does what var_nas does, for reproducing its numbers:
every forward of a sampled graph draws its own noise, in pass order from the step's (seed, epoch, step)
generator, so a resumed run still draws the same.
"""
import nnabla as nn
import nnabla.functions as F
import numpy as np
from nnabla.function import PythonFunction

from ops.user_error import UserError

MIXING_MODES = ("gumbel", "softmax", "naive")
# Keeps the Gumbel noise apart from the data pipeline's (0, 1) and drop path's (2) random streams.
GUMBEL_STREAM = 3


class MixingError(UserError, ValueError):
    """A mixing mode or temperature that cannot be used."""


def temperature_schedule(epoch, start, delta):
    """t = t0 + δ·epoch (0-based epoch), var_nas' linear schedule."""
    return start + delta * epoch


class _GumbelDraw(PythonFunction):
    """Standard Gumbel noise of a fixed shape, drawn anew at every forward by draw(shape).

    Its input (the temperature) only places it in the graph; nothing flows back through it."""

    def __init__(self, draw, shape):
        super().__init__(nn.get_current_context())
        self._draw = draw
        self._shape = shape

    @property
    def name(self):
        return "GumbelDraw"

    def min_outputs(self):
        return 1

    def setup_impl(self, inputs, outputs):
        outputs[0].reset_shape(self._shape, True)

    def forward_impl(self, inputs, outputs):
        outputs[0].d = self._draw(self._shape)

    def backward_impl(self, inputs, outputs, propagate_down, accum):
        pass

    def grad_depends_output_data(self, i, o):
        return False

    def grad_depends_input_data(self, i, j):
        return False


class Mixing:
    def __init__(self, mode, temperature_start=1.0, temperature_delta=0.0, fresh_every_pass=False):
        if mode not in MIXING_MODES:
            raise MixingError(f"unknown mixing mode {mode!r}; choose from {', '.join(MIXING_MODES)}")
        self.mode = mode
        self.temperature_start = temperature_start
        self.temperature_delta = temperature_delta
        self.fresh_every_pass = fresh_every_pass
        self.temperature = nn.Variable((1, 1, 1), need_grad=False)
        # One (B, 14, 8) variable per cell type and sampled graph: the noise its passes read, kept after them.
        self.noise = []
        self._step_rng = None  # fresh_every_pass: the current step's generator (no noise before the first step)
        self.set_epoch(0)

    def set_epoch(self, epoch):
        t = temperature_schedule(epoch, self.temperature_start, self.temperature_delta)
        if not t > 0 and self.mode != "naive":  # naive mixing reads no temperature
            raise MixingError(f"temperature {self.temperature_start} + {self.temperature_delta} * {epoch} = {t} "
                              f"at epoch {epoch} is not positive")
        self.temperature.d = t

    def resample(self, seed, epoch, step):
        """New Gumbel noise in every sampled graph, drawn from (seed, epoch, step) only; with
        fresh_every_pass, the generator each forward of the step then draws from."""
        rng = np.random.default_rng([seed, GUMBEL_STREAM, epoch, step])
        if self.fresh_every_pass:
            self._step_rng = rng
            return
        for variable in self.noise:
            variable.d = rng.gumbel(size=variable.shape)

    def _draw(self, shape):
        return np.zeros(shape) if self._step_rng is None else self._step_rng.gumbel(size=shape)

    def _noise(self, shape):
        if self.fresh_every_pass:
            noise = _GumbelDraw(self._draw, shape)(self.temperature)
            noise.persistent = True
        else:
            noise = nn.Variable(shape, need_grad=False)
            noise.d = 0.0
        self.noise.append(noise)
        return noise

    def _shared(self, alpha):
        """(14, 8) weights of the modes that share one architecture over the batch."""
        if self.mode == "naive":
            return alpha
        t = F.reshape(self.temperature, (1, 1))
        return F.softmax(alpha / F.broadcast(t, alpha.shape), axis=1)

    def sampled(self, alphas, batch_size):
        if self.mode != "gumbel":
            return self.expected(alphas)
        weights = {}
        for name, alpha in alphas.items():
            shape = (batch_size,) + alpha.shape
            noise = self._noise(shape)
            logits = F.broadcast(F.reshape(F.log_softmax(alpha, axis=1), (1,) + alpha.shape), shape) + noise
            weights[name] = F.softmax(logits / F.broadcast(self.temperature, shape), axis=2)
        return weights

    def expected(self, alphas):
        if self.mode == "gumbel":
            return {name: F.softmax(alpha, axis=1) for name, alpha in alphas.items()}
        return {name: self._shared(alpha) for name, alpha in alphas.items()}

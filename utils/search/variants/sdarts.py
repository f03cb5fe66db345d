"""SDARTS (Chen and Hsieh, ICML 2020): the weight step trains the supernet on perturbed mixing weights.

The original: github xiangning-chen/SmoothDARTS, sota/cnn/train_search.py (the step and the ε schedule),
sota/cnn/model_search.py (softmax_arch_parameters, clip, forward with updateType 'weight'),
attacker/perturb.py (Random_alpha, Linf_PGD_alpha) and attacker/linf_sgd.py (the sign step).

What it changes of plain DARTS, pass by pass:
- the alpha step (first order by default, as there; second order's virtual step and Hessian passes too) and
  the validation mix with softmax(α), unperturbed, as DARTS does;
- the weight step mixes with w~ = clip(w0 + δ), w0 = softmax(α) of each cell's (14, 8) alphas, where clip
  (model_search.py's) clamps every row to [0, 1], sets the row's argmax (taken before the clamp) to 1 if the
  row is then all 0, and divides the row by its sum:
  - sdarts-rs: δ ~ U(−ε, ε) per entry (Random_alpha), drawn from (seed, epoch, step) only, so a resumed run
    draws what an uninterrupted one does;
  - sdarts-adv: from that random start, --pgd-steps (7) steps of
    w <- clip(w0 + clamp(w + (2ε / steps) sign(∂L/∂w) − w0, −ε, ε)) (Linf_SGD descends −L by the sign of
    its gradient), L the training batch's loss with the network in eval mode (batch-norm running statistics,
    as the original's model.eval() during the attack); w0 is kept when L(w0) > L(w~) (Linf_PGD_alpha);
- ε = 0.03 + (ε_max − 0.03) · epoch / epochs, epoch 0-based (train_search.py), ε_max = --epsilon-alpha (0.3);
- derivation: DARTS's (the original's genotype() is quark0's, 'none' excluded).
"""
import dataclasses

import nnabla as nn
import numpy as np

from models.discretization import softmax_rows
from models.graph import build_graph, feed
from models.search_network import ALPHA_NAMES, softmax_weights
from utils.run.command_line import AT_LEAST_ONE, NOT_NEGATIVE
from utils.search.variant import DartsSettings, SearchVariant, register_variant, setting, without_gradient
from utils.training.evaluation import RunningMean

# The first epoch's ε (train_search.py's constant).
EPSILON_START = 0.03
# Keeps the perturbation draws apart from the data pipeline's (0, 1), drop path's (2) and the Gumbel noise's (3).
NOISE_STREAM = 5


@dataclasses.dataclass(frozen=True)
class SdartsSettings(DartsSettings):
    epsilon_alpha: float = setting(0.3, "ε_max: the perturbation's radius grows as 0.03 + (ε_max - 0.03) * "
                                        "epoch / epochs (epoch 0-based)", within=NOT_NEGATIVE)

    def epsilon(self, epoch, epochs):
        return EPSILON_START + (self.epsilon_alpha - EPSILON_START) * epoch / epochs


@dataclasses.dataclass(frozen=True)
class SdartsAdvSettings(SdartsSettings):
    pgd_steps: int = setting(7, "the attack's PGD steps, each a sign step of 2 ε / steps", within=AT_LEAST_ONE)


def clip_rows(weights):
    """model_search.py's clip() of a (rows, ops) array: each row clamped to [0, 1], its argmax (before the
    clamp) set to 1 if the row is then all zero, then divided by its sum. Back on the simplex."""
    top = weights.argmax(axis=1)
    clipped = np.clip(weights, 0.0, 1.0)
    dead = np.flatnonzero(clipped.sum(axis=1) == 0.0)
    clipped[dead, top[dead]] = 1.0
    return clipped / clipped.sum(axis=1, keepdims=True)


def pgd_attack(clean, start, loss, gradient, epsilon, steps):
    """Linf_PGD_alpha on {name: (14, 8) weights}: from `start` (the random start, already clipped), `steps`
    sign steps of size 2 epsilon / steps up the loss, each kept within epsilon of `clean` and clipped.
    loss(w) and gradient(w) ({name: dL/dw}) evaluate the attacked network. Returns (weights, attacked):
    `clean` when the attack lowered the loss below clean's, as there."""
    lr = 2.0 * epsilon / steps
    before = loss(clean)
    weights = start
    for _ in range(steps):
        grads = gradient(weights)
        weights = {name: clip_rows(clean[name] + np.clip(w + lr * np.sign(grads[name]) - clean[name],
                                                         -epsilon, epsilon)).astype(w.dtype)
                   for name, w in weights.items()}
    if before > loss(weights):
        return clean, False
    return weights, True


@register_variant
class SdartsRs(SearchVariant):
    """SDARTS-RS: the weight step on clip(softmax(α) + U(−ε, ε)). The perturbed weights are fed into variables
    of their own before every weight step; every other pass mixes as DARTS."""
    name = "sdarts-rs"
    title = "SDARTS-RS (--variant sdarts-rs)"
    Settings = SdartsSettings
    series = ("Epsilon",)

    def __init__(self, settings, setup):
        super().__init__(settings, setup)
        self.perturbed = {name: nn.Variable(self.alphas[name].shape, need_grad=False) for name in ALPHA_NAMES}
        for name, weights in self.clean_weights().items():
            self.perturbed[name].d = weights
        self.epsilon = settings.epsilon(0, 1)
        self.epoch, self.step = 0, 0

    def mixing(self, purpose):
        return dict(self.perturbed) if purpose == "weights" else super().mixing(purpose)

    @property
    def separate_virtual(self):
        return True  # the second-order virtual step mixes unperturbed (the architect's model._loss), the weights not

    def validation_graph(self):
        if self._supernet_test is None:
            def logits(x):
                weights = {name: without_gradient(w) for name, w in softmax_weights(self.alphas).items()}
                return self.supernet(x, weights, test=True)
            self._supernet_test = build_graph(logits, self.setup.input_shape)
        return self._supernet_test

    def start_epoch(self, epoch, epochs):
        self.epsilon = self.settings.epsilon(epoch, epochs)
        self.epoch, self.step = epoch, 0

    def clean_weights(self):
        """{name: (14, 8) float32}: softmax(α) of the current alphas (softmax_arch_parameters)."""
        return {name: softmax_rows(self.alphas[name].d).astype(np.float32) for name in ALPHA_NAMES}

    def noise(self):
        """{name: U(−ε, ε) of the alphas' shape} of this step, a function of (seed, epoch, step) only."""
        rng = np.random.default_rng([self.setup.seed, NOISE_STREAM, self.epoch, self.step])
        return {name: rng.uniform(-self.epsilon, self.epsilon, self.alphas[name].shape).astype(np.float32)
                for name in ALPHA_NAMES}

    def before_weight_step(self, train_batch):
        clean, noise = self.clean_weights(), self.noise()
        self.step += 1
        for name, weights in self.perturb(clean, noise, train_batch).items():
            self.perturbed[name].d = weights

    def perturb(self, clean, noise, train_batch):
        """The weight step's mixing weights {name: (14, 8)} from the clean ones and this step's draw."""
        return {name: clip_rows(clean[name] + noise[name]) for name in ALPHA_NAMES}

    def epoch_values(self):
        return {"Epsilon": self.epsilon}


@register_variant
class SdartsAdv(SdartsRs):
    """SDARTS-ADV: SDARTS-RS's perturbation is the random start of a PGD attack on the training batch's loss,
    run on an eval-mode graph of its own whose mixing weights are variables with a gradient."""
    name = "sdarts-adv"
    title = "SDARTS-ADV (--variant sdarts-adv)"
    Settings = SdartsAdvSettings
    series = ("Epsilon", "Attacks kept")

    def __init__(self, settings, setup):
        super().__init__(settings, setup)
        self.attacked = {name: nn.Variable(self.alphas[name].shape, need_grad=True) for name in ALPHA_NAMES}
        self._attack_graph = None
        self.kept = RunningMean()

    def attack_graph(self):
        """The supernet in eval mode mixing with self.attacked; frozen: only the mixing weights' gradient."""
        if self._attack_graph is None:
            self._attack_graph = build_graph(lambda x: self.supernet(x, self.attacked, frozen=True, test=True),
                                             self.setup.input_shape)
        return self._attack_graph

    def start_epoch(self, epoch, epochs):
        super().start_epoch(epoch, epochs)
        self.kept = RunningMean()

    def attack_loss(self, weights):
        for name, w in weights.items():
            self.attacked[name].d = w
        self._attack_graph.loss.forward(clear_no_need_grad=True)
        self.setup.all_reduce([self._attack_graph.loss.data])  # data parallel: the global batch's loss
        return float(self._attack_graph.loss.d)

    def attack_gradient(self, weights):
        for name, w in weights.items():
            self.attacked[name].d = w
            self.attacked[name].grad.zero()
        graph = self._attack_graph
        graph.loss.forward(clear_no_need_grad=True)
        graph.loss.backward(clear_buffer=True)
        # Data parallel: every rank attacks along the global batch's gradient, so all move the same mixing weights.
        self.setup.all_reduce([v.grad for v in self.attacked.values()])
        return {name: v.g.copy() for name, v in self.attacked.items()}

    def perturb(self, clean, noise, train_batch):
        feed(self.attack_graph(), train_batch)
        weights, attacked = pgd_attack(clean, super().perturb(clean, noise, train_batch), self.attack_loss,
                                       self.attack_gradient, self.epsilon, self.settings.pgd_steps)
        self.kept.add(float(attacked))
        return weights

    def epoch_values(self):
        return {**super().epoch_values(), "Attacks kept": self.kept.mean}

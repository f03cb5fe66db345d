"""Alphas and classifier as piecewise-linear functions of the complexity budget λ (var_nas).

λ = 10^u with u in [a, b] = [log10_lambda_min, log10_lambda_max]; the networks see its normalised form
λ̃ = (log10 λ - a) / (b - a) in [0, 1]. A piecewise-linear function of λ̃ has K = int(b - a) + 1 knots
C_0..C_{K-1} at pivots π_0 < ... < π_{K-1} (initially linspace(0, 1, K)) and between two pivots is

    f(λ̃) = C_l d + C_{l+1} (1 - d),  d = (π_{l+1} - λ̃) / (π_{l+1} - π_l).

Pivots are trained with the knots, and the segment index l follows them as trained (fixing var_nas'
Q-V2, which takes l from the uniform grid): l is the number of inner pivots π_1..π_{K-2} at or below
λ̃, so exactly one segment is active for any pivots, d stays in [0, 1] inside [π_0, π_{K-1}], and the
outer segments extend linearly beyond the end pivots.

λ and λ̃ are fed into need_grad=False variables (LambdaInput), so each graph is built once and a step
only writes new values.
"""
import nnabla as nn
import nnabla.functions as F
import nnabla.initializer as I
import numpy as np

from models.genotype import NODES
from models.search_network import ALPHA_NAMES, ARCH_SCOPE
from ops.operations import SEARCH_OPS
from ops.user_error import UserError

HYPERNET_SCOPES = {"alpha_normal": "hypernet_normal", "alpha_reduction": "hypernet_reduction"}


class LambdaRangeError(UserError, ValueError):
    """A λ range or value the complexity control cannot use."""


class LambdaInput:
    """The raw λ and the normalised λ̃ of a pass, as (1,) variables written before each step."""

    def __init__(self, log10_lambda_min, log10_lambda_max):
        if not log10_lambda_max - log10_lambda_min >= 1:
            raise LambdaRangeError(f"log10 lambda range [{log10_lambda_min}, {log10_lambda_max}] must span at "
                                   f"least 1 (one knot per decade, at least 2 knots)")
        self.log10_min = float(log10_lambda_min)
        self.log10_max = float(log10_lambda_max)
        self.num_knots = int(self.log10_max - self.log10_min) + 1
        self.lam = nn.Variable((1,), need_grad=False)
        self.lam_tilde = nn.Variable((1,), need_grad=False)
        self.set_normalised(0.0)

    def set_normalised(self, lam_tilde):
        """Set λ̃ (in [0, 1]) and the λ it stands for."""
        if not 0.0 <= lam_tilde <= 1.0:
            raise LambdaRangeError(f"normalised lambda {lam_tilde} is not in [0, 1]")
        self.lam_tilde.d = lam_tilde
        self.lam.d = 10.0 ** (self.log10_min + lam_tilde * (self.log10_max - self.log10_min))

    def set_lambda(self, lam):
        if not lam > 0:
            raise LambdaRangeError(f"lambda {lam} is not positive")
        self.set_normalised(float(np.clip((np.log10(lam) - self.log10_min) / (self.log10_max - self.log10_min),
                                          0.0, 1.0)))

    def draw(self, rng):
        """λ = 10^U(a, b) from a numpy Generator, as var_nas draws one at every step; returns λ."""
        self.set_normalised(float(rng.uniform(0.0, 1.0)))
        return float(self.lam.d[0])


def piecewise_linear(lam_tilde, knots, pivots):
    """f(λ̃) for knots (K, n) and pivots (K,) variables, as a (1, n) variable (see the module docstring)."""
    k = pivots.shape[0]
    segments = np.arange(k - 1, dtype=np.float32)
    # Which segment is active is a step function: its gradient is zero, so it reads the pivots unlinked.
    fixed_pivots = pivots.get_unlinked_variable(need_grad=False)
    if k > 2:
        inner = fixed_pivots[1:k - 1]
        index = F.sum(F.greater_equal(F.broadcast(lam_tilde, inner.shape), inner))
        index = F.broadcast(F.reshape(index, (1,)), (k - 1,))
    else:
        index = nn.Variable.from_numpy_array(np.zeros(1, np.float32))
    active = F.equal(index, nn.Variable.from_numpy_array(segments))
    lower, upper = pivots[0:k - 1], pivots[1:k]
    d = (upper - F.broadcast(lam_tilde, (k - 1,))) / (upper - lower)
    knot_weights = F.pad(active * d, (0, 1)) + F.pad(active * (1.0 - d), (1, 0))
    return F.affine(F.reshape(knot_weights, (1, k)), knots)


def _linspace_initializer(shape):
    return np.linspace(0.0, 1.0, shape[0]).astype(np.float32)


def piecewise_linear_parameter(name, lam_tilde, shape, num_knots, initializer, trainable=True):
    """A `shape` variable that is a piecewise-linear function of λ̃, with its knots and pivots in scope `name`.

    trainable=False gives a graph that reads the same knots and pivots but computes no gradient for them.
    """
    size = int(np.prod(shape))
    with nn.parameter_scope(name):
        knots = nn.parameter.get_parameter_or_create("knots", (num_knots, size), initializer, need_grad=True)
        pivots = nn.parameter.get_parameter_or_create("pivots", (num_knots,), _linspace_initializer,
                                                      need_grad=True)
    if not trainable:
        knots = knots.get_unlinked_variable(need_grad=False)
        pivots = pivots.get_unlinked_variable(need_grad=False)
    return F.reshape(piecewise_linear(lam_tilde, knots, pivots), shape)


class Hypernetwork:
    """α(λ̃): one piecewise-linear function per node and cell type, under the "arch" scope.

    `alphas` are the two (14, 8) alpha variables, computed from `lambda_input.lam_tilde`; a search uses
    them where it would use create_alphas(). Their knots and pivots are what alpha_parameters() returns.
    Knots are initialised U(-1/sqrt(out), 1/sqrt(out)) with out = (node inputs) * ops, as var_nas'
    kaiming_uniform(a=sqrt(5)) on a (1, out) knot.
    """

    def __init__(self, lambda_input, rng):
        self.lambda_input = lambda_input
        self.alphas = {}
        with nn.parameter_scope(ARCH_SCOPE):
            for name in ALPHA_NAMES:
                per_node = []
                for node in NODES:
                    shape = (node, len(SEARCH_OPS))
                    bound = 1.0 / np.sqrt(np.prod(shape))
                    per_node.append(piecewise_linear_parameter(
                        f"{HYPERNET_SCOPES[name]}/node{node}", lambda_input.lam_tilde, shape,
                        lambda_input.num_knots, I.UniformInitializer((-bound, bound), rng=rng)))
                self.alphas[name] = F.concatenate(*per_node, axis=0)

    def alphas_at(self, lam_tilde):
        """{name: (14, 8) numpy alphas} at the normalised λ̃."""
        self.lambda_input.set_normalised(lam_tilde)
        F.sink(*self.alphas.values()).forward()
        return {name: alpha.d.copy() for name, alpha in self.alphas.items()}


def piecewise_linear_classifier(lambda_input, rng):
    """A classifier for models.network: logits = φ W(λ̃) + b(λ̃), each a piecewise-linear function (var_nas I2).

    W's knots start U(-1/sqrt(classes), 1/sqrt(classes)) (kaiming_uniform on the (C, classes) matrix),
    b's N(0, 1). They are network weights (they live in the network's scope), trained with the weights.
    """
    def classifier(pooled, num_classes, mode):
        features = pooled.shape[1]
        bound = 1.0 / np.sqrt(num_classes)
        weight = piecewise_linear_parameter("W", lambda_input.lam_tilde, (features, num_classes),
                                            lambda_input.num_knots, I.UniformInitializer((-bound, bound), rng=rng),
                                            trainable=not mode.frozen)
        bias = piecewise_linear_parameter("b", lambda_input.lam_tilde, (num_classes,), lambda_input.num_knots,
                                          I.NormalInitializer(1.0, rng=rng), trainable=not mode.frozen)
        return F.affine(pooled, weight, bias)
    return classifier

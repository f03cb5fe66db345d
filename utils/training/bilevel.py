"""The DARTS bilevel step: an alpha step on a validation batch, then a weight step on a training batch.

Both graphs are built once; every step only writes new values into the existing variables. In
particular the second-order step moves the weights by writing into their data arrays, because a
graph that is already built keeps reading the variables it was built with (rebinding parameters
with nn.parameter.set_parameter would leave the graph on the old weights and make the step a no-op).
"""
from collections import namedtuple

import nnabla as nn

from models.graph import build_graph, feed, forward_backward
from utils.training.optim import clip_by_global_norm, global_norm


def build_search_graphs(network, input_shape, second_order):
    """(train, val, hessian) graphs of a search, each built once.

    network(x, frozen) returns the logits. Where a pass needs only the alpha gradient its graph is
    built with frozen weights: the
    validation pass of first-order DARTS, the two Hessian-vector passes of second-order DARTS
    (which run on the training batch). Second order needs the weight gradient of the validation
    loss, so there the validation graph is a full one. hessian is None for first order.
    """
    def full(x):
        return network(x, frozen=False)

    def frozen(x):
        return network(x, frozen=True)
    train = build_graph(full, input_shape)
    if second_order:
        return train, build_graph(full, input_shape), build_graph(frozen, input_shape)
    return train, build_graph(frozen, input_shape), None


def snapshot(arrays):
    """Device-side copies of a {name: NdArray} dict."""
    copies = {}
    for name, array in arrays.items():
        copies[name] = nn.NdArray(array.shape)
        copies[name].copy_from(array)
    return copies


def restore(variables, copies):
    for name, v in variables.items():
        v.data.copy_from(copies[name])


# Three passes, each one forward and backward of a loss that leaves its gradients in the weights' and
# alphas' grads: the training loss, the validation loss, and the training loss for the alpha gradient
# only (it may skip the weight gradients). Whatever feeding they need is their own business.
UnrolledPasses = namedtuple("UnrolledPasses", "train val hessian")


def _zero_grads(variables):
    for v in variables.values():
        v.grad.zero()


def unrolled_alpha_gradient(passes, weights, network_state, alphas, xi, virtual_step, direction_clip=None):
    """Leaves dL_val(w', a)/da - xi * s * (dL_train(w+, a)/da - dL_train(w-, a)/da) / (2 eps) in the alpha grads.

    virtual_step(xi) moves the weights from w to w' using the training-loss gradients in their grads
    and returns s, how much the step scales the gradient (1 for plain SGD; the clipping factor, at
    most 1, when the gradient is clipped first). w+- = w +- eps * g with g = dL_val(w', a)/dw',
    clipped to a global norm of direction_clip if given, and eps = 0.01 / ||g||. The network state
    (weights and batch-norm statistics) is left exactly as it was.
    """
    saved = snapshot({name: v.data for name, v in network_state.items()})

    _zero_grads(weights)
    _zero_grads(alphas)
    passes.train()
    scale = virtual_step(xi)

    _zero_grads(weights)
    _zero_grads(alphas)  # the virtual step's backward left training-loss gradients there
    passes.val()
    if direction_clip is not None:
        clip_by_global_norm(weights, direction_clip)
    val_alpha_grads = snapshot({name: a.grad for name, a in alphas.items()})
    direction = snapshot({name: w.grad for name, w in weights.items()})

    restore(network_state, saved)
    eps = 0.01 / global_norm(direction.values())
    train_alpha_grads = []
    for sign in (1.0, -1.0):
        for name, w in weights.items():
            w.data.copy_from(saved[name] + direction[name] * (sign * eps))
        _zero_grads(alphas)
        passes.hessian()
        train_alpha_grads.append(snapshot({name: a.grad for name, a in alphas.items()}))
    restore(network_state, saved)

    plus, minus = train_alpha_grads
    for name, a in alphas.items():
        a.grad.copy_from(val_alpha_grads[name] - (plus[name] - minus[name]) * (xi * scale / (2.0 * eps)))


def clipped_sgd_virtual_step(weights, max_norm, weight_decay):
    """The virtual step of quark0's rnn/architect.py: w <- w - xi * (clip(grad) + wd * w), no momentum.

    Returns the clipping factor, which scales the implicit term as well. The seed uses
    max_norm / (norm + 1e-6) even when nothing was clipped, which exceeds 1 (its bug Q1); here it is
    capped at 1, the factor the gradient was actually scaled by.
    """
    def step(xi):
        norm = global_norm(w.grad for w in weights.values())
        scale = min(1.0, max_norm / (norm + 1e-6))
        for w in weights.values():
            w.data.copy_from(w.data - (w.grad * scale + w.data * weight_decay) * xi)
        return scale
    return step


class BilevelOptimizer:
    """Owns the static graphs and the two solvers of a DARTS search.

    The graphs are those of build_search_graphs; with a hessian graph the step is second order.
    weights: {name: Variable} trained on the training half; network_state: weights plus batch-norm
    running statistics (everything a virtual step must leave untouched); alphas: {name: Variable}.
    """

    def __init__(self, graphs, weights, network_state, alphas, weight_optimizer, alpha_optimizer):
        self.train_graph, self.val_graph, self.hessian_graph = graphs
        self.weights = weights
        self.network_state = network_state
        self.alphas = alphas
        self.weight_optimizer = weight_optimizer
        self.alpha_optimizer = alpha_optimizer
        self.second_order = self.hessian_graph is not None

    def step(self, train_batch, val_batch):
        """One search step; the graphs keep their outputs (loss, logits) for the caller to read."""
        feed(self.train_graph, train_batch)
        feed(self.val_graph, val_batch)
        if self.second_order:
            feed(self.hessian_graph, train_batch)
        self.alpha_optimizer.zero_grad()
        if self.second_order:
            self.unrolled_alpha_gradient()
        else:
            forward_backward(self.val_graph)
        self.alpha_optimizer.step()

        self.weight_optimizer.zero_grad()
        forward_backward(self.train_graph)
        self.weight_optimizer.step()

    def unrolled_alpha_gradient(self):
        """The second-order alpha gradient (see unrolled_alpha_gradient) with the momentum virtual step."""
        passes = UnrolledPasses(lambda: forward_backward(self.train_graph), lambda: forward_backward(self.val_graph),
                                lambda: forward_backward(self.hessian_graph))
        unrolled_alpha_gradient(passes, self.weights, self.network_state, self.alphas,
                                self.weight_optimizer.lr, self.virtual_step)

    def virtual_step(self, xi):
        """w <- w - xi * (momentum * v + grad + wd * w), written into the weights' own arrays; returns 1,
        the scale of the implicit term for a step that is linear in the gradient."""
        opt = self.weight_optimizer
        velocity = opt.scaled_velocity()  # xi * v, since xi is the current learning rate
        for name, w in self.weights.items():
            update = velocity[name] * opt.momentum + (w.grad + w.data * opt.weight_decay) * xi
            w.data.copy_from(w.data - update)
        return 1.0

"""The DARTS bilevel step: an alpha step on a validation batch, then a weight step on a training batch.

Both graphs are built once; every step only writes new values into the existing variables. In
particular the second-order step moves the weights by writing into their data arrays, because a
graph that is already built keeps reading the variables it was built with (rebinding parameters
with nn.parameter.set_parameter would leave the graph on the old weights and make the step a no-op).
"""
from collections import namedtuple

import nnabla as nn

from models.graph import build_graph, feed, forward_backward, make_graph
from utils.training.optim import global_norm

# The static graphs of a search. virtual is train unless the virtual step mixes the ops differently
# from the weight step (DADARTS's --topk-on-virtualstep); hessian is None for first order.
SearchGraphs = namedtuple("SearchGraphs", "train virtual val hessian")


def build_search_graphs(network, input_shape, second_order, alpha_penalty=None, separate_virtual=False):
    """The SearchGraphs of a search, each built once.

    network(x, frozen, purpose) returns the logits; purpose says which pass the graph serves, so
    that a variant can mix the ops differently per pass: "weights" (the weight step, and the virtual
    step unless separate_virtual), "virtual", "alphas" (the alpha step and the Hessian passes).
    Where a pass needs only the alpha gradient its graph is built with frozen weights: the
    validation pass of first-order DARTS, the two Hessian-vector passes of second-order DARTS
    (which run on the training batch). Second order needs the weight gradient of the validation
    loss, so there the validation graph is a full one.
    alpha_penalty(), if given, builds a scalar term of the alphas (or returns None) added to the
    alpha step's loss (not to the Hessian passes, which differentiate the training loss).
    """
    def graph(frozen, purpose, penalty=None):
        built = build_graph(lambda x: network(x, frozen=frozen, purpose=purpose), input_shape)
        term = penalty() if penalty is not None else None
        if term is None:
            return built
        return make_graph(built.x, built.y, built.logits, built.loss + term)
    train = graph(False, "weights")
    if not second_order:
        return SearchGraphs(train, None, graph(True, "alphas", alpha_penalty), None)
    virtual = graph(False, "virtual") if separate_virtual else train
    return SearchGraphs(train, virtual, graph(False, "alphas", alpha_penalty), graph(True, "alphas"))


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


class PlainSteps:
    """Plain DARTS needs nothing between the two steps, and trains the weights on the supernet."""

    def before_alpha_step(self):
        pass

    def weight_step_graph(self, supernet_graph):
        return supernet_graph


class BilevelOptimizer:
    """Owns the static graphs and the two solvers of a DARTS search.

    The graphs are SearchGraphs of build_search_graphs; with a hessian graph the step is second order.
    weights: {name: Variable} trained on the training half; network_state: weights plus batch-norm
    running statistics (everything a virtual step must leave untouched); alphas: {name: Variable}.
    steps: what a variant does between the steps (PlainSteps' interface): before_alpha_step() feeds
    what the alpha step's graphs read, weight_step_graph(graphs.train) the graph the weight step runs
    (DADARTS's hard discretization runs a discrete one).
    """

    def __init__(self, graphs, weights, network_state, alphas, weight_optimizer, alpha_optimizer, steps=None):
        self.train_graph, self.virtual_graph, self.val_graph, self.hessian_graph = graphs
        self.weights = weights
        self.network_state = network_state
        self.alphas = alphas
        self.weight_optimizer = weight_optimizer
        self.alpha_optimizer = alpha_optimizer
        self.steps = steps or PlainSteps()
        self.second_order = self.hessian_graph is not None
        self.weight_graph = self.train_graph  # the graph of the last weight step, for the caller to read

    def step(self, train_batch, val_batch):
        """One search step; the graphs keep their outputs (loss, logits) for the caller to read."""
        feed(self.val_graph, val_batch)
        if self.second_order:
            feed(self.virtual_graph, train_batch)
            feed(self.hessian_graph, train_batch)
        self.steps.before_alpha_step()
        self.alpha_optimizer.zero_grad()
        if self.second_order:
            self.unrolled_alpha_gradient()
        else:
            forward_backward(self.val_graph)
        self.alpha_optimizer.step()

        # The weight step sees the alphas this step's alpha step just moved.
        self.weight_graph = self.steps.weight_step_graph(self.train_graph)
        feed(self.weight_graph, train_batch)
        self.weight_optimizer.zero_grad()
        forward_backward(self.weight_graph)
        self.weight_optimizer.step()

    def unrolled_alpha_gradient(self):
        """Leaves dL_val(w', a)/da - xi * (dL_train(w+, a)/da - dL_train(w-, a)/da) / (2 eps) in the alpha grads.

        w' = w - xi * (momentum * v + dL_train(w, a)/dw + wd * w) with xi the current weight learning
        rate, w+- = w +- eps * g with g = dL_val(w', a)/dw' and eps = 0.01 / ||g||. The weights and
        batch-norm statistics are left exactly as they were.
        """
        xi = self.weight_optimizer.lr
        saved = snapshot({name: v.data for name, v in self.network_state.items()})

        self.weight_optimizer.zero_grad()
        forward_backward(self.virtual_graph)
        self.virtual_step(xi)

        self.weight_optimizer.zero_grad()
        self.alpha_optimizer.zero_grad()  # the virtual step's backward left training-loss gradients there
        forward_backward(self.val_graph)
        val_alpha_grads = snapshot({name: a.grad for name, a in self.alphas.items()})
        direction = snapshot({name: w.grad for name, w in self.weights.items()})

        restore(self.network_state, saved)
        eps = 0.01 / global_norm(direction.values())
        train_alpha_grads = []
        for sign in (1.0, -1.0):
            for name, w in self.weights.items():
                w.data.copy_from(saved[name] + direction[name] * (sign * eps))
            self.alpha_optimizer.zero_grad()
            forward_backward(self.hessian_graph)
            train_alpha_grads.append(snapshot({name: a.grad for name, a in self.alphas.items()}))
        restore(self.network_state, saved)

        plus, minus = train_alpha_grads
        for name, a in self.alphas.items():
            a.grad.copy_from(val_alpha_grads[name] - (plus[name] - minus[name]) * (xi / (2.0 * eps)))

    def virtual_step(self, xi):
        """w <- w - xi * (momentum * v + grad + wd * w), written into the weights' own arrays."""
        opt = self.weight_optimizer
        velocity = opt.scaled_velocity()  # xi * v, since xi is the current learning rate
        for name, w in self.weights.items():
            update = velocity[name] * opt.momentum + (w.grad + w.data * opt.weight_decay) * xi
            w.data.copy_from(w.data - update)

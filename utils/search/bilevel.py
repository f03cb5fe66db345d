"""The DARTS bilevel step: an alpha step on a validation batch, then a weight step on a training batch.

Both graphs are built once; every step only writes new values into the existing variables. In
particular the second-order step moves the weights by writing into their data arrays, because a
graph that is already built keeps reading the variables it was built with (rebinding parameters
with nn.parameter.set_parameter would leave the graph on the old weights and make the step a no-op).
"""
from collections import namedtuple

import nnabla as nn
import nnabla.solvers as S

from models.graph import build_graph, feed, forward_backward, make_graph
from utils.optim.array_graphs import ArrayGraph, GlobalNorm, copy_graph

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
    """Copies of a {name: NdArray} dict (used for the two alpha arrays; the network's arrays go through graphs)."""
    copies = {}
    for name, array in arrays.items():
        copies[name] = nn.NdArray(array.shape)
        copies[name].copy_from(array)
    return copies


class UnrolledStep:
    """The whole-network moves of the second-order step, each a constant number of nnabla calls.

    save/restore copy the network state (weights and batch-norm statistics) to and from buffers of
    their own, through graphs built once. The virtual step is a momentum update on a solver of its
    own, loaded with the weight solver's buffers; the perturbation is restore plus an SGD update
    with learning rate -eps. Solver updates are single C++ loops over all arrays, several times
    cheaper than per-array graph functions.
    """

    def __init__(self, weights, network_state, weight_optimizer):
        state = [v.data for v in network_state.values()]
        saved = [nn.NdArray(a.shape) for a in state]
        self.save = copy_graph(state, saved)
        self.restore = copy_graph(saved, state)
        self.weight_decay = weight_optimizer.weight_decay
        self.momentum_solver = S.Momentum(weight_optimizer.lr, weight_optimizer.momentum)
        self.momentum_solver.set_parameters(weights)
        own = self.momentum_solver.get_states()
        velocity = weight_optimizer.scaled_velocity()  # xi * buf, since xi is the current learning rate
        self.load_velocity = copy_graph([velocity[n] for n in own], [own[n].pstate["m"].data for n in own])
        self.shift_solver = S.Sgd(1.0)
        self.shift_solver.set_parameters(weights)

    def virtual_step(self, xi):
        """w <- w - (momentum * xi * buf + xi * (grad + wd * w)); leaves grad + wd * w in the gradients."""
        self.load_velocity.run()
        self.momentum_solver.set_learning_rate(xi)
        self.momentum_solver.weight_decay(self.weight_decay)
        self.momentum_solver.update()

    def perturb(self, eps):
        """Network state as saved, then w <- w + eps * grad."""
        self.restore.run()
        self.shift_solver.set_learning_rate(-eps)
        self.shift_solver.update()


class PlainSteps:
    """Plain DARTS trains the alphas at every step, needs nothing between the two steps, and trains the
    weights on the supernet."""
    trains_alphas = True

    def before_alpha_step(self):
        pass

    def weight_step_graph(self, supernet_graph):
        return supernet_graph

    def before_weight_step(self, train_batch):
        pass


# Three passes, each one forward and backward of a loss that leaves its gradients in the weights' and
# alphas' grads: the training loss, the validation loss, and the training loss for the alpha gradient
# only (it may skip the weight gradients). Whatever feeding they need is their own business.
UnrolledPasses = namedtuple("UnrolledPasses", "train val hessian")


class ClippedUnrolledStep:
    """The recurrent search's second-order alpha gradient (quark0's rnn/architect.py), each whole-network
    move a constant number of nnabla calls, as in UnrolledStep.

    The virtual step is w' = w - xi * (s * g + wd * w) without momentum, g = dL_train/dw clipped by the
    factor s = min(1, max_norm / (||g|| + 1e-6)). The seed uses max_norm / (||g|| + 1e-6) even when
    nothing was clipped, which exceeds 1 (its bug Q1); here it is capped at 1, the factor the gradient
    was actually scaled by, which scales the implicit term too. The direction dL_val/dw' is clipped to
    max_norm as the seed does, w+- = w +- eps * direction with eps = 0.01 / ||direction||.
    weight_optimizer: the optim.SGD over `weights`, whose gradient norm graph and zeroing are reused.
    For reproducing the seed as it runs (utils.recurrent.search_step's original_unrolled_step):
    unmoved, names of weights the virtual step leaves where they are (the seed's never moves its tied
    embedding; they still count in the clipping norms and are perturbed for the Hessian term, as there);
    uncapped_implicit, the implicit term scaled by the seed's uncapped max_norm / (||g|| + 1e-6).
    """

    def __init__(self, weights, network_state, weight_optimizer, unmoved=(), uncapped_implicit=False):
        names = list(network_state)
        state = [network_state[n].data for n in names]
        saved = [nn.NdArray(a.shape) for a in state]
        self.save = copy_graph(state, saved)
        self.restore = copy_graph(saved, state)
        self.weight_optimizer = weight_optimizer
        data = [weights[n].data for n in weights]
        grads = [weights[n].grad for n in weights]
        wd = weight_optimizer.weight_decay
        if set(unmoved) - set(weights):  # a renamed weight would be moved silently
            raise ValueError(f"unmoved: no such weights {sorted(set(unmoved) - set(weights))}")
        self.uncapped_implicit = uncapped_implicit
        moved = [n for n in weights if n not in unmoved]
        self._virtual = ArrayGraph(lambda w, g, xi, scale: w - (g * scale + w * wd) * xi,
                                   [[weights[n].data for n in moved], [weights[n].grad for n in moved]],
                                   [[weights[n].data for n in moved]], scalars=("xi", "scale"))
        direction = [nn.NdArray(g.shape) for g in grads]
        self._keep_direction = ArrayGraph(lambda g, scale: g * scale, [grads], [direction], scalars=("scale",))
        self._direction_norm = GlobalNorm(direction)
        saved_weights = [saved[names.index(n)] for n in weights]
        self._perturb = ArrayGraph(lambda w, d, eps: w + d * eps, [saved_weights, direction], [data],
                                   scalars=("eps",))

    def clip_factor(self, capped=True):
        """min(1, max_norm / (||g|| + 1e-6)) of the weights' current gradients (uncapped: without the min)."""
        factor = self.weight_optimizer.grad_clip / (self.weight_optimizer.grad_norm() + 1e-6)
        return min(1.0, factor) if capped else factor

    def alpha_gradient(self, passes, alphas, alpha_optimizer, xi):
        """Leaves dL_val(w', a)/da - xi * s * (dL_train(w+, a)/da - dL_train(w-, a)/da) / (2 eps) in the
        alpha grads; passes: UnrolledPasses. The network state is left exactly as it was."""
        self.save.run()
        self.weight_optimizer.zero_grad()
        alpha_optimizer.zero_grad()
        passes.train()
        factor = self.clip_factor(capped=False)
        scale = min(1.0, factor)
        implicit_scale = factor if self.uncapped_implicit else scale
        self._virtual.run(xi=xi, scale=scale)

        self.weight_optimizer.zero_grad()
        alpha_optimizer.zero_grad()  # the virtual step's backward left training-loss gradients there
        passes.val()
        self._keep_direction.run(scale=self.clip_factor())
        val_alpha_grads = snapshot({name: a.grad for name, a in alphas.items()})

        eps = 0.01 / self._direction_norm()
        train_alpha_grads = []
        for sign in (1.0, -1.0):
            self.restore.run()  # batch-norm statistics as saved; the weights are then w +- eps * direction
            self._perturb.run(eps=sign * eps)
            alpha_optimizer.zero_grad()
            passes.hessian()
            train_alpha_grads.append(snapshot({name: a.grad for name, a in alphas.items()}))
        self.restore.run()

        plus, minus = train_alpha_grads
        for name, a in alphas.items():  # the alpha arrays: one or two, whatever the network's size
            a.grad.copy_from(val_alpha_grads[name] - (plus[name] - minus[name]) * (xi * implicit_scale / (2.0 * eps)))


class BilevelOptimizer:
    """Owns the static graphs and the two solvers of a DARTS search.

    The graphs are SearchGraphs of build_search_graphs; with a hessian graph the step is second order.
    weights: {name: Variable} trained on the training half; network_state: weights plus batch-norm
    running statistics (everything a virtual step must leave untouched); alphas: {name: Variable}.
    steps: what a variant does between the steps (PlainSteps' interface): trains_alphas says whether this
    step has an alpha step (PC-DARTS's warm-up has none; the validation loss is still computed, for the
    series), before_alpha_step() feeds what the alpha step's graphs read, weight_step_graph(graphs.train)
    the graph the weight step runs (DADARTS's hard discretization runs a discrete one), and
    before_weight_step(train_batch) runs after that graph is fed (SDARTS perturbs its mixing weights there).
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
        self._unrolled = None

    def unrolled(self):
        """Built on first use, after a resume has written the checkpoint into the arrays it reads."""
        if self._unrolled is None:
            self._unrolled = UnrolledStep(self.weights, self.network_state, self.weight_optimizer)
        return self._unrolled

    def step(self, train_batch, val_batch):
        """One search step; the graphs keep their outputs (loss, logits) for the caller to read."""
        feed(self.val_graph, val_batch)
        if self.steps.trains_alphas:
            self.alpha_step(train_batch)
        else:
            self.val_graph.loss.forward(clear_no_need_grad=True)

        # The weight step sees the alphas this step's alpha step just moved.
        self.weight_graph = self.steps.weight_step_graph(self.train_graph)
        feed(self.weight_graph, train_batch)
        self.steps.before_weight_step(train_batch)
        self.weight_optimizer.zero_grad()
        forward_backward(self.weight_graph, self.weight_optimizer.grad_scale)
        self.weight_optimizer.step()

    def alpha_step(self, train_batch):
        """The alpha step on the fed validation batch (second order: also on train_batch)."""
        if self.second_order:
            feed(self.virtual_graph, train_batch)
            feed(self.hessian_graph, train_batch)
        self.steps.before_alpha_step()
        self.alpha_optimizer.zero_grad()
        if self.second_order:
            self.unrolled_alpha_gradient()
        else:
            forward_backward(self.val_graph, self.alpha_optimizer.grad_scale)
        self.alpha_optimizer.step()

    def unrolled_alpha_gradient(self):
        """Leaves dL_val(w', a)/da - xi * (dL_train(w+, a)/da - dL_train(w-, a)/da) / (2 eps) in the alpha grads.

        w' = w - xi * (momentum * v + dL_train(w, a)/dw + wd * w) with xi the current weight learning
        rate, w+- = w +- eps * g with g = dL_val(w', a)/dw' and eps = 0.01 / ||g||. The weights and
        batch-norm statistics are left exactly as they were.
        """
        xi = self.weight_optimizer.lr
        unrolled = self.unrolled()
        unrolled.save.run()

        self.weight_optimizer.zero_grad()
        forward_backward(self.virtual_graph)
        # Data parallel: every rank moves to the same w', the global batch's virtual step.
        self.weight_optimizer.average_gradients()
        self.virtual_step(xi)

        self.weight_optimizer.zero_grad()
        self.alpha_optimizer.zero_grad()  # the virtual step's backward left training-loss gradients there
        forward_backward(self.val_graph)
        # The same direction g and eps on every rank; the alpha gradient, linear in what each rank's passes
        # leave, is averaged by the alpha optimizer's step.
        self.weight_optimizer.average_gradients()
        val_alpha_grads = snapshot({name: a.grad for name, a in self.alphas.items()})

        # The weight gradients now hold the direction g; the frozen Hessian passes leave them alone.
        eps = 0.01 / self.weight_optimizer.grad_norm()
        train_alpha_grads = []
        for sign in (1.0, -1.0):
            unrolled.perturb(sign * eps)
            self.alpha_optimizer.zero_grad()
            forward_backward(self.hessian_graph)
            train_alpha_grads.append(snapshot({name: a.grad for name, a in self.alphas.items()}))
        unrolled.restore.run()

        plus, minus = train_alpha_grads
        for name, a in self.alphas.items():
            a.grad.copy_from(val_alpha_grads[name] - (plus[name] - minus[name]) * (xi / (2.0 * eps)))

    def virtual_step(self, xi):
        """w <- w - xi * (momentum * v + grad + wd * w), written into the weights' own arrays."""
        self.unrolled().virtual_step(xi)

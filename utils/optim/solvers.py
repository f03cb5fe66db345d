"""Optimisers with the semantics of the DARTS PyTorch code, on nnabla's solvers.

nnabla's Momentum keeps m = momentum * m + lr * grad, PyTorch's SGD keeps buf = momentum * buf + grad
and steps by lr * buf. The two agree while m == lr * buf, so when the learning rate changes m is
rescaled by new_lr / old_lr. That keeps the PyTorch trajectory under a cosine schedule, and makes
the DARTS virtual step (which reads the PyTorch buffer) exact.
"""
import math

import nnabla as nn
import nnabla.functions as F
import nnabla.solvers as S

from utils.optim.array_graphs import ArrayGraph, GlobalNorm, float_context


def cosine_lr(epoch, epochs, lr_max, lr_min):
    """Learning rate of `epoch` (0-based) for cosine annealing from lr_max to lr_min over `epochs`."""
    return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + math.cos(math.pi * epoch / epochs))


def exponential_lr(epoch, lr, decay):
    """Learning rate of `epoch` (0-based) under quark0's ImageNet StepLR(1, decay), stepped at each epoch's start."""
    return lr * decay ** epoch


def global_norm(arrays):
    """L2 norm over all the arrays together, as one vector."""
    return GlobalNorm(list(arrays))()


class SGD:
    """Momentum SGD with coupled weight decay and global-norm clipping, stepping like torch.optim.SGD.

    Every step is a constant number of nnabla calls: the gradient norm is one graph built once over all
    gradients, the clipping and weight decay are solver-wide calls. With a loss_scale
    (mixed_precision.DynamicLossScale) the gradients arrive scaled by grad_scale; step() unscales
    them, or skips the step when they overflowed. With all_reduce (a data-parallel run's
    utils.run.communicator all_reduce, one call over a list of arrays) step() first averages the gradients over
    the ranks, so that the clipping, the overflow check and the update see the global batch's gradient.
    cpu_kernels: the gradient norm is one call of ops/cpu_sums (float arrays on the host) instead of the graph.
    """

    def __init__(self, params, lr, momentum, weight_decay, grad_clip, loss_scale=None, all_reduce=None,
                 cpu_kernels=False):
        self.params = params
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.lr = lr
        self.loss_scale = loss_scale
        with nn.context_scope(float_context()):  # float master weights under --type-config half
            self.solver = S.Momentum(lr, momentum)
        self.solver.set_parameters(params)
        self._grads = [p.grad for p in params.values()]
        self._all_reduce = all_reduce
        self.grad_norm = GlobalNorm(self._grads, cpu_kernels)
        self._rescale = None  # built when the learning rate first changes: a run at a fixed rate never needs it

    def set_learning_rate(self, lr):
        if lr == self.lr:
            return
        if self._rescale is None:
            buffers = list(self.scaled_velocity().values())
            self._rescale = ArrayGraph(lambda m, ratio: m * ratio, [buffers], [buffers], scalars=("ratio",))
        self._rescale.run(ratio=lr / self.lr if self.lr > 0 else 0.0)
        self.lr = lr
        self.solver.set_learning_rate(lr)

    def resume_learning_rate(self, lr):
        """Sets the learning rate a checkpoint's momentum buffers were scaled with, without rescaling them."""
        self.lr = lr
        self.solver.set_learning_rate(lr)

    def zero_grad(self):
        self.solver.zero_grad()

    def average_gradients(self):
        """Data parallel: every rank's gradients become their mean over the ranks, all arrays in one call."""
        if self._all_reduce is not None:
            self._all_reduce(self._grads)

    @property
    def grad_scale(self):
        """What the loss is backpropagated times."""
        return 1.0 if self.loss_scale is None else self.loss_scale.scale

    def clip_gradients(self, norm=None):
        """Scales all gradients together so that their global norm is at most grad_clip (torch's
        clip_grad_norm_); returns the norm before clipping. norm: that norm, when already known."""
        if norm is None:
            norm = self.grad_norm()
        scale = self.grad_clip / (norm + 1e-6)
        if scale < 1.0:
            self.solver.scale_grad(scale)
        return norm

    def step(self):
        """Clips the gradients, adds weight decay and updates; returns False when overflowed
        half-precision gradients skipped the step."""
        self.average_gradients()
        norm = self.grad_norm()
        if self.loss_scale is not None:
            norm = self.loss_scale.unscale(self.solver, norm)
            if norm is None:
                return False
        self.clip_gradients(norm)
        self.solver.weight_decay(self.weight_decay)
        self.solver.update()
        return True

    def scaled_velocity(self):
        """{name: lr * buf}, the PyTorch momentum buffer times the current learning rate (the solver's own arrays)."""
        return {name: state.pstate["m"].data for name, state in self.solver.get_states().items()}


def torch_adam_update(w, g, m, v, lr, beta1, beta2, eps, weight_decay, correction1, correction2):
    """New (m, v, w) of torch.optim.Adam with coupled weight decay; correction_k = 1 - beta_k ** t."""
    g = g + weight_decay * w
    m = beta1 * m + (1.0 - beta1) * g
    v = beta2 * v + (1.0 - beta2) * g * g
    step = lr / correction1 * m / (F.pow_scalar(v, 0.5) / F.pow_scalar(correction2, 0.5) + eps)
    return m, v, w - step


class Adam:
    """Adam with coupled (L2) weight decay, updating exactly as torch.optim.Adam(weight_decay=...).

    nnabla's S.Adam folds both bias corrections into the step size, which scales eps by
    sqrt(1 - beta2 ** t) against PyTorch's; for gradients below about 1e-4 the steps then differ by
    up to tens of percent. The solver here only holds the state (its "mean" and "var" arrays and t, so
    that checkpoints save and restore it); the update is one graph built once over those arrays.
    A loss_scale and all_reduce work as in SGD.
    """

    def __init__(self, params, lr, beta1, beta2, weight_decay, eps=1e-8, loss_scale=None, all_reduce=None):
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.loss_scale = loss_scale
        with nn.context_scope(float_context()):
            self.solver = S.Adam(lr, beta1, beta2, eps)
        self.solver.set_parameters(params)
        self._grads = [p.grad for p in params.values()]
        self._all_reduce = all_reduce
        self.grad_norm = GlobalNorm(self._grads) if loss_scale is not None else None
        states = self.solver.get_states()
        names = list(states)
        means = [states[n].pstate["mean"].data for n in names]
        variances = [states[n].pstate["var"].data for n in names]
        weights = [params[n].data for n in names]
        grads = [params[n].grad for n in names]

        def update(w, g, m, v, lr, correction1, correction2):
            return torch_adam_update(w, g, m, v, lr, beta1, beta2, eps, weight_decay, correction1, correction2)
        self._update = ArrayGraph(update, [weights, grads, means, variances], [means, variances, weights],
                                  scalars=("lr", "correction1", "correction2"))

    grad_scale = SGD.grad_scale
    average_gradients = SGD.average_gradients

    def zero_grad(self):
        self.solver.zero_grad()

    def step(self):
        """Updates; returns False when overflowed half-precision gradients skipped the step."""
        self.average_gradients()
        if self.loss_scale is not None and self.loss_scale.unscale(self.solver, self.grad_norm()) is None:
            return False
        states = self.solver.get_states()
        for state in states.values():
            state.t += 1
        self.solver.set_states(states)
        t = next(iter(states.values())).t if states else 1
        self._update.run(lr=self.lr, correction1=1.0 - self.beta1 ** t, correction2=1.0 - self.beta2 ** t)
        return True

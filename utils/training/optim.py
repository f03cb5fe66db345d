"""Optimisers with the semantics of the DARTS PyTorch code, on nnabla's solvers.

nnabla's Momentum keeps m = momentum * m + lr * grad, PyTorch's SGD keeps buf = momentum * buf + grad
and steps by lr * buf. The two agree while m == lr * buf, so when the learning rate changes m is
rescaled by new_lr / old_lr. That keeps the PyTorch trajectory under a cosine schedule, and makes
the DARTS virtual step (which reads the PyTorch buffer) exact.
"""
import math

import nnabla.functions as F
import nnabla.solvers as S


def cosine_lr(epoch, epochs, lr_max, lr_min):
    """Learning rate of `epoch` (0-based) for cosine annealing from lr_max to lr_min over `epochs`."""
    return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + math.cos(math.pi * epoch / epochs))


def exponential_lr(epoch, lr, decay):
    """Learning rate of `epoch` (0-based) under quark0's ImageNet StepLR(1, decay), stepped at each epoch's start."""
    return lr * decay ** epoch


def global_norm(grads):
    """L2 norm over all the arrays together, as one vector."""
    total = 0.0
    for g in grads:
        total += float(F.sum(F.pow_scalar(g, 2.0)).data)
    return math.sqrt(total)


def clip_by_global_norm(params, max_norm):
    """Scales all gradients together so that their global norm is at most max_norm (torch's clip_grad_norm_)."""
    norm = global_norm(p.grad for p in params.values())
    scale = max_norm / (norm + 1e-6)
    if scale < 1.0:
        for p in params.values():
            p.grad *= scale
    return norm


class SGD:
    """Momentum SGD with coupled weight decay and global-norm clipping, stepping like torch.optim.SGD."""

    def __init__(self, params, lr, momentum, weight_decay, grad_clip):
        self.params = params
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.lr = lr
        self.solver = S.Momentum(lr, momentum)
        self.solver.set_parameters(params)

    def set_learning_rate(self, lr):
        if lr == self.lr:
            return
        ratio = lr / self.lr if self.lr > 0 else 0.0
        for state in self.solver.get_states().values():
            state.pstate["m"].data *= ratio
        self.lr = lr
        self.solver.set_learning_rate(lr)

    def resume_learning_rate(self, lr):
        """Sets the learning rate a checkpoint's momentum buffers were scaled with, without rescaling them."""
        self.lr = lr
        self.solver.set_learning_rate(lr)

    def zero_grad(self):
        self.solver.zero_grad()

    def step(self):
        """Clips the gradients, adds weight decay and updates; returns the gradient norm before clipping."""
        norm = clip_by_global_norm(self.params, self.grad_clip)
        self.solver.weight_decay(self.weight_decay)
        self.solver.update()
        return norm

    def scaled_velocity(self):
        """{name: lr * buf}, the PyTorch momentum buffer times the current learning rate."""
        return {name: state.pstate["m"].data for name, state in self.solver.get_states().items()}


class Adam:
    """Adam with coupled (L2) weight decay, as torch.optim.Adam(weight_decay=...)."""

    def __init__(self, params, lr, beta1, beta2, weight_decay, eps=1e-8):
        self.weight_decay = weight_decay
        self.solver = S.Adam(lr, beta1, beta2, eps)
        self.solver.set_parameters(params)

    def zero_grad(self):
        self.solver.zero_grad()

    def step(self):
        self.solver.weight_decay(self.weight_decay)
        self.solver.update()

"""The DARTS paper's bilevel toy problem (its Figure 2), as the course project VoronkovaDasha/project_darts
runs it in bilevel_optimization_example.ipynb, with the hypergradient of this project's BilevelOptimizer.

    L_train(w, a) = (w - a)^2        L_val(w, a) = a w - 2 a + 1

The best response to a is w*(a) = a, so the bilevel problem is min_a L_val(a, a) = (a - 1)^2, and its
optimum is a* = w* = 1. The alpha step descends the gradient of L_val(w', a) through the virtual step
w' = w - xi dL_train/dw = (1 - 2 xi) w + 2 xi a:

    d/da L_val(w'(a), a) = w' + 2 xi a - 2 = (1 - 2 xi) w + 4 xi a - 2,

which is w - 2 at xi = 0, the first-order gradient. Alternating it with the weight step, a fixed point needs
w = a (weight step) and (1 + 2 xi) a = 2 (alpha step): the iteration ends at a = w = 2 / (1 + 2 xi). First
order thus settles at (2, 2), on the feasible set w = a but not at the optimum; xi = 0.5 reaches (1, 1)
exactly (one step of size 1/2 on (w - a)^2 lands on w*(a) = a, so w'(a) is the exact best response);
xi = 0.3 and 0.7 end at 1.25 and 0.833, nearer the optimum than first order.
"""
import math

import nnabla as nn
import numpy as np

from models.graph import forward_backward, make_graph
from utils.optim.solvers import SGD
from utils.search.bilevel import BilevelOptimizer, SearchGraphs

# The notebook's loop: (a, w) start at (2, -2), plain SGD at 0.01 on both, up to 10,000 alternating steps,
# stopping once a step moves neither a nor w by 1e-4 or more; it compares these xi.
START = (2.0, -2.0)
OPTIMUM = (1.0, 1.0)
LEARNING_RATE = 0.01
MAX_STEPS = 10000
THRESHOLD = 1e-4
XIS = (0.0, 0.3, 0.5, 0.7)


def train_loss(w, alpha):
    return (w - alpha) ** 2


def val_loss(w, alpha):
    return alpha * w - 2.0 * alpha + 1.0


def _graph(loss):
    # The toy has no data: nothing is fed, and the loss is its own "logits".
    return make_graph(None, None, loss, loss)


def _plain_sgd(params, lr):
    return SGD(params, lr, momentum=0.0, weight_decay=0.0, grad_clip=math.inf)


class ToyBilevel:
    """a and w as nnabla parameters, and the alternating DARTS step on them.

    The hypergradient is BilevelOptimizer's: its unrolled alpha gradient (virtual step, then the
    finite-difference Hessian-vector product) when unrolled, else the first-order alpha pass on
    frozen weights. BilevelOptimizer takes xi from its weight optimiser's learning rate, as DARTS does;
    the toy, like the paper's Figure 2, gives xi its own value, so the virtual step gets an optimiser
    of its own at learning rate xi (never stepped: it only carries xi and its empty momentum buffer),
    and the weight step is plain SGD at the notebook's rate.
    unrolled: None for the notebook's choice, second order exactly when xi > 0.
    """

    def __init__(self, xi, start=START, lr=LEARNING_RATE, unrolled=None):
        self.xi = xi
        self.unrolled = xi > 0 if unrolled is None else unrolled
        alpha0, w0 = start
        self.alpha = nn.Variable.from_numpy_array(np.array([alpha0], np.float32), need_grad=True)
        self.w = nn.Variable.from_numpy_array(np.array([w0], np.float32), need_grad=True)
        frozen_w = self.w.get_unlinked_variable(need_grad=False)  # same data, no weight gradient
        weights, alphas = {"w": self.w}, {"alpha": self.alpha}
        self.train_graph = _graph(train_loss(self.w, self.alpha))
        self.first_order_val_graph = _graph(val_loss(frozen_w, self.alpha))
        graphs = SearchGraphs(train=self.train_graph, virtual=self.train_graph,
                              val=_graph(val_loss(self.w, self.alpha)),
                              hessian=_graph(train_loss(frozen_w, self.alpha)))
        self.weight_optimizer = _plain_sgd(weights, lr)
        self.alpha_optimizer = _plain_sgd(alphas, lr)
        self.bilevel = BilevelOptimizer(graphs, weights, weights, alphas, _plain_sgd(weights, xi),
                                        self.alpha_optimizer)

    @property
    def point(self):
        """(a, w) as floats."""
        return float(self.alpha.d[0]), float(self.w.d[0])

    def hypergradient(self):
        """Leaves d/da L_val(w', a) in alpha's gradient (w' = w when not unrolled) and returns it."""
        self.alpha_optimizer.zero_grad()
        if self.unrolled:
            self.bilevel.unrolled_alpha_gradient()
        else:
            forward_backward(self.first_order_val_graph)
        return float(self.alpha.g[0])

    def step(self):
        """The alpha step, then the weight step on the alpha it just moved (BilevelOptimizer's order)."""
        self.hypergradient()
        self.alpha_optimizer.step()
        self.weight_optimizer.zero_grad()
        forward_backward(self.train_graph)
        self.weight_optimizer.step()


def trajectory(xi, steps=MAX_STEPS, threshold=THRESHOLD, start=START, lr=LEARNING_RATE):
    """(n + 1, 2) array of (a, w) from the start over n <= steps steps, ending (as the notebook does) after
    the first step that moves neither a nor w by threshold or more."""
    toy = ToyBilevel(xi, start=start, lr=lr)
    points = [toy.point]
    for _ in range(steps):
        toy.step()
        points.append(toy.point)
        (a0, w0), (a1, w1) = points[-2:]
        if abs(a1 - a0) < threshold and abs(w1 - w0) < threshold:
            break
    return np.array(points)

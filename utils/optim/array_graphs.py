"""Static graphs over many arrays at once: one forward call updates every array of a network.

The optimisers touch about 1,400 arrays per step (every weight, its gradient, its momentum buffer,
the batch-norm statistics). A Python loop over them costs a call, and on a GPU a host sync, per
array; these graphs are built once over the arrays themselves (their Variables share the arrays'
memory), so that a step costs a constant number of nnabla calls, whatever the network's size.

The arrays must keep their identity: code that moves values writes into them (`.d = ...`,
set_states with the same state Variables), never replaces them.
"""
import math

import nnabla as nn
import nnabla.functions as F

from ops.cpu_sums import SumOfSquares


def float_context():
    """The current context computing in float: under --type-config half, norms of ~10^6 squares and
    weight copies must not go through fp16 (its range ends at 65504, its spacing near 0.1 is 6e-5)."""
    ctx = nn.get_current_context()
    backend = list(dict.fromkeys(b.replace(":half", ":float") for b in ctx.backend))
    return nn.Context(backend=backend, array_class=ctx.array_class, device_id=ctx.device_id)


def bound_variable(array):
    """A Variable whose data is `array` (an NdArray): reading it reads the array, writing it writes the array."""
    v = nn.Variable(array.shape, need_grad=False)
    v.data = array
    return v


class ArrayGraph:
    """targets[k][i] <- formula(operands[0][i], operands[1][i], ..., **scalars)[k] for every i, in one call.

    operands: one list of NdArrays per argument of `formula`, all of the same length; targets: one
    list per result of `formula` (which returns a Variable or a tuple of them). A target may be one
    of the operands: the formulas are elementwise, so an array can be read and written by the same
    function. scalars: names of the scalar inputs, set with set() before run(); they broadcast to
    every array.
    """

    def __init__(self, formula, operands, targets, scalars=()):
        with nn.context_scope(float_context()):
            self._build(formula, operands, targets, scalars)

    def _build(self, formula, operands, targets, scalars):
        self.scalars = {name: nn.Variable(()) for name in scalars}
        outputs = []
        for index, arrays in enumerate(zip(*operands)):
            ndim = len(arrays[0].shape)
            broadcast = {name: F.reshape(s, (1,) * ndim) for name, s in self.scalars.items()}
            results = formula(*(bound_variable(a) for a in arrays), **broadcast)
            if not isinstance(results, tuple):
                results = (results,)
            for result, target in zip(results, targets):
                result.data = target[index]
                result.persistent = True
                outputs.append(result)
        self.sink = F.sink(*outputs) if outputs else None

    def set(self, **values):
        for name, value in values.items():
            self.scalars[name].d = value

    def run(self, **values):
        self.set(**values)
        if self.sink is not None:
            self.sink.forward(clear_buffer=True)


def copy_graph(sources, targets):
    """targets[i] <- sources[i] for every i."""
    return ArrayGraph(F.identity, [sources], [targets])


class GlobalNorm:
    """The L2 norm of a list of arrays taken together as one vector: from one graph built once, or with
    cpu_kernels (float arrays on the host, ops/cpu_kernels built) from one kernel call, which spares the graph's
    two functions per array."""

    def __init__(self, arrays, cpu_kernels=False):
        if cpu_kernels:
            self._sum_of_squares = SumOfSquares(arrays)
            return
        with nn.context_scope(float_context()):
            squares = [F.sum(F.pow_scalar(bound_variable(a), 2.0)) for a in arrays]
            total = F.sum(F.stack(*squares)) if squares else None

        def graph_sum_of_squares():
            if total is None:
                return 0.0
            total.forward(clear_buffer=True)
            return float(total.d)
        self._sum_of_squares = graph_sum_of_squares

    def __call__(self):
        return math.sqrt(self._sum_of_squares())

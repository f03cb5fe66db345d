"""Recurrent search and training: NT-ASGD, the search's alpha gradients against finite differences,
per-space defaults, and both scripts end to end on a tiny corpus written here."""
import json
import os
from urllib.error import URLError

import nnabla as nn
import numpy as np
import pytest

import darts_search
import darts_train
from args import parse_args, search_parser, train_parser
from models.recurrent import build_search_model, create_alpha, WEIGHT_SCOPE
from models.recurrent_genotype import NAMED_RECURRENT_GENOTYPES, load_recurrent_genotype
from utils.data.text import Batch, SPLITS
from utils.training.language_model import GraphCache, feed, forward_backward
from utils.training.ntasgd import PolyakAverage, should_switch_to_asgd
from utils.training.optim import SGD, Adam
from utils.training.recurrent_search import RecurrentSearchStep

NTOKEN, NHID, SEQ, BATCH = 7, 4, 3, 4


@pytest.fixture(autouse=True)
def fresh_parameters():
    nn.clear_parameters()
    yield
    nn.clear_parameters()


# ---------------------------------------------------------------- NT-ASGD

def test_polyak_average_is_the_running_mean_of_the_iterates_since_the_start():
    rng = np.random.default_rng(0)
    params = {"a": nn.Variable((3, 2)), "b": nn.Variable((4,))}
    for p in params.values():
        p.d = rng.normal(size=p.shape)
    polyak = PolyakAverage(params)
    seen = {name: [] for name in params}
    for _ in range(7):
        for name, p in params.items():
            p.d = rng.normal(size=p.shape)
            seen[name].append(p.d.copy())
        polyak.update()
    for name in params:
        np.testing.assert_allclose(polyak.average[name], np.mean(seen[name], axis=0), rtol=1e-6)
    current = params["a"].d.copy()
    with polyak.swapped_in():
        np.testing.assert_allclose(params["a"].d, np.mean(seen["a"], axis=0), rtol=1e-6)
    assert np.array_equal(params["a"].d, current)


def test_asgd_trigger_is_the_seeds_condition():
    # Five epochs or fewer: never.
    assert not should_switch_to_asgd(9.0, [5.0, 4.0, 3.0, 2.0, 1.0], nonmono=5)
    # Six: compared with the best of all but the last five, i.e. the first one.
    assert not should_switch_to_asgd(4.9, [5.0, 4.0, 3.0, 2.0, 1.0, 0.5], nonmono=5)
    assert should_switch_to_asgd(5.1, [5.0, 4.0, 3.0, 2.0, 1.0, 0.5], nonmono=5)
    assert should_switch_to_asgd(2.5, [3.0, 2.0, 9.0, 9.0, 9.0], nonmono=3)
    assert not should_switch_to_asgd(1.5, [3.0, 2.0, 9.0, 9.0, 9.0], nonmono=3)


def test_asgd_switches_at_the_first_epoch_meeting_the_condition():
    losses = [6.0, 5.0, 4.5, 4.4, 4.6, 4.3, 4.2, 4.25, 5.2, 4.1]
    earlier, switched = [], None
    for epoch, loss in enumerate(losses):
        if should_switch_to_asgd(loss, earlier, nonmono=2):
            switched = epoch
            break
        earlier.append(loss)
    # By hand: epoch 4 (4.6) against min(6, 5) = 5 no; ...; epoch 8 (5.2) > min(losses[:6]) = 4.3.
    assert switched == 8


# ---------------------------------------------------------------- alpha gradients

# Float32 central differences of a loss near log(7): the step keeps rounding (~1e-7 / 0.02) well below
# the gradient entries. Measured relative errors are given with each test.
STEP = 0.05


def search_setup(second_order, lr, clip, weight_decay=0.0):
    rng = np.random.RandomState(0)
    alpha = create_alpha(rng)
    alpha.d = rng.randn(*alpha.shape) * 0.5
    graphs = GraphCache(lambda seq_len: build_search_model(alpha, seq_len, BATCH, NTOKEN, NHID, training=True,
                                                           tar_beta=0.0, rng=rng))
    graphs[SEQ]
    params = nn.get_parameters(grad_only=False)
    weights = {k: v for k, v in nn.get_parameters().items() if k.startswith(WEIGHT_SCOPE + "/")}
    state = {k: v for k, v in params.items() if k.startswith(WEIGHT_SCOPE + "/")}
    for w in weights.values():  # larger than the seed's init, so the cell is far from linear
        w.d = rng.uniform(-0.6, 0.6, w.shape)
    alphas = {"arch/alpha": alpha}
    weight_opt = SGD(weights, lr, 0.0, weight_decay, clip)
    stepper = RecurrentSearchStep(graphs, weights, state, alphas, weight_opt, Adam(alphas, 0.0, 0.9, 0.999, 0.0),
                                  {}, second_order)
    stepper.reset_hidden(BATCH, NHID)
    stepper.train_hidden = rng.randn(BATCH, NHID).astype(np.float32) * 0.5
    stepper.val_hidden = rng.randn(BATCH, NHID).astype(np.float32) * 0.5

    def batch(step):
        tokens = rng.randint(0, NTOKEN, (SEQ + 1, BATCH))
        return Batch(step, 0, SEQ, tokens[:-1], tokens[1:])
    return stepper, alpha, weights, state, batch(0), batch(1)


def nll(stepper, batch, hidden):
    graph = stepper.graphs[len(batch.data)]
    feed(graph, batch.data, batch.target, hidden)
    graph.nll.forward(clear_no_need_grad=True)
    return float(graph.nll.d)


def weight_gradient(stepper, batch, hidden):
    for w in stepper.weights.values():
        w.grad.zero()
    graph = stepper.graphs[len(batch.data)]
    feed(graph, batch.data, batch.target, hidden)
    forward_backward(graph.nll)
    return {k: w.g.copy() for k, w in stepper.weights.items()}


def global_norm(grads):
    return float(np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads.values())))


# The edges 0 -> 1, 1 -> 2 and 7 -> 8 (rows of EDGES), every op column of each.
ROWS = (0, 2, 35)
ENTRIES = [(row, column) for row in ROWS for column in range(5)]


def finite_difference(alpha, objective):
    original = alpha.d.copy()
    grad = np.zeros_like(original)
    for index in ENTRIES:
        values = []
        for sign in (1, -1):
            shifted = original.copy()
            shifted[index] += sign * STEP
            alpha.d = shifted
            values.append(objective())
        grad[index] = (values[0] - values[1]) / (2 * STEP)
    alpha.d = original
    return grad


def relative_error(a, b):
    a, b = (np.array([x[index] for index in ENTRIES]) for x in (a, b))
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def restore_state(state, saved):
    for k, v in state.items():
        v.d = saved[k]


def test_first_order_alpha_gradient_matches_finite_differences_of_the_validation_nll():
    stepper, alpha, weights, state, train, val = search_setup(second_order=False, lr=1.0, clip=0.25)
    saved = {k: v.d.copy() for k, v in state.items()}
    stepper.alpha_gradient(train, val, {}, {})
    grad = alpha.g.copy()
    restore_state(state, saved)  # batch-norm running statistics moved; the loss does not read them

    numeric = finite_difference(alpha, lambda: nll(stepper, val, stepper.val_hidden))
    assert relative_error(grad, numeric) < 5e-3  # measured 6e-4


def test_second_order_alpha_gradient_with_clipping_matches_finite_differences():
    """The unrolled objective L_val(w - xi * (s * g + wd * w)) with s the clipping factor of g = dL_train/dw,
    held at its value at the current alpha, as the seed's formula treats it."""
    xi, clip, wd = 1.0, 0.8, 0.01
    # Swapped, so that the training gradient (norm ~1.06) is clipped and the direction dL_val/dw' (~0.5) is
    # not: the seed also clips the direction, which no objective's derivative does.
    stepper, alpha, weights, state, val, train = search_setup(second_order=True, lr=xi, clip=clip, weight_decay=wd)
    stepper.train_hidden, stepper.val_hidden = stepper.val_hidden, stepper.train_hidden
    saved = {k: v.d.copy() for k, v in state.items()}
    scale = min(1.0, clip / (global_norm(weight_gradient(stepper, train, stepper.train_hidden)) + 1e-6))
    restore_state(state, saved)
    assert scale < 0.8  # clipping is active, so the factor matters

    stepper.alpha_gradient(train, val, {}, {})
    grad = alpha.g.copy()
    for k, v in state.items():
        assert np.array_equal(v.d, saved[k]), k  # the virtual step is undone exactly

    def unrolled(factor):
        def objective():
            g = weight_gradient(stepper, train, stepper.train_hidden)
            for k, w in weights.items():
                w.d = saved[k] - xi * (factor * g[k] + wd * saved[k])
            value = nll(stepper, val, stepper.val_hidden)
            restore_state(state, saved)
            return value
        return objective
    numeric = finite_difference(alpha, unrolled(scale))
    # Measured 1.3e-2: the ReLU op's kinks (1e-3 with ReLU replaced by a smooth op).
    assert relative_error(grad, numeric) < 3e-2

    # Without the factor the objective is another one, which the gradient does not match.
    assert relative_error(grad, finite_difference(alpha, unrolled(1.0))) > 0.1  # measured 0.28

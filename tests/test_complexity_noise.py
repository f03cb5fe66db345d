"""When complexity control draws its Gumbel noise within a second-order step: one sample per graph and step
(w+ and w- share one), or with --fresh-noise-every-pass a new sample at every pass, as var_nas' rsample in
every forward does (the virtual step, the alpha step, w+, w-, the weight step)."""
import nnabla as nn
import numpy as np

from models.search_network import all_weight_state, alpha_parameters, weight_parameters
from utils.optim.solvers import SGD, Adam
from utils.search import bilevel
from utils.search.bilevel import BilevelOptimizer, build_search_graphs
from utils.search.variant import SearchSetup
from utils.search.variants.complexity import ComplexityControl, ComplexitySettings

SHAPE = (4, 1, 8, 8)
# The passes of a second-order step, in the order BilevelOptimizer.step runs them.
PASSES = ("virtual step", "alpha step", "w+", "w-", "weight step")


def noise_per_pass(monkeypatch, fresh_noise_every_pass, steps=2):
    """[[the noise arrays of every sampled graph as they stand after each pass] per pass] per step, of a
    second-order complexity-controlled search on a one-cell network, as darts_search.search wires it."""
    nn.clear_parameters()
    setup = SearchSetup(SHAPE, 3, 2, 1, seed=5, rng=np.random.RandomState(0))
    variant = ComplexityControl(ComplexitySettings(-3, -1, fresh_noise_every_pass=fresh_noise_every_pass), setup)
    graphs = build_search_graphs(variant.network, SHAPE, True, variant.alpha_penalty, variant.separate_virtual)
    weights = weight_parameters()
    optimizer = BilevelOptimizer(graphs, weights, all_weight_state(), alpha_parameters(),
                                 SGD(weights, 0.025, 0.9, 3e-4, 5.0), Adam(alpha_parameters(), 3e-3, 0.5, 0.999, 1e-3),
                                 steps=variant)
    records = []

    def recording(graph, *args, **kwargs):
        forward_backward(graph, *args, **kwargs)
        records[-1].append([noise.d.copy() for noise in variant.sampler.noise])
    forward_backward = bilevel.forward_backward
    monkeypatch.setattr(bilevel, "forward_backward", recording)
    variant.start_epoch(0, 10)
    data = np.random.default_rng(0)
    for _ in range(steps):
        records.append([])
        batch = (data.normal(size=SHAPE).astype(np.float32), data.integers(0, 3, (SHAPE[0], 1)))
        optimizer.step(batch, batch)
    monkeypatch.undo()
    nn.clear_parameters()
    assert all(len(step) == len(PASSES) for step in records)
    return records


def changed(before, after):
    """Indices of the noise arrays that differ between two records."""
    return tuple(i for i, (b, a) in enumerate(zip(before, after)) if not np.array_equal(b, a))


def test_by_default_every_pass_of_a_step_reads_the_sample_drawn_before_it(monkeypatch):
    records = noise_per_pass(monkeypatch, False)
    for step in records:
        for name, record in zip(PASSES[1:], step[1:]):
            assert changed(step[0], record) == (), name  # w+ and w- (one graph) read one sample, and so on
    assert changed(records[0][-1], records[1][0]) == tuple(range(6))  # the next step draws anew


def test_with_fresh_noise_every_pass_each_pass_draws_a_new_sample(monkeypatch):
    records = noise_per_pass(monkeypatch, True)
    # The second step, from the first step's last pass on (the first pass of all finds arrays not yet drawn).
    before, touched = records[0][-1], []
    for name, record in zip(PASSES, records[1]):
        touched.append(changed(before, record))  # the arrays of the graph this pass ran, redrawn
        assert len(touched[-1]) == 1, name  # the one-cell network reads its reduction cell's noise only
        before = record
    virtual, alpha, plus, minus, weight = touched
    # Three graphs (training, validation, Hessian), each redrawn at every pass that runs it.
    assert virtual == weight and plus == minus and len({virtual, alpha, plus}) == 3
    for name, previous, record in zip(PASSES[1:], records[0], records[0][1:]):
        assert len(changed(previous, record)) == 1, name
    # Drawn from (seed, epoch, step) in pass order: a new run draws the same.
    again = noise_per_pass(monkeypatch, True)
    for step, step_again in zip(records, again):
        for record, record_again in zip(step, step_again):
            assert changed(record, record_again) == ()

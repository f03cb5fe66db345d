"""Recurrent cells, the language model around them and recurrent genotypes, against numpy transcriptions
of quark0/darts' rnn/model.py and model_search.py equations, at tiny sizes."""
import json

import nnabla as nn
import nnabla.functions as F
import numpy as np
import pytest

from models.genotype import ArchitectureError
from models.recurrent import (ALPHA_SHAPE, ARCH_SCOPE, MASK_NAMES, WEIGHT_SCOPE, build_eval_model,
                              build_search_model, create_alpha, dropout_mask, feed_masks)
from models.recurrent_genotype import (EDGES, NAMED_RECURRENT_GENOTYPES, RecurrentGenotype,
                                       derive_recurrent_genotype, from_json_value,
                                       load_recurrent_genotype, save_recurrent_genotype, to_json_value)
from ops import cpu_kernels, cpu_recurrent
from ops.recurrent_ops import ACTIVE_OPS, RECURRENT_OP_NAMES, activation, recurrent_op

NTOKEN, NHID, SEQ, BATCH = 13, 4, 3, 2
DROPOUTS = {"embedding": 0.3, "input": 0.3, "x": 0.5, "h": 0.4, "output": 0.5}
needs_library = pytest.mark.skipif(not cpu_kernels.available(), reason="the cpu kernels are not built (make kernels)")
# The models built on nnabla's functions and on ops/cpu_recurrent's kernels.
KERNEL_MODES = [False, pytest.param(True, marks=needs_library)]


@pytest.fixture(autouse=True)
def fresh_parameters():
    nn.clear_parameters()
    yield
    nn.clear_parameters()


# ---------------------------------------------------------------- numpy transcriptions

def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


ACT = {1: np.tanh, 2: lambda x: np.maximum(x, 0.0), 3: sigmoid, 4: lambda x: x}


def np_init_state(x, h_prev, params, mx, mh):
    ch = np.concatenate([x * mx, h_prev * mh], axis=1) @ params["cell/W0"]
    c0, h0 = sigmoid(ch[:, :NHID]), np.tanh(ch[:, NHID:])
    return h_prev + c0 * (h0 - h_prev)


def np_eval_cell(genotype):
    def cell(x, h_prev, params, mx, mh):
        states = [np_init_state(x, h_prev, params, mx, mh)]
        for i, (op_id, j) in enumerate(genotype.recurrent):
            ch = (states[j] * mh) @ params[f"cell/W{i + 1}"]
            c = sigmoid(ch[:, :NHID])
            states.append(states[j] + c * (ACT[op_id](ch[:, NHID:]) - states[j]))
        return np.mean([states[k] for k in genotype.concat], axis=0)
    return cell


def np_bn(s):
    return (s - s.mean(axis=0)) / np.sqrt(s.var(axis=0) + 1e-5)


def np_search_cell(alpha):
    probs = np.exp(alpha) / np.exp(alpha).sum(axis=1, keepdims=True)

    def cell(x, h_prev, params, mx, mh):
        states = [np_bn(np_init_state(x, h_prev, params, mx, mh))]
        for node in range(1, 9):
            s = 0.0
            for j in range(node):
                ch = (states[j] * mh) @ params[f"cell/W{node}"]
                c, h = sigmoid(ch[:, :NHID]), ch[:, NHID:]
                p = probs[EDGES.index((j, node))]
                s = s + sum(p[k] * (states[j] + c * (ACT[k](h) - states[j])) for k in range(1, 5))
            states.append(np_bn(s))
        return np.mean(states[1:], axis=0)
    return cell


def np_language_model(cell, tokens, targets, h0, params, masks, beta):
    embedding = params["encoder/W"]
    x = (embedding * masks["embedding"])[tokens] * masks["input"]
    h, raw = h0, []
    for t in range(len(tokens)):
        h = cell(x[t], h, params, masks["x"], masks["h"])
        raw.append(h)
    raw = np.stack(raw)
    logits = (raw * masks["output"]) @ embedding.T + params["decoder/b"]
    log_p = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    nll = -np.take_along_axis(log_p, targets[..., None], axis=-1).mean()
    return nll, nll + beta * np.mean((raw[1:] - raw[:-1]) ** 2), raw


def ones_masks(batch=BATCH):
    return {"embedding": np.ones((NTOKEN, 1)), "input": np.ones((1, batch, NHID)), "x": np.ones((batch, NHID)),
            "h": np.ones((batch, NHID)), "output": np.ones((1, batch, NHID))}


def feed_inputs(graph, rng):
    graph.tokens.d = rng.integers(0, NTOKEN, graph.tokens.shape)
    graph.targets.d = rng.integers(0, NTOKEN, graph.targets.shape)
    graph.hidden.d = rng.uniform(-0.5, 0.5, graph.hidden.shape)


def params64(scope=None):
    if scope is None:
        return {k: v.d.astype(np.float64) for k, v in nn.get_parameters().items()}
    with nn.parameter_scope(scope):
        return {k: v.d.astype(np.float64) for k, v in nn.get_parameters(grad_only=False).items()}


def check_against_numpy(graph, cell, params, masks, beta):
    graph.loss.forward()
    nll, loss, raw = np_language_model(cell, graph.tokens.d.astype(int), graph.targets.d.astype(int),
                                       graph.hidden.d.astype(np.float64), params, masks, beta)
    np.testing.assert_allclose(graph.raw_output.d, raw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(graph.last_hidden.d, raw[-1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(graph.nll.d, nll, rtol=1e-5)
    np.testing.assert_allclose(graph.loss.d, loss, rtol=1e-5)


# ---------------------------------------------------------------- op table

def test_op_table_is_the_seeds_primitives_in_order():
    assert RECURRENT_OP_NAMES == ("none", "tanh", "relu", "sigmoid", "identity")
    x = nn.Variable.from_numpy_array(np.array([-2.0, -0.5, 0.0, 1.5]))
    for op_id in range(1, 5):
        y = activation(op_id)(x)
        y.forward()
        np.testing.assert_allclose(y.d, ACT[op_id](x.d), rtol=1e-6)
    with pytest.raises(ValueError, match="'none'"):
        activation(0)
    with pytest.raises(ValueError, match="unknown recurrent op id 5"):
        recurrent_op(5)


# ---------------------------------------------------------------- cells and language model

@pytest.mark.parametrize("genotype", [
    RecurrentGenotype(((3, 0), (2, 1), (4, 1), (1, 2))),
    RecurrentGenotype(((1, 0), (2, 1), (3, 0)), concat=(2, 3)),  # ENAS-style concat, node 1 left out
])
@pytest.mark.parametrize("kernels", KERNEL_MODES)
def test_evaluation_model_in_training_matches_numpy(genotype, kernels):
    rng = np.random.default_rng(0)
    graph = build_eval_model(genotype, SEQ, BATCH, NTOKEN, NHID, training=True, tar_beta=0.5,
                             rng=np.random.RandomState(1), cpu_kernels=kernels)
    assert set(graph.masks) == set(MASK_NAMES)
    feed_inputs(graph, rng)
    feed_masks(graph, rng, DROPOUTS)
    masks = {name: mask.d.astype(np.float64) for name, mask in graph.masks.items()}
    assert all((m != 1).any() for m in masks.values())  # every mask really drops something here
    check_against_numpy(graph, np_eval_cell(genotype), params64(), masks, beta=0.5)


@pytest.mark.parametrize("kernels", KERNEL_MODES)
def test_evaluation_model_outside_training_has_no_masks_and_no_tar(kernels):
    genotype = NAMED_RECURRENT_GENOTYPES["DARTS_V2"]
    graph = build_eval_model(genotype, SEQ, BATCH, NTOKEN, NHID, training=False, rng=np.random.RandomState(1),
                             cpu_kernels=kernels)
    assert graph.masks == {}
    feed_inputs(graph, np.random.default_rng(2))
    check_against_numpy(graph, np_eval_cell(genotype), params64(), ones_masks(), beta=0.0)


def test_weights_are_initialised_as_the_seed():
    build_eval_model(NAMED_RECURRENT_GENOTYPES["DARTS_V2"], 2, 2, 500, 40, training=True,
                     rng=np.random.RandomState(0))
    params = params64()
    assert not params["decoder/b"].any()
    for name in ("encoder/W", "cell/W0", "cell/W8"):
        assert np.abs(params[name]).max() <= 0.04
        assert np.abs(params[name]).max() > 0.039  # uniform over the whole range, not a narrower one


@pytest.mark.parametrize("kernels", KERNEL_MODES)
def test_search_model_matches_numpy_with_batch_statistics(kernels):
    rng = np.random.default_rng(3)
    alpha = create_alpha(np.random.RandomState(0))
    alpha.d = rng.normal(0, 1, ALPHA_SHAPE)  # far from uniform, so the mixing weights matter
    graph = build_search_model(alpha, SEQ, BATCH + 2, NTOKEN, NHID, training=True, tar_beta=0.5,
                               rng=np.random.RandomState(1), cpu_kernels=kernels)
    feed_inputs(graph, rng)
    feed_masks(graph, rng, DROPOUTS)
    masks = {name: mask.d.astype(np.float64) for name, mask in graph.masks.items()}
    check_against_numpy(graph, np_search_cell(alpha.d.astype(np.float64)), params64(WEIGHT_SCOPE),
                        masks, beta=0.5)


def test_search_cell_with_one_hot_alpha_is_the_derived_cell_with_normalised_nodes():
    genotype = RecurrentGenotype(((3, 0), (2, 1), (4, 0), (1, 2), (1, 4), (3, 5), (2, 1), (4, 7)))
    # Exactly one-hot softmax rows: the chosen op on the genotype's edges, 'none' on every other edge.
    alpha_d = np.full(ALPHA_SHAPE, -1e4)
    for node in range(1, 9):
        for j in range(node):
            alpha_d[EDGES.index((j, node)), 0] = 0.0
        op_id, j = genotype.recurrent[node - 1]
        alpha_d[EDGES.index((j, node))] = -1e4
        alpha_d[EDGES.index((j, node)), op_id] = 0.0
    assert derive_recurrent_genotype(alpha_d) == genotype

    def one_hot_reference(x, h_prev, params, mx, mh):
        states = [np_bn(np_init_state(x, h_prev, params, mx, mh))]
        for i, (op_id, j) in enumerate(genotype.recurrent):
            ch = (states[j] * mh) @ params[f"cell/W{i + 1}"]
            c = sigmoid(ch[:, :NHID])
            states.append(np_bn(states[j] + c * (ACT[op_id](ch[:, NHID:]) - states[j])))
        return np.mean(states[1:], axis=0)

    rng = np.random.default_rng(4)
    alpha = create_alpha(np.random.RandomState(0))
    alpha.d = alpha_d
    graph = build_search_model(alpha, SEQ, BATCH + 2, NTOKEN, NHID, training=True, tar_beta=0.0,
                               rng=np.random.RandomState(1))
    feed_inputs(graph, rng)
    feed_masks(graph, rng, DROPOUTS)
    masks = {name: mask.d.astype(np.float64) for name, mask in graph.masks.items()}
    check_against_numpy(graph, one_hot_reference, params64(WEIGHT_SCOPE), masks, beta=0.0)


@pytest.mark.parametrize("kernels", KERNEL_MODES)
def test_search_model_alpha_gradient_matches_central_differences_of_the_transcription(kernels):
    rng = np.random.default_rng(5)
    alpha = create_alpha(np.random.RandomState(0))
    alpha.d = rng.normal(0, 0.5, ALPHA_SHAPE)
    graph = build_search_model(alpha, 2, 3, NTOKEN, NHID, training=True, tar_beta=0.5,
                               rng=np.random.RandomState(1), cpu_kernels=kernels)
    feed_inputs(graph, rng)
    feed_masks(graph, rng, DROPOUTS)
    alpha.g = 0
    graph.loss.forward()
    graph.loss.backward()
    masks = {name: mask.d.astype(np.float64) for name, mask in graph.masks.items()}
    params = params64(WEIGHT_SCOPE)

    def loss_at(a):
        return np_language_model(np_search_cell(a), graph.tokens.d.astype(int), graph.targets.d.astype(int),
                                 graph.hidden.d.astype(np.float64), params, masks, 0.5)[1]

    base = alpha.d.astype(np.float64)
    eps = 1e-5
    for row, col in [(0, 1), (0, 0), (7, 3), (20, 4), (35, 2)]:
        plus, minus = base.copy(), base.copy()
        plus[row, col] += eps
        minus[row, col] -= eps
        numeric = (loss_at(plus) - loss_at(minus)) / (2 * eps)
        assert alpha.g[row, col] == pytest.approx(numeric, rel=2e-3, abs=1e-7)


@pytest.mark.parametrize("kernels", KERNEL_MODES)
def test_search_model_evaluation_uses_running_statistics(kernels):
    alpha = create_alpha(np.random.RandomState(0))
    train = build_search_model(alpha, SEQ, BATCH + 2, NTOKEN, NHID, training=True, rng=np.random.RandomState(1),
                               cpu_kernels=kernels)
    test = build_search_model(alpha, SEQ, BATCH + 2, NTOKEN, NHID, training=False, cpu_kernels=kernels)
    with nn.parameter_scope(WEIGHT_SCOPE):
        stats = nn.get_parameters(grad_only=False)
    assert stats["cell/bn/mean"].d.shape == (1, NHID) and not stats["cell/bn/mean"].d.any()
    feed_inputs(train, np.random.default_rng(6))
    train.loss.forward()
    assert stats["cell/bn/mean"].d.any()  # a training pass moves the running mean
    mean_after_training = stats["cell/bn/mean"].d.copy()
    feed_inputs(test, np.random.default_rng(6))
    test.loss.forward()
    np.testing.assert_array_equal(stats["cell/bn/mean"].d, mean_after_training)  # eval leaves it


# ---------------------------------------------------------------- the cpu kernels (ops/cpu_recurrent)

def variable(rng, shape, scale=1.0):
    v = nn.Variable.from_numpy_array((rng.standard_normal(shape) * scale).astype(np.float32))
    v.need_grad = True
    return v


def assert_same_function(ours, theirs, inputs, rng):
    """Equal outputs, and equal gradients of every input whether they start at zero (written) or not
    (accumulated)."""
    assert ours.shape == theirs.shape
    dy = nn.NdArray.from_numpy_array(rng.standard_normal(ours.shape).astype(np.float32))
    accumulated = [rng.standard_normal(v.shape) for v in inputs]
    for start in ([np.zeros(v.shape) for v in inputs], accumulated):
        results = []
        for y in (ours, theirs):
            for v, g in zip(inputs, start):
                v.grad.data[...] = g
            y.forward()
            y.backward(dy, clear_buffer=False)
            results.append((y.d.copy(), [v.g.copy() for v in inputs]))
        (y1, grads1), (y2, grads2) = results
        np.testing.assert_allclose(y1, y2, rtol=1e-5, atol=1e-5)
        for g1, g2 in zip(grads1, grads2):
            np.testing.assert_allclose(g1, g2, rtol=1e-4, atol=1e-4)


@needs_library
@pytest.mark.parametrize("transpose_w", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("mask_rows", [None, 12, 4])  # none; one mask row per row of x; repeated 3 times
def test_affine_kernel_equals_nnabla(transpose_w, bias, mask_rows):
    rng = np.random.default_rng(0)
    m, k, n = 12, 37, 53  # column blocks of 16 on each thread, the last one partial
    x = variable(rng, (m, k))
    w = variable(rng, (n, k) if transpose_w else (k, n))
    inputs = [x, w] + ([variable(rng, (n,))] if bias else [])
    mask = None
    if mask_rows:
        mask = nn.Variable.from_numpy_array((rng.random((mask_rows, k)) < 0.6).astype(np.float32) / 0.6)
    ours = cpu_recurrent.Affine(transpose_w, bias, mask is not None)(*inputs, *([mask] if mask else []))
    masked = x if mask is None else F.reshape(F.reshape(x, (-1, mask_rows, k)) * F.reshape(mask, (1, mask_rows, k)),
                                              (m, k))
    theirs = F.affine(masked, F.transpose(w, (1, 0)) if transpose_w else w, *inputs[2:])
    assert_same_function(ours, theirs, inputs, rng)


@needs_library
@pytest.mark.parametrize("op_id", ACTIVE_OPS)
@pytest.mark.parametrize("add", [False, True])
def test_gate_kernel_equals_nnabla(op_id, add):
    rng = np.random.default_rng(op_id)
    batch, units = 5, 19
    ch, s = variable(rng, (batch, 2 * units), 2.0), variable(rng, (batch, units))
    inputs = [ch, s] + ([variable(rng, (batch, 2 * units))] if add else [])
    ours = cpu_recurrent.Gate(op_id, add)(*inputs)
    summed = ch + inputs[2] if add else ch
    c, h = F.sigmoid(summed[:, :units]), summed[:, units:]
    theirs = s + c * (activation(op_id)(h) - s)
    assert_same_function(ours, theirs, inputs, rng)


@needs_library
@pytest.mark.parametrize("edges", [1, 3])
def test_mix_kernel_equals_nnabla(edges):
    rng = np.random.default_rng(edges)
    batch, units = 6, 21
    ch, s = variable(rng, (edges, batch, 2 * units), 2.0), variable(rng, (edges, batch, units))
    p = variable(rng, (edges, len(ACTIVE_OPS)))
    ours = cpu_recurrent.Mix()(ch, s, p)
    c, h = F.sigmoid(ch[:, :, :units]), ch[:, :, units:]
    terms = [F.reshape(p[:, i], (edges, 1, 1)) * (s + c * (activation(op_id)(h) - s))
             for i, op_id in enumerate(ACTIVE_OPS)]
    theirs = F.sum(F.add_n(*terms) if len(terms) > 1 else terms[0], axis=0)
    assert_same_function(ours, theirs, [ch, s, p], rng)


@needs_library
def test_softmax_cross_entropy_kernel_equals_nnabla():
    rng = np.random.default_rng(0)
    rows, words = 7, 45
    x = variable(rng, (rows, words), 3.0)
    t = nn.Variable.from_numpy_array(rng.integers(0, words, (rows, 1)).astype(np.float32))
    assert_same_function(cpu_recurrent.SoftmaxCrossEntropy()(x, t), F.softmax_cross_entropy(x, t), [x], rng)


def test_the_mix_kernel_s_ops_are_the_active_ops_in_order():
    """rnn_mix_* hard-code tanh, relu, sigmoid, identity as the columns of p."""
    assert [RECURRENT_OP_NAMES[i] for i in ACTIVE_OPS] == ["tanh", "relu", "sigmoid", "identity"]


def function_types(output):
    names = []
    output.visit(lambda f: names.append(f.info.type_name))
    return names


def kernels_graph(search, kernels, rng_seed=0):
    """A small training graph with its inputs and masks fed, fresh parameters from a fixed seed."""
    nn.clear_parameters()
    if search:
        alpha = create_alpha(np.random.RandomState(0))
        alpha.d = np.random.default_rng(1).normal(0, 1, ALPHA_SHAPE)
        graph = build_search_model(alpha, SEQ, BATCH + 2, NTOKEN, NHID, training=True, tar_beta=0.5,
                                   rng=np.random.RandomState(1), cpu_kernels=kernels)
    else:
        graph = build_eval_model(NAMED_RECURRENT_GENOTYPES["DARTS_V2"], SEQ, BATCH, NTOKEN, NHID, training=True,
                                 tar_beta=0.5, rng=np.random.RandomState(1), cpu_kernels=kernels)
    rng = np.random.default_rng(rng_seed)
    feed_inputs(graph, rng)
    feed_masks(graph, rng, DROPOUTS)
    return graph


@needs_library
@pytest.mark.parametrize("search", [False, True], ids=["evaluation", "search"])
def test_the_models_on_the_cpu_kernels_equal_them_on_nnabla_s(search):
    results = []
    for kernels in (False, True):
        graph = kernels_graph(search, kernels)
        params = nn.get_parameters(grad_only=False)
        for v in params.values():
            v.grad.zero()
        graph.loss.forward()
        graph.loss.backward()
        results.append((graph.loss.d.copy(), graph.raw_output.d.copy(),
                        {k: (v.d.copy(), v.g.copy()) for k, v in params.items()}))
        types = function_types(graph.loss)
        if kernels:  # every product, gate and mix runs on the kernels
            assert "Affine" not in types and "Sigmoid" not in types and "CpuRecurrentAffine" in types
            assert ("CpuRecurrentMix" if search else "CpuRecurrentGate") in types
            assert "CpuRecurrentSoftmaxCrossEntropy" in types and "SoftmaxCrossEntropy" not in types
        else:
            assert not [t for t in types if t.startswith("Cpu")]
    (loss1, raw1, params1), (loss2, raw2, params2) = results
    np.testing.assert_allclose(loss2, loss1, rtol=1e-5)
    np.testing.assert_allclose(raw2, raw1, rtol=1e-5, atol=1e-6)
    assert params1.keys() == params2.keys()
    for name in params1:  # the weights' and alpha's gradients, and the batch norm's running statistics
        for a, b in zip(params2[name], params1[name]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * np.abs(b).max(), err_msg=name)


def test_scopes_hold_weights_and_alpha_apart():
    alpha = create_alpha(np.random.RandomState(0))
    build_search_model(alpha, 2, 2, NTOKEN, NHID, training=True)
    with nn.parameter_scope(ARCH_SCOPE):
        assert list(nn.get_parameters()) == ["alpha"]
    with nn.parameter_scope(WEIGHT_SCOPE):
        assert "alpha" not in nn.get_parameters()
    assert np.abs(alpha.d).max() < 1e-2  # 1e-3 * N(0, 1)


def test_graphs_of_two_lengths_share_the_weights():
    genotype = NAMED_RECURRENT_GENOTYPES["DARTS_V1"]
    short = build_eval_model(genotype, 2, BATCH, NTOKEN, NHID, training=False, rng=np.random.RandomState(0))
    count = len(nn.get_parameters())
    long = build_eval_model(genotype, 5, BATCH, NTOKEN, NHID, training=False)
    assert len(nn.get_parameters()) == count
    rng = np.random.default_rng(7)
    feed_inputs(long, rng)
    short.tokens.d, short.targets.d, short.hidden.d = long.tokens.d[:2], long.targets.d[:2], long.hidden.d
    short.loss.forward()
    long.loss.forward()
    np.testing.assert_allclose(short.raw_output.d, long.raw_output.d[:2], rtol=1e-6)


def test_dropout_masks_keep_or_scale():
    rng = np.random.default_rng(8)
    mask = dropout_mask(rng, (1000, 300), 0.75)
    assert set(np.unique(mask)) == {0.0, 4.0}
    assert mask.mean() == pytest.approx(1.0, abs=0.02)  # 6 standard deviations of the mean
    assert (dropout_mask(rng, (3, 3), 0.0) == 1).all()
    with pytest.raises(ValueError, match="not in"):
        dropout_mask(rng, (2,), 1.0)


# ---------------------------------------------------------------- parameter counts

def trainable_count():
    return sum(v.size for v in nn.get_parameters(grad_only=True).values())


@pytest.mark.parametrize("name", ["DARTS_V2", "ENAS"])
def test_parameter_count_at_small_size_is_derived_by_hand(name):
    genotype = NAMED_RECURRENT_GENOTYPES[name]
    build_eval_model(genotype, 1, 1, NTOKEN, NHID, training=False)
    # Embedding V*n (the decoder weight is the same matrix), decoder bias V, W0 (2n, 2n), one (n, 2n)
    # per node: 13*4 + 13 + 8*8 + steps*4*8 = 129 + 32*steps.
    assert trainable_count() == 129 + 32 * genotype.steps == {"DARTS_V2": 385, "ENAS": 481}[name]


def test_search_model_has_the_trainable_weights_of_an_eight_node_cell():
    alpha = create_alpha(np.random.RandomState(0))
    build_search_model(alpha, 1, 1, NTOKEN, NHID, training=False)
    with nn.parameter_scope(WEIGHT_SCOPE):
        assert trainable_count() == 129 + 32 * 8  # batch normalisation without affine adds none


def test_darts_v2_at_ptb_size_has_the_seeds_parameter_count():
    build_eval_model(NAMED_RECURRENT_GENOTYPES["DARTS_V2"], 1, 1, 10000, 850, training=False)
    # quark0 counts model.parameters(), where the tied decoder weight appears once:
    # encoder 10000*850 = 8,500,000; decoder bias 10,000; _W0 (850+850) x 1700 = 2,890,000;
    # 8 x _Ws (850 x 1700) = 11,560,000. Total 22,960,000, the "23M" of the README.
    assert trainable_count() == 22_960_000


# ---------------------------------------------------------------- genotypes

def test_named_genotypes_are_the_seeds():
    ids = {name: i for i, name in enumerate(RECURRENT_OP_NAMES)}

    def cell(text):
        return tuple((ids[op], int(j)) for op, j in (pair.split() for pair in text.split(",")))

    assert NAMED_RECURRENT_GENOTYPES["DARTS_V1"].recurrent == cell(
        "relu 0, relu 1, tanh 2, relu 3, relu 4, identity 1, relu 5, relu 1")
    assert NAMED_RECURRENT_GENOTYPES["DARTS_V2"].recurrent == cell(
        "sigmoid 0, relu 1, relu 1, identity 1, tanh 2, sigmoid 5, tanh 3, relu 5")
    assert NAMED_RECURRENT_GENOTYPES["DARTS"] == NAMED_RECURRENT_GENOTYPES["DARTS_V2"]
    enas = NAMED_RECURRENT_GENOTYPES["ENAS"]
    assert enas.steps == 11 and enas.concat == (2, 5, 6, 9, 10, 11)
    assert NAMED_RECURRENT_GENOTYPES["DARTS_V1"].concat == tuple(range(1, 9))


@pytest.mark.parametrize("name", ["DARTS_V1", "DARTS_V2", "ENAS"])
def test_json_file_round_trip(tmp_path, name):
    genotype = NAMED_RECURRENT_GENOTYPES[name]
    path = tmp_path / "cell.json"
    save_recurrent_genotype(genotype, path)
    data = json.loads(path.read_text())
    # DARTS cells are written as the plain list; ENAS needs its concat.
    assert isinstance(data, dict) == (name == "ENAS")
    assert load_recurrent_genotype(str(path)) == genotype
    assert load_recurrent_genotype(name) == genotype


def test_plain_list_json_is_the_issue_format(tmp_path):
    path = tmp_path / "cell.json"
    path.write_text("[[3, 0], [2, 1], [2, 1], [4, 1], [1, 2], [3, 5], [1, 3], [2, 5]]")
    assert load_recurrent_genotype(str(path)) == NAMED_RECURRENT_GENOTYPES["DARTS_V2"]
    assert to_json_value(NAMED_RECURRENT_GENOTYPES["DARTS_V2"])[0] == [3, 0]


@pytest.mark.parametrize("data, message", [
    ({"cell": []}, "needs the keys 'recurrent'"),
    ("abc", "expected a list of"),
    ([], "has no nodes"),
    ([[1, 0], [2]], r"node 2 \[2\]: expected a pair"),
    ([[1, 0], ["relu", 0]], "op id must be an int"),
    ([[1, 0], [2, 0.5]], "input node must be an int"),
    ([[0, 0]], r"op id 0 is not a node op; node ops are 1 tanh"),
    ([[5, 0]], "op id 5 is not a node op"),
    ([[1, 0], [True, 0]], "op id must be an int"),
    ([[1, 0], [2, 2]], r"node 2 \[2, 2\]: input node 2 is not an earlier node \(0..1\)"),
    ([[1, -1]], "input node -1 is not an earlier node"),
    ({"recurrent": [[1, 0]], "concat": []}, "concat must be a non-empty list"),
    ({"recurrent": [[1, 0]], "concat": [2]}, r"concat node 2 is not a node \(0..1\)"),
    ({"recurrent": [[1, 0], [1, 1]], "concat": [1, 1]}, "names a node twice"),
])
def test_json_defects_are_one_line_errors(data, message):
    with pytest.raises(ArchitectureError, match=message) as error:
        from_json_value(data, "cell.json")
    assert "\n" not in str(error.value) and str(error.value).startswith("cell.json")


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    ("[[1, 0],", "invalid JSON"),
    (b"\xff\xfe\x00", "is not a text file"),
])
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "cell.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(ArchitectureError, match=message):
        load_recurrent_genotype(str(path))


def test_missing_file_unknown_name_and_directory(tmp_path):
    with pytest.raises(ArchitectureError, match="unknown named recurrent cell 'DARTS_V3'.*known: DARTS_V1"):
        load_recurrent_genotype("DARTS_V3")
    with pytest.raises(ArchitectureError, match="does not exist"):
        load_recurrent_genotype(str(tmp_path / "nope.json"))
    with pytest.raises(ArchitectureError, match="is a directory"):
        load_recurrent_genotype(str(tmp_path))


def test_constructor_validates():
    with pytest.raises(ArchitectureError, match="recurrent cell node 1"):
        RecurrentGenotype(((1, 1),))
    with pytest.raises(ArchitectureError, match="expected a list"):
        RecurrentGenotype(None)
    assert RecurrentGenotype([[1, 0], [2, 0]], concat=[2, 1]) == RecurrentGenotype(((1, 0), (2, 0)), (1, 2))


# ---------------------------------------------------------------- derivation

def seed_parse(probs):
    """quark0's RNNModelSearch.genotype._parse, restated: a stable sort of the edges by their best
    non-none weight, then the first op with a strictly larger weight."""
    gene, start = [], 0
    for i in range(8):
        rows = probs[start:start + i + 1]
        j = sorted(range(i + 1), key=lambda e: -max(rows[e][1:]))[0]
        best = 1
        for k in range(2, 5):
            if rows[j][k] > rows[j][best]:
                best = k
        gene.append((best, j))
        start += i + 1
    return tuple(gene)


@pytest.mark.parametrize("seed", range(5))
def test_derivation_matches_the_seed_rule_on_random_alphas(seed):
    alpha = np.random.default_rng(seed).normal(0, 1, ALPHA_SHAPE)
    probs = np.exp(alpha) / np.exp(alpha).sum(axis=1, keepdims=True)
    assert derive_recurrent_genotype(alpha).recurrent == seed_parse(probs)


def test_derivation_on_a_hand_made_alpha():
    alpha = np.zeros(ALPHA_SHAPE)
    # Node 1: its only edge, sigmoid strongest.
    alpha[EDGES.index((0, 1)), 3] = 1.0
    # Node 2: 'none' dominates edge (1, 2) and is never chosen, so edge (0, 2) with relu wins.
    alpha[EDGES.index((1, 2)), 0] = 10.0
    alpha[EDGES.index((1, 2)), 4] = 3.0
    alpha[EDGES.index((0, 2)), 2] = 0.5
    # Node 3: edges rank by softmax weight, not raw alpha. Edge (0, 3): four ops at 2 and 'none' far
    # below, so each weighs 1/4. Edge (2, 3): tanh has the larger alpha (2.5), but 'none' at 4 leaves
    # it e^2.5 / (e^4 + e^2.5 + 3) = 0.175 < 1/4.
    alpha[EDGES.index((0, 3))] = [-10, 2, 2, 2, 2]
    alpha[EDGES.index((2, 3))] = [4, 2.5, 0, 0, 0]
    derived = derive_recurrent_genotype(alpha).recurrent
    assert derived[:3] == ((3, 0), (2, 0), (1, 0))  # node 3: the tie among the four goes to tanh
    # Nodes 4..8 are all zero: every tie goes to input node 0 and op 1.
    assert derived[3:] == ((1, 0),) * 5


@pytest.mark.parametrize("alpha, message", [
    (np.zeros((14, 8)), r"shape \(14, 8\), expected \(36, 5\)"),
    (np.full((36, 5), np.nan), "NaN"),
])
def test_derivation_rejects_bad_alpha(alpha, message):
    with pytest.raises(ArchitectureError, match=message):
        derive_recurrent_genotype(alpha)

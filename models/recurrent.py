"""Recurrent DARTS language models (quark0/darts rnn/model.py and model_search.py) as static graphs.

A graph is unrolled over a fixed sequence length and batch size; callers keep one graph per length.
Everything random is fed from numpy (the dropout masks), so a run draws the same masks from the
same seed whether or not it was resumed. The hidden state is an input variable and the last one an
output, so the caller copies it across batches (the seed's repackage_hidden).

Cells, for x_t (B, ninp) and h_{t-1} (B, nhid), with masks m_x, m_h drawn once per batch and used only
in training:
- node 0: [c0, h0] = [x_t*m_x, h_{t-1}*m_h] W0, s0 = h_{t-1} + sigmoid(c0) * (tanh(h0) - h_{t-1});
- evaluation cell, node i reading node j with op f: [c, h] = (s_j*m_h) W_i,
  s_i = s_j + sigmoid(c) * (f(h) - s_j); the output is the mean of the concat nodes;
- search cell: s0 and every node go through batch normalisation without affine; node i mixes every
  earlier node j and every op but 'none': s_i = sum_j sum_op p[(j,i), op] * (s_j + c_j*(op(h_j) - s_j))
  with [c_j, h_j] = (s_j*m_h) W_i (one W_i for all j), p = softmax(alpha) per row; the output is the
  mean of nodes 1..8.

Parameters: the evaluation model in the root scope (as the CNN evaluation network), the search
model's weights in WEIGHT_SCOPE and its (36, 5) alpha in ARCH_SCOPE (as the CNN search network).
"""
from dataclasses import dataclass, field

import nnabla as nn
import nnabla.functions as F
import nnabla.initializer as I
import nnabla.parametric_functions as PF
import numpy as np

from models.recurrent_genotype import ALPHA_SHAPE, STEPS as SEARCH_STEPS
from ops import cpu_recurrent
from ops.recurrent_ops import ACTIVE_OPS, TANH_OP, activation

WEIGHT_SCOPE = "net"
ARCH_SCOPE = "arch"
ALPHA_NAME = "alpha"
INIT_RANGE = 0.04
TAR_BETA = 1e-3
# PyTorch's BatchNorm1d momentum 0.1, in nnabla's terms.
BN_DECAY = 0.9

MASK_NAMES = ("embedding", "input", "x", "h", "output")
# The embedding matrix, which the decoder reuses transposed (the seed ties them), within a model's scope.
EMBEDDING_SCOPE, EMBEDDING_NAME = "encoder", "W"
SEARCH_EMBEDDING = f"{WEIGHT_SCOPE}/{EMBEDDING_SCOPE}/{EMBEDDING_NAME}"


def _weight(name, shape, rng):
    return nn.parameter.get_parameter_or_create(
        name, shape, I.UniformInitializer((-INIT_RANGE, INIT_RANGE), rng=rng), need_grad=True)


def create_alpha(rng):
    """The architecture parameter, 1e-3 * N(0, 1), rows node-major as models.recurrent_genotype.EDGES."""
    with nn.parameter_scope(ARCH_SCOPE):
        return nn.parameter.get_parameter_or_create(
            ALPHA_NAME, ALPHA_SHAPE, I.NormalInitializer(1e-3, rng=rng), need_grad=True)


def _gate(ch, nhid):
    """[c, h] split on the last axis: sigmoid(c) and the raw h."""
    return F.sigmoid(ch[..., :nhid]), ch[..., nhid:]


class _Cell:
    """Node 0, shared by both cells. W0 is one (ninp + nhid, 2 nhid) matrix as in the seed; its x rows
    are applied to all time steps at once, since m_x does not change over time.

    cpu_kernels: the products, masks and gates run on ops.cpu_recurrent's multi-threaded kernels (cpu, float
    only), which compute the same values."""

    def __init__(self, ninp, nhid, steps, rng, cpu_kernels=False):
        self.ninp, self.nhid, self.cpu_kernels = ninp, nhid, cpu_kernels
        with nn.parameter_scope("cell"):
            self.w0 = _weight("W0", (ninp + nhid, 2 * nhid), rng)
            self.ws = [_weight(f"W{i + 1}", (nhid, 2 * nhid), rng) for i in range(steps)]
        # Sliced once per graph, not once per step: each slice is a copy forward and a sum backward.
        self.w0_x, self.w0_h = self.w0[:ninp], self.w0[ninp:]

    def masked_product(self, x, w, mask):
        """(x * mask) . w for x (M, K), the mask (R, K) repeated over groups of R rows, or None."""
        if self.cpu_kernels:
            return cpu_recurrent.Affine(mask=mask is not None)(x, w, *([] if mask is None else [mask]))
        if mask is not None and mask.shape[0] == x.shape[0]:
            x = x * mask
        elif mask is not None:
            rows, units = mask.shape
            x = F.reshape(F.reshape(x, (-1, rows, units)) * F.reshape(mask, (1, rows, units)), x.shape)
        return F.affine(x, w)

    def project_inputs(self, x, x_mask):
        """(T, B, ninp) -> (B, 2 nhid) per step: the x part of node 0's product."""
        steps, batch, ninp = x.shape
        projected = self.masked_product(F.reshape(x, (steps * batch, ninp)), self.w0_x, x_mask)
        if steps == 1:  # F.split needs two outputs at least
            return [projected]
        return F.split(F.reshape(projected, (steps, batch, 2 * self.nhid)), axis=0)

    def init_state(self, x_projected, h_prev, h_mask):
        product = self.masked_product(h_prev, self.w0_h, h_mask)
        if self.cpu_kernels:
            return cpu_recurrent.Gate(TANH_OP, add=True)(product, h_prev, x_projected)
        c0, h0 = _gate(x_projected + product, self.nhid)
        return h_prev + c0 * (F.tanh(h0) - h_prev)


class EvaluationCell(_Cell):
    def __init__(self, genotype, ninp, nhid, rng=None, cpu_kernels=False):
        super().__init__(ninp, nhid, genotype.steps, rng, cpu_kernels)
        self.genotype = genotype

    def step(self, x_projected, h_prev, h_mask):
        states = [self.init_state(x_projected, h_prev, h_mask)]
        for w, (op_id, input_node) in zip(self.ws, self.genotype.recurrent):
            s_prev = states[input_node]
            product = self.masked_product(s_prev, w, h_mask)
            if self.cpu_kernels:
                states.append(cpu_recurrent.Gate(op_id)(product, s_prev))
                continue
            c, h = _gate(product, self.nhid)
            states.append(s_prev + c * (activation(op_id)(h) - s_prev))
        return _mean([states[node] for node in self.genotype.concat])


class SearchCell(_Cell):
    """Eval graphs (training=False) normalise with the running statistics, as the seed's model.eval()."""

    def __init__(self, alpha, ninp, nhid, training, rng=None, cpu_kernels=False):
        super().__init__(ninp, nhid, SEARCH_STEPS, rng, cpu_kernels)
        self.training = training
        # The weights of the ops that are built: every column but 'none' (the first).
        op_weights = F.softmax(alpha, axis=1)[:, 1:]
        self.mixers = []
        offset = 0
        for count in range(1, SEARCH_STEPS + 1):
            edges = op_weights[offset:offset + count]
            self.mixers.append(edges if cpu_kernels else _mixer(edges))
            offset += count

    def _batch_norm(self, s):
        with nn.parameter_scope("cell"):
            return PF.batch_normalization(s, axes=[1], decay_rate=BN_DECAY, batch_stat=self.training,
                                          no_scale=True, no_bias=True)

    def step(self, x_projected, h_prev, h_mask):
        batch, nhid = h_prev.shape
        states = [self._batch_norm(self.init_state(x_projected, h_prev, h_mask))]
        for w, mixer in zip(self.ws, self.mixers):
            count = len(states)
            stacked = F.stack(*states, axis=0)  # (count, B, nhid)
            ch = F.reshape(self.masked_product(F.reshape(stacked, (count * batch, nhid)), w, h_mask),
                           (count, batch, 2 * nhid))
            if self.cpu_kernels:
                states.append(self._batch_norm(cpu_recurrent.Mix()(ch, stacked, mixer)))
                continue
            c, h = _gate(ch, nhid)
            # sum_op p_op (s + c (op(h) - s)) = P s + c (sum_op p_op op(h) - P s) with P = sum_op p_op: one
            # batched product gives both sums, leaving three elementwise operations instead of twelve.
            # The highway uses the unmasked states.
            candidates = F.stack(*[activation(op_id)(h) for op_id in ACTIVE_OPS] + [stacked], axis=1)
            mixed = F.batch_matmul(mixer, F.reshape(candidates, (count, len(ACTIVE_OPS) + 1, batch * nhid)))
            mixed = F.reshape(mixed, (count, 2, batch, nhid))
            ops_sum, highway = mixed[:, 0], mixed[:, 1]
            states.append(self._batch_norm(F.sum(highway + c * (ops_sum - highway), axis=0)))
        return _mean(states[-SEARCH_STEPS:])


def _mixer(weights):
    """(count, 2, ops + 1) from the (count, ops) weights of one node's edges: row 0 weights each op's
    output, row 1 weights the state by P = sum_op p_op."""
    count, ops = weights.shape
    zero = F.constant(0.0, (count, 1))
    first = F.concatenate(weights, zero, axis=1)
    second = F.concatenate(F.constant(0.0, (count, ops)), F.sum(weights, axis=1, keepdims=True), axis=1)
    return F.stack(first, second, axis=1)


def _mean(variables):
    return variables[0] if len(variables) == 1 else F.mean(F.stack(*variables, axis=0), axis=0)


@dataclass
class LanguageModelGraph:
    tokens: nn.Variable  # (T, B) word ids
    targets: nn.Variable  # (T, B) the next word ids
    hidden: nn.Variable  # (B, nhid) h_0, fed by the caller
    last_hidden: nn.Variable  # (B, nhid) h_T, to feed as the next batch's hidden
    raw_output: nn.Variable  # (T, B, nhid) the cell outputs before output dropout
    nll: nn.Variable  # mean negative log-likelihood per word
    loss: nn.Variable  # nll + TAR in training graphs, nll otherwise
    masks: dict = field(default_factory=dict)  # name -> Variable, training graphs only (MASK_NAMES)


def language_model(cell, seq_len, batch_size, ntoken, training, tar_beta=TAR_BETA, rng=None):
    """The seed's RNNModel around one built cell, in the current parameter scope.

    Embedding (ntoken, ninp) uniform(-0.04, 0.04); the decoder is tied to it, with a zero bias.
    Training graphs take five masks, all 1/keep-scaled Bernoulli fed by the caller (dropout_mask):
    'embedding' (ntoken, 1) drops whole word rows of the embedding, 'input' (1, B, ninp) is locked
    dropout on its output, 'x' (B, ninp) and 'h' (B, nhid) are the cell's m_x and m_h, 'output'
    (1, B, nhid) is locked dropout on the cell's output.
    """
    ninp, nhid = cell.ninp, cell.nhid
    tokens = nn.Variable((seq_len, batch_size))
    targets = nn.Variable((seq_len, batch_size))
    hidden = nn.Variable((batch_size, nhid))
    masks = {}
    if training:
        shapes = {"embedding": (ntoken, 1), "input": (1, batch_size, ninp), "x": (batch_size, ninp),
                  "h": (batch_size, nhid), "output": (1, batch_size, nhid)}
        masks = {name: nn.Variable(shapes[name]) for name in MASK_NAMES}
        for mask in masks.values():
            mask.d = 1.0

    with nn.parameter_scope(EMBEDDING_SCOPE):
        embedding = _weight(EMBEDDING_NAME, (ntoken, ninp), rng)
    with nn.parameter_scope("decoder"):
        bias = nn.parameter.get_parameter_or_create("b", (ntoken,), I.ConstantInitializer(0.0), need_grad=True)

    x = F.embed(tokens, embedding)  # (T, B, ninp)
    x_mask = masks.get("x")
    if training:
        # Dropping word rows of the matrix is scaling each looked-up row by its word's mask entry;
        # looking the mask up too is cheaper than masking all ntoken rows.
        x = x * F.embed(tokens, masks["embedding"])
        if cell.cpu_kernels:  # both (B, ninp) masks in one, which the product applies: no (T, B, ninp) Mul2
            x_mask = F.reshape(masks["input"], (batch_size, ninp)) * x_mask
        else:
            x = x * masks["input"]

    h = hidden
    outputs = []
    for x_projected in cell.project_inputs(x, x_mask):
        h = cell.step(x_projected, h, masks.get("h"))
        outputs.append(h)
    raw_output = F.stack(*outputs, axis=0)
    if cell.cpu_kernels:  # the decoder tied to the embedding, with the output's locked dropout mask folded in
        output_mask = [F.reshape(masks["output"], (batch_size, ninp))] if training else []
        logits = cpu_recurrent.Affine(transpose_w=True, bias=True, mask=training)(
            F.reshape(raw_output, (seq_len * batch_size, ninp)), embedding, bias, *output_mask)
    else:
        output = raw_output * masks["output"] if training else raw_output
        logits = F.affine(F.reshape(output, (seq_len * batch_size, ninp)), F.transpose(embedding, (1, 0)), bias)
    word_ids = F.reshape(targets, (seq_len * batch_size, 1))
    if cell.cpu_kernels:
        nll = F.mean(cpu_recurrent.SoftmaxCrossEntropy()(logits, word_ids))
    else:
        nll = F.mean(F.softmax_cross_entropy(logits, word_ids))
    loss = nll
    if training and tar_beta and seq_len > 1:
        loss = nll + tar_beta * F.mean(F.squared_error(raw_output[1:], raw_output[:-1]))
    return LanguageModelGraph(tokens, targets, hidden, h, raw_output, nll, loss, masks)


def build_eval_model(genotype, seq_len, batch_size, ntoken, nhid, training, tar_beta=TAR_BETA, rng=None,
                     cpu_kernels=False):
    """The language model with an evaluation cell (ninp = nhid, as the seed asserts), in the root scope.
    cpu_kernels: see _Cell."""
    cell = EvaluationCell(genotype, nhid, nhid, rng, cpu_kernels)
    return language_model(cell, seq_len, batch_size, ntoken, training, tar_beta, rng)


def build_search_model(alpha, seq_len, batch_size, ntoken, nhid, training, tar_beta=TAR_BETA, rng=None,
                       cpu_kernels=False):
    """The language model with the search cell: weights in WEIGHT_SCOPE, alpha from create_alpha. cpu_kernels:
    see _Cell."""
    with nn.parameter_scope(WEIGHT_SCOPE):
        cell = SearchCell(alpha, nhid, nhid, training, rng, cpu_kernels)
        return language_model(cell, seq_len, batch_size, ntoken, training, tar_beta, rng)


def dropout_mask(rng, shape, p):
    """Bernoulli(1 - p) / (1 - p), float32 (the seed's mask2d, LockedDropout and embedded_dropout)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability {p} is not in [0, 1)")
    keep = 1.0 - p
    return (rng.random(shape) < keep).astype(np.float32) / np.float32(keep)


def feed_masks(graph, rng, dropouts):
    """Draw every mask of a training graph; dropouts maps each of MASK_NAMES to its probability."""
    for name, mask in graph.masks.items():
        mask.d = dropout_mask(rng, mask.shape, dropouts[name])

"""Recurrent cells: deriving them from alphas, and reading and writing them.

A recurrent cell (quark0/darts' rnn Genotype) is a list of (op_id, input_node) pairs, one per node,
and the nodes averaged into the output (concat). Node 0 is computed from x_t and h_{t-1}; entry k of
the list is node k + 1 and reads one earlier node, 0..k. Op ids are those of ops.recurrent_ops.

JSON: the list of [op_id, input_node] pairs when concat is every node but 0 (all DARTS cells), and
{"recurrent": [...], "concat": [...]} otherwise (ENAS).
"""
import json
from dataclasses import dataclass

import numpy as np

from models.genotype import (ArchitectureError, is_int, json_pairs, load_spec, parse_json, printed_pairs, read_pair,
                             write_text_atomically)
from ops.recurrent_ops import NONE_OP, RECURRENT_OP_NAMES

# The search cell: 8 nodes after node 0, each with an edge from every earlier node.
STEPS = 8
# (input_node, node) in the order of the rows of the (36, 5) alpha.
EDGES = tuple((input_node, node) for node in range(1, STEPS + 1) for input_node in range(node))
ALPHA_SHAPE = (len(EDGES), len(RECURRENT_OP_NAMES))


def default_concat(steps):
    return tuple(range(1, steps + 1))


def validate_recurrent(recurrent, concat, name):
    """Check a cell and return it as ((op_id, input_node), ...), (concat nodes, ...)."""
    if not isinstance(recurrent, (list, tuple)):
        raise ArchitectureError(f"{name}: expected a list of [op_id, input_node] pairs, "
                                f"got {type(recurrent).__name__}")
    if not recurrent:
        raise ArchitectureError(f"{name}: has no nodes")
    pairs = []
    for index, entry in enumerate(recurrent):
        where = f"{name} node {index + 1} {entry!r}"
        op_id, input_node = read_pair(entry, where)
        if not 0 < op_id < len(RECURRENT_OP_NAMES):
            known = ", ".join(f"{i} {n}" for i, n in enumerate(RECURRENT_OP_NAMES) if i != NONE_OP)
            raise ArchitectureError(f"{where}: op id {op_id} is not a node op; node ops are {known}")
        if not 0 <= input_node <= index:
            raise ArchitectureError(f"{where}: input node {input_node} is not an earlier node (0..{index})")
        pairs.append((int(op_id), int(input_node)))

    if not isinstance(concat, (list, tuple, range)) or not concat:
        raise ArchitectureError(f"{name}: concat must be a non-empty list of nodes, got {concat!r}")
    for node in concat:
        if not is_int(node) or not 0 <= node <= len(pairs):
            raise ArchitectureError(f"{name}: concat node {node!r} is not a node (0..{len(pairs)})")
    if len(set(concat)) != len(concat):
        raise ArchitectureError(f"{name}: concat {list(concat)} names a node twice")
    return tuple(pairs), tuple(sorted(int(node) for node in concat))


@dataclass(frozen=True)
class RecurrentGenotype:
    """Validated and normalised on construction, so equal cells compare equal however they were read."""
    recurrent: tuple
    concat: tuple = None  # None: every node but 0

    def __post_init__(self):
        concat = self.concat
        if concat is None and isinstance(self.recurrent, (list, tuple)):
            concat = default_concat(len(self.recurrent))
        recurrent, concat = validate_recurrent(self.recurrent, concat, "recurrent cell")
        object.__setattr__(self, "recurrent", recurrent)
        object.__setattr__(self, "concat", concat)

    @property
    def steps(self):
        return len(self.recurrent)


def _named(pairs, concat=None):
    return RecurrentGenotype(tuple((RECURRENT_OP_NAMES.index(op), node) for op, node in pairs), concat)


# quark0/darts rnn/genotypes.py.
NAMED_RECURRENT_GENOTYPES = {
    "DARTS_V1": _named([("relu", 0), ("relu", 1), ("tanh", 2), ("relu", 3), ("relu", 4),
                        ("identity", 1), ("relu", 5), ("relu", 1)]),
    "DARTS_V2": _named([("sigmoid", 0), ("relu", 1), ("relu", 1), ("identity", 1), ("tanh", 2),
                        ("sigmoid", 5), ("tanh", 3), ("relu", 5)]),
    "ENAS": _named([("tanh", 0), ("tanh", 1), ("relu", 1), ("tanh", 3), ("tanh", 3), ("relu", 3),
                    ("relu", 4), ("relu", 7), ("relu", 8), ("relu", 8), ("relu", 8)],
                   concat=(2, 5, 6, 9, 10, 11)),
}
NAMED_RECURRENT_GENOTYPES["DARTS"] = NAMED_RECURRENT_GENOTYPES["DARTS_V2"]


def _softmax_rows(alpha):
    exp = np.exp(alpha - alpha.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def derive_recurrent_genotype(alpha):
    """The cell of a (36, 5) alpha, by quark0's RNNModelSearch.genotype.

    Per node, the incoming edge whose strongest non-none op has the largest softmax weight, with that
    op. Ties go to the lower input node and the lower op id (the seed's stable sort and strict '>').
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    if alpha.shape != ALPHA_SHAPE:
        raise ArchitectureError(f"alpha has shape {alpha.shape}, expected {ALPHA_SHAPE}")
    if not np.all(np.isfinite(alpha)):
        raise ArchitectureError("alpha contains NaN or infinite values")
    weights = _softmax_rows(alpha)
    weights[:, NONE_OP] = -np.inf
    pairs = []
    for node in range(1, STEPS + 1):
        rows = weights[[EDGES.index((input_node, node)) for input_node in range(node)]]
        input_node = int(np.argmax(rows.max(axis=1)))
        pairs.append((int(np.argmax(rows[input_node])), input_node))
    return RecurrentGenotype(tuple(pairs))


def to_json_value(genotype):
    pairs = json_pairs(genotype.recurrent)
    if genotype.concat == default_concat(genotype.steps):
        return pairs
    return {"recurrent": pairs, "concat": list(genotype.concat)}


def from_json_value(data, source="recurrent cell JSON"):
    if isinstance(data, dict):
        unknown = sorted(set(map(str, data)) - {"recurrent", "concat"})
        if unknown or "recurrent" not in data:
            raise ArchitectureError(f"{source}: an object needs the keys 'recurrent' and optionally "
                                    f"'concat' (keys: {sorted(map(str, data))})")
        recurrent, concat = data["recurrent"], data.get("concat")
    else:
        recurrent, concat = data, None
    if concat is None and isinstance(recurrent, (list, tuple)):
        concat = default_concat(len(recurrent))
    return RecurrentGenotype(*validate_recurrent(recurrent, concat, source))


def _json_text(genotype):
    # One pair per line: json.dump(indent=...) would put every number on its own line.
    value = to_json_value(genotype)
    pairs = ",\n".join(f"  {json.dumps(pair)}" for pair in
                       (value if isinstance(value, list) else value["recurrent"]))
    if isinstance(value, list):
        return f"[\n{pairs}\n]\n"
    return f'{{\n"recurrent": [\n{pairs}\n],\n"concat": {json.dumps(value["concat"])}\n}}\n'


def save_recurrent_genotype(genotype, path):
    write_text_atomically(path, _json_text(genotype))


def _from_text(text, source):
    return from_json_value(parse_json(text, source), source)


def load_recurrent_genotype(spec):
    """A recurrent cell from its name (DARTS_V1, DARTS_V2, DARTS, ENAS) or a JSON file."""
    return load_spec(spec, "recurrent cell", NAMED_RECURRENT_GENOTYPES, "named recurrent cell", _from_text)


def to_genotype_string(genotype):
    """The seed's printed form, Genotype(recurrent=[('sigmoid', 0), ...], concat=range(1, 9))."""
    pairs = ", ".join(printed_pairs(genotype.recurrent, RECURRENT_OP_NAMES))
    concat = (f"range(1, {genotype.steps + 1})" if genotype.concat == default_concat(genotype.steps)
              else str(list(genotype.concat)))
    return f"Genotype(recurrent=[{pairs}], concat={concat})"

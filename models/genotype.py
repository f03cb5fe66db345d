"""Cell architectures: deriving them from alphas, and reading and writing them.

A cell is a dict {node: ((op_id, input_node), ...)} for the intermediate nodes 2..5; node 0 is
c_{k-2}, node 1 is c_{k-1}, and each intermediate node is the sum of its edges.

Two outside formats are supported:
- the JSON file of the NNabla example (DARTS_arch.json), whose op ids are the ones used here:
  {"arch_normal": {"2": [[op_id, input_node], ...], ...}, "arch_reduction": {...}};
- the genotype string of the PyTorch code (quark0/darts), with op names instead of ids, in its flat
  form (two pairs per node, in node order) or the nested form of DADARTS / pt.darts (one list per node).

Op ids and names come from the one op table, ops.operations.OPS.
"""
import ast
import json
import os
import re
from dataclasses import dataclass
from numbers import Integral

import numpy as np

from ops.operations import OP_NAMES, SEARCH_OPS, ZERO_OP

NODES = (2, 3, 4, 5)
# (input_node, node) in the order of the rows of an alpha array.
EDGES = tuple((input_node, node) for node in NODES for input_node in range(node))

_CONCAT = [2, 3, 4, 5]
_GENOTYPE_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")


class ArchitectureError(ValueError):
    """An architecture that cannot be used; the message says what is wrong and where."""


@dataclass(frozen=True)
class Architecture:
    """One normal and one reduction cell, each {node: ((op_id, input_node), ...)}.

    Built cells are validated and normalised (int keys, tuples), so two equal architectures compare
    equal however they were read.
    """
    normal: dict
    reduction: dict

    def __post_init__(self):
        object.__setattr__(self, "normal", validate_cell(self.normal, "normal"))
        object.__setattr__(self, "reduction", validate_cell(self.reduction, "reduction"))


def _is_int(value):
    # bool is an Integral too, but True as an op id is a mistake, not op 1.
    return isinstance(value, Integral) and not isinstance(value, bool)


def _node_number(key, cell_name):
    """A node key as an int: JSON gives "2", Python code gives 2."""
    if _is_int(key):
        return int(key)
    if isinstance(key, str) and re.fullmatch(r"[0-9]+", key):
        return int(key)
    raise ArchitectureError(f"{cell_name}: node key {key!r} is not a node number")


def validate_cell(cell, cell_name):
    """Check one cell and return it as {node: ((op_id, input_node), ...)} with int nodes 2..5."""
    if not isinstance(cell, dict):
        raise ArchitectureError(f"{cell_name}: expected a dict of nodes, got {type(cell).__name__}")
    nodes = {}
    for key, edges in cell.items():
        node = _node_number(key, cell_name)
        if node in nodes:
            raise ArchitectureError(f"{cell_name}: node {node} is given twice")
        nodes[node] = edges
    missing = [node for node in NODES if node not in nodes]
    if missing:
        raise ArchitectureError(f"{cell_name}: missing node(s) {missing}; nodes 2, 3, 4, 5 are needed")
    extra = sorted(node for node in nodes if node not in NODES)
    if extra:
        raise ArchitectureError(f"{cell_name}: unexpected node(s) {extra}; only nodes 2, 3, 4, 5 exist")

    normalized = {}
    for node in NODES:
        where = f"{cell_name} node {node}"
        edges = nodes[node]
        if not isinstance(edges, (list, tuple)):
            raise ArchitectureError(f"{where}: expected a list of [op_id, input_node] pairs, "
                                    f"got {type(edges).__name__}")
        if not edges:
            raise ArchitectureError(f"{where}: has no edges")
        pairs = []
        for index, entry in enumerate(edges):
            where_entry = f"{where} entry {index} {entry!r}"
            if not isinstance(entry, (list, tuple)) or len(entry) != 2:
                raise ArchitectureError(f"{where_entry}: expected a pair [op_id, input_node]")
            op_id, input_node = entry
            if not _is_int(op_id):
                raise ArchitectureError(f"{where_entry}: op id must be an int, "
                                        f"got {type(op_id).__name__}")
            if not _is_int(input_node):
                raise ArchitectureError(f"{where_entry}: input node must be an int, "
                                        f"got {type(input_node).__name__}")
            if not 0 <= op_id < len(OP_NAMES):
                raise ArchitectureError(f"{where_entry}: unknown op id {op_id}; "
                                        f"op ids are 0..{len(OP_NAMES) - 1}")
            if not 0 <= input_node < node:
                raise ArchitectureError(f"{where_entry}: input node {input_node} is not an earlier "
                                        f"node (0..{node - 1})")
            pairs.append((int(op_id), int(input_node)))
        normalized[node] = tuple(pairs)
    return normalized


def _softmax_rows(alpha):
    shifted = alpha - alpha.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def derive_cell(alpha):
    """The discrete cell of one (14, 8) alpha array, by the DARTS rule.

    Per edge, the softmax of its alphas; for each node, its incoming edges are ranked by their
    strongest non-zero op weight, the top 2 are kept (strongest first), and each gets its strongest
    non-zero op. The zero op is never chosen: it would remove the edge.

    Ties go to the earlier edge (lower input node) and to the lower op id. This is what the
    stable sorted() and strict-greater argmax of quark0/darts and of the NNabla example do; with our
    op ids it gives exactly the NNabla example's choice (quark0 lists its ops in another order).
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    if alpha.shape != (len(EDGES), len(SEARCH_OPS)):
        raise ArchitectureError(f"alpha has shape {alpha.shape}, expected {(len(EDGES), len(SEARCH_OPS))}")
    if not np.all(np.isfinite(alpha)):
        raise ArchitectureError("alpha contains NaN or infinite values")
    weights = _softmax_rows(alpha)
    weights[:, ZERO_OP] = -np.inf  # out of both the ranking and the op choice
    cell = {}
    for node in NODES:
        rows = [EDGES.index((input_node, node)) for input_node in range(node)]
        # sorted() is stable, so on equal strength the earlier edge stays first.
        ranked = sorted(range(node), key=lambda input_node: -weights[rows[input_node]].max())
        # argmax returns the first maximum, so on equal weight the lower op id wins.
        cell[node] = tuple((int(np.argmax(weights[rows[input_node]])), input_node)
                           for input_node in ranked[:2])
    return cell


def derive_architecture(alpha_normal, alpha_reduction):
    return Architecture(normal=derive_cell(alpha_normal), reduction=derive_cell(alpha_reduction))


def to_json_dict(arch):
    """The NNabla example's layout: string node keys, [op_id, input_node] lists."""
    def cell_dict(cell):
        return {str(node): [[op_id, input_node] for op_id, input_node in cell[node]] for node in NODES}
    return {"arch_normal": cell_dict(arch.normal), "arch_reduction": cell_dict(arch.reduction)}


def from_json_dict(data):
    if not isinstance(data, dict):
        raise ArchitectureError(f"architecture JSON must be an object, got {type(data).__name__}")
    for key in ("arch_normal", "arch_reduction"):
        if key not in data:
            raise ArchitectureError(f"architecture JSON has no {key!r} key "
                                    f"(keys: {sorted(map(str, data))})")
    # Validate under the JSON key names so that messages point into the file.
    return Architecture(normal=validate_cell(data["arch_normal"], "arch_normal"),
                        reduction=validate_cell(data["arch_reduction"], "arch_reduction"))


def _json_text(arch):
    # One line per node: json.dump(indent=...) would put every number on its own line.
    cells = []
    for cell_key, cell in to_json_dict(arch).items():
        nodes = ",\n".join(f"    {json.dumps(node)}: {json.dumps(edges)}" for node, edges in cell.items())
        cells.append(f"  {json.dumps(cell_key)}: {{\n{nodes}\n  }}")
    return "{\n" + ",\n".join(cells) + "\n}\n"


def save_architecture(arch, path):
    write_text_atomically(path, _json_text(arch))


def write_text_atomically(path, text):
    """Write a text file; a crash mid-write leaves the old file, not a truncated one."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # Same directory, so os.replace is a rename; open() (not mkstemp) keeps the usual permissions.
    tmp_path = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp_path, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def to_genotype_string(arch):
    """quark0's flat form: two (op name, input node) pairs per node, in node order."""
    def pairs(cell, cell_name):
        out = []
        for node in NODES:
            if len(cell[node]) != 2:
                raise ArchitectureError(f"{cell_name} node {node} has {len(cell[node])} edges; "
                                        f"the genotype string needs exactly 2 per node")
            out.extend((OP_NAMES[op_id], input_node) for op_id, input_node in cell[node])
        return "[" + ", ".join(repr(pair) for pair in out) + "]"
    return (f"Genotype(normal={pairs(arch.normal, 'normal')}, normal_concat={_CONCAT}, "
            f"reduce={pairs(arch.reduction, 'reduce')}, reduce_concat={_CONCAT})")


def _literal(node, field):
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        raise ArchitectureError(f"genotype {field}: not a literal value: {ast.unparse(node)}") from None


def _concat(node, field):
    """[2, 3, 4, 5], or range(2, 6) as quark0's genotype() writes it."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range"
            and not node.keywords):
        try:
            values = list(range(*[_literal(arg, field) for arg in node.args]))
        except TypeError:
            values = None
    else:
        values = _literal(node, field)
    if not isinstance(values, (list, tuple)) or list(values) != _CONCAT:
        raise ArchitectureError(f"genotype {field} is {ast.unparse(node)}; only the concat of "
                                f"nodes {_CONCAT} is supported")


def _op_id(name, where):
    if not isinstance(name, str):
        raise ArchitectureError(f"{where}: op name must be a string, got {name!r}")
    if name not in OP_NAMES:
        raise ArchitectureError(f"{where}: unknown op name {name!r}; known: {', '.join(OP_NAMES)}")
    return OP_NAMES.index(name)


def _genotype_cell(value, field):
    """A flat list of 8 (name, input) pairs, or one list of pairs per node, as a cell of op ids."""
    if not isinstance(value, (list, tuple)) or not value:
        raise ArchitectureError(f"genotype {field}: expected a list of (op name, input node) pairs")
    # The first item tells the form: a pair starts with an op name, a node list with a pair.
    first = value[0]
    if isinstance(first, (list, tuple)) and first and isinstance(first[0], str):
        if len(value) != 2 * len(NODES):
            raise ArchitectureError(f"genotype {field}: {len(value)} pairs; the flat form needs "
                                    f"{2 * len(NODES)}, two per node")
        per_node = [value[i:i + 2] for i in range(0, len(value), 2)]
    else:
        if len(value) != len(NODES):
            raise ArchitectureError(f"genotype {field}: {len(value)} node lists; expected "
                                    f"{len(NODES)} (nodes 2..5), or a flat list of pairs")
        per_node = value
    cell = {}
    for node, pairs in zip(NODES, per_node):
        where = f"genotype {field} node {node}"
        if not isinstance(pairs, (list, tuple)):
            raise ArchitectureError(f"{where}: expected a list of (op name, input node) pairs, got {pairs!r}")
        edges = []
        for index, pair in enumerate(pairs):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ArchitectureError(f"{where} entry {index}: expected (op name, input node), got {pair!r}")
            edges.append((_op_id(pair[0], f"{where} entry {index}"), pair[1]))
        cell[node] = edges
    return validate_cell(cell, f"genotype {field}")


def parse_genotype_string(text):
    """Read a Genotype(...) string without eval: only literals and range(a, b) are accepted."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        raise ArchitectureError(f"not a genotype string (syntax error: {error.msg})") from None
    call = tree.body
    callee = call.func if isinstance(call, ast.Call) else None
    name = callee.id if isinstance(callee, ast.Name) else getattr(callee, "attr", None)
    if name != "Genotype":
        raise ArchitectureError("not a genotype string: expected Genotype(normal=..., reduce=...)")
    if len(call.args) > len(_GENOTYPE_FIELDS):
        raise ArchitectureError(f"genotype has {len(call.args)} positional fields; expected at most 4")
    fields = dict(zip(_GENOTYPE_FIELDS, call.args))
    for keyword in call.keywords:
        if keyword.arg not in _GENOTYPE_FIELDS:
            raise ArchitectureError(f"genotype has an unknown field {keyword.arg!r}")
        if keyword.arg in fields:
            raise ArchitectureError(f"genotype field {keyword.arg!r} is given twice")
        fields[keyword.arg] = keyword.value
    missing = [field for field in _GENOTYPE_FIELDS if field not in fields]
    if missing:
        raise ArchitectureError(f"genotype is missing field(s) {', '.join(missing)}")
    _concat(fields["normal_concat"], "normal_concat")
    _concat(fields["reduce_concat"], "reduce_concat")
    return Architecture(normal=_genotype_cell(_literal(fields["normal"], "normal"), "normal"),
                        reduction=_genotype_cell(_literal(fields["reduce"], "reduce"), "reduce"))


def _named(normal, reduction):
    """A cell from the spec's notation: one (op name, input node) list per node."""
    def cell(nodes):
        return {node: [(OP_NAMES.index(op), input_node) for op, input_node in pairs]
                for node, pairs in zip(NODES, nodes)}
    return Architecture(normal=cell(normal), reduction=cell(reduction))


NAMED_ARCHITECTURES = {
    "DARTS_V1": _named(
        normal=[[("sep_conv_3x3", 1), ("sep_conv_3x3", 0)], [("skip_connect", 0), ("sep_conv_3x3", 1)],
                [("skip_connect", 0), ("sep_conv_3x3", 1)], [("sep_conv_3x3", 0), ("skip_connect", 2)]],
        reduction=[[("max_pool_3x3", 0), ("max_pool_3x3", 1)], [("skip_connect", 2), ("max_pool_3x3", 0)],
                   [("max_pool_3x3", 0), ("skip_connect", 2)], [("skip_connect", 2), ("avg_pool_3x3", 0)]]),
    # The paper's "DARTS (second order)" cell.
    "DARTS_V2": _named(
        normal=[[("sep_conv_3x3", 0), ("sep_conv_3x3", 1)], [("sep_conv_3x3", 0), ("sep_conv_3x3", 1)],
                [("sep_conv_3x3", 1), ("skip_connect", 0)], [("skip_connect", 0), ("dil_conv_3x3", 2)]],
        reduction=[[("max_pool_3x3", 0), ("max_pool_3x3", 1)], [("skip_connect", 2), ("max_pool_3x3", 1)],
                   [("max_pool_3x3", 0), ("skip_connect", 2)], [("skip_connect", 2), ("max_pool_3x3", 1)]]),
}


def _from_text(text, source):
    stripped = text.strip()
    if not stripped:
        raise ArchitectureError(f"{source} is empty")
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as error:
            raise ArchitectureError(f"{source}: invalid JSON: {error}") from None
        return from_json_dict(data)
    if re.match(r"(\w+\.)*Genotype\s*\(", stripped):
        return parse_genotype_string(stripped)
    raise ArchitectureError(f"{source} holds neither architecture JSON nor a Genotype(...) string")


def load_architecture(spec):
    """An architecture from a named cell, a JSON or genotype-string file, or a genotype string."""
    if not isinstance(spec, (str, os.PathLike)):
        raise ArchitectureError(f"architecture spec must be a string, got {type(spec).__name__}")
    spec = os.fspath(spec)
    if spec in NAMED_ARCHITECTURES:
        return NAMED_ARCHITECTURES[spec]
    if re.match(r"\s*(\w+\.)*Genotype\s*\(", spec):
        return parse_genotype_string(spec)
    if os.path.isdir(spec):
        raise ArchitectureError(f"architecture file {spec!r} is a directory")
    if os.path.isfile(spec):
        try:
            with open(spec, encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError:
            raise ArchitectureError(f"architecture file {spec!r} is not a text file") from None
        except OSError as error:
            raise ArchitectureError(f"cannot read architecture file {spec!r}: {error.strerror}") from None
        return _from_text(text, f"architecture file {spec!r}")
    if not spec.strip():
        raise ArchitectureError("architecture spec is empty")
    # A bare word is taken for a cell name, anything else for a path.
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", spec):
        raise ArchitectureError(f"unknown named cell {spec!r} (and no such file); "
                                f"known: {', '.join(NAMED_ARCHITECTURES)}")
    raise ArchitectureError(f"architecture file {spec!r} does not exist")

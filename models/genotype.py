"""Cell architectures: what one is, and reading and writing them (models.derivation derives them
from alphas).

A cell is a dict {node: ((op_id, input_node), ...)} for the intermediate nodes 2..N (2..5 in the
DARTS search space, 2..6 in NASNet and AmoebaNet); node 0 is c_{k-2}, node 1 is c_{k-1}, and each
intermediate node is the sum of its edges. The cell's output concatenates its concat nodes (all
intermediate nodes unless said otherwise); a node outside the concat may have no edges at all, as
the cells DADARTS derives do.

Two outside formats are supported:
- the JSON file of the NNabla example (DARTS_arch.json), whose op ids are the ones used here:
  {"arch_normal": {"2": [[op_id, input_node], ...], ...}, "arch_reduction": {...}}, plus the optional
  keys "concat_normal" / "concat_reduction" (lists of nodes), written only for a concat other than all;
- the genotype string of the PyTorch code (quark0/darts), with op names instead of ids, in its flat
  form (two pairs per node, in node order) or the nested form of DADARTS / pt.darts (one list per node);
- var_nas' genotype JSON, [reduce, normal], each one list of op indices per node (node i has one
  per earlier node), in var_nas' op order (read only).

Op ids and names come from the one op table, ops.operations.OPS.
"""
import ast
import json
import os
import re
from dataclasses import dataclass
from numbers import Integral

from ops.atomic_file import atomic_write
from ops.operations import OP_NAMES
from ops.user_error import UserError

# The intermediate nodes of the DARTS search space; evaluation cells may have more or fewer.
NODES = (2, 3, 4, 5)
FIRST_NODE = 2
# (input_node, node) in the order of the rows of an alpha array.
EDGES = tuple((input_node, node) for node in NODES for input_node in range(node))

_GENOTYPE_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
# How a genotype string starts, with or without a module prefix (genotypes.Genotype(...)).
GENOTYPE_START = re.compile(r"\s*(\w+\.)*Genotype\s*\(")


class ArchitectureError(UserError, ValueError):
    """An architecture that cannot be used; the message says what is wrong and where."""


@dataclass(frozen=True)
class Architecture:
    """One normal and one reduction cell, each {node: ((op_id, input_node), ...)}, and the nodes each
    cell's output concatenates (None: all of its intermediate nodes).

    Built cells are validated and normalised (int keys, tuples, the concat as a sorted tuple), so two
    equal architectures compare equal however they were read.
    """
    normal: dict
    reduction: dict
    normal_concat: tuple = None
    reduction_concat: tuple = None

    def __post_init__(self):
        for cell_name in ("normal", "reduction"):
            cell, concat = _validate(getattr(self, cell_name), cell_name, getattr(self, f"{cell_name}_concat"),
                                     f"{cell_name}_concat")
            object.__setattr__(self, cell_name, cell)
            object.__setattr__(self, f"{cell_name}_concat", concat)

    def cell(self, reduction):
        """(cell, concat) of the reduction or the normal cell."""
        if reduction:
            return self.reduction, self.reduction_concat
        return self.normal, self.normal_concat


def all_nodes(cell):
    """The default concat of a cell: every intermediate node."""
    return tuple(sorted(cell))


def is_int(value):
    """An int, numpy's included, but not a bool."""
    # bool is an Integral too, but True as an op id is a mistake, not op 1.
    return isinstance(value, Integral) and not isinstance(value, bool)


def read_pair(entry, where):
    """(op_id, input_node) of an [op_id, input_node] entry, both ints; a one-line ArchitectureError otherwise."""
    if not isinstance(entry, (list, tuple)) or len(entry) != 2:
        raise ArchitectureError(f"{where}: expected a pair [op_id, input_node]")
    op_id, input_node = entry
    if not is_int(op_id):
        raise ArchitectureError(f"{where}: op id must be an int, got {type(op_id).__name__}")
    if not is_int(input_node):
        raise ArchitectureError(f"{where}: input node must be an int, got {type(input_node).__name__}")
    return int(op_id), int(input_node)


def _node_number(key, cell_name):
    """A node key as an int: JSON gives "2", Python code gives 2."""
    if is_int(key):
        return int(key)
    if isinstance(key, str) and re.fullmatch(r"[0-9]+", key):
        return int(key)
    raise ArchitectureError(f"{cell_name}: node key {key!r} is not a node number")


def _validate_concat(concat, nodes, concat_name):
    """A concat as a sorted tuple: a non-empty set of the cell's intermediate nodes (None: all of them)."""
    if concat is None:
        return tuple(nodes)
    if not isinstance(concat, (list, tuple, range)):
        raise ArchitectureError(f"{concat_name}: expected a list of nodes, got {type(concat).__name__}")
    if not all(is_int(node) for node in concat):
        raise ArchitectureError(f"{concat_name} {list(concat)!r}: nodes must be ints")
    values = [int(node) for node in concat]
    if not values:
        raise ArchitectureError(f"{concat_name} is empty; the cell's output needs at least one node")
    if len(set(values)) != len(values):
        raise ArchitectureError(f"{concat_name} {values}: a node is given twice")
    unknown = [node for node in values if node not in nodes]
    if unknown:
        raise ArchitectureError(f"{concat_name} {values}: node(s) {unknown} are not intermediate nodes "
                                f"of the cell ({nodes[0]}..{nodes[-1]})")
    return tuple(sorted(values))


def _validate(cell, cell_name, concat, concat_name):
    """(cell, concat) checked and normalised: int nodes 2..N, tuples of (op_id, input_node), a sorted concat."""
    if not isinstance(cell, dict):
        raise ArchitectureError(f"{cell_name}: expected a dict of nodes, got {type(cell).__name__}")
    nodes = {}
    for key, edges in cell.items():
        node = _node_number(key, cell_name)
        if node in nodes:
            raise ArchitectureError(f"{cell_name}: node {node} is given twice")
        nodes[node] = edges
    below = sorted(node for node in nodes if node < FIRST_NODE)
    if below:
        raise ArchitectureError(f"{cell_name}: unexpected node(s) {below}; nodes 0 and 1 are the cell's "
                                f"inputs, intermediate nodes start at {FIRST_NODE}")
    if not nodes:
        raise ArchitectureError(f"{cell_name}: has no intermediate nodes")
    expected = tuple(range(FIRST_NODE, max(nodes) + 1))
    missing = [node for node in expected if node not in nodes]
    if missing:
        raise ArchitectureError(f"{cell_name}: missing node(s) {missing}; nodes "
                                f"{', '.join(map(str, expected))} are needed")
    concat = _validate_concat(concat, expected, concat_name)

    normalized = {}
    for node in expected:
        where = f"{cell_name} node {node}"
        edges = nodes[node]
        if not isinstance(edges, (list, tuple)):
            raise ArchitectureError(f"{where}: expected a list of [op_id, input_node] pairs, "
                                    f"got {type(edges).__name__}")
        if not edges and node in concat:
            raise ArchitectureError(f"{where}: has no edges, but {concat_name} {list(concat)} includes it "
                                    f"(only nodes outside the concat may be empty)")
        pairs = []
        for index, entry in enumerate(edges):
            where_entry = f"{where} entry {index} {entry!r}"
            op_id, input_node = read_pair(entry, where_entry)
            if not 0 <= op_id < len(OP_NAMES):
                raise ArchitectureError(f"{where_entry}: unknown op id {op_id}; "
                                        f"op ids are 0..{len(OP_NAMES) - 1}")
            if not 0 <= input_node < node:
                raise ArchitectureError(f"{where_entry}: input node {input_node} is not an earlier "
                                        f"node (0..{node - 1})")
            if input_node >= FIRST_NODE and not normalized[input_node]:
                raise ArchitectureError(f"{where_entry}: input node {input_node} has no edges, so no value")
            pairs.append((int(op_id), int(input_node)))
        normalized[node] = tuple(pairs)
    return normalized, concat


def validate_cell(cell, cell_name, concat=None):
    """Check one cell and return it as {node: ((op_id, input_node), ...)} with int nodes 2..N.

    Nodes may be empty only if they are outside `concat` (None: every node is in it).
    """
    return _validate(cell, cell_name, concat, f"{cell_name} concat")[0]


_JSON_CELLS = (("normal", "arch_normal", "concat_normal"), ("reduction", "arch_reduction", "concat_reduction"))


def to_json_dict(arch):
    """The NNabla example's layout: string node keys, [op_id, input_node] lists; a concat other than
    all nodes under "concat_normal" / "concat_reduction", which the example's own files never have."""
    data = {}
    for cell_name, cell_key, _ in _JSON_CELLS:
        cell = getattr(arch, cell_name)
        data[cell_key] = {str(node): json_pairs(cell[node]) for node in sorted(cell)}
    for cell_name, _, concat_key in _JSON_CELLS:
        concat = getattr(arch, f"{cell_name}_concat")
        if concat != all_nodes(getattr(arch, cell_name)):
            data[concat_key] = list(concat)
    return data


def from_json_dict(data):
    if not isinstance(data, dict):
        raise ArchitectureError(f"architecture JSON must be an object, got {type(data).__name__}")
    for key in ("arch_normal", "arch_reduction"):
        if key not in data:
            raise ArchitectureError(f"architecture JSON has no {key!r} key "
                                    f"(keys: {sorted(map(str, data))})")
    # Validate under the JSON key names so that messages point into the file.
    cells = {}
    for cell_name, cell_key, concat_key in _JSON_CELLS:
        cells[cell_name], cells[f"{cell_name}_concat"] = _validate(data[cell_key], cell_key,
                                                                   data.get(concat_key), concat_key)
    return Architecture(**cells)


def _json_text(arch):
    # One line per node: json.dump(indent=...) would put every number on its own line.
    entries = []
    for key, value in to_json_dict(arch).items():
        if isinstance(value, dict):
            nodes = ",\n".join(f"    {json.dumps(node)}: {json.dumps(edges)}" for node, edges in value.items())
            entries.append(f"  {json.dumps(key)}: {{\n{nodes}\n  }}")
        else:
            entries.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(entries) + "\n}\n"


def save_architecture(arch, path):
    write_text_atomically(path, _json_text(arch))


def write_text_atomically(path, text):
    """Write a text file, its directory made if need be; a crash mid-write leaves the old file, not a truncated
    one (ops.atomic_file)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)


def json_pairs(pairs):
    """(op_id, input_node) pairs as the [op_id, input_node] lists of our JSON files."""
    return [[op_id, input_node] for op_id, input_node in pairs]


def printed_pairs(pairs, op_names):
    """(op_id, input_node) pairs as quark0's genotype strings print them: "('sep_conv_3x3', 1)"."""
    return [repr((op_names[op_id], input_node)) for op_id, input_node in pairs]


def to_genotype_string(arch):
    """quark0's flat form (two (op name, input node) pairs per node, in node order) where every node
    has two edges, else the nested form of DADARTS and pt.darts (one list of pairs per node)."""
    def pairs(cell):
        per_node = [printed_pairs(cell[node], OP_NAMES) for node in sorted(cell)]
        if all(len(node_pairs) == 2 for node_pairs in per_node):
            return "[" + ", ".join(pair for node_pairs in per_node for pair in node_pairs) + "]"
        return "[" + ", ".join("[" + ", ".join(node_pairs) + "]" for node_pairs in per_node) + "]"
    return (f"Genotype(normal={pairs(arch.normal)}, normal_concat={list(arch.normal_concat)}, "
            f"reduce={pairs(arch.reduction)}, reduce_concat={list(arch.reduction_concat)})")


def _literal(node, field):
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        raise ArchitectureError(f"genotype {field}: not a literal value: {ast.unparse(node)}") from None


def _concat(node, field):
    """The list of a concat field: [2, 3, 4, 5], or range(2, 6) as quark0's genotype() writes it.

    Whether its nodes exist is checked with the cell, by Architecture.
    """
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range"
            and not node.keywords):
        arguments = [_literal(arg, field) for arg in node.args]
        if not 1 <= len(arguments) <= 3 or not all(is_int(a) for a in arguments):
            raise ArchitectureError(f"genotype {field} is {ast.unparse(node)}; range() needs 1 to 3 ints")
        return list(range(*arguments))
    values = _literal(node, field)
    if not isinstance(values, (list, tuple)):
        raise ArchitectureError(f"genotype {field} is {ast.unparse(node)}; expected a list of nodes or a range")
    return list(values)


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
        if len(value) % 2:
            raise ArchitectureError(f"genotype {field}: {len(value)} pairs; the flat form needs "
                                    f"two per node")
        per_node = [value[i:i + 2] for i in range(0, len(value), 2)]
    else:
        per_node = value
    cell = {}
    for node, pairs in enumerate(per_node, start=FIRST_NODE):
        where = f"genotype {field} node {node}"
        if not isinstance(pairs, (list, tuple)):
            raise ArchitectureError(f"{where}: expected a list of (op name, input node) pairs, got {pairs!r}")
        edges = []
        for index, pair in enumerate(pairs):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ArchitectureError(f"{where} entry {index}: expected (op name, input node), got {pair!r}")
            edges.append((_op_id(pair[0], f"{where} entry {index}"), pair[1]))
        cell[node] = edges
    return cell


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
    cells = {}
    for cell_name, field in (("normal", "normal"), ("reduction", "reduce")):
        cell = _genotype_cell(_literal(fields[field], field), field)
        concat = _concat(fields[f"{field}_concat"], f"{field}_concat")
        cells[cell_name], cells[f"{cell_name}_concat"] = _validate(cell, f"genotype {field}", concat,
                                                                   f"genotype {field}_concat")
    return Architecture(**cells)


def _named(normal, reduction, normal_concat=None, reduction_concat=None):
    """A cell from the spec's notation: one (op name, input node) list per node, from node 2 on."""
    def cell(nodes):
        return {node: [(OP_NAMES.index(op), input_node) for op, input_node in pairs]
                for node, pairs in enumerate(nodes, start=FIRST_NODE)}
    return Architecture(normal=cell(normal), reduction=cell(reduction), normal_concat=normal_concat,
                        reduction_concat=reduction_concat)


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

# quark0 and naszilla name the paper's second-order cell DARTS.
NAMED_ARCHITECTURES["DARTS"] = NAMED_ARCHITECTURES["DARTS_V2"]
NAMED_ARCHITECTURES.update({
    # naszilla/darts: the best cells found by BANANAS and by ASHA (200 architectures).
    "BANANAS": _named(
        normal=[[("sep_conv_3x3", 1), ("skip_connect", 0)], [("sep_conv_5x5", 2), ("sep_conv_5x5", 0)],
                [("skip_connect", 0), ("sep_conv_5x5", 2)], [("sep_conv_3x3", 0), ("skip_connect", 2)]],
        reduction=[[("sep_conv_3x3", 1), ("max_pool_3x3", 0)], [("max_pool_3x3", 0), ("none", 1)],
                   [("dil_conv_3x3", 2), ("sep_conv_5x5", 3)], [("sep_conv_5x5", 4), ("sep_conv_3x3", 1)]]),
    "ASHA200": _named(
        normal=[[("skip_connect", 1), ("dil_conv_3x3", 0)], [("sep_conv_3x3", 1), ("skip_connect", 0)],
                [("none", 1), ("max_pool_3x3", 0)], [("skip_connect", 1), ("dil_conv_3x3", 0)]],
        reduction=[[("max_pool_3x3", 1), ("avg_pool_3x3", 0)], [("sep_conv_5x5", 1), ("skip_connect", 2)],
                   [("max_pool_3x3", 3), ("none", 1)], [("skip_connect", 0), ("sep_conv_5x5", 4)]]),
    # The NASNet-A and AmoebaNet-A cells as quark0 writes them: five nodes, some outside the output.
    "NASNet": _named(
        normal=[[("sep_conv_5x5", 1), ("sep_conv_3x3", 0)], [("sep_conv_5x5", 0), ("sep_conv_3x3", 0)],
                [("avg_pool_3x3", 1), ("skip_connect", 0)], [("avg_pool_3x3", 0), ("avg_pool_3x3", 0)],
                [("sep_conv_3x3", 1), ("skip_connect", 1)]],
        reduction=[[("sep_conv_5x5", 1), ("sep_conv_7x7", 0)], [("max_pool_3x3", 1), ("sep_conv_7x7", 0)],
                   [("avg_pool_3x3", 1), ("sep_conv_5x5", 0)], [("skip_connect", 3), ("avg_pool_3x3", 2)],
                   [("sep_conv_3x3", 2), ("max_pool_3x3", 1)]],
        normal_concat=[2, 3, 4, 5, 6], reduction_concat=[4, 5, 6]),
    "AmoebaNet": _named(
        normal=[[("avg_pool_3x3", 0), ("max_pool_3x3", 1)], [("sep_conv_3x3", 0), ("sep_conv_5x5", 2)],
                [("sep_conv_3x3", 0), ("avg_pool_3x3", 3)], [("sep_conv_3x3", 1), ("skip_connect", 1)],
                [("skip_connect", 0), ("avg_pool_3x3", 1)]],
        reduction=[[("avg_pool_3x3", 0), ("sep_conv_3x3", 1)], [("max_pool_3x3", 0), ("sep_conv_7x7", 2)],
                   [("sep_conv_7x7", 0), ("avg_pool_3x3", 1)], [("max_pool_3x3", 0), ("max_pool_3x3", 1)],
                   [("conv_7x1_1x7", 0), ("sep_conv_3x3", 5)]],
        normal_concat=[4, 5, 6], reduction_concat=[3, 4, 6]),
})


# var_nas op index -> ours: max, avg, skip, sep3, sep5, dil3, dil5, none.
VAR_NAS_OPS = (4, 5, 6, 2, 3, 0, 1, 7)


def from_var_nas_lists(data):
    """An Architecture from var_nas' [reduce, normal] lists of op indices (every edge kept)."""
    if not isinstance(data, list) or len(data) != 2:
        raise ArchitectureError("var_nas genotype must be a list [reduce, normal]")
    cells = []
    for cell_name, nodes in zip(("reduce", "normal"), data):
        if not isinstance(nodes, list) or len(nodes) != len(NODES):
            raise ArchitectureError(f"var_nas {cell_name} cell must be a list of {len(NODES)} node lists")
        cell = {}
        for node, ops in zip(NODES, nodes):
            where = f"var_nas {cell_name} node {node}"
            if not isinstance(ops, list) or len(ops) != node:
                raise ArchitectureError(f"{where}: expected {node} op indices, one per earlier node, got {ops!r}")
            for op in ops:
                if not is_int(op) or not 0 <= op < len(VAR_NAS_OPS):
                    raise ArchitectureError(f"{where}: op index {op!r} is not one of 0..{len(VAR_NAS_OPS) - 1}")
            cell[node] = [(VAR_NAS_OPS[op], input_node) for input_node, op in enumerate(ops)]
        cells.append(cell)
    reduction, normal = cells
    return Architecture(normal=normal, reduction=reduction)


def parse_json(text, source):
    """The JSON value of a file's text; an ArchitectureError naming `source` if it is not JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ArchitectureError(f"{source}: invalid JSON: {error}") from None


def _from_text(text, source):
    stripped = text.strip()
    if stripped.startswith("{"):
        return from_json_dict(parse_json(stripped, source))
    if stripped.startswith("["):
        return from_var_nas_lists(parse_json(stripped, source))
    if GENOTYPE_START.match(stripped):
        return parse_genotype_string(stripped)
    raise ArchitectureError(f"{source} holds neither architecture JSON nor a Genotype(...) string "
                            f"(nor a var_nas [reduce, normal] list)")


def load_spec(spec, kind, named, named_kind, from_text):
    """What a command-line spec names: an entry of `named`, else a file whose non-empty text goes to
    from_text(text, source). `kind` ("architecture") and `named_kind` ("named cell") word the errors,
    each one line."""
    if not isinstance(spec, (str, os.PathLike)):
        raise ArchitectureError(f"{kind} spec must be a string, got {type(spec).__name__}")
    spec = os.fspath(spec)
    if spec in named:
        return named[spec]
    source = f"{kind} file {spec!r}"
    if os.path.isdir(spec):
        raise ArchitectureError(f"{source} is a directory")
    if os.path.isfile(spec):
        try:
            with open(spec, encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError:
            raise ArchitectureError(f"{source} is not a text file") from None
        except OSError as error:
            raise ArchitectureError(f"cannot read {source}: {error.strerror}") from None
        if not text.strip():
            raise ArchitectureError(f"{source} is empty")
        return from_text(text, source)
    if not spec.strip():
        raise ArchitectureError(f"{kind} spec is empty")
    # A bare word is taken for a name, anything else for a path.
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", spec):
        raise ArchitectureError(f"unknown {named_kind} {spec!r} (and no such file); known: {', '.join(named)}")
    raise ArchitectureError(f"{source} does not exist")


def load_architecture(spec):
    """An architecture from a named cell, a JSON or genotype-string file, or a genotype string."""
    if isinstance(spec, str) and GENOTYPE_START.match(spec):
        return parse_genotype_string(spec)
    return load_spec(spec, "architecture", NAMED_ARCHITECTURES, "named cell", _from_text)

import copy
import json
import os

import numpy as np
import pytest

from models.derivation import derive_by_rule
from models.genotype import (EDGES, NAMED_ARCHITECTURES, NODES, OP_NAMES, Architecture, ArchitectureError,
                             from_json_dict, load_architecture, parse_genotype_string, save_architecture,
                             to_genotype_string, to_json_dict, validate_cell)

DIL3, DIL5, SEP3, SEP5, MAX, AVG, SKIP, NONE = range(8)


def random_architecture(seed):
    rng = np.random.default_rng(seed)
    return derive_by_rule(rng.normal(size=(14, 8)), rng.normal(size=(14, 8)), "top-k")


def test_edge_order_is_node_major():
    assert EDGES[:5] == ((0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
    assert EDGES[-1] == (4, 5) and len(EDGES) == 14


# ---------------------------------------------------------------- JSON

def test_json_file_round_trip(tmp_path):
    arch = random_architecture(1)
    path = tmp_path / "new" / "dir" / "DARTS_arch.json"
    save_architecture(arch, str(path))
    assert load_architecture(str(path)) == arch
    raw = json.loads(path.read_text())
    assert set(raw) == {"arch_normal", "arch_reduction"}
    assert list(raw["arch_normal"]) == ["2", "3", "4", "5"]
    assert all(isinstance(pair, list) and len(pair) == 2 for pair in raw["arch_reduction"]["5"])
    assert os.listdir(path.parent) == ["DARTS_arch.json"]  # no temporary file left behind
    assert '    "2": [[' in path.read_text()  # one readable line per node


def test_failed_save_leaves_old_file(tmp_path, monkeypatch):
    path = tmp_path / "arch.json"
    save_architecture(NAMED_ARCHITECTURES["DARTS_V1"], str(path))
    before = path.read_text()

    def broken_replace(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        save_architecture(NAMED_ARCHITECTURES["DARTS_V2"], str(path))
    assert path.read_text() == before
    assert os.listdir(tmp_path) == ["arch.json"]


def test_nnabla_example_style_json_loads(tmp_path):
    path = tmp_path / "DARTS_arch.json"
    path.write_text('{"arch_normal": {"2": [[6, 0], [0, 1]], "3": [[6, 0], [2, 1]], '
                    '"4": [[2, 0], [2, 1]], "5": [[2, 0], [2, 1]]}, '
                    '"arch_reduction": {"2": [[4, 0], [4, 1]], "3": [[4, 0], [6, 2]], '
                    '"4": [[4, 0], [6, 2]], "5": [[6, 2], [5, 0]]}}')
    arch = load_architecture(str(path))
    assert arch.normal[2] == ((SKIP, 0), (DIL3, 1))
    assert arch.reduction[5] == ((SKIP, 2), (AVG, 0))


def test_json_dict_round_trip_and_int_keys():
    arch = NAMED_ARCHITECTURES["DARTS_V2"]
    data = to_json_dict(arch)
    assert data["arch_normal"]["5"] == [[SKIP, 0], [DIL3, 2]]
    assert from_json_dict(data) == arch
    int_keys = {cell: {int(node): edges for node, edges in nodes.items()} for cell, nodes in data.items()}
    assert from_json_dict(int_keys) == arch


# ---------------------------------------------------------------- genotype strings and named cells

def test_named_cells_match_spec():
    v1, v2 = NAMED_ARCHITECTURES["DARTS_V1"], NAMED_ARCHITECTURES["DARTS_V2"]
    assert v2.normal[5] == ((SKIP, 0), (DIL3, 2))
    assert v2.normal[4] == ((SEP3, 1), (SKIP, 0))
    assert v2.reduction[3] == ((SKIP, 2), (MAX, 1))
    assert v2.reduction[5] == ((SKIP, 2), (MAX, 1))
    assert v1.normal[2] == ((SEP3, 1), (SEP3, 0))
    assert v1.reduction[5] == ((SKIP, 2), (AVG, 0))
    assert load_architecture("DARTS_V2") == v2


# DARTS_V1 as quark0/darts writes it (genotypes.py), i.e. the spec's DARTS_V1 in the flat form.
DARTS_V1_FLAT = (
    "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])")

# DARTS_V2 in the nested DADARTS / pt.darts form, with quark0's range concat.
DARTS_V2_NESTED = (
    "Genotype(normal=[[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], [('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1)], [('sep_conv_3x3', 1), ('skip_connect', 0)], [('skip_connect', 0), "
    "('dil_conv_3x3', 2)]], normal_concat=range(2, 6), reduce=[[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1)], [('skip_connect', 2), ('max_pool_3x3', 1)], [('max_pool_3x3', 0), "
    "('skip_connect', 2)], [('skip_connect', 2), ('max_pool_3x3', 1)]], reduce_concat=range(2, 6))")


def test_genotype_string_forms():
    assert parse_genotype_string(DARTS_V1_FLAT) == NAMED_ARCHITECTURES["DARTS_V1"]
    assert to_genotype_string(NAMED_ARCHITECTURES["DARTS_V1"]) == DARTS_V1_FLAT
    assert parse_genotype_string(DARTS_V2_NESTED) == NAMED_ARCHITECTURES["DARTS_V2"]


def test_genotype_string_round_trip_of_derived_cells():
    arch = random_architecture(3)
    assert parse_genotype_string(to_genotype_string(arch)) == arch


def test_nodes_with_other_than_two_edges():
    # The nested form can say it; the flat form cannot, so such a cell is written nested.
    text = DARTS_V2_NESTED.replace("('dil_conv_3x3', 2)]", "('dil_conv_3x3', 2), ('avg_pool_3x3', 4)]", 1)
    arch = parse_genotype_string(text)
    assert arch.normal[5] == ((SKIP, 0), (DIL3, 2), (AVG, 4))
    written = to_genotype_string(arch)
    assert written.startswith("Genotype(normal=[[(") and parse_genotype_string(written) == arch
    assert "reduce=[('max_pool_3x3', 0)" in written  # the other cell keeps the flat form
    assert from_json_dict(to_json_dict(arch)) == arch


def test_genotype_string_from_argument_and_file(tmp_path):
    assert load_architecture(DARTS_V2_NESTED) == NAMED_ARCHITECTURES["DARTS_V2"]
    path = tmp_path / "genotype.txt"
    path.write_text(DARTS_V1_FLAT + "\n")
    assert load_architecture(str(path)) == NAMED_ARCHITECTURES["DARTS_V1"]


def test_none_op_is_accepted_in_data():
    text = DARTS_V1_FLAT.replace("('skip_connect', 2)]", "('none', 2)]", 1)
    assert parse_genotype_string(text).normal[5] == ((SEP3, 0), (NONE, 2))


@pytest.mark.parametrize("text, message", [
    (DARTS_V1_FLAT.replace("'sep_conv_3x3', 1", "'sep_conv_9x9', 1", 1), "unknown op name 'sep_conv_9x9'"),
    (DARTS_V1_FLAT.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=[2, 3, 4, 5, 6]"), "normal_concat"),
    (DARTS_V2_NESTED.replace("reduce_concat=range(2, 6)", "reduce_concat=range(6, 6)"), "reduce_concat"),
    (DARTS_V1_FLAT.replace("('skip_connect', 2)]", "]", 1), "7 pairs"),
    (DARTS_V1_FLAT.replace("('skip_connect', 2)]", "('skip_connect', 5)]", 1), "normal node 5 entry 1"),
    (DARTS_V1_FLAT.replace("normal=[", "normal=__import__('os').listdir('.') + [", 1), "not a literal"),
    (DARTS_V1_FLAT.replace(", reduce_concat=[2, 3, 4, 5]", ""), "missing field(s) reduce_concat"),
    ("Genotype(normal=[", "syntax error"),
])
def test_bad_genotype_strings(text, message):
    with pytest.raises(ArchitectureError) as error:
        parse_genotype_string(text)
    assert message in str(error.value)


# ---------------------------------------------------------------- defects

def v2_json():
    return copy.deepcopy(to_json_dict(NAMED_ARCHITECTURES["DARTS_V2"]))


def _set(data, cell, node, value):
    data[cell][node] = value
    return data


def _drop(data, cell, node=None):
    if node is None:
        del data[cell]
    else:
        del data[cell][node]
    return data


def _set_entry(data, cell, node, index, value):
    data[cell][node][index] = value
    return data


@pytest.mark.parametrize("make, message", [
    (lambda d: _set_entry(d, "arch_normal", "2", 0, [10, 0]), "arch_normal node 2 entry 0 [10, 0]: unknown op id 10"),
    (lambda d: _set_entry(d, "arch_normal", "3", 1, [-1, 0]), "unknown op id -1"),
    (lambda d: _set_entry(d, "arch_reduction", "2", 1, [4, 2]), "arch_reduction node 2 entry 1 [4, 2]: input node 2 is not an earlier node"),
    (lambda d: _set_entry(d, "arch_normal", "2", 0, [4, 5]), "input node 5 is not an earlier node"),
    (lambda d: _set_entry(d, "arch_normal", "4", 0, [4, -1]), "input node -1"),
    (lambda d: _set_entry(d, "arch_normal", "2", 0, ["2", 0]), "op id must be an int, got str"),
    (lambda d: _set_entry(d, "arch_normal", "2", 0, [2.0, 0]), "op id must be an int, got float"),
    (lambda d: _set_entry(d, "arch_normal", "2", 0, [True, 0]), "op id must be an int, got bool"),
    (lambda d: _set_entry(d, "arch_normal", "2", 0, [2, 1.0]), "input node must be an int, got float"),
    (lambda d: _set_entry(d, "arch_normal", "2", 0, [2, 0, 1]), "expected a pair"),
    (lambda d: _set(d, "arch_normal", "3", {"op": 2}), "arch_normal node 3: expected a list"),
    (lambda d: _set(d, "arch_normal", "3", []), "arch_normal node 3: has no edges"),
    (lambda d: _drop(d, "arch_reduction", "4"), "arch_reduction: missing node(s) [4]"),
    (lambda d: _set(d, "arch_normal", "1", [[2, 0]]), "unexpected node(s) [1]"),
    (lambda d: _set(d, "arch_normal", "7", [[2, 0]]), "arch_normal: missing node(s) [6]"),
    (lambda d: _set(d, "arch_normal", "x", [[2, 0]]), "node key 'x'"),
    (lambda d: _set(d, "arch_normal", 2, [[2, 0]]), "node 2 is given twice"),
    (lambda d: _drop(d, "arch_reduction"), "no 'arch_reduction' key"),
    (lambda d: {"arch_normal": [], "arch_reduction": d["arch_reduction"]}, "arch_normal: expected a dict"),
    (lambda d: [d], "must be an object"),
])
def test_json_defects(make, message):
    data = make(v2_json())
    with pytest.raises(ArchitectureError) as error:
        from_json_dict(data)
    assert message in str(error.value)


def test_defect_in_file_names_the_entry(tmp_path):
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(_set_entry(v2_json(), "arch_normal", "4", 1, [11, 0])))
    with pytest.raises(ArchitectureError, match=r"arch_normal node 4 entry 1 \[11, 0\]: unknown op id 11"):
        load_architecture(str(path))


def test_architecture_constructor_validates():
    cell = {node: [(SEP3, 0), (SEP3, 1)] for node in NODES}
    assert Architecture(normal=cell, reduction=cell).normal[2] == ((SEP3, 0), (SEP3, 1))
    with pytest.raises(ArchitectureError, match="reduction node 5 entry 0"):
        Architecture(normal=cell, reduction={**cell, 5: [(len(OP_NAMES), 0)]})
    assert validate_cell(cell, "c") == {node: ((SEP3, 0), (SEP3, 1)) for node in NODES}


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    ("  \n", "is empty"),
    ("hello world", "neither architecture JSON nor a Genotype"),
    ('{"arch_normal": ', "invalid JSON"),
])
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "arch.json"
    path.write_text(content)
    with pytest.raises(ArchitectureError) as error:
        load_architecture(str(path))
    assert message in str(error.value) and "arch.json" in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(ArchitectureError, match="does not exist"):
        load_architecture(str(tmp_path / "nope.json"))
    with pytest.raises(ArchitectureError, match="unknown named cell 'DARTS_V3'.*DARTS_V1, DARTS_V2"):
        load_architecture("DARTS_V3")
    with pytest.raises(ArchitectureError, match="is a directory"):
        load_architecture(str(tmp_path))


def test_spec_defects_are_worded_for_architectures(tmp_path):
    binary = tmp_path / "arch.bin"
    binary.write_bytes(b"\xff\xfe\x00")
    for spec, message in [(3, "architecture spec must be a string, got int"),
                          ("", "architecture spec is empty"),
                          (str(binary), f"architecture file {str(binary)!r} is not a text file"),
                          ("no/such.json", "architecture file 'no/such.json' does not exist")]:
        with pytest.raises(ArchitectureError) as error:
            load_architecture(spec)
        assert str(error.value) == message

"""Cells of any size: any number of intermediate nodes, empty nodes, and an output of some nodes only."""
import json

import nnabla as nn
import numpy as np
import pytest

from models.eval_network import build_train_graph, eval_network
from models.genotype import (Architecture, ArchitectureError, from_json_dict, load_architecture, parse_genotype_string,
                             save_architecture, to_genotype_string, to_json_dict)
from models.graph import feed, forward_backward
from ops.operations import OP_NAMES
from utils.optim.solvers import SGD
from utils.pictures.cell_diagram import cell_graph
from utils.training.model_stats import count_parameters, parameters_by_scope

SEP3, DIL3, MAX, AVG, SKIP = (OP_NAMES.index(name) for name in
                              ("sep_conv_3x3", "dil_conv_3x3", "max_pool_3x3", "avg_pool_3x3", "skip_connect"))
CLASSES = 10

# Normal: node 3 is empty, the output joins nodes 2 and 4. Reduction: two nodes, the output is node 3 alone.
SUBSET = Architecture(normal={2: [(SEP3, 0), (SKIP, 1)], 3: [], 4: [(MAX, 2), (DIL3, 1)]},
                      reduction={2: [(SKIP, 0), (MAX, 1)], 3: [(SKIP, 2), (AVG, 0)]},
                      normal_concat=[2, 4], reduction_concat=[3])


@pytest.fixture(autouse=True)
def fresh_parameters():
    nn.clear_parameters()
    yield
    nn.clear_parameters()


def test_concat_subset_round_trips_through_json_and_genotype_strings(tmp_path):
    data = to_json_dict(SUBSET)
    assert data["concat_normal"] == [2, 4] and data["concat_reduction"] == [3]
    assert data["arch_normal"]["3"] == []
    path = tmp_path / "arch.json"
    save_architecture(SUBSET, path)
    assert json.loads(path.read_text()) == data
    assert load_architecture(str(path)) == SUBSET
    # The default concat is not written, so the NNabla example's files stay as they were.
    v2 = to_json_dict(load_architecture("DARTS_V2"))
    assert set(v2) == {"arch_normal", "arch_reduction"}
    # All nodes given explicitly is the default: the same architecture.
    assert from_json_dict({**v2, "concat_normal": [5, 4, 3, 2]}) == load_architecture("DARTS_V2")


def test_genotype_strings_with_any_concat():
    text = ("Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), "
            "('max_pool_3x3', 2), ('dil_conv_3x3', 3)], normal_concat=range(3, 5), "
            "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1)], reduce_concat=[2])")
    arch = parse_genotype_string(text)
    assert sorted(arch.normal) == [2, 3, 4] and arch.normal_concat == (3, 4)
    assert arch.reduction == {2: ((MAX, 0), (MAX, 1))} and arch.reduction_concat == (2,)
    written = to_genotype_string(arch)
    assert "normal_concat=[3, 4]" in written and "reduce_concat=[2]" in written
    assert parse_genotype_string(written) == arch
    # DADARTS's nested form, with an empty node outside the concat.
    nested = ("Genotype(normal=[[('sep_conv_3x3', 0)], [], [('skip_connect', 2), ('sep_conv_3x3', 1)]], "
              "normal_concat=[2, 4], reduce=[[('max_pool_3x3', 0)]], reduce_concat=range(2, 3))")
    arch = parse_genotype_string(nested)
    assert arch.normal[3] == () and arch.normal_concat == (2, 4)


def test_next_cell_reads_len_concat_times_c_channels_counted_by_hand():
    """3 cells, C = 4 on 1x8x8 inputs: cell 0 normal, cells 1 and 2 reductions (C 8 and 16)."""
    x = nn.Variable((2, 1, 8, 8))
    logits, _ = eval_network(x, SUBSET, CLASSES, 4, 3, test=False)
    counts = parameters_by_scope(nn.get_parameters(grad_only=True), depth=2)

    def relu_conv_bn(c_in, c_out):
        return c_in * c_out + 2 * c_out

    def factorized_reduce(c_in, c_out):
        return 2 * c_in * (c_out // 2) + 2 * c_out
    # Cell 0 outputs nodes 2 and 4: 2 * 4 = 8 channels (all three nodes would give 12).
    assert counts["cell1/preprocess1"] == relu_conv_bn(8, 8)
    # Cell 1 outputs node 3 alone: 8 channels, read by cell 2 (C = 16) as its s1...
    assert counts["cell2/preprocess1"] == relu_conv_bn(8, 16)
    # ... and cell 0's 8 channels, halved by a FactorizedReduce, as its s0.
    assert counts["cell2/preprocess0"] == factorized_reduce(8, 16)
    sep3 = 2 * (9 * 4 + 4 * 4 + 2 * 4)
    dil3 = 9 * 4 + 4 * 4 + 2 * 4
    assert counts["cell0/node2_edge0"] == sep3 and counts["cell0/node4_edge1"] == dil3
    stem = 9 * 12 + 2 * 12
    cells = [relu_conv_bn(12, 4) * 2 + sep3 + dil3,
             relu_conv_bn(12, 8) + relu_conv_bn(8, 8) + factorized_reduce(8, 8),
             factorized_reduce(8, 16) + relu_conv_bn(8, 16) + factorized_reduce(16, 16)]
    classifier = 16 * CLASSES + CLASSES
    assert count_parameters(nn.get_parameters(grad_only=True)) == stem + sum(cells) + classifier
    assert logits.shape == (2, CLASSES)


def test_concat_subset_trains_a_step():
    graph = build_train_graph(SUBSET, (4, 1, 8, 8), CLASSES, 4, 3, auxiliary=True, aux_weight=0.4)
    weights = nn.get_parameters(grad_only=True)
    before = {name: v.d.copy() for name, v in weights.items()}
    optimizer = SGD(weights, 0.1, 0.9, 3e-4, 5.0)
    rng = np.random.default_rng(0)
    feed(graph, (rng.normal(size=(4, 1, 8, 8)), rng.integers(0, CLASSES, (4, 1))))
    optimizer.zero_grad()
    forward_backward(graph)
    optimizer.step()
    assert np.isfinite(float(graph.loss.d))
    changed = [name for name, v in weights.items() if not np.array_equal(v.d, before[name])]
    assert "cell0/node4_edge1/dil_conv_3x3/pw/conv/W" in changed
    assert len(changed) == len(weights)


def test_cell_diagram_joins_only_the_concat_nodes():
    source = cell_graph(SUBSET.normal, "normal cell", SUBSET.normal_concat).source
    assert "n2 -> out" in source and "n4 -> out" in source and "n3 -> out" not in source


def v2_json():
    return to_json_dict(load_architecture("DARTS_V2"))


@pytest.mark.parametrize("change, message", [
    (lambda d: {**d, "arch_normal": {**d["arch_normal"], "3": []}},
     "arch_normal node 3: has no edges, but concat_normal [2, 3, 4, 5] includes it"),
    (lambda d: {**d, "arch_normal": {**d["arch_normal"], "2": []}, "concat_normal": [3, 4, 5]},
     "arch_normal node 5 entry 1 [0, 2]: input node 2 has no edges"),
    (lambda d: {**d, "concat_reduction": [2, 6]}, "concat_reduction [2, 6]: node(s) [6] are not intermediate nodes"),
    (lambda d: {**d, "concat_reduction": []}, "concat_reduction is empty"),
    (lambda d: {**d, "concat_reduction": [2, 2]}, "concat_reduction [2, 2]: a node is given twice"),
    (lambda d: {**d, "concat_normal": "2345"}, "concat_normal: expected a list of nodes, got str"),
    (lambda d: {**d, "concat_normal": [2, 3.0]}, "concat_normal [2, 3.0]: nodes must be ints"),
    (lambda d: {**d, "arch_normal": {}}, "arch_normal: has no intermediate nodes"),
])
def test_bad_concats_and_empty_nodes_are_one_line_errors(change, message):
    with pytest.raises(ArchitectureError) as error:
        from_json_dict(change(v2_json()))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_an_edge_may_not_read_an_empty_node():
    with pytest.raises(ArchitectureError, match=r"normal node 3 entry 1 \(6, 2\): input node 2 has no edges"):
        Architecture(normal={2: [], 3: [(SEP3, 0), (SKIP, 2)]}, reduction=SUBSET.reduction, normal_concat=[3])

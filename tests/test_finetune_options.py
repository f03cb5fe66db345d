"""var_nas' one-hot fine-tuning variants of the evaluation network (--cell-bn, --pool-bn, --drop-path-delta)."""
import nnabla as nn
import pytest

import darts_train
from models.eval_network import DARTS_CELLS, CellVariant, build_test_graph, drop_path_schedule
from models.genotype import Architecture

C = 4  # one cell, which is a reduction cell: it runs at 2C channels


def uniform_cell(op_id):
    return {node: [(op_id, 0), (op_id, 1)] for node in (2, 3, 4, 5)}


def weights(op_id, cells):
    nn.clear_parameters()
    arch = Architecture(normal=uniform_cell(op_id), reduction=uniform_cell(op_id))
    build_test_graph(arch, (2, 1, 8, 8), 10, C, 1, cells=cells)
    count = sum(v.size for v in nn.get_parameters(grad_only=True).values())
    nn.clear_parameters()
    return count


def test_cells_without_affine_lose_two_weights_per_channel_of_every_cell_bn():
    c = 2 * C
    # Two preprocessing BNs (relu-conv-bn) and, per sep_conv_3x3 edge, two BNs; 8 edges; stem BN stays affine.
    hand = 2 * (2 * c) + 8 * 2 * (2 * c)
    assert weights(2, DARTS_CELLS) - weights(2, CellVariant(affine=False)) == hand


def test_pool_bn_adds_an_affine_bn_per_pooling_edge_and_nothing_without_affine():
    c = 2 * C
    assert weights(4, CellVariant(pool_bn=True)) - weights(4, DARTS_CELLS) == 8 * 2 * c
    assert weights(4, CellVariant(affine=False, pool_bn=True)) == weights(4, CellVariant(affine=False))


def test_default_cells_are_darts_cells():
    args = darts_train.train_parser().parse_args([])
    assert darts_train.cell_variant(args) == DARTS_CELLS == CellVariant(affine=True, pool_bn=False)
    args = darts_train.train_parser().parse_args(["--cell-bn", "none", "--pool-bn"])
    assert darts_train.cell_variant(args) == CellVariant(affine=False, pool_bn=True)


def test_drop_path_delta_is_the_seed_schedule_and_equals_max_over_epochs():
    assert [drop_path_schedule(e, 100, 0.2, 0.002) for e in (0, 1, 99)] == pytest.approx([0.0, 0.002, 0.198])
    for e in range(10):
        assert drop_path_schedule(e, 10, 0.3, 0.03) == pytest.approx(drop_path_schedule(e, 10, 0.3))


def test_a_drop_path_delta_reaching_one_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        darts_train.main(["--drop-path-delta", "0.02", "--epoch", "60", "--summary"])
    assert exit_info.value.code == 2 and "--drop-path-delta" in capsys.readouterr().err

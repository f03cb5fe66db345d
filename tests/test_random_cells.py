"""Random cells of the random-search baseline (var_nas I8) and the scripts/darts_random.py command."""
import numpy as np
import pytest

import scripts.darts_random
from models.genotype import EDGES, load_architecture
from models.random_cells import FREE_OPS, PARAMETRIC_OPS, RandomCellsError, random_architectures


def edge_ops(arch):
    """The 28 ops of an architecture, normal then reduction, each cell in alpha-row order."""
    ops = []
    for cell in (arch.normal, arch.reduction):
        by_edge = {(input_node, node): op for node, edges in cell.items() for op, input_node in edges}
        ops.extend(by_edge[edge] for edge in EDGES)
    return ops


def test_draws_are_reproducible_from_the_seed():
    first, again, other = (random_architectures(6, seed) for seed in (42, 42, 43))
    assert [arch for _, arch in first] == [arch for _, arch in again]
    assert [arch for _, arch in first] != [arch for _, arch in other]
    assert [q for q, _ in first] == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])


def test_the_share_of_free_ops_follows_q():
    draws = 11
    free = np.zeros(draws)
    seen = set()
    seeds = 40
    for seed in range(seeds):
        for draw, (q, arch) in enumerate(random_architectures(draws, seed)):
            ops = edge_ops(arch)
            assert len(ops) == 28
            free[draw] += sum(op in FREE_OPS for op in ops)
            seen.update(ops)
    share = free / (28 * seeds)
    assert share[0] == 0 and share[-1] == 1  # q = 0: only parametric ops; q = 1: only free ones
    # 1120 edges per draw: the binomial standard error is at most 0.015.
    np.testing.assert_allclose(share, np.linspace(0, 1, draws), atol=0.05)
    assert seen == set(PARAMETRIC_OPS) | set(FREE_OPS)


def test_errors_and_the_command(tmp_path, capsys):
    with pytest.raises(RandomCellsError):
        random_architectures(0, 1)
    assert random_architectures(1, 1)[0][0] == 0.0
    scripts.darts_random.main(["--num-cells-to-draw", "3", "--seed", "5", "--out", str(tmp_path)])
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["random_000.json", "random_001.json", "random_002.json"]
    assert load_architecture(str(tmp_path / "random_001.json")) == random_architectures(3, 5)[1][1]
    with pytest.raises(SystemExit) as error:
        scripts.darts_random.main(["--num-cells-to-draw", "0", "--out", str(tmp_path)])
    assert error.value.code == 2
    assert "at least 1" in capsys.readouterr().err

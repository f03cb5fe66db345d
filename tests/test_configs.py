"""Every YAML file in configs/ loads with --config through the parser of the script its first line names."""
import glob
import os

import pytest

import scripts.darts_random
from args import parse_args, search_parser, train_parser

CONFIGS = sorted(glob.glob(os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "*.yaml")))
SCRIPT_PARSERS = {"darts_search.py": lambda argv: parse_args(search_parser(), argv),
                  "darts_train.py": lambda argv: parse_args(train_parser(), argv),
                  "scripts/darts_random.py":
                      lambda argv: scripts.darts_random.parse_args(scripts.darts_random.build_parser(), argv)}


def script_of(path):
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    assert first.startswith("# "), f"{path}: the first line must name the script, '# darts_*.py --config ...'"
    return first.split()[1]


def test_the_seed_experiment_is_all_there():
    names = {os.path.basename(p) for p in CONFIGS}
    assert {f"fmnist_mini_hyper_seed{s}.yaml" for s in (0, 50, 100, 150, 200)} <= names
    assert {"fmnist_mini_finetune.yaml", "fmnist_mini_random.yaml", "fmnist_mini_darts_seed150.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_parses_with_its_script(path):
    script = script_of(path)
    args = SCRIPT_PARSERS[script](["--config", path])
    if script == "darts_search.py" and "hyper" in path:
        assert args.complexity_control and (args.log10_lambda_min, args.log10_lambda_max) == (-8, -4)
        assert (args.num_cells, args.output_filter, args.dataset) == (3, 16, "fashion-mnist")
        assert str(args.seed) in os.path.basename(path)
    if script == "darts_train.py":
        assert (args.cell_bn, args.pool_bn, args.drop_path_delta) == ("none", True, 0.002)

"""Random cells for the random-search baseline of complexity-controlled DARTS (var_nas I8).

    python -m scripts.darts_random --num-cells-to-draw 20 --seed 42 --out runs/random_cells
    python -m scripts.darts_random --config configs/fmnist_mini_random.yaml

Writes DIR/random_000.json ... (our architecture JSON, every edge kept), draw p having the free ops
(pools, skip, none) with probability q = p / (N - 1). Train each with darts_train.py under the same
recipe as the extracted cells (var_nas trains its random cells with a weaker one, Q-V7).
"""
import os

from args import SEED_RANGE, parse_with_config
from models.genotype import save_architecture
from models.random_cells import random_architectures, random_cell_file_name
from utils.run.command_line import AT_LEAST_ONE, CommandLineParser


def build_parser():
    parser = CommandLineParser(description="Draw random cells for the random-search baseline.", allow_abbrev=False,
                               ranges={"num_cells_to_draw": AT_LEAST_ONE, "seed": SEED_RANGE})
    parser.add_argument("--config", default=None, metavar="FILE.yaml",
                        help="YAML file of these settings; flags given on the command line override it")
    parser.add_argument("--num-cells-to-draw", type=int, default=None, metavar="N", help="required")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=None, metavar="DIR", help="directory the JSON files are written to (required)")
    return parser


def parse_args(parser, argv=None):
    args = parse_with_config(parser, argv)
    for name in ("num_cells_to_draw", "out"):
        if getattr(args, name) is None:
            parser.error(f"--{name.replace('_', '-')} is required")
    return args


def main(argv=None):
    parser = build_parser()
    args = parse_args(parser, argv)
    for draw, (q, arch) in enumerate(random_architectures(args.num_cells_to_draw, args.seed)):
        path = os.path.join(args.out, random_cell_file_name(draw))
        save_architecture(arch, path)
        print(f"{path}  q = {q:.3f}")


if __name__ == "__main__":
    main()

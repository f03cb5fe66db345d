"""The whole DARTS pipeline on the embedded 8x8 digits, on cpu, with no download (`make demo`).

1. a short first-order search on a 3-cell proxy network, its alphas at a learning rate for so short a search;
2. the derived cells written as DARTS_arch.json;
3. a 5-cell network rebuilt from that JSON, trained from scratch and evaluated on the test set;
4. the test accuracy printed, and where the pictures are.

Each step is the same command a researcher would type; the sizes are chosen to finish in a few
minutes on two cores and still show a network that learned. Run again, the demo starts over: its earlier
search and training are moved aside (--restart: <out>/search.previous-1, ...), not deleted.
"""
import argparse
import os

import darts_search
import darts_train
from utils.run.command_line import AT_LEAST_ONE, CommandLineParser
from utils.run_files import (ALPHAS_PICTURE, ARCHITECTURE, CELL_PICTURES, CURVES_PICTURE, EVALUATION, FINAL_PARAMS,
                             SUMMARY)

# The alpha optimiser of the demo's search. Adam moves each alpha by about its learning rate a step, and DARTS's
# 3e-4 is sized for 50 epochs of 391 steps (about 20,000 alpha steps); the demo's search has 11 steps an epoch
# (704 images at batch 64), so at 3e-4 over 6 epochs its alphas moved by about 0.02 at most and the op weights
# stayed within +-0.003 of 1/8: the cell it derived was close to a random draw. At 3e-2 over 10 epochs (110
# steps) the strongest op of an edge ends at 0.16-0.29 (0.22 on average, from 1/8), pooling leading the
# reduction cell and convolutions the normal one; at 1e-2 they ended at 0.15-0.20 (0.17 on average).
SEARCH_ALPHA_FLAGS = ("--arch-lr", "3e-2")
SEARCH_EPOCHS = 10


def build_parser():
    parser = CommandLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                               ranges={"search_epochs": AT_LEAST_ONE, "train_epochs": AT_LEAST_ONE})
    parser.add_argument("--out", default="runs/demo", help="where everything goes")
    parser.add_argument("--search-epochs", type=int, default=SEARCH_EPOCHS)
    parser.add_argument("--train-epochs", type=int, default=20)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)

    search_dir = os.path.join(args.out, "search")
    train_dir = os.path.join(args.out, "train")
    arch_path = os.path.join(args.out, ARCHITECTURE)
    common = ["--context", "cpu", "--dataset", "digits", "--batch-size", "64"]

    print(f"== 1/3 search: first-order DARTS, 3 cells, C=8, {args.search_epochs} epochs, "
          f"alphas' {' '.join(SEARCH_ALPHA_FLAGS)}", flush=True)
    darts_search.main(common + ["--seed", "0", "--epoch", str(args.search_epochs), "--num-cells", "3",
                                "--output-filter", "8", *SEARCH_ALPHA_FLAGS,
                                "--monitor-path", search_dir, "--model-arch-name", arch_path, "--restart"])

    print(f"== 2/3 train: the found cells in a 5-cell network, C=16, {args.train_epochs} epochs", flush=True)
    network = ["--model-arch-name", arch_path, "--num-cells", "5", "--output-filter", "16",
               "--additional-filters-on-retrain", "0"]
    darts_train.main(common + network + ["--seed", "0", "--epoch", str(args.train_epochs), "--monitor-path", train_dir,
                                         "--restart"])

    print("== 3/3 evaluate the saved parameters on the test set", flush=True)
    test_error = darts_train.main(common + network + ["--monitor-path", train_dir, "--evaluate",
                                                      os.path.join(train_dir, FINAL_PARAMS)])

    print(f"\ntest accuracy: {100 * (1 - test_error):.2f} %")
    print(f"architecture:  {arch_path}")
    print(f"cell diagrams: {os.path.join(search_dir, CELL_PICTURES)}/normal.png, reduction.png")
    print(f"alphas:        {os.path.join(search_dir, ALPHAS_PICTURE)}")
    print(f"curves:        {os.path.join(search_dir, CURVES_PICTURE)}, {os.path.join(train_dir, CURVES_PICTURE)}")
    print(f"summaries:     {os.path.join(train_dir, SUMMARY)}, {os.path.join(train_dir, EVALUATION)}")
    return test_error


if __name__ == "__main__":
    main()

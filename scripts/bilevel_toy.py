"""First- against second-order DARTS hypergradients on the bilevel toy problem of the DARTS paper's Figure 2
(the course project VoronkovaDasha/project_darts's notebook), through this project's BilevelOptimizer.

    python -m scripts.bilevel_toy -o runs/bilevel_toy.png

L_train = (w - a)^2, L_val = a w - 2 a + 1, optimum a* = w* = 1; (a, w) start at (2, -2). First order
(xi = 0) ends at (2, 2); xi > 0 at a = w = 2 / (1 + 2 xi), xi = 0.5 exactly at the optimum
(utils/search/bilevel_toy.py derives both).
"""
import argparse

from utils.pictures.bilevel_toy import plot_toy_trajectories
from utils.run.command_line import NOT_NEGATIVE, CommandLineParser
from utils.search.bilevel_toy import OPTIMUM, START, XIS, trajectory


def build_parser():
    parser = CommandLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                               allow_abbrev=False, ranges={"xi": NOT_NEGATIVE})
    parser.add_argument("-o", "--out", default="runs/bilevel_toy.png", metavar="PICTURE.png",
                        help="where the picture is written (default: %(default)s)")
    parser.add_argument("--xi", type=float, nargs="+", default=list(XIS), metavar="XI",
                        help="virtual step sizes to compare; 0 is first order (default: %(default)s)")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    trajectories = []
    for xi in args.xi:
        points = trajectory(xi)
        trajectories.append((xi, points))
        alpha, w = points[-1]
        distance = ((alpha - OPTIMUM[0]) ** 2 + (w - OPTIMUM[1]) ** 2) ** 0.5
        print(f"xi = {xi:g}: {len(points) - 1} steps, ends at alpha = {alpha:.4f}, w = {w:.4f} "
              f"({distance:.4f} from the optimum)")
    print(f"picture: {plot_toy_trajectories(trajectories, START, OPTIMUM, args.out)}")
    return trajectories


if __name__ == "__main__":
    main()

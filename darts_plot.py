"""Pictures of earlier runs: learning curves, alpha histories and cell diagrams.

    python darts_plot.py curves DIR [DIR ...] [-o curves.png] [--labels A B] [--x epoch|iteration]
    python darts_plot.py cells ARCH [-o OUTDIR] [--format png|pdf|svg] [--space cnn|recurrent]
    python darts_plot.py alphas ALPHA_HISTORY.npz [-o alphas.png]
    python darts_plot.py run DIR [--format png|pdf|svg] [--x epoch|iteration]
    python darts_plot.py pareto DIR [DIR ...] [-o pareto.png]    # and pareto.csv next to it

DIR is a monitor directory of ours or of the NNabla example (whose series are indexed by
iteration: pass --x iteration). ARCH is a JSON file, a Genotype(...) string, DARTS_V1 or DARTS_V2.
"""
import logging
import sys

from ops.user_error import UserError
from utils.run.command_line import CommandLineParser
from utils.run_files import (ALPHA_HISTORY, ALPHAS_PICTURE, ARCHITECTURE, CURVES_PICTURE, EPOCH_ARCHITECTURE_PATTERN,
                             SERIES_SUFFIX)

# The cell pictures import nnabla, which logs at INFO from its import on.
logging.getLogger("nnabla").setLevel(logging.WARNING)

X_CHOICES = ("epoch", "iteration")
FORMATS = ("png", "pdf", "svg")


class PlotError(UserError):
    """A failure the user can fix; reported as one line."""


def _curves(args):
    from utils.pictures.curves import plot_curves
    plot_curves(args.dirs, args.output, labels=args.labels, x=args.x)
    return [args.output]


def _cells(args):
    if args.space == "recurrent":
        from models.recurrent_genotype import load_recurrent_genotype
        from utils.pictures.cell_diagram import draw_recurrent_cell
        return draw_recurrent_cell(load_recurrent_genotype(args.arch), args.output, fmt=args.format)
    from models.genotype import load_architecture
    from utils.pictures.cell_diagram import draw_architecture
    return draw_architecture(load_architecture(args.arch), args.output, fmt=args.format)


def _alphas(args):
    from utils.pictures.alpha_plot import plot_alpha_history
    plot_alpha_history(args.history, args.output)
    return [args.output]


def _run(args):
    from utils.pictures.run_pictures import draw_run
    failures = []

    def report(message):
        failures.append(message)
        print(f"error: {message}", file=sys.stderr)

    written = draw_run(args.dir, fmt=args.format, x=args.x, warn=report)
    if failures:
        sys.exit(1)
    if not written:
        raise PlotError(f"nothing to draw in {args.dir}: no *{SERIES_SUFFIX}, {ALPHA_HISTORY}, "
                        f"{ARCHITECTURE} or {EPOCH_ARCHITECTURE_PATTERN}")
    return written


def _pareto(args):
    from utils.pictures.pareto import plot_pareto
    return plot_pareto(args.dirs, args.output, warn=lambda message: print(f"warning: {message}", file=sys.stderr))


def build_parser():
    parser = CommandLineParser(
        prog="darts_plot.py", description="Draw the pictures of a search or training run.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    curves = commands.add_parser("curves", help="loss and error curves of one or more monitor directories")
    curves.add_argument("dirs", nargs="+", metavar="DIR", help="monitor directories, overlaid")
    curves.add_argument("-o", "--output", default=CURVES_PICTURE, help="picture to write (default: %(default)s)")
    curves.add_argument("--labels", nargs="+", metavar="LABEL",
                        help="legend name of each directory (default: directory names)")
    curves.add_argument("--x", choices=X_CHOICES, default="epoch",
                        help="what the series index counts (default: %(default)s)")
    curves.set_defaults(draw=_curves)

    cells = commands.add_parser("cells", help="diagrams of the normal and reduction cells")
    cells.add_argument("arch", metavar="ARCH",
                       help="architecture JSON file, Genotype(...) string, DARTS_V1 or DARTS_V2")
    cells.add_argument("-o", "--output", default=".", metavar="OUTDIR",
                       help="directory for normal.<format> and reduction.<format> (default: .)")
    cells.add_argument("--format", choices=FORMATS, default="png")
    cells.add_argument("--space", choices=("cnn", "recurrent"), default="cnn",
                       help="recurrent: ARCH is a recurrent cell (JSON, DARTS_V1, DARTS_V2 or ENAS), "
                            "drawn as recurrent.<format>")
    cells.set_defaults(draw=_cells)

    alphas = commands.add_parser("alphas", help="op weights of every edge over a search")
    alphas.add_argument("history", metavar="ALPHA_HISTORY.npz")
    alphas.add_argument("-o", "--output", default=ALPHAS_PICTURE, help="picture to write (default: %(default)s)")
    alphas.set_defaults(draw=_alphas)

    run = commands.add_parser("run", help="every picture one monitor directory supports")
    run.add_argument("dir", metavar="DIR")
    run.add_argument("--format", choices=FORMATS, default="png", help="format of the cell diagrams")
    run.add_argument("--x", choices=X_CHOICES, default="epoch",
                     help="what the series index counts (default: %(default)s)")
    run.set_defaults(draw=_run)

    pareto = commands.add_parser("pareto", help="parameters against test accuracy of trained runs, and a CSV")
    pareto.add_argument("dirs", nargs="+", metavar="DIR", help="darts_train.py run directories (summary.json)")
    pareto.add_argument("-o", "--output", default="pareto.png",
                        help="picture to write; the CSV gets its name with .csv (default: %(default)s)")
    pareto.set_defaults(draw=_pareto)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "curves" and args.labels is not None and len(args.labels) != len(args.dirs):
        parser.error(f"--labels has {len(args.labels)} label(s) for {len(args.dirs)} directories")
    try:
        written = args.draw(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except OSError as error:  # e.g. an output directory that cannot be written
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    for path in written:
        print(path)


if __name__ == "__main__":
    main()

"""How the op weights of every edge moved during a search, from alpha_history.npz.

The file holds `normal` and `reduction`, each (epochs + 1, 14, 8): the raw alphas after every
epoch (row 0 = the initial ones), edges in models.genotype.EDGES order, ops in SEARCH_OPS order.
"""
import os
import zipfile

import numpy as np

from models.genotype import EDGES, NODES
from ops.operations import OP_NAMES, SEARCH_OPS, ZERO_OP
from ops.user_error import UserError
from utils.pictures.curves import save_figure
from utils.pictures.node_names import math_node_label

CELL_TYPES = ("normal", "reduction")
# Row e of a history holds the alphas after epoch e, epochs counted from 1 as in the log and the series.
EPOCH_AXIS = "epoch (0: initial)"


class AlphaHistoryError(UserError, ValueError):
    """An alpha history that cannot be plotted; the message names the file."""


def load_alpha_history(source):
    """{cell type: (epochs + 1, 14, 8) float array} from a .npz path or a mapping of arrays."""
    where = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "(arrays)"
    if isinstance(source, (str, os.PathLike)):
        if not os.path.isfile(source):
            raise AlphaHistoryError(f"alpha history {where} does not exist")
        # np.load would take any other file for a pickle and complain about that instead.
        if not zipfile.is_zipfile(source):
            raise AlphaHistoryError(f"alpha history {where} is not an .npz archive")
        try:
            with np.load(source, allow_pickle=False) as data:
                source = {key: data[key] for key in data.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
            detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise AlphaHistoryError(f"cannot read alpha history {where}: {detail}") from None
    expected = (len(EDGES), len(SEARCH_OPS))
    history = {}
    for cell_type in CELL_TYPES:
        if cell_type not in source:
            raise AlphaHistoryError(f"alpha history {where} has no {cell_type!r} array "
                                    f"(has: {', '.join(sorted(source)) or 'nothing'})")
        array = np.asarray(source[cell_type])
        if array.ndim != 3 or array.shape[1:] != expected or array.shape[0] == 0:
            raise AlphaHistoryError(f"alpha history {where}: {cell_type!r} has shape {array.shape}, "
                                    f"expected (epochs + 1, {expected[0]}, {expected[1]})")
        if not np.issubdtype(array.dtype, np.number):
            raise AlphaHistoryError(f"alpha history {where}: {cell_type!r} is not numeric ({array.dtype})")
        if not np.all(np.isfinite(array)):
            raise AlphaHistoryError(f"alpha history {where}: {cell_type!r} has non-finite values")
        history[cell_type] = array.astype(np.float64)
    if len(history["normal"]) != len(history["reduction"]):
        raise AlphaHistoryError(f"alpha history {where}: {len(history['normal'])} normal epochs but "
                                f"{len(history['reduction'])} reduction epochs")
    return history


def op_weights(alphas):
    """Softmax over the ops of each edge, for every epoch: what the mixed op actually used."""
    shifted = alphas - alphas.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _op_style(op_id):
    # The zero op is not an op the cell can keep, so it is drawn apart, grey and dotted.
    if op_id == ZERO_OP:
        return {"color": "0.45", "linestyle": ":"}
    return {"color": f"C{op_id}", "linestyle": "-"}


def plot_alpha_history(source, out_path, holds_weights=False):
    """Draw the op weights of every edge over the epochs into out_path; returns the Figure.

    The history holds raw alphas, whose softmax is drawn, or (holds_weights) mixing weights drawn
    as they are, such as DADARTS's top-k transformed ones.

    Each cell type is a triangle of small plots: one row per intermediate node, one column per
    input node, as in the cell diagrams; the empty corner holds the cell's title and the legend.
    """
    # Here rather than at the top: loading a history and AlphaHistoryError should not cost matplotlib.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    history = load_alpha_history(source)
    epochs = np.arange(len(history["normal"]))
    columns = max(NODES)  # input nodes 0..4
    rows_per_cell = len(NODES)
    figure = Figure(figsize=(2.3 * columns, 1.8 * rows_per_cell * len(CELL_TYPES) + 0.9))
    FigureCanvasAgg(figure)
    # One fixed grid, a spacer row between the cell types: a layout engine over 28 small axes
    # would cost more than all the drawing, and a run redraws this every epoch.
    # DARTS weights start at 1/8 and often move by less than 0.01 in a short search; an axis from 0
    # would flatten them, so every panel shares an axis fitted to the range the weights cover.
    weights_of = (lambda values: values) if holds_weights else op_weights
    all_weights = [weights_of(history[cell_type]) for cell_type in CELL_TYPES]
    low, high = min(w.min() for w in all_weights), max(w.max() for w in all_weights)
    margin = max(0.05 * (high - low), 1e-4)
    y_range = (max(0.0, low - margin), min(1.0, high + margin))
    spacer = 0.45
    grid = figure.add_gridspec(2 * rows_per_cell + 1, columns,
                               height_ratios=[1] * rows_per_cell + [spacer] + [1] * rows_per_cell,
                               left=0.065, right=0.99, top=0.955, bottom=0.04, hspace=0.6, wspace=0.07)
    for block, cell_type in enumerate(CELL_TYPES):
        first_row = block * (rows_per_cell + 1)
        weights = weights_of(history[cell_type])
        first_ax = None
        for edge, (input_node, node) in enumerate(EDGES):
            ax = figure.add_subplot(grid[first_row + node - NODES[0], input_node],
                                    sharex=first_ax, sharey=first_ax)
            first_ax = first_ax or ax
            for column, op_id in enumerate(SEARCH_OPS):
                # A history of the initial alphas only is one point per op: a line alone would not show it.
                ax.plot(epochs, weights[:, edge, column], linewidth=1.6,
                        marker="o" if len(epochs) == 1 else None, **_op_style(op_id))
            ax.set_title(f"{math_node_label(input_node)} → {math_node_label(node)}", fontsize=10, pad=3)
            ax.set_ylim(*y_range)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=4))
            ax.tick_params(labelsize=8)
            ax.grid(True, alpha=0.3)
            # Only the outer plots carry tick labels and axis names; the grid shares them.
            if input_node == 0:
                ax.set_ylabel("weight", fontsize=9)
            else:
                ax.tick_params(labelleft=False)
            if input_node == node - 1:
                ax.set_xlabel(EPOCH_AXIS, fontsize=9)
        top = grid[first_row, 0].get_position(figure).y1
        figure.text(0.01, top + 0.022, f"{cell_type.capitalize()} cell: softmax weight of each op on each edge "
                    "(nodes as in the architecture JSON)",
                    ha="left", va="bottom", fontsize=14, fontweight="bold")
        # The upper right of each triangle is free: the legend goes there, clear of every curve.
        legend_ax = figure.add_subplot(grid[first_row:first_row + 2, 3:])
        legend_ax.axis("off")
        handles = [Line2D([], [], linewidth=2.5, **_op_style(op_id)) for op_id in SEARCH_OPS]
        legend_ax.legend(handles, [OP_NAMES[op_id] for op_id in SEARCH_OPS], loc="center", ncol=2, fontsize=11,
                         frameon=False)
    save_figure(figure, out_path)
    return figure


def plot_recurrent_alpha_history(history, out_path):
    """The (epochs + 1, 36, 5) alphas of a recurrent search: one image per op the search cell uses, edges
    (j -> i, as models.recurrent_genotype.EDGES) down and epochs across, coloured by the op's weight."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from models.recurrent_genotype import EDGES as RECURRENT_EDGES
    from ops.recurrent_ops import ACTIVE_OPS, RECURRENT_OP_NAMES

    history = np.asarray(history, dtype=np.float64)
    if history.ndim != 3 or history.shape[1:] != (len(RECURRENT_EDGES), len(RECURRENT_OP_NAMES)):
        raise AlphaHistoryError(f"recurrent alpha history has shape {history.shape}, expected "
                                f"(epochs + 1, {len(RECURRENT_EDGES)}, {len(RECURRENT_OP_NAMES)})")
    weights = op_weights(history)
    figure = Figure(figsize=(3.2 * len(ACTIVE_OPS) + 1.0, 7.5))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(ACTIVE_OPS), sharey=True)
    low, high = weights[:, :, list(ACTIVE_OPS)].min(), weights[:, :, list(ACTIVE_OPS)].max()
    for ax, op_id in zip(axes, ACTIVE_OPS):
        image = ax.imshow(weights[:, :, op_id].T, aspect="auto", interpolation="nearest", cmap="viridis",
                          vmin=low, vmax=high, extent=(-0.5, len(history) - 0.5, len(RECURRENT_EDGES) - 0.5, -0.5))
        ax.set_title(RECURRENT_OP_NAMES[op_id], fontsize=12)
        ax.set_xlabel(EPOCH_AXIS)
    axes[0].set_yticks(range(len(RECURRENT_EDGES)))
    axes[0].set_yticklabels([f"{j} → {i}" for j, i in RECURRENT_EDGES], fontsize=6)
    figure.colorbar(image, ax=list(axes), label="softmax weight")
    figure.suptitle("Recurrent cell: weight of each op on each edge", fontsize=14)
    save_figure(figure, out_path)
    return figure

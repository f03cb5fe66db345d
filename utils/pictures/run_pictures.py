"""Every picture a monitor directory supports, redrawn by runs after each epoch and by darts_plot.py.

A picture that fails costs a one-line warning, never the run that asked for it.
"""
import glob
import os
import sys

import numpy as np

from utils.run_files import (ALPHA_HISTORY, ALPHAS_PICTURE, ARCHITECTURE, CELL_PICTURES, CURVES_PICTURE,
                             EPOCH_ARCHITECTURE_PATTERN, RECURRENT_ARCHITECTURE, SERIES_SUFFIX, TOPK_ALPHAS_PICTURE,
                             TOPK_HISTORY)


def latest_architecture_file(monitor_dir):
    """The newest of DARTS_arch.json and the last arch/epoch_*.json, or None.

    During a search the epoch files are the fresh ones and a DARTS_arch.json may be left from an
    earlier run; once the search ends, DARTS_arch.json is written last. So the newer file wins.
    """
    candidates = sorted(glob.glob(os.path.join(glob.escape(monitor_dir), EPOCH_ARCHITECTURE_PATTERN)))[-1:]
    final = os.path.join(monitor_dir, ARCHITECTURE)
    if os.path.isfile(final):
        candidates.append(final)
    if not candidates:
        return None
    return max(candidates, key=os.path.getmtime)  # on a tie max keeps the first, the epoch file


def print_warning(message):
    print(f"warning: {message}", file=sys.stderr, flush=True)


# Each picture imports its own drawing code: a run that never draws does not pay for matplotlib,
# and a broken install costs a warning like any other failure.
def _draw_curves(monitor_dir, fmt, x):
    if not glob.glob(os.path.join(glob.escape(monitor_dir), "*" + SERIES_SUFFIX)):
        return []
    from utils.pictures.curves import plot_curves
    out_path = os.path.join(monitor_dir, CURVES_PICTURE)
    plot_curves([monitor_dir], out_path, x=x)
    return [out_path]


def _draw_alphas(monitor_dir, fmt, x):
    from utils.pictures.alpha_plot import plot_alpha_history, plot_recurrent_alpha_history
    history_path = os.path.join(monitor_dir, ALPHA_HISTORY)
    if os.path.exists(history_path) and os.path.isfile(os.path.join(monitor_dir, RECURRENT_ARCHITECTURE)):
        out_path = os.path.join(monitor_dir, ALPHAS_PICTURE)
        with np.load(history_path) as data:
            plot_recurrent_alpha_history(data["recurrent"], out_path)
        return [out_path]
    written = []
    for history, picture, holds_weights in ((ALPHA_HISTORY, ALPHAS_PICTURE, False),
                                             (TOPK_HISTORY, TOPK_ALPHAS_PICTURE, True)):
        history_path = os.path.join(monitor_dir, history)
        if os.path.exists(history_path):
            out_path = os.path.join(monitor_dir, picture)
            plot_alpha_history(history_path, out_path, holds_weights)
            written.append(out_path)
    return written


def _draw_cells(monitor_dir, fmt, x):
    recurrent_file = os.path.join(monitor_dir, RECURRENT_ARCHITECTURE)
    if os.path.isfile(recurrent_file):
        from models.recurrent_genotype import load_recurrent_genotype
        from utils.pictures.cell_diagram import draw_recurrent_cell
        return draw_recurrent_cell(load_recurrent_genotype(recurrent_file), os.path.join(monitor_dir, CELL_PICTURES),
                                   fmt)
    arch_file = latest_architecture_file(monitor_dir)
    if arch_file is None:
        return []
    from models.genotype import load_architecture
    from utils.pictures.cell_diagram import draw_architecture
    return draw_architecture(load_architecture(arch_file), os.path.join(monitor_dir, CELL_PICTURES), fmt)


PICTURES = ((CURVES_PICTURE, _draw_curves), (ALPHAS_PICTURE, _draw_alphas), (CELL_PICTURES + "/", _draw_cells))


def draw_run(monitor_dir, fmt="png", x="epoch", warn=print_warning):
    """Draw curves.png, alphas.png and cells/ for whatever monitor_dir holds; returns the paths written.

    fmt is the format of the cell diagrams, x names the series index (epoch or iteration). Each
    failure goes to warn(message) as one line and the other pictures are still drawn.
    """
    monitor_dir = os.fspath(monitor_dir)
    if not os.path.isdir(monitor_dir):
        warn(f"monitor directory {monitor_dir} does not exist")
        return []
    written = []
    for what, draw in PICTURES:
        try:
            written.extend(draw(monitor_dir, fmt, x))
        except Exception as error:  # a picture is never worth a crashed run
            detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            warn(f"could not draw {what} in {monitor_dir}: {detail}")
    return written

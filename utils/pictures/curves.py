"""Learning curves from nnabla.monitor series files (`<name with - for spaces>.series.txt`).

Each line of such a file is `index value`; the index is the epoch in our runs and the iteration
in the NNabla example's, so the reader keeps it as it is and the plot only names the axis.
"""
import glob
import os

import numpy as np

from ops.atomic_file import atomic_path
from ops.user_error import UserError
from utils.run_files import EPOCH_TIME, SERIES_SUFFIX

X_LABELS = {"epoch": "Epoch", "iteration": "Iteration"}
# The unit of a series that has one, named on its panel's axis.
UNITS = {EPOCH_TIME: "s"}
# One line style (and marker) per kind of series, the same in every panel and every run; the colour is the run's.
LINE_STYLES = ("-", "--", ":", "-.", (0, (6, 2, 1, 2, 1, 2)), (0, (9, 3)), (0, (1, 3)), (0, (4, 1, 4, 1, 1, 1)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
# Fewer points than this get markers: a run's first epoch is a single point, which a line alone hides.
_MARKER_MAX_POINTS = 40


class SeriesError(UserError, ValueError):
    """A series file or monitor directory that cannot be plotted; the message names it."""


def read_series(path):
    """(index, value) float arrays of one series file; SeriesError if it is empty or damaged."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or "not a text file"
        raise SeriesError(f"cannot read series file {path}: {reason}") from None
    indices, values = [], []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise SeriesError(f"series file {path} is truncated: line {number} has no value "
                              f"({line.strip()!r}); expected 'index value'")
        if len(fields) > 2:
            raise SeriesError(f"series file {path} is malformed: line {number} has {len(fields)} "
                              f"fields ({line.strip()!r}); expected 'index value'")
        try:
            indices.append(float(fields[0]))
            values.append(float(fields[1]))
        except ValueError:
            raise SeriesError(f"series file {path} is malformed: line {number} is not numeric "
                              f"({line.strip()!r}); expected 'index value'") from None
    if not indices:
        raise SeriesError(f"series file {path} is empty")
    return np.array(indices), np.array(values)


def find_series(monitor_dir):
    """{series name: path} of the series files in a monitor directory, by name."""
    if not os.path.isdir(monitor_dir):
        raise SeriesError(f"monitor directory {monitor_dir} does not exist")
    paths = glob.glob(os.path.join(glob.escape(monitor_dir), "*" + SERIES_SUFFIX))
    # MonitorSeries replaced the spaces of the name by '-'; put them back for the legend.
    return {os.path.basename(path)[:-len(SERIES_SUFFIX)].replace("-", " "): path
            for path in sorted(paths)}


def _panel_of(name):
    """Which panel a series goes to: losses, errors and perplexities together, anything else on its own."""
    lowered = name.lower()
    if "loss" in lowered:
        return "Loss"
    if "perplexity" in lowered:
        return "Perplexity"
    if "error" in lowered:
        return "Error"
    return name


def _is_held_out(name):
    return name.lower().startswith(("validation", "valid", "test"))


def _series_order(name):
    # Training first, so that the training curves always get the first line style, the solid one; the series
    # with a panel of their own last, so that the shared panels' kinds get the plainest styles.
    return (_panel_of(name) == name, not name.lower().startswith("training"), _is_held_out(name), name)


def series_kind(name):
    """What a series measures, without its panel's word: "Training loss" and "Training error" are both
    "training", and are drawn in the same line style."""
    words = [word for word in name.lower().split() if word not in ("loss", "error", "perplexity")]
    return " ".join(words) or name.lower()


def _directory_labels(monitor_dirs):
    names = [os.path.basename(os.path.normpath(d)) or d for d in monitor_dirs]
    # Two runs called "search.monitor" in different places would be indistinguishable by basename.
    if len(set(names)) < len(names):
        return [os.path.normpath(d) for d in monitor_dirs]
    return names


def plot_curves(monitor_dirs, out_path, labels=None, x="epoch"):
    """Draw the series of every directory, overlaid, into out_path; returns the Figure.

    Panels side by side: loss, error, then one per other series (e.g. epoch time). Every line is
    labelled "<directory label>: <series name>"; each directory has its own colour, and each kind of
    series (training, validation, ...) its own line style and marker, the same in every panel.
    """
    if isinstance(monitor_dirs, (str, os.PathLike)):
        monitor_dirs = [monitor_dirs]
    monitor_dirs = [os.fspath(d) for d in monitor_dirs]
    if x not in X_LABELS:
        raise ValueError(f"x must be one of {', '.join(X_LABELS)}, got {x!r}")
    if labels is None:
        labels = _directory_labels(monitor_dirs)
    if len(labels) != len(monitor_dirs):
        raise ValueError(f"{len(labels)} labels for {len(monitor_dirs)} directories")

    panels = {}  # panel title -> [(legend label, index, value, series name, directory number)]
    for number, (monitor_dir, label) in enumerate(zip(monitor_dirs, labels)):
        series = find_series(monitor_dir)
        if not series:
            raise SeriesError(f"no *{SERIES_SUFFIX} files in {monitor_dir}")
        for name in sorted(series, key=_series_order):
            index, value = read_series(series[name])
            panels.setdefault(_panel_of(name), []).append((f"{label}: {name}", index, value, name, number))
    names = sorted({line[3] for lines in panels.values() for line in lines}, key=_series_order)
    kinds = list(dict.fromkeys(series_kind(name) for name in names))
    order = [title for title in ("Loss", "Error") if title in panels]
    order += sorted(title for title in panels if title not in ("Loss", "Error"))

    # Imported here, not at the top: a damaged series file is reported without matplotlib's import.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(5.5 * len(order), 5.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(order), squeeze=False)[0]
    for ax, title in zip(axes, order):
        lines = panels[title]
        for legend_label, index, value, name, dir_number in lines:
            style = kinds.index(series_kind(name))
            ax.plot(index, value, color=f"C{dir_number % 10}", linestyle=LINE_STYLES[style % len(LINE_STYLES)],
                    linewidth=1.8, marker=MARKERS[style % len(MARKERS)] if len(index) <= _MARKER_MAX_POINTS else None,
                    markersize=4, label=legend_label)
        _widen_single_index(ax, np.concatenate([line[1] for line in lines]))
        ax.set_title(title, fontsize=14)
        ax.set_xlabel(X_LABELS[x], fontsize=12)
        y_label = title.lower() if title in ("Loss", "Error") else title
        ax.set_ylabel(f"{y_label} ({UNITS[title]})" if title in UNITS else y_label, fontsize=12)
        ax.tick_params(labelsize=11)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        # Below the axes, so that no curve is ever hidden behind it.
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=10, frameon=False,
                  ncol=1 if len(lines) <= 4 else 2)
    save_figure(figure, out_path)
    return figure


def _widen_single_index(ax, indices):
    # After a run's first epoch all points share one index; matplotlib would then label the x axis
    # in fractions of an epoch around it.
    if indices.max() - indices.min() < 1:
        ax.set_xlim(indices.min() - 1, indices.max() + 1)


def save_figure(figure, out_path):
    """Write through ops.atomic_file, so a viewer never opens a half-written picture mid-run and a failed
    write (WriteError, naming the picture) leaves the old one."""
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with atomic_path(out_path) as temporary:
        figure.savefig(temporary, dpi=100)

"""Parameters against test accuracy of trained runs: random cells, cells extracted at each λ̃, DARTS (var_nas I10).

Each run directory holds darts_train.py's summary.json (`params`, `best_test_error_oracle` — the best test error over the epochs, as var_nas reports it — else
`final_test_error`). A run's group comes from the architecture it trained (`model_arch_name` in its
config.yaml, else the directory name): `random_*` files (scripts/darts_random.py) are random cells, names
with `lambda_<λ̃>` (models.extraction) belong to that λ̃, anything else is DARTS. A run that diverged (its
summary marked so, ops.divergence) has no test error: it is left out of the picture with a warning, and
listed in the CSV with where it diverged.
"""
import csv
import json
import os
import re

import yaml

from ops.atomic_file import atomic_write
from ops.divergence import DIVERGED, describe
from ops.unreadable_file import describe_read_error
from ops.user_error import UserError
from utils.pictures.curves import save_figure
from utils.run_files import CONFIG, SUMMARY

RANDOM = "random"
DARTS = "DARTS"
GROUP_COLOURS = {RANDOM: "black", DARTS: "grey"}
# var_nas' colours for λ̃ = 0, .25, .5, .75, 1; further values take matplotlib's cycle.
LAMBDA_COLOURS = ("tab:red", "tab:orange", "tab:green", "tab:purple", "tab:blue", "tab:brown", "tab:pink",
                  "tab:olive", "tab:cyan")
CSV_COLUMNS = ("label", "group", "params", "test_accuracy", "directory", "diverged")


class ParetoError(UserError, ValueError):
    """A run directory that cannot be placed; the message names it."""


def run_group(arch_name):
    """'random', 'λ̃ = <value>' or 'DARTS' from the name of the architecture a run trained."""
    base = os.path.basename(str(arch_name))
    if base.startswith("random"):
        return RANDOM
    match = re.search(r"lambda_([0-9]+(?:\.[0-9]+)?)", base)
    if match:
        return f"λ̃ = {float(match.group(1)):g}"
    return DARTS


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ParetoError(f"{path} does not exist; is this a darts_train.py run directory?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ParetoError(f"cannot read {path}: {error}") from None


def _arch_name(directory):
    path = os.path.join(directory, CONFIG)
    if not os.path.isfile(path):
        return os.path.basename(os.path.normpath(directory))
    try:
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ParetoError(f"cannot read {path}: {describe_read_error(error)}") from None
    return config.get("model_arch_name") or os.path.basename(os.path.normpath(directory))


def read_point(directory):
    """{label, group, params, test_accuracy, directory, diverged} of one trained run; a diverged run's
    test_accuracy is None and `diverged` says where it diverged ('' for a run that did not)."""
    summary_path = os.path.join(directory, SUMMARY)
    summary = _read_json(summary_path)
    if not isinstance(summary, dict) or not isinstance(summary.get("params"), int):
        raise ParetoError(f"{summary_path} has no integer 'params'")
    arch_name = _arch_name(directory)
    label = os.path.basename(os.path.normpath(directory))
    point = {"label": label, "group": run_group(arch_name), "params": summary["params"], "test_accuracy": None,
             "directory": directory, "diverged": ""}
    record = summary.get(DIVERGED)
    if isinstance(record, dict):
        try:
            return {**point, "diverged": describe(record)}
        except (KeyError, TypeError, ValueError):
            raise ParetoError(f"{summary_path}: '{DIVERGED}' does not say where the run diverged") from None
    error = summary.get("best_test_error_oracle")
    if error is None:
        error = summary.get("final_test_error")
    if not isinstance(error, (int, float)):
        raise ParetoError(f"{summary_path} has no test error yet (best_test_error_oracle and final_test_error are empty)")
    return {**point, "test_accuracy": 1.0 - float(error)}


def group_colours(groups):
    """Colour of every group: random black, DARTS grey, each λ̃ its own in λ̃ order."""
    lambdas = sorted((g for g in set(groups) if g not in GROUP_COLOURS), key=lambda g: float(g.split("=")[1]))
    colours = dict(GROUP_COLOURS)
    for index, group in enumerate(lambdas):
        colours[group] = LAMBDA_COLOURS[index % len(LAMBDA_COLOURS)]
    return colours, lambdas


def write_points_csv(points, path):
    with atomic_write(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(points)


def plot_pareto(directories, out_path, warn=None):
    """Draws the runs' points into out_path and writes them to <out_path stem>.csv; returns both paths.
    Runs that diverged are listed in the CSV only, and named to warn(message), if given."""
    if not directories:
        raise ParetoError("no run directories given")
    listed = [read_point(directory) for directory in directories]
    points = [p for p in listed if not p["diverged"]]
    diverged = "; ".join(f"{p['directory']} in {p['diverged']}" for p in listed if p["diverged"])
    if not points:
        raise ParetoError(f"every run given diverged ({diverged}): there is no test error to plot")
    if diverged and warn is not None:
        warn(f"{len(listed) - len(points)} of {len(listed)} runs diverged ({diverged}): left out of the picture, "
             f"listed in the CSV")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    colours, lambdas = group_colours([p["group"] for p in points])
    figure = Figure(figsize=(7.5, 5.5), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    for group in [RANDOM] + lambdas + [DARTS]:
        members = [p for p in points if p["group"] == group]
        if not members:
            continue
        ax.scatter([p["params"] for p in members], [p["test_accuracy"] for p in members], color=colours[group],
                   label=group, s=36, zorder=3)
        for p in members:
            ax.annotate(p["label"], (p["params"], p["test_accuracy"]), textcoords="offset points", xytext=(4, 4),
                        fontsize=7, color=colours[group])
    if len(lambdas) > 1:
        # var_nas' dashed line through the λ series: here through each λ̃'s mean point.
        means = [[sum(p[key] for p in points if p["group"] == g) / sum(p["group"] == g for p in points)
                  for g in lambdas] for key in ("params", "test_accuracy")]
        ax.plot(*means, linestyle="--", color="0.4", linewidth=1, zorder=2)
    ax.set_xlabel("Parameters (auxiliary head excluded)")
    ax.set_ylabel("Test accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(figure, out_path)
    csv_path = os.path.splitext(out_path)[0] + ".csv"
    write_points_csv(listed, csv_path)
    return [out_path, csv_path]

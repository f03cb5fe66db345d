"""Search variants compared at one budget (darts_compare.py): which of a comparison's runs are finished, and
the statistics over the seeds of each variant's searched cell trained from scratch.

A comparison directory holds, for each variant and seed, a search and a training of the cell it found
(<variant>/seed_<s>/search and train: utils.run_files.compared_run), each an ordinary run of
darts_search.py's and darts_train.py's, resumable as they are. A finished run is kept: a search once it
has written its cell, a training once it has written its final parameters. The statistics are
utils.training.protocol's (mean, sample std with ddof=1, n) of the test error at the last epoch (the
paper's figure) and of the trained network's weights (auxiliary head excluded), which differ with the cell.
"""
import json
import os

from ops.divergence import DIVERGED, describe
from ops.unreadable_file import reading
from ops.user_error import UserError
from utils.run_files import FINAL_PARAMS, SUMMARY, found_architecture
from utils.training.protocol import DDOF, statistics

# The error a comparison reports: the test error after the last epoch, as the DARTS paper does.
TEST_ERROR = "final_test_error"


class ComparisonError(UserError):
    """A comparison's run whose result cannot be read; one line."""


def search_finished(monitor_path):
    """Whether the search in `monitor_path` has ended: its cell (its last write) is there."""
    return os.path.exists(found_architecture(monitor_path, None))


def training_finished(monitor_path):
    """Whether the training in `monitor_path` has ended: its final parameters are there."""
    return os.path.exists(os.path.join(monitor_path, FINAL_PARAMS))


def training_result(monitor_path):
    """{"test_error", "weights"} of a finished training, or {DIVERGED: record} of one that diverged."""
    path = os.path.join(monitor_path, SUMMARY)
    with reading(path, "the training's summary", ComparisonError, errors=(ValueError,)), \
            open(path, encoding="utf-8") as f:
        summary = json.load(f)
    if summary.get(DIVERGED):
        return {DIVERGED: summary[DIVERGED]}
    if not isinstance(summary.get(TEST_ERROR), (int, float)) or not isinstance(summary.get("params"), int):
        raise ComparisonError(f"{path} holds no {TEST_ERROR} and params: is the training finished?")
    return {"test_error": summary[TEST_ERROR], "weights": summary["params"]}


def compare(results, settings):
    """comparison.json: results {variant: {seed: training_result (or {DIVERGED: record} of a search that
    diverged)}}; settings: the comparison's, kept with it. Per variant, the per-seed test error and weights,
    and their statistics over the seeds that finished (n says how many); a diverged run is listed apart."""
    variants = {}
    for variant, by_seed in results.items():
        finished = {seed: result for seed, result in by_seed.items() if not result.get(DIVERGED)}
        entry = {"per_seed": {str(seed): result for seed, result in finished.items()}}
        for key in ("test_error", "weights"):
            entry[key] = statistics([result[key] for result in finished.values()]) if finished else None
        diverged = {str(seed): result[DIVERGED] for seed, result in by_seed.items() if result.get(DIVERGED)}
        if diverged:
            entry[DIVERGED] = diverged
        variants[variant] = entry
    return {"error": TEST_ERROR, "ddof": DDOF, "settings": settings, "variants": variants}


def diverged_runs(comparison):
    """'<variant> seed <s> in <where>; ...' of the runs of `comparison` that diverged, or ''."""
    return "; ".join(f"{variant} seed {seed} in {describe(record)}"
                     for variant, entry in comparison["variants"].items()
                     for seed, record in entry.get(DIVERGED, {}).items())


def _mean_std(entry, scale, digits):
    if entry is None:
        return "n/a"
    std = "n/a" if entry["std"] is None else f"{scale * entry['std']:,.{digits}f}"
    return f"{scale * entry['mean']:,.{digits}f} ± {std}"


def markdown_table(comparison):
    """comparison.md: one row per variant, test error (%) and weights as mean ± std, n, then each seed's."""
    seeds = comparison["settings"]["seeds"]
    lines = ["| variant | test error (%) | weights | n | " + " | ".join(f"seed {seed}" for seed in seeds) + " |",
             "|---" * (4 + len(seeds)) + "|"]
    for variant, entry in comparison["variants"].items():
        cells = []
        for seed in map(str, seeds):
            run = entry["per_seed"].get(seed)
            cells.append("diverged" if seed in entry.get(DIVERGED, {}) else
                         f"{100 * run['test_error']:.2f} ({run['weights']:,})" if run else "")
        n = entry["test_error"]["n"] if entry["test_error"] else 0
        lines.append(f"| {variant} | {_mean_std(entry['test_error'], 100, 2)} | {_mean_std(entry['weights'], 1, 0)} "
                     f"| {n} | " + " | ".join(cells) + " |")
    s = comparison["settings"]
    lines += ["", f"{comparison['error']}, mean ± sample std (ddof={comparison['ddof']}) over the seeds; per seed: "
                  f"test error (weights). {s['dataset']}; searches of {s['search_epochs']} epochs, {s['search_cells']} "
                  f"cells, C={s['search_channels']}; trainings of {s['train_epochs']} epochs, {s['train_cells']} "
                  f"cells, C={s['train_channels']}; batch {s['batch_size']}, lr {s['lr']:g}, arch lr {s['arch_lr']:g}."]
    return "\n".join(lines) + "\n"

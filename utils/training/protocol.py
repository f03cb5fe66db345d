"""Repeated runs, as the DARTS paper reports them: one run per seed, then mean ± std over the seeds.

The standard deviation is the sample one (ddof=1, numpy's std(ddof=1)); the DARTS README's
2.76 ± 0.09 % over 10 runs does not say which one it used.
"""
import argparse
import json
import os

import numpy as np

from ops.divergence import DIVERGED, describe
from ops.unreadable_file import reading
from utils.run.run import Run
from utils.run_files import seed_directory

# The error figures aggregated over seeds, when the runs have them (see utils.training.error_record).
AGGREGATED_KEYS = ("final_test_error", "best_test_error_oracle", "final_test_top5_error", "test_error_at_best_valid")
DDOF = 1


def seed_dir(path, seed):
    return os.path.join(path, seed_directory(seed))


def per_seed_args(args, seed):
    """The settings of one run of a --seeds run: that seed, and its own directories under the run's.

    --model-arch-name is left as it is; a search puts its own under the seed's directory.
    """
    values = dict(vars(args), seed=seed, seeds=None, monitor_path=seed_dir(args.monitor_path, seed))
    if args.model_save_path is not None:
        values["model_save_path"] = seed_dir(args.model_save_path, seed)
    return argparse.Namespace(**values)


def seeds_of_rank(seeds, comm):
    """The seeds rank r of N runs under --comm: r, r + N, ... of the list (all of them in one process)."""
    return seeds[comm.rank::comm.size]


def others_summaries(args, summaries, file_name):
    """{seed: summary} of every seed of args.seeds, in their order: those given ({seed: summary}, this rank's)
    and, for the seeds other ranks ran, their seed directory's `file_name` (JSON) as that rank wrote it."""
    def read(seed):
        path = os.path.join(seed_dir(args.monitor_path, seed), file_name)
        with reading(path, f"seed {seed}'s summary"), open(path, encoding="utf-8") as f:
            return json.load(f)
    return {seed: summaries[seed] if seed in summaries else read(seed) for seed in args.seeds}


def open_seeds_run(args, outputs=None):
    """The directory of a --seeds run, opened before its first seed runs as any run's is (Run.open_parent):
    checked and locked, an earlier --seeds run there continued (--resume: its settings compared), moved aside
    (--restart) or refused, its config.yaml written. outputs: as Run.open's (the selection's winner). The
    caller closes it when the last seed has run."""
    return Run.open_parent(vars(args), outputs)


def statistics(values):
    """mean, sample std (ddof=1; None for one value) and n of a list of numbers."""
    values = np.asarray(values, dtype=np.float64)
    std = float(np.std(values, ddof=DDOF)) if len(values) > 1 else None
    return {"mean": float(np.mean(values)), "std": std, "ddof": DDOF, "n": int(len(values))}


def aggregate_runs(summaries):
    """{seed: summary.json dict} -> aggregate.json: for each error key every finished run has, its statistics
    and per-seed values; and the weights (the same network in every run). A run that diverged (its summary
    marked DIVERGED, ops.divergence) has no error to count: it is listed under DIVERGED with where it
    diverged and left out of the statistics, whose n says how many runs they hold."""
    seeds = list(summaries)
    diverged = {seed: summaries[seed][DIVERGED] for seed in seeds if summaries[seed].get(DIVERGED)}
    finished = [seed for seed in seeds if seed not in diverged]
    params = sorted({summaries[seed]["params"] for seed in finished})
    result = {"seeds": seeds, "params": params[0] if len(params) == 1 else (params or None)}
    if diverged:
        result[DIVERGED] = {str(seed): record for seed, record in diverged.items()}
    for key in AGGREGATED_KEYS:
        values = [summaries[seed].get(key) for seed in finished]
        if finished and all(value is not None for value in values):
            result[key] = {**statistics(values),
                           "per_seed": {str(seed): value for seed, value in zip(finished, values)}}
    return result


def diverged_seeds_warning(aggregate):
    """The line that says which runs of `aggregate` diverged and are left out of its statistics, or None."""
    diverged = aggregate.get(DIVERGED) or {}
    if not diverged:
        return None
    runs = "; ".join(f"seed {seed} in {describe(record)}" for seed, record in diverged.items())
    return (f"{len(diverged)} of {len(aggregate['seeds'])} runs diverged ({runs}): left out of the mean ± std, "
            f"which holds {len(aggregate['seeds']) - len(diverged)}")


def format_table(aggregate):
    """The aggregate as a text table of percentages: one row per error, mean ± sample std, n, per seed."""
    seeds = [str(seed) for seed in aggregate["seeds"]]
    header = ["error (%)", "mean ± std (ddof=1)", "n"] + [f"seed {seed}" for seed in seeds]
    rows = []
    for key in AGGREGATED_KEYS:
        if key not in aggregate:
            continue
        entry = aggregate[key]
        std = "n/a" if entry["std"] is None else f"{100 * entry['std']:.2f}"
        rows.append([key, f"{100 * entry['mean']:.2f} ± {std}", str(entry["n"])]
                    + [f"{100 * entry['per_seed'][seed]:.2f}" if seed in entry["per_seed"] else "diverged"
                       for seed in seeds])
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in [header] + rows]
    params = aggregate["params"]
    if params is not None:
        lines.append(f"weights: {params:,}" if isinstance(params, int) else f"weights: {params}")
    warning = diverged_seeds_warning(aggregate)
    if warning:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)

"""Search variants compared at one budget: for each variant and seed, a search, the cell it found trained briefly
from scratch and tested; then the mean ± std over the seeds of the test error and of the weights.

    python darts_compare.py --dataset digits --variants darts,dadarts,pcdarts --seeds 0,1,2 -m runs/compare

Each search is darts_search.py's, each training darts_train.py's, run in this process into
<monitor-path>/<variant>/seed_<s>/search and train (dadarts: the --dadarts preset). Every search has the same
epochs, batch size, network and learning rates (a variant's recipe for them is not applied), every training
the same settings; --variant-flags gives a variant's own settings. Written to --monitor-path: comparison.json,
comparison.md (the table, also printed) and comparison.png. --resume keeps the finished runs and resumes an
interrupted one from its last checkpoint.
"""
import logging
import os

# nnabla logs at INFO from its import on (every extension and data iterator it creates); a run's own
# lines are what matter, from whatever directory it starts.
logging.getLogger("nnabla").setLevel(logging.WARNING)

import nnabla as nn

import darts_search
import darts_train
from args import compare_parser, compared_runs, parse_compare_args
from models.genotype import load_architecture
from ops.atomic_file import atomic_write
from ops.divergence import DIVERGED, DivergedError
from utils.pictures.comparison import draw_comparison
from utils.run.context import set_context
from utils.run.run import Run, fail_cleanly, write_json
from utils.run_files import COMPARISON, COMPARISON_PICTURE, COMPARISON_TABLE
from utils.search.comparison import (compare, diverged_runs, markdown_table, search_finished, training_finished,
                                     training_result)

# Settings of the comparison that say how it was run, not what it compares: left out of comparison.json.
NOT_COMPARED = ("config", "resume", "restart", "progress_every", "device_id")


def search_and_train(search_args, train_args):
    """The training_result of one variant and seed: its search, then its cell trained, each run unless finished."""
    if search_finished(search_args.monitor_path):
        print(f"kept: the finished search in {search_args.monitor_path}", flush=True)
    else:
        try:
            darts_search.search(search_args)
        except DivergedError as diverged:  # the other runs still run; the comparison lists this one apart
            print(f"{diverged}", flush=True)
            return {DIVERGED: diverged.record}
    if training_finished(train_args.monitor_path):
        print(f"kept: the finished training in {train_args.monitor_path}", flush=True)
    else:
        arch = load_architecture(train_args.model_arch_name)
        set_context(train_args.context, train_args.device_id, train_args.type_config)
        nn.clear_parameters()  # the search's parameters are not the trained network's
        try:
            darts_train.train(train_args, arch)
        except DivergedError as diverged:
            print(f"{diverged}", flush=True)
    return training_result(train_args.monitor_path)


def main(argv=None):
    """Runs the comparison; returns the comparison.json dict."""
    parser = compare_parser()
    args = parse_compare_args(parser, argv)
    runs = compared_runs(parser, args)  # every run's settings, parsed (and refused) before anything runs
    with fail_cleanly():
        parent = Run.open_parent(vars(args))
        results = {variant: {} for variant in args.variants}
        for number, (variant, seed, search_args, train_args) in enumerate(runs, start=1):
            print(f"== {number}/{len(runs)} {variant}, seed {seed}", flush=True)
            results[variant][seed] = search_and_train(search_args, train_args)

        settings = {name: value for name, value in vars(args).items() if name not in NOT_COMPARED}
        comparison = compare(results, settings)
        table = markdown_table(comparison)
        write_json(os.path.join(args.monitor_path, COMPARISON), comparison)
        with atomic_write(os.path.join(args.monitor_path, COMPARISON_TABLE), "w", encoding="utf-8") as f:
            f.write(table)
        draw_comparison(comparison, os.path.join(args.monitor_path, COMPARISON_PICTURE))
        parent.close()
        print(table, end="")
        print(f"written to {args.monitor_path}: {COMPARISON}, {COMPARISON_TABLE}, {COMPARISON_PICTURE}")
        if diverged_runs(comparison):
            raise DivergedError(f"runs diverged ({diverged_runs(comparison)}): left out of the mean ± std in "
                                f"{os.path.join(args.monitor_path, COMPARISON)}", None)
        return comparison


if __name__ == "__main__":
    main()

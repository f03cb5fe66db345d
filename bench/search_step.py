"""Times one search step (alpha step + weight step) of a --variant (DARTS by default) on 32x32 inputs, C=16,
8 cells, on cpu.

    .venv/bin/python bench/search_step.py --batch-size 64 --second-order False
    .venv/bin/python bench/search_step.py --variant pcdarts --batch-size 256 --profile false

Prints a table, then the share of the step each nnabla function type takes, and as its last line
JSON with s_per_step (median), images_per_s, host_s_per_step and peak_rss_mb. Peak RSS is read
before profiling. host_s_per_step is the median time of a step spent outside nnabla's calls (graph
forward/backward, the array graphs, the solvers): the Python around them. It does not depend on the
batch size, so `--batch-size 2 --profile false` measures it quickly.
"""
import argparse
import collections
import json
import os
import resource
import statistics
import sys
import time
from contextlib import contextmanager

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import utils.search.bilevel as bilevel  # noqa: E402
from args import str2bool  # noqa: E402
from models.search_network import all_weight_state, alpha_parameters, weight_parameters  # noqa: E402
from ops import blas  # noqa: E402
from utils.optim.array_graphs import ArrayGraph, GlobalNorm  # noqa: E402
from utils.optim.solvers import SGD, Adam  # noqa: E402
from utils.run.run import seed_everything  # noqa: E402
from utils.search.bilevel import BilevelOptimizer, build_search_graphs  # noqa: E402
from utils.search.variant import SearchSetup  # noqa: E402
from utils.search.variants import VARIANTS  # noqa: E402


class FunctionTimer:
    """Wall time per nnabla function type, through the forward/backward function hooks."""

    def __init__(self):
        self.seconds = collections.Counter()
        self.started = 0.0

    def pre(self, f):
        self.started = time.perf_counter()

    def post(self, f):
        self.seconds[f.info.type_name] += time.perf_counter() - self.started


class NnablaCallTimer:
    """Wall time spent inside nnabla's calls during a step: everything else of the step is host time."""

    def __init__(self):
        self.seconds = 0.0

    def timed(self, call):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
        return wrapper

    @contextmanager
    def installed(self, optimizers):
        """Times the graphs' forward/backward, the array graphs and every solver method while active."""
        patched = [(bilevel, "forward_backward"), (ArrayGraph, "run"), (GlobalNorm, "__call__")]
        originals = [getattr(owner, name) for owner, name in patched]
        solvers = [opt.solver for opt in optimizers]
        for (owner, name), original in zip(patched, originals):
            setattr(owner, name, self.timed(original))
        for opt in optimizers:
            opt.solver = TimedSolver(opt.solver, self)
        try:
            yield
        finally:
            for (owner, name), original in zip(patched, originals):
                setattr(owner, name, original)
            for opt, solver in zip(optimizers, solvers):
                opt.solver = solver


class TimedSolver:
    """An nnabla solver whose every method call is timed by a NnablaCallTimer."""

    def __init__(self, solver, timer):
        self._solver = solver
        self._timer = timer

    def __getattr__(self, name):
        return self._timer.timed(getattr(self._solver, name))


def profile_graphs(graphs):
    """One forward and backward of each graph with every function timed."""
    timer = FunctionTimer()
    for graph in graphs:
        graph.loss.forward(clear_no_need_grad=True, function_pre_hook=timer.pre, function_post_hook=timer.post)
        graph.loss.backward(clear_buffer=True, function_pre_hook=timer.pre, function_post_hook=timer.post)
    return timer.seconds


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--variant", choices=tuple(VARIANTS), default="darts",
                        help="the search variant whose step is timed, at its settings' defaults (not its recipe: "
                             "--batch-size is this script's)")
    parser.add_argument("--second-order", type=str2bool, default=False)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--num-cells", type=int, default=8)
    parser.add_argument("--profile", type=str2bool, default=True, help="time each nnabla function type")
    parser.add_argument("--cpu-kernels", type=str2bool, default=True,
                        help="the multi-threaded depthwise convolution and batch norm of ops/cpu_kernels")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)

    rng = seed_everything(0)
    shape = (args.batch_size, 3, 32, 32)
    Variant = VARIANTS[args.variant]
    variant = Variant(Variant.Settings(), SearchSetup(shape, 10, args.channels, args.num_cells, 0, rng,
                                                      args.cpu_kernels))
    built = time.perf_counter()
    graphs = build_search_graphs(variant.network, shape, args.second_order, variant.alpha_penalty,
                                 variant.separate_virtual)
    build_seconds = time.perf_counter() - built
    weights = weight_parameters()
    optimizer = BilevelOptimizer(graphs, weights, all_weight_state(), alpha_parameters(),
                                 SGD(weights, 0.025, 0.9, 3e-4, 5.0, cpu_kernels=args.cpu_kernels),
                                 Adam(alpha_parameters(), 3e-4, 0.5, 0.999, 1e-3),
                                 steps=variant)

    def batch():
        return rng.randn(*shape).astype(np.float32), rng.randint(0, 10, (args.batch_size, 1))
    times, host_times = [], []
    timer = NnablaCallTimer()
    with timer.installed([optimizer.weight_optimizer, optimizer.alpha_optimizer]):
        for _ in range(args.steps + 1):
            train_batch, val_batch = batch(), batch()
            timer.seconds = 0.0
            started = time.perf_counter()
            optimizer.step(train_batch, val_batch)
            times.append(time.perf_counter() - started)
            host_times.append(times[-1] - timer.seconds)
    times, host_times = times[1:], host_times[1:]
    host_s_per_step = statistics.median(host_times)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    s_per_step = statistics.median(times)
    result = {"variant": args.variant, "batch_size": args.batch_size, "second_order": args.second_order,
              "cpu_kernels": args.cpu_kernels, "blas_core": blas.core_name() if args.cpu_kernels else None,
              "weights": int(sum(w.size for w in weights.values())),
              "s_per_step": round(s_per_step, 3), "images_per_s": round(args.batch_size / s_per_step, 3),
              "host_s_per_step": round(host_s_per_step, 4),
              "host_share": round(host_s_per_step / s_per_step, 4), "peak_rss_mb": round(peak_rss_mb, 1)}

    print(f"graph build: {build_seconds:.1f} s (once)")
    print(f"{'order':<8}{'batch':>6}{'s/step':>10}{'img/s':>9}{'peak RSS':>12}")
    print(f"{'second' if args.second_order else 'first':<8}{args.batch_size:>6}{s_per_step:>10.2f}"
          f"{result['images_per_s']:>9.2f}{peak_rss_mb / 1024:>10.2f} GB")
    print("steps (s): " + ", ".join(f"{t:.2f}" for t in times))
    print(f"host time per step: {host_s_per_step:.4f} s ({100 * host_s_per_step / s_per_step:.2f} % of the step)")

    if not args.profile:
        print(json.dumps(result))
        return
    seconds = profile_graphs(list({id(g): g for g in graphs if g is not None}.values()))  # virtual may be train
    total = sum(seconds.values())
    print(f"\none forward+backward of each graph of the step, by function ({total:.1f} s):")
    for name, s in seconds.most_common(12):
        print(f"  {name:<28}{s:>8.2f} s {100 * s / total:>6.1f} %")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

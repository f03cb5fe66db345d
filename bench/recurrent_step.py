"""Tokens per second of recurrent DARTS steps on cpu: a search step (first and second order) and a
training step of the evaluation cell, at a small size and at PTB's (nhid 300 search / 850 training,
10,000 words, bptt 35; batch 256 / 64, which take minutes per step here, so --steps stays small).

    .venv/bin/python bench/recurrent_step.py --size small --steps 3
    .venv/bin/python bench/recurrent_step.py --size ptb --steps 1
    .venv/bin/python bench/recurrent_step.py --size ptb --profile true   # time per nnabla function type

Random token ids stand in for text: the cost does not depend on which words they are. Prints a table
and as its last line JSON {case: tokens_per_s, peak_rss_mb}.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for search_step, imported as a module too

import nnabla as nn  # noqa: E402
import numpy as np  # noqa: E402

from args import str2bool  # noqa: E402
from models.recurrent import WEIGHT_SCOPE, build_eval_model, build_search_model, create_alpha  # noqa: E402
from models.recurrent_genotype import NAMED_RECURRENT_GENOTYPES  # noqa: E402
from utils.data.text import Batch  # noqa: E402
from utils.optim.solvers import SGD, Adam  # noqa: E402
from utils.recurrent.language_model import GraphCache, draw_masks, feed, forward_backward, mask_rng  # noqa: E402
from utils.recurrent.search_step import RecurrentSearchStep  # noqa: E402

from search_step import FunctionTimer  # noqa: E402  (bench/search_step.py)

# (ntoken, search nhid, search batch, training nhid, training batch, bptt)
SIZES = {"small": (3530, 16, 64, 48, 32, 20), "ptb": (10000, 300, 256, 850, 64, 35)}
CASES = ("search_first_order", "search_second_order", "train")
DROPOUTS = {"embedding": 0.0, "input": 0.2, "x": 0.75, "h": 0.25, "output": 0.75}


def random_batch(rng, step, seq_len, batch, ntoken):
    tokens = rng.integers(0, ntoken, (seq_len + 1, batch))
    return Batch(step, 0, seq_len, tokens[:-1], tokens[1:])


CPU_SECONDS = {}  # case -> the median cpu time (all threads) of its steps, printed beside the wall time


def time_steps(step, steps, case):
    """The median wall time of `steps` steps after an untimed one (which builds buffers)."""
    step(0)
    times, cpu_times = [], []
    for i in range(steps):
        started, cpu_started = time.perf_counter(), time.process_time()
        step(i + 1)
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu_started)
    CPU_SECONDS[case] = statistics.median(cpu_times)
    return statistics.median(times)


def search_case(ntoken, nhid, batch, bptt, second_order, steps, cpu_kernels):
    nn.clear_parameters()
    rng = np.random.default_rng(0)
    alpha = create_alpha(np.random.RandomState(0))
    graphs = GraphCache(lambda t: build_search_model(alpha, t, batch, ntoken, nhid, training=True,
                                                                   cpu_kernels=cpu_kernels))
    graphs[bptt]
    weights = {k: v for k, v in nn.get_parameters().items() if k.startswith(WEIGHT_SCOPE + "/")}
    state = {k: v for k, v in nn.get_parameters(grad_only=False).items() if k.startswith(WEIGHT_SCOPE + "/")}
    alphas = {"arch/alpha": alpha}
    stepper = RecurrentSearchStep(graphs, weights, state, alphas,
                                  SGD(weights, 20.0, 0.0, 5e-7, 0.25, cpu_kernels=cpu_kernels),
                                  Adam(alphas, 3e-3, 0.9, 0.999, 1e-3), DROPOUTS, second_order)
    stepper.reset_hidden(batch, nhid)
    seconds = time_steps(lambda i: stepper.step(random_batch(rng, i, bptt, batch, ntoken),
                                                random_batch(rng, i, bptt, batch, ntoken), 20.0, 0, 0), steps,
                         "search_second_order" if second_order else "search_first_order")
    return bptt * batch / seconds


def train_case(ntoken, nhid, batch, bptt, steps, cpu_kernels):
    nn.clear_parameters()
    rng = np.random.default_rng(0)
    graph = GraphCache(lambda t: build_eval_model(NAMED_RECURRENT_GENOTYPES["DARTS_V2"], t, batch, ntoken, nhid,
                                                  training=True, cpu_kernels=cpu_kernels))[bptt]
    optimizer = SGD(nn.get_parameters(), 20.0, 0.0, 8e-7, 0.25, cpu_kernels=cpu_kernels)
    hidden = np.zeros((batch, nhid), dtype=np.float32)

    def step(i):
        b = random_batch(rng, i, bptt, batch, ntoken)
        draw_masks(graph, mask_rng(0, 0, i + 1, 1), DROPOUTS)
        feed(graph, b.data, b.target, hidden)
        optimizer.zero_grad()
        forward_backward(graph.loss)
        optimizer.step()
    return bptt * batch / time_steps(step, steps, "train")


def profile_case(graph, label, rng, ntoken, hidden_size):
    """One forward and backward of a training graph (after one untimed), with every function timed."""
    batch = graph.tokens.shape[1]
    bptt = graph.tokens.shape[0]
    b = random_batch(rng, 0, bptt, batch, ntoken)
    draw_masks(graph, mask_rng(0, 0, 1, 1), DROPOUTS)
    feed(graph, b.data, b.target, np.zeros((batch, hidden_size), dtype=np.float32))
    forward_backward(graph.loss)
    timer = FunctionTimer()
    started = time.perf_counter()
    graph.loss.forward(clear_no_need_grad=True, function_pre_hook=timer.pre, function_post_hook=timer.post)
    graph.loss.backward(clear_buffer=True, function_pre_hook=timer.pre, function_post_hook=timer.post)
    total = time.perf_counter() - started
    print(f"{label}: one forward and backward {total:.2f} s, {bptt * batch / total:.1f} tokens/s; by function type:")
    for name, seconds in timer.seconds.most_common():
        print(f"  {name:<32}{seconds:8.3f} s {100 * seconds / total:5.1f} %")


def profile(ntoken, search_nhid, search_batch, train_nhid, train_batch, bptt, cpu_kernels):
    rng = np.random.default_rng(0)
    nn.clear_parameters()
    graph = build_eval_model(NAMED_RECURRENT_GENOTYPES["DARTS_V2"], bptt, train_batch, ntoken, train_nhid,
                             training=True, cpu_kernels=cpu_kernels)
    profile_case(graph, f"training (nhid {train_nhid}, batch {train_batch})", rng, ntoken, train_nhid)
    nn.clear_parameters()
    alpha = create_alpha(np.random.RandomState(0))
    graph = build_search_model(alpha, bptt, search_batch, ntoken, search_nhid, training=True, cpu_kernels=cpu_kernels)
    profile_case(graph, f"search (nhid {search_nhid}, batch {search_batch})", rng, ntoken, search_nhid)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=tuple(SIZES), default="small")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per case (the median is reported)")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES), help="which steps to time")
    parser.add_argument("--cpu-kernels", type=str2bool, default=True,
                        help="the multi-threaded kernels of ops/cpu_recurrent (false: nnabla's functions)")
    parser.add_argument("--profile", type=str2bool, default=False,
                        help="instead of timing steps, time one forward and backward per nnabla function type")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    ntoken, search_nhid, search_batch, train_nhid, train_batch, bptt = SIZES[args.size]
    print(f"size {args.size}: {ntoken} words, bptt {bptt}; search nhid {search_nhid} batch {search_batch}, "
          f"training nhid {train_nhid} batch {train_batch}; cpu kernels {args.cpu_kernels}", flush=True)
    if args.profile:
        profile(*SIZES[args.size], args.cpu_kernels)
        return
    cases = {
        "search_first_order": lambda: search_case(ntoken, search_nhid, search_batch, bptt, False, args.steps,
                                                  args.cpu_kernels),
        "search_second_order": lambda: search_case(ntoken, search_nhid, search_batch, bptt, True, args.steps,
                                                   args.cpu_kernels),
        "train": lambda: train_case(ntoken, train_nhid, train_batch, bptt, args.steps, args.cpu_kernels),
    }
    result = {}
    for case in args.cases:  # each printed when done: at PTB size a case takes minutes
        result[case] = cases[case]()
        tokens = bptt * (search_batch if case.startswith("search") else train_batch)
        print(f"  {case:<22}{result[case]:>10.1f} tokens/s, {tokens / CPU_SECONDS[case]:.1f} per cpu-second",
              flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # of the whole run: run one case to compare
    print(json.dumps({"size": args.size, **{k: round(v, 1) for k, v in result.items()}, "peak_rss_mb": round(peak)}))


if __name__ == "__main__":
    main()

"""Tokens per second of recurrent DARTS steps on cpu: a search step (first and second order) and a
training step of the evaluation cell, at a small size and at PTB's (nhid 300 search / 850 training,
10,000 words, bptt 35; batch 256 / 64, which take minutes per step here, so --steps stays small).

    .venv/bin/python bench/recurrent_step.py --size small --steps 3
    .venv/bin/python bench/recurrent_step.py --size ptb --steps 1

Random token ids stand in for text: the cost does not depend on which words they are. Prints a table
and as its last line JSON {case: tokens_per_s}.
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import nnabla as nn  # noqa: E402
import numpy as np  # noqa: E402

from models.recurrent import WEIGHT_SCOPE, build_eval_model, build_search_model, create_alpha  # noqa: E402
from models.recurrent_genotype import NAMED_RECURRENT_GENOTYPES  # noqa: E402
from utils.data.text import Batch  # noqa: E402
from utils.optim.solvers import SGD, Adam  # noqa: E402
from utils.recurrent.language_model import GraphCache, draw_masks, feed, forward_backward, mask_rng  # noqa: E402
from utils.recurrent.search_step import RecurrentSearchStep  # noqa: E402

# (ntoken, search nhid, search batch, training nhid, training batch, bptt)
SIZES = {"small": (3530, 16, 64, 48, 32, 20), "ptb": (10000, 300, 256, 850, 64, 35)}
CASES = ("search_first_order", "search_second_order", "train")
DROPOUTS = {"embedding": 0.0, "input": 0.2, "x": 0.75, "h": 0.25, "output": 0.75}


def random_batch(rng, step, seq_len, batch, ntoken):
    tokens = rng.integers(0, ntoken, (seq_len + 1, batch))
    return Batch(step, 0, seq_len, tokens[:-1], tokens[1:])


def time_steps(step, steps):
    step(0)  # builds buffers; not timed
    times = []
    for i in range(steps):
        started = time.perf_counter()
        step(i + 1)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def search_case(ntoken, nhid, batch, bptt, second_order, steps):
    nn.clear_parameters()
    rng = np.random.default_rng(0)
    alpha = create_alpha(np.random.RandomState(0))
    graphs = GraphCache(lambda t: build_search_model(alpha, t, batch, ntoken, nhid, training=True))
    graphs[bptt]
    weights = {k: v for k, v in nn.get_parameters().items() if k.startswith(WEIGHT_SCOPE + "/")}
    state = {k: v for k, v in nn.get_parameters(grad_only=False).items() if k.startswith(WEIGHT_SCOPE + "/")}
    alphas = {"arch/alpha": alpha}
    stepper = RecurrentSearchStep(graphs, weights, state, alphas, SGD(weights, 20.0, 0.0, 5e-7, 0.25),
                                  Adam(alphas, 3e-3, 0.9, 0.999, 1e-3), DROPOUTS, second_order)
    stepper.reset_hidden(batch, nhid)
    seconds = time_steps(lambda i: stepper.step(random_batch(rng, i, bptt, batch, ntoken),
                                                random_batch(rng, i, bptt, batch, ntoken), 20.0, 0, 0), steps)
    return bptt * batch / seconds


def train_case(ntoken, nhid, batch, bptt, steps):
    nn.clear_parameters()
    rng = np.random.default_rng(0)
    graph = GraphCache(lambda t: build_eval_model(NAMED_RECURRENT_GENOTYPES["DARTS_V2"], t, batch, ntoken, nhid,
                                                  training=True))[bptt]
    optimizer = SGD(nn.get_parameters(), 20.0, 0.0, 8e-7, 0.25)
    hidden = np.zeros((batch, nhid), dtype=np.float32)

    def step(i):
        b = random_batch(rng, i, bptt, batch, ntoken)
        draw_masks(graph, mask_rng(0, 0, i + 1, 1), DROPOUTS)
        feed(graph, b.data, b.target, hidden)
        optimizer.zero_grad()
        forward_backward(graph.loss)
        optimizer.step()
    return bptt * batch / time_steps(step, steps)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=tuple(SIZES), default="small")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per case (the median is reported)")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES), help="which steps to time")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    ntoken, search_nhid, search_batch, train_nhid, train_batch, bptt = SIZES[args.size]
    print(f"size {args.size}: {ntoken} words, bptt {bptt}; search nhid {search_nhid} batch {search_batch}, "
          f"training nhid {train_nhid} batch {train_batch}", flush=True)
    cases = {
        "search_first_order": lambda: search_case(ntoken, search_nhid, search_batch, bptt, False, args.steps),
        "search_second_order": lambda: search_case(ntoken, search_nhid, search_batch, bptt, True, args.steps),
        "train": lambda: train_case(ntoken, train_nhid, train_batch, bptt, args.steps),
    }
    result = {}
    for case in args.cases:  # each printed when done: at PTB size a case takes minutes
        result[case] = cases[case]()
        print(f"  {case:<22}{result[case]:>10.1f} tokens/s", flush=True)
    print(json.dumps({"size": args.size, **{k: round(v, 1) for k, v in result.items()}}))


if __name__ == "__main__":
    main()

"""The weight step of a search on the supernet against the same step on the hard-discretized network.

    .venv/bin/python bench/discretized_step.py --batch-size 16

DADARTS's --hd-on-weights trains the weights on the network of each node's two strongest edges; this
port builds that network as a graph of its own, reading the supernet's parameters, instead of feeding
one-hot mixing weights to the supernet. Times forward + backward + SGD update of one weight step
(median of --steps after a warm-up) for both, on 32x32 inputs, C=16, 8 cells, and the time to build
the discrete graph (paid again only when the kept ops change). Last line JSON.
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from models.graph import build_graph, feed, forward_backward  # noqa: E402
from models.network import dense_classifier  # noqa: E402
from models.search_network import create_alphas, search_network, softmax_weights, weight_parameters  # noqa: E402
from utils.optim.solvers import SGD  # noqa: E402
from utils.run.run import seed_everything  # noqa: E402
from utils.search.variant import DiscreteGraph, SearchSetup, kept_ops_of  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--num-cells", type=int, default=8)
    return parser


def median_step_seconds(graph, optimizer, batch, steps):
    feed(graph, batch)
    times = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        optimizer.zero_grad()
        forward_backward(graph)
        optimizer.step()
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def main(argv=None):
    args = build_parser().parse_args(argv)
    rng = seed_everything(0)
    alphas = create_alphas(rng)
    for a in alphas.values():
        a.d = rng.randn(*a.shape)
    shape = (args.batch_size, 3, 32, 32)
    sizes = (10, args.channels, args.num_cells)
    supernet = build_graph(lambda x: search_network(x, softmax_weights(alphas), *sizes), shape)
    optimizer = SGD(weight_parameters(), 0.025, 0.9, 3e-4, 5.0)
    started = time.perf_counter()
    setup = SearchSetup(shape, *sizes, seed=0, rng=rng)
    discrete = DiscreteGraph(setup, test=False, classifier=dense_classifier).graph(
        kept_ops_of({name: a.d for name, a in alphas.items()}))
    build_seconds = time.perf_counter() - started
    batch = (rng.randn(*shape).astype(np.float32), rng.randint(0, 10, (args.batch_size, 1)))
    mixed_s = median_step_seconds(supernet, optimizer, batch, args.steps)
    discrete_s = median_step_seconds(discrete, optimizer, batch, args.steps)
    print(f"weight step, batch {args.batch_size}: supernet {mixed_s:.3f} s, discretized {discrete_s:.3f} s "
          f"({mixed_s / discrete_s:.1f}x faster); building the discrete graph {build_seconds:.2f} s")
    print(json.dumps({"batch_size": args.batch_size, "supernet_weight_step_s": round(mixed_s, 4),
                      "discretized_weight_step_s": round(discrete_s, 4),
                      "discrete_graph_build_s": round(build_seconds, 3)}))


if __name__ == "__main__":
    main()

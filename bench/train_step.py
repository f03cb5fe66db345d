"""Speed and memory of the DARTS evaluation network at its paper size, on random data.

Usage: .venv/bin/python bench/train_step.py [--network cifar|imagenet] [--context cpu] [--warmup 1] [--steps 3]
cifar: DARTS_V2, C=36, 20 cells, 32x32x3 input, 10 classes; a training step is what darts_train.py
does per batch (auxiliary head, drop path at 0.2, forward, backward, clipped SGD with weight decay) at
batch 32, inference a test-graph forward at batch 64.
imagenet: the mobile setting, DARTS_V2, C=48, 14 cells, 224x224x3, 1000 classes, label smoothing
0.1, no drop path; batch 8 for training and 16 for inference on cpu (the recipe's 128 is a GPU's).
Times are medians over the timed steps. Prints a table (with --profile true, then the share of one forward
and backward of the training graph each nnabla function type takes), then one JSON line with
train_images_per_s, inference_images_per_s and peak_rss_mb (read before profiling).
"""
import argparse
import json
import logging
import os
import resource
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for search_step, imported as a module too
import nnabla as nn  # noqa: E402
from nnabla.logger import logger  # noqa: E402

from args import str2bool  # noqa: E402
from models.eval_network import CIFAR, IMAGENET, DropPath, build_test_graph, build_train_graph  # noqa: E402
from models.genotype import load_architecture  # noqa: E402
from models.graph import forward_backward  # noqa: E402
from ops import blas  # noqa: E402
from search_step import profile_graphs  # noqa: E402  (bench/search_step.py)
from utils.optim.solvers import SGD  # noqa: E402
from utils.run.context import set_context  # noqa: E402

ARCH = "DARTS_V2"


@dataclass(frozen=True)
class Setting:
    channels: int
    cells: int
    input: tuple
    classes: int
    train_batch: int
    inference_batch: int
    drop_path: float
    label_smoothing: float
    ends: object


SETTINGS = {"cifar": Setting(36, 20, (3, 32, 32), 10, 32, 64, 0.2, 0.0, CIFAR),
            "imagenet": Setting(48, 14, (3, 224, 224), 1000, 8, 16, 0.0, 0.1, IMAGENET)}


def median_seconds(step, warmup, steps):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def train_step_seconds(arch, setting, rng, warmup, steps, cpu_kernels):
    drop_path = DropPath()
    drop_path.set_prob(setting.drop_path)
    graph = build_train_graph(arch, (setting.train_batch,) + setting.input, setting.classes, setting.channels,
                              setting.cells, auxiliary=True, aux_weight=0.4, drop_path=drop_path,
                              ends=setting.ends, label_smoothing=setting.label_smoothing, cpu_kernels=cpu_kernels)
    optimizer = SGD(nn.get_parameters(grad_only=True), 0.025, 0.9, 3e-4, 5.0, cpu_kernels=cpu_kernels)
    graph.x.d = rng.normal(size=graph.x.shape)
    graph.y.d = rng.integers(0, setting.classes, graph.y.shape)

    def step():
        drop_path.resample(rng)
        optimizer.zero_grad()
        forward_backward(graph)
        optimizer.step()
    return median_seconds(step, warmup, steps), graph


def inference_seconds(arch, setting, rng, warmup, steps, cpu_kernels):
    graph = build_test_graph(arch, (setting.inference_batch,) + setting.input, setting.classes, setting.channels,
                             setting.cells, ends=setting.ends, cpu_kernels=cpu_kernels)
    graph.x.d = rng.normal(size=graph.x.shape)
    return median_seconds(lambda: graph.logits.forward(clear_buffer=True), warmup, steps)


def peak_rss_mb():
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2 ** 20


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", choices=sorted(SETTINGS), default="cifar")
    parser.add_argument("--context", choices=["cpu", "cudnn"], default="cpu")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--profile", type=str2bool, default=False,
                        help="also time each nnabla function type in one forward and backward of the training graph")
    parser.add_argument("--cpu-kernels", type=str2bool, default=True,
                        help="with --context cpu: the multi-threaded depthwise convolution and batch norm of ops/cpu_kernels")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    logger.setLevel(logging.WARNING)
    set_context(args.context)
    nn.random.seed(0)
    rng = np.random.default_rng(0)
    arch = load_architecture(ARCH)
    setting = SETTINGS[args.network]
    train_batch, inference_batch = setting.train_batch, setting.inference_batch

    cpu_kernels = args.cpu_kernels and args.context == "cpu"
    train_s, train_graph = train_step_seconds(arch, setting, rng, args.warmup, args.steps, cpu_kernels)
    inference_s = inference_seconds(arch, setting, rng, args.warmup, args.steps, cpu_kernels)
    rss = peak_rss_mb()

    print(f"{ARCH}, C={setting.channels}, {setting.cells} cells, input {setting.input}, {args.context}, "
          f"{args.warmup} warm-up + {args.steps} timed steps (median)")
    print(f"{'pass':<12}{'batch':>6}{'s/step':>9}{'img/s':>9}")
    print(f"{'train':<12}{train_batch:>6}{train_s:>9.3f}{train_batch / train_s:>9.1f}")
    print(f"{'inference':<12}{inference_batch:>6}{inference_s:>9.3f}{inference_batch / inference_s:>9.1f}")
    print(f"peak RSS {rss:.0f} MB")
    if args.profile:
        seconds = profile_graphs([train_graph])
        total = sum(seconds.values())
        print(f"one forward+backward of the training graph, by function ({total:.2f} s):")
        for name, share in seconds.most_common():
            print(f"  {name:<32}{share * 1e3:8.1f} ms {100 * share / total:5.1f} %")
    print(json.dumps({"network": args.network, "train_images_per_s": round(train_batch / train_s, 2),
                      "inference_images_per_s": round(inference_batch / inference_s, 2),
                      "peak_rss_mb": round(rss, 1), "context": args.context, "cpu_kernels": cpu_kernels,
                      "blas_core": blas.core_name() if cpu_kernels else None,
                      "warmup": args.warmup, "steps": args.steps}))


if __name__ == "__main__":
    main()

"""Throughput of BatchLoader.next() on CIFAR-shaped data.

Usage: .venv/bin/python bench/data_pipeline.py [--batch-size 64] [--steps 500]
Prints a table, then one JSON line whose images_per_s is the full training
pipeline (crop + flip + cutout 16).
"""
import argparse
import json
import logging
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from nnabla.logger import logger  # noqa: E402
from utils.data.pipeline import BatchLoader  # noqa: E402

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
WARMUP_STEPS = 20
PIPELINES = (
    ("normalise only", dict(augment=None, hflip=False, cutout_length=0)),
    ("crop + flip", dict(augment="darts", hflip=True, cutout_length=0)),
    ("crop + flip + cutout 16", dict(augment="darts", hflip=True, cutout_length=16)),
)


def images_per_second(images, labels, batch_size, steps, options):
    loader = BatchLoader(images, labels, batch_size, CIFAR10_MEAN, CIFAR10_STD, seed=0, **options)
    try:
        for _ in range(WARMUP_STEPS):
            loader.next()
        start = time.perf_counter()
        for _ in range(steps):
            loader.next()
        return steps * batch_size / (time.perf_counter() - start)
    finally:
        loader.close()


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=500)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    logger.setLevel(logging.WARNING)  # the loaders' INFO lines would break up the table

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50_000, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, 50_000)

    print(f"{'pipeline':<26}{'batch':>6}{'steps':>7}{'img/s':>10}{'ms/batch':>10}")
    for name, options in PIPELINES:
        rate = images_per_second(images, labels, args.batch_size, args.steps, options)
        print(f"{name:<26}{args.batch_size:>6}{args.steps:>7}{rate:>10.0f}"
              f"{1000 * args.batch_size / rate:>10.2f}")
    print(json.dumps({"images_per_s": round(rate), "pipeline": name,
                      "batch_size": args.batch_size, "steps": args.steps}))


if __name__ == "__main__":
    main()

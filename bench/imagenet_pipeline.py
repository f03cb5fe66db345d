"""Images/s of the ImageNet training pipeline (decode, augment, normalise) by number of worker processes.

Writes (or reuses) a tree of real JPEG files of ImageNet's typical size, 500x375, in a temporary
folder, then times TrainLoader.next() over a few batches after one warm-up batch (worker start-up
excluded). The last line is JSON.

    .venv/bin/python bench/imagenet_pipeline.py [--images 256] [--batch-size 32] [--batches 6]
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.data.imagenet import TrainLoader, scan_image_folder  # noqa: E402

SIZE = (500, 375)
CLASSES = 4


def photo_like(rng, width, height):
    """Smooth colour gradients plus mild noise: JPEG sizes and decode times close to photographs'."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(0.005, 0.05, 2).tolist() + [rng.uniform(0, 6.3)]
        channels.append(127 + 100 * np.sin(fx * x + fy * y + phase))
    image = np.stack(channels, axis=-1) + rng.normal(0, 12, (height, width, 3))
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def make_tree(root, images):
    marker = os.path.join(root, f".complete_{images}")
    if os.path.exists(marker):
        return
    rng = np.random.default_rng(0)
    for split, count in (("train", images), ("val", CLASSES)):
        for i in range(count):
            folder = os.path.join(root, split, f"n{i % CLASSES:08d}")
            os.makedirs(folder, exist_ok=True)
            photo_like(rng, *SIZE).save(os.path.join(folder, f"{i:06d}.JPEG"), quality=90)
    open(marker, "w").close()


def images_per_second(samples, batch_size, batches, workers):
    with TrainLoader(samples, batch_size, seed=0, num_workers=workers) as loader:
        loader.next()  # worker start-up and the first batch
        start = time.perf_counter()
        images = sum(len(loader.next()[1]) for _ in range(batches))  # an epoch's last batch may be smaller
        return images / (time.perf_counter() - start)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--tree", default=os.path.join(tempfile.gettempdir(), "nnabla_darts_imagenet_bench"))
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    make_tree(args.tree, args.images)
    samples = scan_image_folder(args.tree).train
    cores = os.cpu_count() or 1
    results = {}
    for workers in sorted({0, 1, 2, cores}):
        results[workers] = images_per_second(samples, args.batch_size, args.batches, workers)
        label = "in the main process" if workers == 0 else f"{workers} worker(s)"
        print(f"{label}: {results[workers]:.1f} images/s")
    print(json.dumps({"images_per_second": {str(k): round(v, 1) for k, v in results.items()},
                      "image_size": list(SIZE), "batch_size": args.batch_size, "cores": cores}))


if __name__ == "__main__":
    main()

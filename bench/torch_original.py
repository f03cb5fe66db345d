"""Times one search step of the PyTorch original (quark0/darts, as in naszilla/darts) on cpu, for a
side-by-side with bench/search_step.py. Not part of the project: it imports the original's own
files from a checkout you point it at, and needs torch, which the project's venv does not have.

    # a checkout of naszilla/darts in /tmp/darts (its cnn/ equals quark0/darts)
    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy   # a cpu build of torch
    /tmp/torchenv/bin/python bench/torch_original.py --darts-cnn /tmp/darts/cnn --batch-size 64
    .venv/bin/python bench/search_step.py --batch-size 64 --profile false

Run the two one after the other on a quiet machine; the ratio of their images_per_s is what counts.
The step is the original's train_search.py loop body: architect.step (first or second order), then
the weight step (cross-entropy, backward, clip_grad_norm_ 5, SGD 0.025 / 0.9 / 3e-4), on random
32x32 inputs, 8 cells, C 16, 10 classes, torch.set_num_threads(--threads). Its `.cuda()` calls
are made no-ops here instead of being edited out. Last line: JSON with the same keys as
bench/search_step.py (s_per_step, images_per_s, peak_rss_mb).
"""
import argparse
import json
import resource
import statistics
import sys
import time
from types import SimpleNamespace


def str2bool(s):
    return str(s).strip().lower() in ("true", "1", "yes")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--darts-cnn", required=True, help="the cnn/ directory of a darts checkout")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--second-order", type=str2bool, default=False)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--num-cells", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train", type=str2bool, default=False,
                        help="time the original's train.py step instead: DARTS_V2, C 36, 20 cells, auxiliary "
                             "head 0.4, drop path 0.2, batch --batch-size (32 in bench/train_step.py)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # The original moves everything to the GPU with .cuda(); on cpu those calls must do nothing.
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    sys.path.insert(0, args.darts_cnn)
    if args.train:
        return time_train_step(args)
    from architect import Architect
    from model_search import Network

    criterion = torch.nn.CrossEntropyLoss()
    model = Network(args.channels, 10, args.num_cells, criterion)
    lr = 0.025
    optimizer = torch.optim.SGD(model.parameters(), lr, momentum=0.9, weight_decay=3e-4)
    architect = Architect(model, SimpleNamespace(momentum=0.9, weight_decay=3e-4, arch_learning_rate=3e-4,
                                                 arch_weight_decay=1e-3))

    def batch():
        return torch.randn(args.batch_size, 3, 32, 32), torch.randint(0, 10, (args.batch_size,))
    times = []
    for _ in range(args.steps + 1):
        (x, y), (xs, ys) = batch(), batch()
        started = time.perf_counter()
        architect.step(x, y, xs, ys, lr, optimizer, unrolled=args.second_order)
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        times.append(time.perf_counter() - started)
    report(args, model, times[1:], {"second_order": args.second_order})


def time_train_step(args):
    import types
    import torch
    # utils.py imports torchvision for its data transforms only, which this step does not use.
    sys.modules.setdefault("torchvision", types.ModuleType("torchvision"))
    sys.modules.setdefault("torchvision.transforms", types.ModuleType("torchvision.transforms"))
    import genotypes
    import utils
    from model import NetworkCIFAR
    # utils.drop_path draws its mask with torch.cuda.FloatTensor; the same draw on the cpu:
    utils.torch.cuda.FloatTensor = torch.FloatTensor
    criterion = torch.nn.CrossEntropyLoss()
    model = NetworkCIFAR(36, 10, 20, True, genotypes.DARTS_V2)
    model.drop_path_prob = 0.2
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    times = []
    for _ in range(args.steps + 1):
        x, y = torch.randn(args.batch_size, 3, 32, 32), torch.randint(0, 10, (args.batch_size,))
        started = time.perf_counter()
        optimizer.zero_grad()
        logits, logits_aux = model(x)
        loss = criterion(logits, y) + 0.4 * criterion(logits_aux, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        times.append(time.perf_counter() - started)
    report(args, model, times[1:], {"network": "DARTS_V2 C36 20 cells"})


def report(args, model, times, setting):
    s_per_step = statistics.median(times)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("steps (s): " + ", ".join(f"{t:.2f}" for t in times))
    print(json.dumps({"implementation": "pytorch original", "batch_size": args.batch_size, **setting,
                      "threads": args.threads, "weights": int(sum(p.numel() for p in model.parameters())),
                      "s_per_step": round(s_per_step, 3), "images_per_s": round(args.batch_size / s_per_step, 3),
                      "peak_rss_mb": round(peak_rss_mb, 1)}))


if __name__ == "__main__":
    main()

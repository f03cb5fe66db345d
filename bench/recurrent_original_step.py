"""The recurrent search's second-order alpha gradient side by side with the PyTorch original's
(quark0/darts rnn/architect.py), on identical weights, batches, hidden states and dropout masks, with
and without --original-unrolled-step. Not part of the tests: the original needs torch, which the
project's venv does not have, so the script runs twice, once in each environment.

    # the original's rnn/ folder, e.g. from a checkout of quark0/darts, and a venv with torch
    uv venv /tmp/torchenv && uv pip install --python /tmp/torchenv/bin/python torch numpy
    .venv/bin/python bench/recurrent_original_step.py ours --out /tmp/rnn_step.npz
    /tmp/torchenv/bin/python bench/recurrent_original_step.py original --darts-rnn /tmp/darts/rnn \
        --data /tmp/rnn_step.npz

`ours` draws a search model (the seed's initialisation, --ntoken words, --nhid, batch --batch-size,
--bptt rows), two batches and two hidden states, and computes our second-order alpha gradient in each
case: flag off / on, dropout off / on (the seed's search dropouts), gradient clipping at 0.25 (the
seed's; the gradient is clipped) or at twice the training gradient's norm (not clipped: the seed's
uncapped factor, its bug Q1, then scales the implicit term by 2). It saves all of it with the masks
each pass used, and prints the mean |alpha gradient| of each case next to the first-order one.
`original` loads that file, runs the original's _backward_step_unrolled on the same weights,
replaying in each of its four forward passes the masks our pass used, and prints per case the
relative difference ||ours - original|| / ||original||. Without the flag the original is replayed
our shared masks, so there the difference is the tied matrix and Q1 only.

Measured (the defaults; the original takes about 2 minutes here): with the flag 1e-6 (dropout on) and
1.3e-4 / 2.4e-4 (dropout off: float32 rounding, as the original in float32 differs from itself in
float64 by 6-7.5e-5), without it 2.1 to 4.

The original is imported from its own files; what no longer runs on today's torch is replaced here,
not edited there: `.cuda()` does nothing, and its three dropout helpers (embedded_dropout, which
calls a removed torch internal, LockedDropout and mask2d) return the replayed masks instead of
drawing them.
"""
import argparse
import importlib
import os
import sys

import numpy as np

# The seed's search dropouts (rnn/train_search.py): embedding rows, embedding output, x, h, output.
SEARCH_DROPOUTS = {"embedding": 0.0, "input": 0.2, "x": 0.75, "h": 0.25, "output": 0.75}
CLIPS = ("0.25", "2|g|")  # the seed's max norm; twice the norm of the training batch's weight gradient
LR, WEIGHT_DECAY = 20.0, 5e-7  # the seed's search recipe; xi of the virtual step is the weight lr


def cases():
    for original_step in (False, True):
        for dropout in (False, True):
            for clip in CLIPS:
                yield f"flag={'on' if original_step else 'off'} dropout={'on' if dropout else 'off'} clip={clip}", \
                    original_step, dropout, clip


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="side", required=True)
    ours = sub.add_parser("ours", help="in the project's venv: our gradients, saved with their inputs")
    ours.add_argument("--out", required=True)
    ours.add_argument("--ntoken", type=int, default=200)
    ours.add_argument("--nhid", type=int, default=32)
    ours.add_argument("--batch-size", type=int, default=16)
    ours.add_argument("--bptt", type=int, default=12)
    ours.add_argument("--seed", type=int, default=0)
    original = sub.add_parser("original", help="in a venv with torch: the original's gradients, compared")
    original.add_argument("--darts-rnn", required=True, help="the rnn/ folder of quark0/darts")
    original.add_argument("--data", required=True, help="the file `ours` wrote")
    return parser


# ---------------------------------------------------------------- ours (nnabla)

def run_ours(args):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import nnabla as nn

    import utils.recurrent.search_step as search_step
    from models.recurrent import WEIGHT_SCOPE, build_search_model, create_alpha
    from utils.data.text import Batch
    from utils.optim.solvers import SGD, Adam
    from utils.recurrent.language_model import (PASS_MASKS, TRAIN_MASKS, VALID_MASKS, GraphCache, draw_masks,
                                                forward_backward, mask_rng)

    nn.clear_parameters()
    rng = np.random.RandomState(args.seed)
    alpha = create_alpha(rng)
    graphs = GraphCache(lambda t: build_search_model(alpha, t, args.batch_size, args.ntoken, args.nhid,
                                                     training=True, tar_beta=0.0, rng=rng))
    graph = graphs[args.bptt]
    weights = {k: v for k, v in nn.get_parameters().items() if k.startswith(WEIGHT_SCOPE + "/")}
    state = {k: v for k, v in nn.get_parameters(grad_only=False).items() if k.startswith(WEIGHT_SCOPE + "/")}
    initial = {k: v.d.copy() for k, v in state.items()}
    tokens = {name: rng.randint(0, args.ntoken, (args.bptt + 1, args.batch_size)) for name in ("train", "val")}
    batches = {name: Batch(0, 0, args.bptt, t[:-1], t[1:]) for name, t in tokens.items()}
    hidden = {name: rng.randn(args.batch_size, args.nhid).astype(np.float32) * 0.1 for name in ("train", "val")}

    fed = []
    plain_feed = search_step.feed

    def recording_feed(graph, data, target, hidden, masks=None):
        fed.append({name: mask.copy() for name, mask in masks.items()})
        plain_feed(graph, data, target, hidden, masks)
    search_step.feed = recording_feed

    saved = {"ntoken": args.ntoken, "nhid": args.nhid, "alpha": alpha.d.copy(), "lr": LR,
             "weight_decay": WEIGHT_DECAY, **{f"weight/{k}": v for k, v in initial.items()},
             **{f"tokens/{k}": v for k, v in tokens.items()}, **{f"hidden/{k}": v for k, v in hidden.items()}}
    print(f"mean |alpha gradient| (ntoken {args.ntoken}, nhid {args.nhid}, batch {args.batch_size}, "
          f"bptt {args.bptt}, lr {LR:g}):")
    for order, flag_cases in (("first order", [(None, False, d, CLIPS[0]) for d in (False, True)]),
                              ("second order", list(cases()))):
        for name, original_step, dropout, clip in flag_cases:
            for k, v in state.items():
                v.d = initial[k]
            dropouts = SEARCH_DROPOUTS if dropout else dict.fromkeys(SEARCH_DROPOUTS, 0.0)
            train_masks = draw_masks(graph, mask_rng(args.seed, 0, 0, TRAIN_MASKS), dropouts)
            val_masks = draw_masks(graph, mask_rng(args.seed, 0, 0, VALID_MASKS), dropouts)
            optimizer = SGD(weights, LR, 0.0, WEIGHT_DECAY, 0.25)
            if clip != "0.25":
                optimizer.zero_grad()
                plain_feed(graph, batches["train"].data, batches["train"].target, hidden["train"], train_masks)
                forward_backward(graph.nll)
                optimizer.grad_clip = 2.0 * optimizer.grad_norm()
                for k, v in state.items():  # the batch-norm statistics moved
                    v.d = initial[k]
            stepper = search_step.RecurrentSearchStep(graphs, weights, state, {"arch/alpha": alpha}, optimizer,
                                                      Adam({"arch/alpha": alpha}, 0.0, 0.9, 0.999, 0.0), dropouts,
                                                      name is not None, original_step)
            stepper.train_hidden, stepper.val_hidden = hidden["train"], hidden["val"]
            pass_masks = mask_rng(args.seed, 0, 0, PASS_MASKS) if original_step else None
            fed.clear()
            stepper.alpha_gradient(batches["train"], batches["val"], train_masks, val_masks, pass_masks)
            grad = alpha.g.copy()
            label = name or f"first order, dropout={'on' if dropout else 'off'}"
            print(f"  {label:40s} {np.abs(grad).mean():.3g}")
            if name is None:
                continue
            saved[f"{name}/grad"] = grad
            saved[f"{name}/clip"] = optimizer.grad_clip
            for i, masks in enumerate(fed):
                for mask_name, mask in masks.items():
                    saved[f"{name}/masks/{i}/{mask_name}"] = mask
    np.savez(args.out, **saved)
    print(f"written to {args.out}")


# ---------------------------------------------------------------- the original (torch)

class MaskReplay:
    """The masks of the original's forward passes, in the order it draws them, from our passes."""

    def __init__(self):
        self.passes = []
        self.current = None
        self.locked = 0
        self.planar = 0

    def start_pass(self):
        self.current, self.locked, self.planar = self.passes.pop(0), 0, 0

    def locked_mask(self):  # LockedDropout: the embedding's output, then the cell's output
        name = ("input", "output")[self.locked]
        self.locked += 1
        return self.current[name]

    def planar_mask(self):  # mask2d: x, then h (DARTSCell.forward)
        name = ("x", "h")[self.planar]
        self.planar += 1
        return self.current[name]


def load_original(darts_rnn, replay):
    import torch
    import torch.nn.functional as F
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    sys.path.insert(0, darts_rnn)
    # The original's modules by name: its utils.py is not the project's utils package.
    architect, model, model_search, utils = map(importlib.import_module,
                                                ("architect", "model", "model_search", "utils"))

    def embedded_dropout(embed, words, dropout=0.1, scale=None):
        return F.embedding(words, embed.weight * torch.from_numpy(replay.current["embedding"]))

    def locked_dropout(self, x, dropout=0.5):
        return x * torch.from_numpy(replay.locked_mask())

    def mask2d(B, D, keep_prob, cuda=True):
        return torch.from_numpy(replay.planar_mask())

    model.embedded_dropout = embedded_dropout
    model.mask2d = mask2d
    utils.LockedDropout.forward = locked_dropout
    plain_loss = model_search.RNNModelSearch._loss

    def loss(self, hidden, input, target):
        replay.start_pass()
        return plain_loss(self, hidden, input, target)
    model_search.RNNModelSearch._loss = loss
    return torch, architect, model_search


def run_original(args):
    import warnings
    warnings.filterwarnings("ignore")  # the original's deprecated torch signatures
    data = np.load(args.data)
    replay = MaskReplay()
    torch, architect, model_search = load_original(os.path.abspath(args.darts_rnn), replay)
    ntoken, nhid = int(data["ntoken"]), int(data["nhid"])

    def tensor(name):
        return torch.from_numpy(np.ascontiguousarray(data[name]))

    print("relative difference ||ours - original|| / ||original|| of the second-order alpha gradient:")
    for name, original_step, dropout, clip in cases():
        torch.manual_seed(0)
        net = model_search.RNNModelSearch(ntoken, nhid, nhid, nhid, 0.0, 0.0, 0.0, 0.0, 0.0)
        net.train()
        with torch.no_grad():
            net.encoder.weight.copy_(tensor("weight/net/encoder/W"))
            net.decoder.bias.copy_(tensor("weight/net/decoder/b"))
            net.rnns[0]._W0.copy_(tensor("weight/net/cell/W0"))
            for i, w in enumerate(net.rnns[0]._Ws):
                w.copy_(tensor(f"weight/net/cell/W{i + 1}"))
            net.weights.copy_(tensor("alpha"))
        steps = sorted({int(key.split("/")[2]) for key in data.files if key.startswith(f"{name}/masks/")})
        # Our passes: training (virtual step), validation, training (w+), training (w-); the original's too.
        replay.passes = [{m: data[f"{name}/masks/{i}/{m}"] for m in SEARCH_DROPOUTS} for i in steps]
        settings = argparse.Namespace(wdecay=float(data["weight_decay"]), clip=float(data[f"{name}/clip"]),
                                      arch_lr=0.0, arch_wdecay=0.0)
        arch = architect.Architect(net, settings)
        tokens = {k: torch.from_numpy(data[f"tokens/{k}"].astype(np.int64)) for k in ("train", "val")}
        hidden = {k: [tensor(f"hidden/{k}")[None]] for k in ("train", "val")}
        arch.optimizer.zero_grad()
        arch._backward_step_unrolled(hidden["train"], tokens["train"][:-1], tokens["train"][1:].reshape(-1),
                                     hidden["val"], tokens["val"][:-1], tokens["val"][1:].reshape(-1),
                                     float(data["lr"]))
        theirs = net.weights.grad.numpy().astype(np.float64)
        ours = data[f"{name}/grad"].astype(np.float64)
        difference = np.linalg.norm(ours - theirs) / np.linalg.norm(theirs)
        print(f"  {name:40s} {difference:.2g}   (mean |grad| ours {np.abs(ours).mean():.3g}, "
              f"original {np.abs(theirs).mean():.3g})")


def main(argv=None):
    args = build_parser().parse_args(argv)
    (run_ours if args.side == "ours" else run_original)(args)


if __name__ == "__main__":
    main()

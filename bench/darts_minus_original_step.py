"""DARTS−'s first-order alpha step side by side with the original's (Meituan-AutoML/DARTS-: src/search/model_search.py
with its auxiliary skip, src/spaces.py 's5', src/utils.py DecayScheduler), on identical weights (the auxiliary skips'
FactorizedReduce weights too), alphas and batch, at an epoch where β is neither 1 nor 0. Not part of the tests: the
original needs torch, so the script runs twice, once in each environment (bench/side_by_side.py):

    mkdir -p /tmp/darts-minus && git --git-dir=/work/.mirror/Meituan-AutoML+DARTS-/repo/.git archive HEAD \\
        | tar -x -C /tmp/darts-minus
    .venv/bin/python bench/darts_minus_original_step.py ours --out /tmp/darts_minus_step.npz
    /tmp/torchenv/bin/python bench/darts_minus_original_step.py original --repo /tmp/darts-minus \\
        --data /tmp/darts_minus_step.npz

`ours` builds --variant darts-minus (on the cpu kernels as a search runs, unless --cpu-kernels false) at a small size
(batch 8 of 3x16x16 N(0, 1) images, 10 classes, C 4, 5 cells, seed 0), spreads the alphas (0.5 * N(0, 1)), feeds --epoch
(default 20 of 50: β = (50 - 20) / 50 = 0.6) and computes the first-order alpha step's loss and alpha gradient (batch
statistics), and the weight gradient of the auxiliary skips (a weight step's, on the training batch). `original` parses
the run script's flags (--auxiliary_skip --decay linear --space s5, as scripts/run_darts_minus.sh; src/search/args.py
parses sys.argv when imported), steps the original's beta_decay_scheduler through epochs 0..--epoch as train_search.py
does, copies the state into its Network and runs Architect._backward_step (net._loss(valid) backward) and a weight pass,
once under torch's default dtype float64 and once under float32; it prints per quantity ||ours - original|| /
||original|| against each, the original in float32 against itself in float64, and a last JSON line
(side_by_side.compare_with_original). Measured (the defaults): ours against float64 at most 8.7e-7; the original in
float32 flips one ReLU (the second of cells[3]._ops[11]'s sep_conv_5x5, at -7.8e-7 in float64) in the training pass,
which moves its auxiliary skips' weight gradient by 3.1e-4 against its float64 run.
"""
import os
import sys
import tempfile
import types
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import side_by_side as sbs  # noqa: E402

AUXILIARY = "auxiliary_skip"  # our scope of an edge's auxiliary skip


def build_parser():
    parser, ours, _ = sbs.side_parser(__doc__, "--repo", "the DARTS- repository, extracted", warm_steps=None)
    ours.add_argument("--epoch", type=int, default=20, help="the 0-based epoch of the step (its β)")
    return parser


# ---------------------------------------------------------------- ours (nnabla)

def run_ours(args):
    sbs.project_on_path()
    from models.graph import feed, forward_backward
    from models.search_network import weight_parameters
    from utils.search.variants.darts_minus import DartsMinus, DartsMinusSettings

    step = sbs.OursStep(args, lambda setup: DartsMinus(DartsMinusSettings(), setup))
    variant, graphs = step.variant, step.graphs
    variant.start_epoch(args.epoch, 50)
    loss, grads = step.first_order()
    step.restore()
    feed(graphs.train, step.batches["train"])
    weights = weight_parameters()
    for w in weights.values():
        w.grad.zero()
    forward_backward(graphs.train)
    auxiliary = {k: w.g.copy() for k, w in weights.items() if f"/{AUXILIARY}/" in k}
    step.restore()  # the passes moved the batch-norm statistics; the state as compared
    beta = float(variant.beta.d.flat[0])
    extra = {"loss": loss, "beta": beta, "epoch": args.epoch, "train_loss": float(graphs.train.loss.d),
             **sbs.prefixed("grad", grads), **sbs.prefixed("auxiliary_grad", auxiliary)}
    sbs.export_search_state(variant, step.batches, args.out, extra)
    print(f"epoch {args.epoch}: beta {beta:g}, loss {loss:.6g}; {len(auxiliary)} auxiliary skip weights; "
          f"written to {args.out}")


# ---------------------------------------------------------------- the original (torch)

def stub_modules():
    """src/utils.py and src/search/args.py import yaml and torchvision for their config file and data, unused here."""
    for name in ("yaml", "torchvision", "torchvision.transforms", "torchvision.datasets"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["yaml"].dump = lambda *a, **k: None
    sys.modules["yaml"].Dumper = type("Dumper", (), {})  # src/utils.py subclasses it
    sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
    sys.modules["torchvision"].datasets = sys.modules["torchvision.datasets"]


def run_original(args):
    torch = sbs.torch_for_original()
    stub_modules()
    # src/search/args.py parses sys.argv when imported: the run script's DARTS- flags, an experiment dir in /tmp.
    sys.argv = ["train_search.py", "--auxiliary_skip", "--decay", "linear", "--skip_beta", "1", "--space", "s5",
                "--disable_cuda", "--save", tempfile.mkdtemp(prefix="darts_minus_original_")]
    model_search, spaces, search_args, architect = sbs.import_original(
        args.repo, "src.search.model_search", "src.spaces", "src.search.args", "src.search.architect")
    space = spaces.spaces_dict["s5"]
    primitives = space["primitives_normal"][0]
    data = dict(np.load(args.data))
    epoch = int(data["extra/epoch"])
    for e in range(epoch + 1):  # train_search.py: beta_decay_scheduler.step(epoch) at every epoch's start
        search_args.beta_decay_scheduler.step(e)
    auxiliary_keys = sorted(k for k in data if k.startswith("extra/auxiliary_grad/"))

    def original():  # called under torch's default dtype float64, then float32
        torch.manual_seed(0)  # the initial weights are overwritten: only the alphas' draw needs a generator
        net = model_search.Network(*sbs.network_sizes(data), torch.nn.CrossEntropyLoss(), space,
                                   args=search_args.args)
        net.train()
        auxiliary = {}
        for i, cell in enumerate(net.cells):
            for e, mixed in enumerate(cell._ops):
                auxiliary.update(sbs.block_scopes(mixed.auxiliary_op, f"cells.{i}._ops.{e}.auxiliary_op",
                                                  f"cell{i}/edge{e}/{AUXILIARY}"))
        sbs.load_search_state(net, args.data, primitives, extra_scopes=auxiliary)
        arch = architect.Architect(net, SimpleNamespace(momentum=0.9, weight_decay=3e-4, arch_learning_rate=3e-4,
                                                        arch_weight_decay=1e-3))
        arch.optimizer.zero_grad()
        loss = net._loss(*sbs.torch_batch(data, "val"))
        loss.backward()  # Architect._backward_step
        theirs = sbs.original_alpha_gradients(net, primitives, data)
        net.zero_grad()
        train_loss = net._loss(*sbs.torch_batch(data, "train"))
        train_loss.backward()  # the weight step's gradient (train_search.py: criterion(model(input), target))
        parameters = dict(net.named_parameters())
        their_auxiliary = {}
        for torch_name, (our_name, _) in sbs.tensor_names(net, auxiliary).items():
            if torch_name in parameters:
                key = f"extra/auxiliary_grad/{our_name}"
                their_auxiliary[key] = parameters[torch_name].grad.numpy().copy().reshape(data[key].shape)
        assert sorted(their_auxiliary) == auxiliary_keys and auxiliary_keys
        return {"beta": search_args.beta_decay_scheduler.decay_rate, "loss (first order)": loss.item(),
                "alpha gradient (first order)": theirs, "training loss": train_loss.item(),
                "auxiliary skips' weight gradient": their_auxiliary}

    sbs.compare_with_original({"beta": data["extra/beta"], "loss (first order)": data["extra/loss"],
                               "alpha gradient (first order)": sbs.our_arrays(data, "grad"),
                               "training loss": data["extra/train_loss"],
                               "auxiliary skips' weight gradient": {k: data[k] for k in auxiliary_keys}}, original)


def main(argv=None):
    args = build_parser().parse_args(argv)
    (run_ours if args.side == "ours" else run_original)(args)


if __name__ == "__main__":
    main()

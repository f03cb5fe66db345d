"""The search network side by side with a quark0-derived PyTorch original: our state into their model.

A side-by-side check runs twice, once in each environment, because the project's venv has no torch
and the originals need it: `ours` (project venv) builds our search network, computes our quantities
(a loss, an alpha gradient, ...) and writes them with every weight, every architecture array and the
batches to an .npz (export_search_state); `original` (a venv with torch and numpy) builds the
original's own `model_search.Network`, copies that state into it (load_search_state), computes the same
quantities with the original's code and prints per quantity ||ours - original|| / ||original||
(compare_with_original). This module imports only numpy at import time, so both sides import it; nnabla is imported
inside the `ours` functions, torch inside the `original` ones.

The plain-DARTS example, bench/darts_original_step.py (quark0's cnn/ extracted at /tmp/quark0/cnn):

    .venv/bin/python bench/darts_original_step.py ours --out /tmp/darts_step.npz
    /tmp/torchenv/bin/python bench/darts_original_step.py original --darts-cnn /tmp/quark0/cnn \\
        --data /tmp/darts_step.npz

The name mapping, by structure (never by position in a parameter list):

    ours (scope "net")                                 the original (quark0 model_search.Network)
    stem/conv/conv/W, stem/bn/bn/{gamma,beta,mean,var} stem.0.weight, stem.1.{weight,bias,running_*}
    cell{i}/preprocess{0,1}/conv/conv/W, .../bn/bn     cells[i].preprocess{0,1}.op.1, .op.2 (ReLUConvBN)
    cell{i}/preprocess0/conv_{1,2}/conv/W, .../bn/bn   cells[i].preprocess0.conv_{1,2}, .bn (FactorizedReduce)
    cell{i}/edge{e}/<op>/...                           cells[i]._ops[e]._ops[PRIMITIVES.index(<op>)]
        sep_conv_kxk: sep{0,1}_dw, sep{0,1}_pw, sep{0,1}_bn    SepConv .op.1, .op.2, .op.3, .op.5, .op.6, .op.7
        dil_conv_kxk: dw, pw, bn                               DilConv .op.1, .op.2, .op.3
        skip_connect at stride 2: conv_1, conv_2, bn           FactorizedReduce .conv_1, .conv_2, .bn
    cell{i}/edge{e}/{max,avg}_pool_3x3_bn/bn/bn        ..._ops[m].1 (the pool's BatchNorm2d(affine=False))
    classifier/affine/affine/{W,b}                     classifier.{weight (W transposed), bias}
    arch: alpha_normal, alpha_reduction                alphas_normal, alphas_reduce, the op columns permuted
                                                       from our SEARCH_OPS order (the zero op last) to the
                                                       original's PRIMITIVES order ('none' first)

Every tensor of the torch model's state_dict (but BatchNorm's num_batches_tracked counters) must be
assigned exactly once, and every array of ours used: otherwise load_search_state raises, naming them.
Shapes are checked; ours are only reshaped where they differ by singleton axes (depthwise (C, k, k)
against (C, 1, k, k), batch norm's (1, C, 1, 1) against (C,)). Channel counts are whatever the two
models have, so an original whose mixed op builds its ops on C // 4 channels (PC-DARTS) maps the same
way as long as its modules are laid out as quark0's.

What agreement to expect: the reference is the original in float64 (compare_with_original runs the
original's code under torch's default dtype float64 and float32). Measured with the DARTS example (seeds
0, 1, 2): ours against the original in float64, the loss 2e-8..1e-7, the first-order alpha gradient
8e-7..1e-6, the loss at the virtual step's weights 2e-8..6e-8, the second-order alpha gradient 4.4e-6..4.6e-6.
In float32 either program may put one activation next to a ReLU's kink on its other side: at seed 0 the
original in float32 does (one element of cells[1]._ops[8]'s sep_conv_5x5), which moves its weight gradient by
0.6% and its second-order alpha gradient by 48% against itself in float64; ours does at seed 0 when built
without the cpu kernels (nnabla's one-pass batch norm: 5.2e-6 on cell 0's first node against float64, where
the cpu kernels' two-pass one gives 2.5e-7 and torch in float32 2.3e-7): the first-order gradient then 3e-3.
So build ours with search_setup (on the cpu kernels, as a search runs) and read the float64 column; a flip
shows as a large figure in one column only.

What the scripts share lives here: side_parser (the two subcommands, the size flags and the original's folder),
OursStep (our side's start: the variant at that size, its graphs and optimizer, warm weight steps, spread
alphas, the batches and the state compared; first_order(), second_order(), restore(), export_both_orders()),
compare_both_orders (a quark0-style original's first- and second-order steps against ours: DARTS, PC-DARTS),
and on the torch side torch_for_original, stub_missing, network_sizes, original_alpha_gradients and our_arrays.

A variant's script (bench/<variant>_original_step.py) reuses these, for example where the original is
a modified copy of quark0 with its own model_search.py (PC-DARTS: `mkdir -p D && git --git-dir=<mirror>
archive HEAD | tar -x -C D`):

    # ours, in the project's venv (see bench/darts_original_step.py's run_ours for the whole of it)
    project_on_path()
    rng = seed_everything(0)              # utils.run.run's: nnabla's initialisers and a numpy generator
    variant = MyVariant(MyVariant.Settings(), search_setup((8, 3, 16, 16), 10, 4, 5, 0, rng))
    graphs, optimizer = search_machine(variant, second_order=False)      # builds the graphs
    spread_alphas(variant, rng)           # away from uniform, so that a wrong op column shows in the loss
    batches = random_batches(rng, (8, 3, 16, 16), 10)
    loss, grads = first_order_alpha_gradient(variant, graphs, batches["val"])
    export_search_state(variant, batches, out, extra={"loss": loss, **{f"grad/{k}": g for k, g in grads.items()}})

    # the original, in the torch venv
    no_cuda()
    model_search, genotypes = import_original(pc_darts_dir, "model_search", "genotypes")
    data = dict(np.load(path))

    def original():                       # called under float64, then float32
        net = model_search.Network(4, 10, 5, torch.nn.CrossEntropyLoss())
        net.train()
        load_search_state(net, path, genotypes.PRIMITIVES,
                          extra_arch={"betas_normal": "beta_normal", "betas_reduce": "beta_reduction"})
        x, y = torch_batch(data, "val")
        loss = net._loss(x, y)
        loss.backward()
        return {"loss": loss.item(), "alpha gradient": {
            ours: to_our_columns(getattr(net, attribute).grad.numpy(), genotypes.PRIMITIVES, data)
            for attribute, ours in ALPHA_ATTRIBUTES.items()}}
    compare_with_original({"loss": data["extra/loss"], "alpha gradient": {
        k: data[f"extra/grad/{k}"] for k in ALPHA_ATTRIBUTES.values()}}, original)

(PC-DARTS's betas are (14,) there; they are copied as they are, reshaped if only singleton axes differ, and
their gradients compared without a column permutation.) Modules that are not quark0's (DARTS-'s auxiliary
skip op on every edge, say) are added with `extra_scopes={torch layer path: our layer scope}`;
block_scopes(module, torch path, our scope) gives those of a whole quark0-style block (ReLUConvBN,
FactorizedReduce, SepConv, DilConv, Identity, Zero). The second-order step: see run_original in
bench/darts_original_step.py (Architect._backward_step_unrolled, with a torch SGD given our momentum
buffers through load_search_state(optimizer=...), and export_search_state(weight_optimizer=...)).
"""
import argparse
import importlib
import json
import os
import sys
import types

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The original's attribute of each of our two alpha arrays (their columns are permuted between op orders).
ALPHA_ATTRIBUTES = {"alphas_normal": "alpha_normal", "alphas_reduce": "alpha_reduction"}

# quark0's blocks (operations.py), by class name: {submodule path: our layer scope under the block's scope}.
BLOCK_LAYOUTS = {
    "ReLUConvBN": {"op.1": "conv/conv", "op.2": "bn/bn"},
    "FactorizedReduce": {"conv_1": "conv_1/conv", "conv_2": "conv_2/conv", "bn": "bn/bn"},
    "SepConv": {"op.1": "sep0_dw/depthwise_conv", "op.2": "sep0_pw/conv", "op.3": "sep0_bn/bn",
                "op.5": "sep1_dw/depthwise_conv", "op.6": "sep1_pw/conv", "op.7": "sep1_bn/bn"},
    "DilConv": {"op.1": "dw/depthwise_conv", "op.2": "pw/conv", "op.3": "bn/bn"},
    "Identity": {}, "Zero": {}, "MaxPool2d": {}, "AvgPool2d": {},
}
# The parameter names of a torch layer type: {torch tensor name: our array name in the layer's scope}.
LAYER_TENSORS = {
    "Conv2d": {"weight": "W"},
    "BatchNorm2d": {"weight": "gamma", "bias": "beta", "running_mean": "mean", "running_var": "var"},
    "Linear": {"weight": "W", "bias": "b"},
}


# ---------------------------------------------------------------- both sides

def relative_difference(ours, theirs):
    """||ours - theirs|| / ||theirs|| in float64, over whole arrays (or dicts of arrays, concatenated by key)."""
    if isinstance(theirs, dict):
        ours = np.concatenate([np.ravel(ours[k]) for k in sorted(theirs)])
        theirs = np.concatenate([np.ravel(theirs[k]) for k in sorted(theirs)])
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs))


def _norm(value):
    if isinstance(value, dict):
        return float(np.linalg.norm(np.concatenate([np.ravel(value[k]) for k in sorted(value)])))
    return float(np.linalg.norm(np.asarray(value, np.float64)))


def report(quantities, title="relative difference ||ours - original|| / ||original||:", last_json=True,
           labels=("ours", "original")):
    """Prints under `title` per (name, ours, original) the relative difference and both norms, then (last_json)
    a last line of JSON {name: difference}; returns that dict. Values may be scalars, arrays or dicts of arrays.
    compare_with_original is the fuller comparison (against the original in float64 and float32)."""
    print(title)
    differences = {}
    for name, ours, theirs in quantities:
        differences[name] = relative_difference(ours, theirs)
        print(f"  {name:36s} {differences[name]:.2g}   (norm {labels[0]} {_norm(ours):.6g}, "
              f"{labels[1]} {_norm(theirs):.6g})")
    if last_json:
        print(json.dumps(differences))
    return differences


def compare_with_original(ours, original):
    """The comparison every side-by-side script prints. ours: {quantity: value}; original(): {quantity: value}
    computed by the original's code, called twice, under torch's default dtype float64 and float32
    (build the Network, load_search_state and torch_batch inside it: they follow the default dtype).

    The reference is the original in float64. float32 rounding, in either program, can put an activation that
    sits next to a ReLU's or a max pool's kink on its other side; one such flip in a network this small moves
    a weight gradient by a percent, and the second-order alpha gradient (a finite difference of gradients after
    a virtual step) by tens of percent. Against float64 both programs show their own float32 precision, so the
    original in float32 against float64 is printed too, as what float32 agreement means at this point.
    Last line: JSON {"ours vs original float64": {...}, "original float32 vs float64": {...},
    "ours vs original float32": {...}}."""
    import torch
    default = torch.get_default_dtype()
    computed = {}
    for dtype in (torch.float64, torch.float32):
        torch.set_default_dtype(dtype)
        try:
            computed[dtype] = original()
        finally:
            torch.set_default_dtype(default)
    exact, single = computed[torch.float64], computed[torch.float32]
    tables = (("ours vs original float64", ours, exact, ("ours", "float64"),
               "ours against the original in float64, ||ours - original|| / ||original||:"),
              ("original float32 vs float64", single, exact, ("float32", "float64"),
               "the original in float32 against itself in float64:"),
              ("ours vs original float32", ours, single, ("ours", "float32"), "ours against the original in float32:"))
    results = {key: report([(k, a[k], b[k]) for k in ours], title, False, labels)
               for key, a, b, labels, title in tables}
    print(json.dumps(results))
    return results


def to_original_columns(array, primitives, op_names):
    """Our (..., ops) array with its op columns in the original's PRIMITIVES order (op_names: ours, in order)."""
    return np.asarray(array)[..., [list(op_names).index(p) for p in primitives]]


def to_our_columns(array, primitives, op_names):
    """The original's (..., ops) array (e.g. an alpha gradient) with its columns in our op order. op_names may be
    the data load_search_state returned (it holds ours)."""
    if isinstance(op_names, dict):
        op_names = [str(n) for n in op_names["meta/op_names"]]
    return np.asarray(array)[..., [list(primitives).index(n) for n in op_names]]


# ---------------------------------------------------------------- the command line

def str2bool(s):
    return str(s).strip().lower() in ("true", "1", "yes")


def side_parser(description, original_flag, original_help, channels=4, warm_steps=1):
    """(parser, ours, original) of a side-by-side script: subcommand `ours` with the harness's size (--out, and
    --batch-size 8, --image-size 16, --num-classes 10, --channels `channels`, --num-cells 5, --seed 0, --warm-steps
    `warm_steps` unless it is None, --cpu-kernels true), subcommand `original` with `original_flag` (required: where
    the original's files are) and --data (the file `ours` wrote). The script adds its own flags to the two."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="side", required=True)
    ours = sub.add_parser("ours", help="in the project's venv: our quantities, saved with the state")
    ours.add_argument("--out", required=True)
    ours.add_argument("--batch-size", type=int, default=8)
    ours.add_argument("--image-size", type=int, default=16)
    ours.add_argument("--num-classes", type=int, default=10)
    ours.add_argument("--channels", type=int, default=channels)
    ours.add_argument("--num-cells", type=int, default=5)
    ours.add_argument("--seed", type=int, default=0)
    if warm_steps is not None:
        ours.add_argument("--warm-steps", type=int, default=warm_steps, help="weight steps before the compared step")
    ours.add_argument("--cpu-kernels", type=str2bool, default=True,
                      help="build on ops/cpu_kernels as a search on the cpu does (when they are built)")
    original = sub.add_parser("original", help="in a venv with torch: the original's quantities, compared")
    original.add_argument(original_flag, required=True, help=original_help)
    original.add_argument("--data", required=True, help="the file `ours` wrote")
    return parser, ours, original


def prefixed(prefix, arrays):
    """{prefix/name: array} of {name: array} (the keys under which a script saves or reads a group of arrays)."""
    return {f"{prefix}/{name}": array for name, array in arrays.items()}


# ---------------------------------------------------------------- ours (nnabla)

def project_on_path():
    """The project's packages importable from a bench script."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)


def search_setup(input_shape, num_classes, channels, num_cells, seed, rng, cpu_kernels=True):
    """A SearchSetup as darts_search builds it on the cpu: on ops/cpu_kernels when they are built (and asked
    for), as a search runs. Their batch norm computes the variance in two passes; nnabla's own, in one float32
    pass, is an order of magnitude less exact (5.2e-6 against 2.5e-7 on cell 0's first node, against float64)."""
    from utils.run.context import uses_cpu_kernels
    from utils.search.variant import SearchSetup
    return SearchSetup(tuple(input_shape), num_classes, channels, num_cells, seed, rng,
                       uses_cpu_kernels("cpu", "float", cpu_kernels))


def random_batches(rng, input_shape, num_classes, names=("train", "val")):
    """{name: (x float32 N(0, 1), labels (B, 1) int)}: one batch per name, drawn from rng in that order."""
    return {name: (rng.randn(*input_shape).astype(np.float32), rng.randint(0, num_classes, (input_shape[0], 1)))
            for name in names}


def spread_alphas(variant, rng, scale=0.5, extra=()):
    """Sets the two (14, 8) alpha arrays, then the architecture arrays `extra` (e.g. PC-DARTS's betas), in that
    order, to scale * N(0, 1): DARTS's 1e-3 * N(0, 1) is so near uniform that a wrong op column (or edge) would
    hardly change the loss."""
    from models.search_network import ALPHA_NAMES
    for name in tuple(ALPHA_NAMES) + tuple(extra):
        alpha = variant.alphas[name]
        alpha.d = rng.randn(*alpha.shape).astype(np.float32) * scale


def search_machine(variant, second_order, lr=0.025, momentum=0.9, weight_decay=3e-4, grad_clip=5.0,
                   arch_lr=3e-4, arch_betas=(0.5, 0.999), arch_weight_decay=1e-3):
    """(graphs, BilevelOptimizer) of `variant`, wired as darts_search.search wires them (defaults: quark0's
    train_search.py). The graphs are built here, so every parameter exists afterwards."""
    from models.search_network import all_weight_state, alpha_parameters, weight_parameters
    from utils.optim.solvers import SGD, Adam
    from utils.search.bilevel import BilevelOptimizer, build_search_graphs
    graphs = build_search_graphs(variant.network, variant.setup.input_shape, second_order, variant.alpha_penalty,
                                 variant.separate_virtual)
    weights = weight_parameters()
    optimizer = BilevelOptimizer(graphs, weights, all_weight_state(), alpha_parameters(),
                                 SGD(weights, lr, momentum, weight_decay, grad_clip),
                                 Adam(alpha_parameters(), arch_lr, *arch_betas, arch_weight_decay), steps=variant)
    return graphs, optimizer


def alpha_gradients():
    """{name: copy of the gradient} of every architecture array."""
    from models.search_network import alpha_parameters
    return {name: a.g.copy() for name, a in alpha_parameters().items()}


def first_order_alpha_gradient(variant, graphs, val_batch):
    """(loss, {name: gradient}) of the first-order alpha step on val_batch: the alpha step's graph (frozen
    weights when first order, batch statistics, the variant's penalty included), after before_alpha_step()."""
    from models.graph import feed, forward_backward
    from models.search_network import alpha_parameters
    feed(graphs.val, val_batch)
    variant.before_alpha_step()
    for a in alpha_parameters().values():
        a.grad.zero()
    forward_backward(graphs.val)
    return float(graphs.val.loss.d), alpha_gradients()


def weight_state():
    """A copy {name: array} of every array of our search network (weights and batch-norm statistics)."""
    from models.search_network import all_weight_state
    return {k: v.d.copy() for k, v in all_weight_state().items()}


def restore_weight_state(state):
    """Sets every array of our search network back to `state` (weight_state()'s): a training-mode pass moves the
    batch-norm statistics, so each compared quantity is computed from, and the file holds, the same state."""
    from models.search_network import all_weight_state
    for k, v in all_weight_state().items():
        v.d = state[k]


class OursStep:
    """Our side of a side-by-side step, set up as every script starts it: the variant built at the harness's size
    (args: side_parser's `ours` flags), its graphs and BilevelOptimizer (search_machine with optimizer_settings),
    args.warm_steps weight steps (when the parser has the flag; so that momentum buffers and batch-norm statistics
    are not the initial ones), the alphas (and the arrays `spread_extra`) spread to alpha_scale * N(0, 1), a
    training and a validation batch, and the state they are compared at.

    make_variant(setup) builds the variant (import its module after project_on_path()). Attributes: variant, rng,
    shape, graphs (first order), unrolled_graphs (second order, when second_order; else None), optimizer (the one
    that took the warm steps: the second-order machine's when there is one), batches {"train", "val"}, state."""

    def __init__(self, args, make_variant, second_order=False, alpha_scale=0.5, spread_extra=(), **optimizer_settings):
        project_on_path()
        import nnabla as nn

        from models.graph import feed, forward_backward
        from utils.run.run import seed_everything
        nn.clear_parameters()
        self.rng = seed_everything(args.seed)
        self.shape = (args.batch_size, 3, args.image_size, args.image_size)
        setup = search_setup(self.shape, args.num_classes, args.channels, args.num_cells, args.seed, self.rng,
                             args.cpu_kernels)
        self.variant = make_variant(setup)
        self.graphs, self.optimizer = search_machine(self.variant, second_order=False, **optimizer_settings)
        self.unrolled_graphs = None
        if second_order:
            self.unrolled_graphs, self.optimizer = search_machine(self.variant, second_order=True, **optimizer_settings)
        warm_graphs, warm_steps = self.unrolled_graphs or self.graphs, getattr(args, "warm_steps", 0)
        for warm in random_batches(self.rng, self.shape, args.num_classes, range(warm_steps)).values():
            feed(warm_graphs.train, warm)
            self.optimizer.weight_optimizer.zero_grad()
            forward_backward(warm_graphs.train)
            self.optimizer.weight_optimizer.step()
        spread_alphas(self.variant, self.rng, alpha_scale, spread_extra)
        self.batches = random_batches(self.rng, self.shape, args.num_classes)
        self.state = weight_state()

    def restore(self):
        """Our network's arrays back to the state compared (restore_weight_state)."""
        restore_weight_state(self.state)

    def first_order(self):
        """(loss, {name: gradient}) of the first-order alpha step on the validation batch."""
        return first_order_alpha_gradient(self.variant, self.graphs, self.batches["val"])

    def second_order(self):
        """(loss at the virtual step's weights w', {name: gradient}) of the second-order alpha step:
        BilevelOptimizer.alpha_step without its Adam update (the graphs fed, then the unrolled gradient)."""
        from models.graph import feed
        graphs = self.unrolled_graphs
        for graph, batch in ((graphs.val, "val"), (graphs.virtual, "train"), (graphs.hessian, "train")):
            feed(graph, self.batches[batch])
        self.variant.before_alpha_step()
        self.optimizer.alpha_optimizer.zero_grad()
        self.optimizer.unrolled_alpha_gradient()
        return float(graphs.val.loss.d), alpha_gradients()  # the validation pass ran at w'

    def export_both_orders(self, out, optimizer_settings, what="alpha gradient"):
        """The first- and second-order alpha steps' losses and gradients written with the state and the momentum
        buffers (extra: loss, unrolled_loss, the optimizer_settings, first_order/<name>, second_order/<name>),
        as compare_both_orders reads them; prints a line of their sizes (`what`: the arrays' word)."""
        loss, first = self.first_order()
        unrolled_loss, second = self.second_order()
        self.restore()
        extra = {"loss": loss, "unrolled_loss": unrolled_loss, **optimizer_settings,
                 **prefixed("first_order", first), **prefixed("second_order", second)}
        export_search_state(self.variant, self.batches, out, extra, weight_optimizer=self.optimizer.weight_optimizer)
        print(f"loss {loss:.6g}, at w' {unrolled_loss:.6g}; mean |{what}| first order "
              f"{np.mean([np.abs(g).mean() for g in first.values()]):.3g}, second order "
              f"{np.mean([np.abs(g).mean() for g in second.values()]):.3g}; written to {out}")


def export_search_state(variant, batches, path, extra=None, weight_optimizer=None):
    """Writes to `path` (.npz) every array of our search network (models.search_network.all_weight_state()) as
    weight/<name>, every architecture array (alpha_parameters(), extra ones such as PC-DARTS's betas too) as
    arch/<name>, the batches {name: (x, labels)} as batch/<name>/x and /y, `extra` {name: array} (our
    results) as extra/<name>, and meta/ (our op order, the network's sizes). With weight_optimizer (our SGD)
    its momentum buffers in PyTorch's convention (buf, not lr * buf) as momentum/<name>.
    `variant` is a built SearchVariant whose graphs exist (every parameter created)."""
    from models.search_network import all_weight_state, alpha_parameters
    from ops.operations import OP_NAMES, SEARCH_OPS
    setup = variant.setup
    saved = {f"weight/{k}": v.d.copy() for k, v in all_weight_state().items()}
    saved.update({f"arch/{k}": v.d.copy() for k, v in alpha_parameters().items()})
    for name, (x, y) in batches.items():
        saved[f"batch/{name}/x"], saved[f"batch/{name}/y"] = np.asarray(x), np.asarray(y)
    saved.update({f"extra/{k}": np.asarray(v) for k, v in (extra or {}).items()})
    saved.update({"meta/op_names": np.array([OP_NAMES[i] for i in SEARCH_OPS]),
                  "meta/input_shape": np.array(setup.input_shape), "meta/num_classes": setup.num_classes,
                  "meta/channels": setup.channels, "meta/num_cells": setup.num_cells,
                  "meta/cpu_kernels": setup.cpu_kernels})
    if weight_optimizer is not None:
        lr = weight_optimizer.lr
        saved.update({f"momentum/{k}": v.data / lr for k, v in weight_optimizer.scaled_velocity().items()})
    np.savez(path, **saved)
    return saved


# ---------------------------------------------------------------- the original (torch)

def no_cuda():
    """The originals move everything to the GPU with .cuda(): on cpu those calls must do nothing."""
    import torch
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self


def torch_for_original():
    """torch, set up for an original's code on the cpu: .cuda() a no-op (no_cuda), and the warnings of its
    deprecated torch signatures silenced."""
    import warnings
    warnings.filterwarnings("ignore")
    import torch
    no_cuda()
    return torch


def stub_missing(*names):
    """Empty modules for those of `names` that are not installed: what an original imports at import time for its
    data and plots only (torchvision, PIL, matplotlib), so that it imports without them."""
    import importlib.util
    for name in names:
        top = name.split(".")[0]
        if name in sys.modules or (top not in sys.modules and importlib.util.find_spec(top) is not None):
            continue
        sys.modules[name] = types.ModuleType(name)
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, sys.modules[name])


def network_sizes(data):
    """(C, num_classes, layers) of the file's network: the first three arguments of the originals' Network."""
    return int(data["meta/channels"]), int(data["meta/num_classes"]), int(data["meta/num_cells"])


def original_alpha_gradients(net, primitives, data):
    """{our alpha name: copy of the original's alpha gradient, its columns in our op order}."""
    return {ours: to_our_columns(getattr(net, attribute).grad.numpy().copy(), primitives, data)
            for attribute, ours in ALPHA_ATTRIBUTES.items()}


def our_arrays(data, prefix, names=ALPHA_ATTRIBUTES.values()):
    """{name: the file's array extra/<prefix>/<name>} of `names` (by default our two alphas')."""
    return {name: data[f"extra/{prefix}/{name}"] for name in names}


def compare_both_orders(data_path, model_search, architect, primitives, arch_lr, extra_arch=None):
    """The comparison of a quark0-style original's first- and second-order alpha steps with ours (the file
    OursStep.export_both_orders wrote): net._loss + backward (Architect._backward_step), the loss at the virtual
    step's weights (Architect._compute_unrolled_model) and Architect._backward_step_unrolled, with a torch SGD
    given our momentum buffers (the file's lr, momentum, weight decay; Adam's lr arch_lr). extra_arch
    {torch attribute: our name} (PC-DARTS's betas) are loaded and their gradients compared too, as they are."""
    import torch
    data = dict(np.load(data_path))
    lr, momentum, weight_decay = (float(data[f"extra/{k}"]) for k in ("lr", "momentum", "weight_decay"))
    groups = {"alpha": ALPHA_ATTRIBUTES, **({"beta": extra_arch} if extra_arch else {})}  # named "<group> gradient"

    def original():  # called under torch's default dtype float64, then float32
        torch.manual_seed(0)  # the initial weights are overwritten: only the arch arrays' draw needs a generator
        net = model_search.Network(*network_sizes(data), torch.nn.CrossEntropyLoss())
        net.train()
        weight_optimizer = torch.optim.SGD(net.parameters(), lr, momentum=momentum, weight_decay=weight_decay)
        load_search_state(net, data_path, primitives, extra_arch=extra_arch, optimizer=weight_optimizer)
        arch = architect.Architect(net, types.SimpleNamespace(momentum=momentum, weight_decay=weight_decay,
                                                              arch_learning_rate=arch_lr, arch_weight_decay=1e-3))
        (x_train, y_train), (x_val, y_val) = torch_batch(data, "train"), torch_batch(data, "val")

        def grads(order):  # the alphas' columns in our op order, extra_arch's as they are
            return {f"{group} gradient ({order})": original_alpha_gradients(net, primitives, data)
                    if attributes is ALPHA_ATTRIBUTES else {ours: getattr(net, attribute).grad.numpy().copy()
                                                            for attribute, ours in attributes.items()}
                    for group, attributes in groups.items()}

        arch.optimizer.zero_grad()
        loss = net._loss(x_val, y_val)
        loss.backward()  # Architect._backward_step
        first = grads("first order")
        unrolled_loss = arch._compute_unrolled_model(x_train, y_train, lr, weight_optimizer)._loss(x_val, y_val)
        arch.optimizer.zero_grad()
        arch._backward_step_unrolled(x_train, y_train, x_val, y_val, lr, weight_optimizer)
        return {"loss (first order)": loss.item(), **first, "loss at w' (second order)": unrolled_loss.item(),
                **grads("second order")}

    ours = {"loss (first order)": data["extra/loss"],
            **{f"{group} gradient (first order)": our_arrays(data, "first_order", attributes.values())
               for group, attributes in groups.items()},
            "loss at w' (second order)": data["extra/unrolled_loss"],
            **{f"{group} gradient (second order)": our_arrays(data, "second_order", attributes.values())
               for group, attributes in groups.items()}}
    return compare_with_original(ours, original)


_imported_from = []


def import_original(directory, *names):
    """The modules `names` (e.g. "model_search", "architect", "genotypes") imported fresh from `directory`.

    Several originals share module names (model_search, operations, genotypes, utils): modules a former
    call imported from another directory are dropped from sys.modules and that directory from sys.path
    first, so a name never resolves to another original's file. Import all the modules of one original in
    one call: a second call imports them afresh, as modules distinct from the first call's."""
    directory = os.path.abspath(directory)
    for old in _imported_from:
        while old in sys.path:
            sys.path.remove(old)
        for name, module in list(sys.modules.items()):
            file = getattr(module, "__file__", None) or ""
            if os.path.abspath(file).startswith(old + os.sep):
                del sys.modules[name]
    for name in names:  # a same-named module from anywhere else (the project's utils, say)
        top = name.split(".")[0]
        module = sys.modules.get(top)
        if module is not None and not (getattr(module, "__file__", None) or "").startswith(directory + os.sep):
            for cached in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
                del sys.modules[cached]
    sys.path.insert(0, directory)
    _imported_from.append(directory)
    importlib.invalidate_caches()
    modules = [importlib.import_module(name) for name in names]
    return modules[0] if len(modules) == 1 else modules


def block_scopes(module, torch_path, our_scope):
    """{torch layer path: our layer scope} of a quark0-style block (BLOCK_LAYOUTS, by class name)."""
    kind = type(module).__name__
    if kind not in BLOCK_LAYOUTS:
        raise ValueError(f"{torch_path}: no layout for a {kind} (add it to BLOCK_LAYOUTS or pass extra_scopes)")
    return {f"{torch_path}.{sub}": f"{our_scope}/{scope}" for sub, scope in BLOCK_LAYOUTS[kind].items()}


def candidate_scopes(op, primitive, torch_path, edge_scope):
    """{torch layer path: our layer scope} of one candidate op of a mixed edge. A pooling op is
    Sequential(pool, BatchNorm2d(affine=False)) there, a pool and a batch norm in scope <op>_bn here."""
    if type(op).__name__ == "Sequential" and "pool" in primitive:
        pool, bn = list(op.children())
        if type(bn).__name__ != "BatchNorm2d":
            raise ValueError(f"{torch_path}: expected (pool, BatchNorm2d), got {type(bn).__name__}")
        return {f"{torch_path}.1": f"{edge_scope}/{primitive}_bn/bn/bn"}
    return block_scopes(op, torch_path, f"{edge_scope}/{primitive}")


def layer_scopes(model, primitives):
    """{torch layer path: our layer scope} of a quark0-layout search Network: stem, every cell's two
    preprocessing blocks and mixed edges (cells[i]._ops[e]._ops[m], m over `primitives`), classifier."""
    scopes = {"stem.0": "stem/conv/conv", "stem.1": "stem/bn/bn", "classifier": "classifier/affine/affine"}
    for i, cell in enumerate(model.cells):
        for pre in ("preprocess0", "preprocess1"):
            scopes.update(block_scopes(getattr(cell, pre), f"cells.{i}.{pre}", f"cell{i}/{pre}"))
        for e, mixed in enumerate(cell._ops):
            if len(mixed._ops) != len(primitives):
                raise ValueError(f"cells.{i}._ops.{e} has {len(mixed._ops)} ops for {len(primitives)} primitives")
            for m, (op, primitive) in enumerate(zip(mixed._ops, primitives)):
                scopes.update(candidate_scopes(op, primitive, f"cells.{i}._ops.{e}._ops.{m}", f"cell{i}/edge{e}"))
    return scopes


def _fitted(array, shape, what):
    """array in `shape`: as it is, or reshaped where the two differ only by singleton axes."""
    array = np.asarray(array)
    if tuple(array.shape) == tuple(shape):
        return array
    if array.size == int(np.prod(shape)) and [n for n in array.shape if n != 1] == [n for n in shape if n != 1]:
        return array.reshape(shape)
    raise ValueError(f"{what}: our shape {array.shape} does not fit the original's {tuple(shape)}")


def tensor_names(model, scopes):
    """{torch state_dict name: (our weight name, transposed)} of every tensor the layers in `scopes` hold."""
    names = {}
    for path, scope in scopes.items():
        layer = model.get_submodule(path)
        kind = type(layer).__name__
        if kind not in LAYER_TENSORS:
            raise ValueError(f"{path}: a {kind}, not a layer this mapping knows ({', '.join(LAYER_TENSORS)})")
        for tensor, ours in LAYER_TENSORS[kind].items():
            if getattr(layer, tensor, None) is not None:
                names[f"{path}.{tensor}"] = (f"{scope}/{ours}", kind == "Linear" and tensor == "weight")
    return names


def load_search_state(model, path, primitives, extra_arch=None, extra_scopes=None, optimizer=None, strict=True):
    """Copies the state export_search_state wrote to `path` into a quark0-layout torch search Network;
    returns the file's arrays as a dict {name: numpy array}.

    primitives: the original's op order (its genotypes.PRIMITIVES). The alphas go into model.alphas_normal /
    alphas_reduce with their op columns permuted into that order; extra_arch {torch attribute: our arch name}
    copies further architecture arrays as they are (reshaped if only singleton axes differ), e.g. PC-DARTS's
    {"betas_normal": "beta_normal", ...}. extra_scopes {torch layer path: our layer scope} adds layers that are
    not quark0's. optimizer: a torch.optim.SGD over model.parameters() given the file's momentum buffers.
    Raises, naming them, if a tensor of the model (num_batches_tracked aside) is not assigned exactly once or
    (strict) an array of ours is left over.
    """
    import torch
    data = dict(np.load(path))
    op_names = [str(n) for n in data["meta/op_names"]]
    if sorted(op_names) != sorted(primitives):
        raise ValueError(f"the ops differ: ours {op_names}, the original's {list(primitives)}")
    names = tensor_names(model, {**layer_scopes(model, primitives), **(extra_scopes or {})})
    state = {k: v for k, v in model.state_dict(keep_vars=True).items() if not k.endswith("num_batches_tracked")}
    unassigned = sorted(set(state) - set(names))
    unknown = sorted(set(names) - set(state))
    if unassigned or unknown:
        raise ValueError(f"tensors of the original never assigned: {unassigned}; mapped but not in it: {unknown}")
    used = [ours for ours, _ in names.values()]
    twice = sorted({n for n in used if used.count(n) > 1})
    ours = {k[len("weight/"):] for k in data if k.startswith("weight/")}
    missing = sorted(set(used) - ours)
    left = sorted(ours - set(used))
    if twice or missing or (strict and left):
        raise ValueError(f"ours used twice: {twice}; not in the file: {missing}; never used: {left}")

    def ours_for(torch_name, prefix="weight/"):
        our_name, transposed = names[torch_name]
        array = data[prefix + our_name]
        return array.T if transposed else array

    with torch.no_grad():
        for torch_name, tensor in state.items():
            value = _fitted(ours_for(torch_name), tensor.shape, f"{torch_name} <- {names[torch_name][0]}")
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(value)).to(tensor.dtype))
        for attribute, our_name in ALPHA_ATTRIBUTES.items():
            alpha = getattr(model, attribute)
            alpha.copy_(torch.from_numpy(_fitted(to_original_columns(data[f"arch/{our_name}"], primitives, op_names),
                                                 alpha.shape, f"{attribute} <- {our_name}")))
        for attribute, our_name in (extra_arch or {}).items():
            array = getattr(model, attribute)
            array.copy_(torch.from_numpy(_fitted(data[f"arch/{our_name}"], array.shape, f"{attribute} <- {our_name}")))
    if optimizer is not None:
        parameters = dict(model.named_parameters())
        for torch_name, parameter in parameters.items():
            key = "momentum/" + names[torch_name][0]
            if key not in data:
                raise ValueError(f"no momentum buffer for {torch_name} ({key}) in {path}")
            buffer = _fitted(ours_for(torch_name, "momentum/"), parameter.shape, key)
            optimizer.state[parameter]["momentum_buffer"] = torch.from_numpy(np.ascontiguousarray(buffer)).clone()
    return data


def torch_batch(data, name):
    """(x in torch's default dtype, labels int64 of shape (B,)) torch tensors of batch `name` of the file."""
    import torch
    x = torch.from_numpy(np.ascontiguousarray(data[f"batch/{name}/x"])).to(torch.get_default_dtype())
    y = torch.from_numpy(np.asarray(data[f"batch/{name}/y"]).reshape(-1).astype(np.int64))
    return x, y

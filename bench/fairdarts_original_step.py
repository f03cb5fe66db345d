"""FairDARTS's alpha step side by side with the PyTorch original's (xiaomi-automl/FairDARTS fairdarts/:
model_search.py, architect.py, separate_loss.py, utils.py parse), on identical weights, alphas and batches,
with bench/side_by_side.py. Not part of the tests: the original needs torch, which the project's venv does
not have, so the script runs twice, once in each environment.

    mkdir -p /tmp/fairdarts_orig && git --git-dir=/work/.mirror/xiaomi-automl+FairDARTS/repo archive HEAD \\
        fairdarts | tar -x -C /tmp/fairdarts_orig
    .venv/bin/python bench/fairdarts_original_step.py ours --out /tmp/fairdarts_step.npz
    /tmp/torchenv/bin/python bench/fairdarts_original_step.py original \\
        --fairdarts /tmp/fairdarts_orig/fairdarts --data /tmp/fairdarts_step.npz

`ours` builds our --variant fairdarts search network with its defaults (w01 10, l2 zero-one loss; on the cpu
kernels as a search runs, unless --cpu-kernels false) at a small
size (batch 8 of 3x16x16 N(0, 1) images, 10 classes, C 4, 5 cells, seed 0), takes --warm-steps weight steps
(the original's SGD: lr 0.005, momentum 0.9, weight decay 3e-4, clip 5), spreads the alphas (N(0, 1): the
original's zeros would leave every sigmoid at 0.5, where the zero-one loss has no gradient), and computes
on a validation batch, with batch statistics: the alpha step's loss (cross-entropy plus 10 * the zero-one
loss) and its alpha gradient (first order: the original has no other), then the alphas' move by one Adam
step (lr 3e-3, betas (0.9, 0.999), weight decay 1e-3). It also derives the cells of --draws alpha draws
(1.5 * N(0, 1): some sigmoids pass the 0.85 threshold, and nodes keep two, one or no inputs). The original's
space has no 'none': the file holds our seven real ops' columns only (our zero op's gradient is checked to
be 0 here).
`original` copies that state into the original's Network (criterion ConvSeparateLoss(weight=10)), runs its
own Architect.step on the validation batch (the gradient read before its Adam update), once under torch's
default dtype float64 and once under float32, and prints per quantity the relative difference ||ours -
original|| / ||original|| against each and the original in float32 against itself in float64 (with a JSON
line, side_by_side.compare_with_original); then it parses each draw with the float64 Network's genotype()
(threshold_sparse, 0.85), drops the edges its DCOCell skips (from nodes without inputs) and prints how many
derived cells are identical (draws where the original keeps no node, whose cell it could not
build, are counted apart: ours keeps node 2 there).

The original's utils.py imports torchvision, PIL (through auto_augment.py) and matplotlib at import time,
for its data and plots only: where the torch venv lacks them they are empty modules here, not installed.
"""
import json
import os
import sys
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import side_by_side as sbs  # noqa: E402

LR, MOMENTUM, WEIGHT_DECAY, GRAD_CLIP = 0.005, 0.9, 3e-4, 5.0  # fairdarts/train_search.py
ARCH_LR, ARCH_BETAS, ARCH_WEIGHT_DECAY = 3e-3, (0.9, 0.999), 1e-3
W01, THRESHOLD = 10.0, 0.85


def build_parser():
    parser, ours, _ = sbs.side_parser(__doc__, "--fairdarts", "the fairdarts/ folder of xiaomi-automl/FairDARTS")
    ours.add_argument("--draws", type=int, default=50, help="alpha draws whose derived cells are compared")
    return parser


# ---------------------------------------------------------------- ours (nnabla)

def run_ours(args):
    sbs.project_on_path()
    from models.search_network import ALPHA_NAMES
    from ops.operations import OP_NAMES, SEARCH_OPS, ZERO_OP
    from utils.search.variants.fairdarts import Fairdarts

    step = sbs.OursStep(args, lambda setup: Fairdarts(Fairdarts.Settings(), setup), alpha_scale=1.0, lr=LR,
                        momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, grad_clip=GRAD_CLIP, arch_lr=ARCH_LR,
                        arch_betas=ARCH_BETAS, arch_weight_decay=ARCH_WEIGHT_DECAY)
    variant, rng, batches = step.variant, step.rng, step.batches
    alphas = variant.alpha_values()

    loss, grads = step.first_order()
    penalty = variant.alpha_penalty()
    penalty.forward()
    step.optimizer.alpha_step(batches["train"])  # feeds nothing but the fed validation batch (first order)
    moves = {name: variant.alphas[name].d - alphas[name] for name in ALPHA_NAMES}
    draws = [{name: rng.randn(*alphas[name].shape).astype(np.float32) * 1.5 for name in ALPHA_NAMES}
             for _ in range(args.draws)]
    cells = []
    for draw in draws:
        arch = variant.derive(variant.settings, draw)
        cells.append({key: {str(node): [[OP_NAMES[op], j] for op, j in pairs] for node, pairs in cell.items()}
                      for key, cell in (("normal", arch.normal), ("reduce", arch.reduction))})

    inputs = np.bincount([len(pairs) for cell in cells for nodes in cell.values() for pairs in nodes.values()],
                         minlength=3)
    step.restore()  # the passes moved the batch-norm statistics; the state as compared
    for name in ALPHA_NAMES:
        variant.alphas[name].d = alphas[name]
    none_gradient = max(float(np.abs(g[:, ZERO_OP]).max()) for g in grads.values())
    extra = {"loss": loss, "zero_one": float(penalty.d) / W01, "none_gradient": none_gradient,
             "cells": json.dumps(cells), **sbs.prefixed("grad", grads), **sbs.prefixed("move", moves),
             **{f"draw{i}/{k}": a for i, draw in enumerate(draws) for k, a in draw.items()}}
    saved = sbs.export_search_state(variant, batches, args.out, extra)
    # The original's space has no 'none': every (.., 8) array of ours loses its zero-op column.
    real = [i for i in range(len(SEARCH_OPS)) if i != ZERO_OP]
    for key, value in saved.items():
        if key.startswith(("arch/", "extra/grad/", "extra/move/", "extra/draw")):
            saved[key] = value[:, real]
    saved["meta/op_names"] = saved["meta/op_names"][real]
    np.savez(args.out, **saved)
    print(f"loss {loss:.6g} (zero-one loss {float(penalty.d) / W01:.6g}); mean |alpha gradient| "
          f"{np.mean([np.abs(g).mean() for g in grads.values()]):.3g}, largest |gradient| of the zero op's "
          f"column {none_gradient:g}; nodes of the {len(draws)} draws' cells with 0, 1, 2 inputs: {inputs.tolist()}; "
          f"written to {args.out}")


# ---------------------------------------------------------------- the original (torch)

def dco_cell(gene):
    """The cell fairdarts/model.py's DCOCell computes from a parsed gene [(op, node, input)]: it skips an
    edge from a node without ops."""
    present, cell = {0, 1}, {}
    for node in range(2, 6):
        cell[str(node)] = [[op, j] for op, to, j in gene if to == node and j in present]
        if cell[str(node)]:
            present.add(node)
    return cell


def run_original(args):
    torch = sbs.torch_for_original()  # also silences the original's deprecated torch signatures (F.sigmoid)
    sbs.stub_missing("torchvision", "torchvision.transforms", "PIL", "PIL.Image", "PIL.ImageEnhance", "PIL.ImageOps",
                     "matplotlib", "matplotlib.pyplot")
    model_search, architect, separate_loss, genotypes = sbs.import_original(
        args.fairdarts, "model_search", "architect", "separate_loss", "genotypes")
    primitives = genotypes.PRIMITIVES
    data = dict(np.load(args.data))
    nets = []

    def original():  # called under torch's default dtype float64, then float32
        torch.manual_seed(0)
        criterion = separate_loss.ConvSeparateLoss(weight=W01)
        net = model_search.Network(*sbs.network_sizes(data), criterion, parse_method="threshold_sparse",
                                   op_threshold=THRESHOLD)
        net.train()
        sbs.load_search_state(net, args.data, primitives)
        nets.append(net)
        arch = architect.Architect(net, SimpleNamespace(momentum=MOMENTUM, weight_decay=WEIGHT_DECAY,
                                                        arch_learning_rate=ARCH_LR, arch_lr_gamma=ARCH_BETAS[0],
                                                        arch_weight_decay=ARCH_WEIGHT_DECAY))
        x_val, y_val = sbs.torch_batch(data, "val")
        before = {attribute: getattr(net, attribute).detach().clone() for attribute in sbs.ALPHA_ATTRIBUTES}
        losses, grads = [], {}
        criterion_forward = criterion.forward

        def recorded_criterion(*inputs):  # the alpha step's total loss, as its criterion returns it
            out = criterion_forward(*inputs)
            losses.append(out[0].item())
            return out
        criterion.forward = recorded_criterion
        adam_step = arch.optimizer.step

        def recorded_step(*a, **k):  # the gradient as the backward pass left it, before Adam reads it
            grads.update({attribute: getattr(net, attribute).grad.detach().clone().numpy()
                          for attribute in sbs.ALPHA_ATTRIBUTES})
            return adam_step(*a, **k)
        arch.optimizer.step = recorded_step
        _, zero_one = arch.step(x_val, y_val)  # Architect.step: sigmoid mixing, ConvSeparateLoss, backward, Adam
        return {"alpha-step loss (CE + 10 * zero-one)": losses[0], "zero-one loss": float(zero_one),
                "alpha gradient (first order)": {ours_name: sbs.to_our_columns(grads[attribute], primitives, data)
                                                 for attribute, ours_name in sbs.ALPHA_ATTRIBUTES.items()},
                "alpha move of one Adam step": {
                    ours_name: sbs.to_our_columns((getattr(net, attribute).detach() - before[attribute]).numpy(),
                                                  primitives, data)
                    for attribute, ours_name in sbs.ALPHA_ATTRIBUTES.items()}}

    compared = {"alpha-step loss (CE + 10 * zero-one)": data["extra/loss"], "zero-one loss": data["extra/zero_one"],
                "alpha gradient (first order)": sbs.our_arrays(data, "grad"),
                "alpha move of one Adam step": sbs.our_arrays(data, "move")}
    results = sbs.compare_with_original(compared, original)

    net = nets[0]  # the derivations: float64's Network
    our_cells = json.loads(str(data["extra/cells"]))
    op_names = [str(n) for n in data["meta/op_names"]]
    same = different = unbuildable = 0
    for i, our_cell in enumerate(our_cells):
        with torch.no_grad():
            for attribute, ours_name in sbs.ALPHA_ATTRIBUTES.items():
                getattr(net, attribute).copy_(torch.from_numpy(
                    sbs.to_original_columns(data[f"extra/draw{i}/{ours_name}"], primitives, op_names)))
        genotype = net.genotype()  # utils.parse on the sigmoids
        theirs = {"normal": dco_cell(genotype.normal), "reduce": dco_cell(genotype.reduce)}
        if not all(any(cell.values()) for cell in theirs.values()):
            unbuildable += 1
        elif theirs == our_cell:
            same += 1
        else:
            different += 1
    print(f"our zero op's gradient column: largest |value| {float(data['extra/none_gradient']):g} (the original "
          f"has no such op)")
    print(f"derived cells: {same} of {len(our_cells)} draws identical, {different} different, {unbuildable} "
          f"where the original keeps no node (its DCOCell could not be built; ours keeps node 2)")
    return results


def main(argv=None):
    args = build_parser().parse_args(argv)
    (run_ours if args.side == "ours" else run_original)(args)


if __name__ == "__main__":
    main()

"""β-DARTS's first-order alpha step side by side with the original's (Sunshine-Ye/Beta-DARTS: sota/cnn/model_search.py,
sota/cnn/spaces.py 's5' and optimizers/darts/architect.py), on identical weights, alphas and batch, at an epoch where
the beta-decay weight is not zero. Not part of the tests: the original needs torch, so the script runs twice, once in
each environment (bench/side_by_side.py):

    mkdir -p /tmp/beta-darts && git --git-dir=/work/.mirror/Sunshine-Ye+Beta-DARTS/repo archive HEAD \\
        | tar -x -C /tmp/beta-darts
    .venv/bin/python bench/beta_darts_original_step.py ours --out /tmp/beta_darts_step.npz
    /tmp/torchenv/bin/python bench/beta_darts_original_step.py original --repo /tmp/beta-darts \\
        --data /tmp/beta_darts_step.npz

`ours` builds --variant beta-darts (on the cpu kernels as a search runs, unless --cpu-kernels false) at a small size
(batch 8 of 3x16x16 N(0, 1) images, 10 classes, C 4, 5 cells, seed 0), spreads the alphas (0.5 * N(0, 1)), feeds --epoch
(default 40 of 50: the weight 50 * 40 / 100 = 20) and computes the first-order alpha step's loss (cross-entropy plus the
weighted penalty) and alpha gradient, with batch statistics. `original` copies that state into the original's Network
and runs Architect._backward_step(input_valid, target_valid, epoch) as shipped, once under torch's default dtype float64
and once under float32; it raises there (mlc_loss gets the list of the two alpha tensors, which torch.logsumexp
refuses), which is printed; it then runs it again with mlc_loss handed the two tensors stacked (the fix, see the
variant's docstring), and prints per quantity ||ours - original|| / ||original|| against each, the original in float32
against itself in float64, and a last JSON line (side_by_side.compare_with_original).
"""
import os
import sys
import types
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import side_by_side as sbs  # noqa: E402


def build_parser():
    parser, ours, _ = sbs.side_parser(__doc__, "--repo", "the Beta-DARTS repository, extracted", warm_steps=None)
    ours.add_argument("--epoch", type=int, default=40, help="the 0-based epoch of the step (its weight)")
    return parser


# ---------------------------------------------------------------- ours (nnabla)

def run_ours(args):
    sbs.project_on_path()
    from utils.search.variants.beta_darts import BetaDarts, BetaDartsSettings

    step = sbs.OursStep(args, lambda setup: BetaDarts(BetaDartsSettings(), setup))
    variant = step.variant
    variant.start_epoch(args.epoch, 50)
    loss, grads = step.first_order()
    penalty = float(variant.weight.d) * variant.epoch_values()["Beta-decay loss"]
    term = variant.alpha_penalty()  # the penalty's own alpha gradient, the variant's part of the step's
    for alpha in variant.alphas.values():
        alpha.grad.zero()
    term.forward()
    term.backward()
    penalty_grads = {name: alpha.g.copy() for name, alpha in variant.alphas.items()}
    step.restore()  # the pass moved the batch-norm statistics; the state as compared
    extra = {"loss": loss, "penalty": penalty, "epoch": args.epoch, **sbs.prefixed("grad", grads),
             **sbs.prefixed("penalty_grad", penalty_grads)}
    sbs.export_search_state(variant, step.batches, args.out, extra)
    print(f"epoch {args.epoch}: weight {float(variant.weight.d):g}, loss {loss:.6g} (penalty {penalty:.6g}); "
          f"written to {args.out}")


# ---------------------------------------------------------------- the original (torch)

def stub_data_modules():
    """optimizers/darts/utils.py imports torchvision and PIL for its data transforms, which the step never uses."""
    for name in ("torchvision", "torchvision.transforms", "torchvision.datasets", "torchvision.datasets.utils",
                 "PIL", "PIL.Image"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["PIL"].Image = sys.modules["PIL.Image"]
    sys.modules["torchvision.datasets"].utils = sys.modules["torchvision.datasets.utils"]


def without_none_op(path):
    """The original's DARTS space has no 'none': the file's state without our zero op's alpha column (the last),
    written next to it; returns its path. Our gradient of that column must be 0."""
    data = dict(np.load(path))
    names = [str(n) for n in data["meta/op_names"]]
    keep = [i for i, n in enumerate(names) if n != "none"]
    assert keep == list(range(len(names) - 1)), "the zero op is our last column"
    for key in [k for k in data if k.startswith(("arch/alpha_", "extra/grad/alpha_", "extra/penalty_grad/alpha_"))]:
        if key.startswith("extra/"):
            assert np.all(data[key][:, -1] == 0), f"{key}: 'none' is not searched, yet has a gradient"
        data[key] = data[key][:, keep]
    data["meta/op_names"] = np.array([names[i] for i in keep])
    out = path[:-len(".npz")] + "_without_none.npz" if path.endswith(".npz") else path + "_without_none.npz"
    np.savez(out, **data)
    return out


def run_original(args):
    torch = sbs.torch_for_original()
    stub_data_modules()
    model_search, spaces, architect = sbs.import_original(args.repo, "sota.cnn.model_search", "sota.cnn.spaces",
                                                          "optimizers.darts.architect")
    space = spaces.spaces_dict["s5"]
    primitives = space["primitives_normal"][0]
    path = without_none_op(args.data)
    data = dict(np.load(path))
    epoch = int(data["extra/epoch"])
    weight = 0 + 50 * epoch / 100  # _backward_step's weight, for the penalty's own lines

    def original():  # called under torch's default dtype float64, then float32
        torch.manual_seed(0)  # the initial weights are overwritten: only the alphas' draw needs a generator
        net = model_search.Network(*sbs.network_sizes(data), torch.nn.CrossEntropyLoss(), space)
        net.train()
        sbs.load_search_state(net, path, primitives)
        arch = architect.Architect(net, SimpleNamespace(momentum=0.9, weight_decay=3e-4, arch_learning_rate=3e-4,
                                                        arch_weight_decay=1e-3))
        x_val, y_val = sbs.torch_batch(data, "val")
        try:
            arch._backward_step(x_val, y_val, epoch)
            print("as shipped: Architect._backward_step ran")
        except TypeError as err:
            print(f"as shipped: Architect._backward_step raises TypeError: {err}")

        # The fix: mlc_loss handed the two alpha tensors stacked. The step's loss is what it calls backward() on.
        shipped_mlc_loss = architect.Architect.mlc_loss
        penalties, losses = [], []
        arch.mlc_loss = lambda params: (penalties.append(shipped_mlc_loss(arch, torch.stack(list(params))))
                                        or penalties[-1])
        shipped_backward = torch.Tensor.backward
        torch.Tensor.backward = (lambda self, *a, **k:
                                 losses.append(self.detach().clone()) or shipped_backward(self, *a, **k))
        try:
            arch.optimizer.zero_grad()
            arch._backward_step(x_val, y_val, epoch)
        finally:
            torch.Tensor.backward = shipped_backward

        theirs = sbs.original_alpha_gradients(net, primitives, data)
        arch.optimizer.zero_grad()
        (weight * arch.mlc_loss(net._arch_parameters)).backward()
        return {"loss (first order, penalty included)": losses[-1].item(),
                "weighted penalty": weight * penalties[0].item(), "alpha gradient (first order)": theirs,
                "the penalty's alpha gradient": sbs.original_alpha_gradients(net, primitives, data)}

    sbs.compare_with_original({"loss (first order, penalty included)": data["extra/loss"],
                               "weighted penalty": data["extra/penalty"],
                               "alpha gradient (first order)": sbs.our_arrays(data, "grad"),
                               "the penalty's alpha gradient": sbs.our_arrays(data, "penalty_grad")}, original)


def main(argv=None):
    args = build_parser().parse_args(argv)
    (run_ours if args.side == "ours" else run_original)(args)


if __name__ == "__main__":
    main()

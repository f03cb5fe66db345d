"""SDARTS's step side by side with the PyTorch original's (xiangning-chen/SmoothDARTS sota/cnn/model_search.py,
attacker/perturb.py, attacker/linf_sgd.py), on identical weights, batch-norm statistics, alphas, batches and
random draws. Not part of the tests: the original needs torch, which the project's venv does not have, so the
script runs twice, once in each environment (bench/side_by_side.py).

    # the original's tree (e.g. extracted at /tmp/sdarts_original), and a venv with torch and numpy
    mkdir -p /tmp/sdarts_original && git --git-dir=/work/.mirror/xiangning-chen+SmoothDARTS/repo archive HEAD \\
        sota attacker optimizers/darts | tar -x -C /tmp/sdarts_original
    .venv/bin/python bench/sdarts_original_step.py ours --out /tmp/sdarts_step.npz
    /tmp/torchenv/bin/python bench/sdarts_original_step.py original --sdarts /tmp/sdarts_original \\
        --data /tmp/sdarts_step.npz

`ours` builds our search network (on the cpu kernels as a search runs, unless --cpu-kernels false) at a small size
(batch 8 of 3x16x16 N(0, 1) images, 10 classes, C 4, 5 cells, seed 0), takes --warm-steps weight steps (so that the
batch-norm running statistics the attack reads are not the initial ones), spreads the alphas (0.5 * N(0, 1)), draws a
training and a validation batch and computes at epoch --epoch of --epochs (ε = 0.03 + 0.27 * epoch / epochs), each from
the same state: the first-order alpha step's loss and alpha gradient; SDARTS-RS's perturbed weights and the weight
step's loss on them; SDARTS-ADV's attacked weights, the eval-mode loss before and after the attack, and the weight
step's loss on the attacked weights. It saves them with the state and the U(−ε, ε) draw both variants started from.
`original` copies the state into the original's sota/cnn/model_search.Network (DARTS's space with 'none', the 8 ops of
ours: its own s5 space lacks 'none'), replays our draw where its Random_alpha and Linf_PGD_alpha call uniform_, runs
softmax_arch_parameters, Random_alpha / Linf_PGD_alpha and the weight-mode forward as its train_search.py does, once
under torch's default dtype float64 and once under float32, and prints per quantity ||ours - original|| / ||original||
against each, the original in float32 against itself in float64, and a last JSON line
(side_by_side.compare_with_original).

The original is imported from its own files; what it needs and this venv lacks is stubbed here, not edited
there: `.cuda()` does nothing, and torchvision and PIL (imported by optimizers/darts/utils.py for its data
helpers; the search network uses only its drop_path, at drop probability 0) are empty modules.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import side_by_side as sbs  # noqa: E402

LR, MOMENTUM, WEIGHT_DECAY, GRAD_CLIP = 0.025, 0.9, 3e-4, 5.0  # SmoothDARTS's sota/cnn/train_search.py
# quark0's PRIMITIVES ('none' first): DARTS's space as ours has it.
DARTS_PRIMITIVES = ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
                    "dil_conv_3x3", "dil_conv_5x5"]
CELLS = {"alphas_normal": "alpha_normal", "alphas_reduce": "alpha_reduction"}


def build_parser():
    parser, ours, _ = sbs.side_parser(__doc__, "--sdarts", "the root of the SmoothDARTS tree", warm_steps=2)
    ours.add_argument("--epoch", type=int, default=25, help="the epoch whose ε is used (0-based)")
    ours.add_argument("--epochs", type=int, default=50)
    return parser


# ---------------------------------------------------------------- ours (nnabla)

def run_ours(args):
    sbs.project_on_path()
    from models.graph import feed
    from models.search_network import ALPHA_NAMES
    from utils.search.variants.sdarts import SdartsAdv, SdartsAdvSettings

    # ADV is RS plus the attack: its clean_weights, noise and RS's perturb (its random start) are RS's.
    step = sbs.OursStep(args, lambda setup: SdartsAdv(SdartsAdvSettings(), setup), lr=LR, momentum=MOMENTUM,
                        weight_decay=WEIGHT_DECAY, grad_clip=GRAD_CLIP)
    variant, graphs, batches = step.variant, step.graphs, step.batches

    def weight_step_loss(weights):
        for name in ALPHA_NAMES:
            variant.perturbed[name].d = weights[name]
        feed(graphs.train, batches["train"])
        graphs.train.loss.forward()
        return float(graphs.train.loss.d)

    loss, grads = step.first_order()
    step.restore()  # every training-mode pass moves the batch-norm statistics: each quantity from one state
    variant.start_epoch(args.epoch, args.epochs)
    clean, noise = variant.clean_weights(), variant.noise()
    random = super(SdartsAdv, variant).perturb(clean, noise, batches["train"])
    rs_loss = weight_step_loss(random)
    step.restore()
    feed(variant.attack_graph(), batches["train"])
    before = variant.attack_loss(clean)
    attacked = variant.perturb(clean, noise, batches["train"])
    after = variant.attack_loss(attacked)
    adv_loss = weight_step_loss(attacked)
    step.restore()
    extra = {"loss": loss, "epsilon": variant.epsilon, "pgd_steps": variant.settings.pgd_steps,
             "rs_loss": rs_loss, "adv_loss_before": before, "adv_loss_after": after, "adv_loss": adv_loss,
             **sbs.prefixed("grad", grads), **sbs.prefixed("noise", noise), **sbs.prefixed("rs", random),
             **sbs.prefixed("adv", attacked)}
    sbs.export_search_state(variant, batches, args.out, extra)
    print(f"ε {variant.epsilon:.4g}: alpha-step loss {loss:.6g}, RS weight-step loss {rs_loss:.6g}, ADV eval loss "
          f"{before:.6g} -> {after:.6g}, ADV weight-step loss {adv_loss:.6g}; written to {args.out}")


# ---------------------------------------------------------------- the original (torch)

def run_original(args):
    torch = sbs.torch_for_original()
    sbs.stub_missing("torchvision", "torchvision.transforms", "torchvision.datasets", "torchvision.datasets.utils",
                     "PIL", "PIL.Image")
    datasets = sys.modules.get("torchvision.datasets")
    if datasets is not None and not hasattr(datasets, "VisionDataset"):  # subclassed by its data helpers
        datasets.VisionDataset = object
    model_search, perturb = sbs.import_original(args.sdarts, "sota.cnn.model_search", "attacker.perturb")
    data = dict(np.load(args.data))
    epsilon, steps = float(data["extra/epsilon"]), int(data["extra/pgd_steps"])
    space = {"primitives_normal": 14 * [DARTS_PRIMITIVES], "primitives_reduct": 14 * [DARTS_PRIMITIVES]}
    ops = [str(n) for n in data["meta/op_names"]]

    def theirs(tensors):
        return {ours_name: sbs.to_our_columns(tensors[i].detach().numpy().copy(), DARTS_PRIMITIVES, ops)
                for i, ours_name in enumerate(CELLS.values())}

    draws = []
    uniform = torch.Tensor.uniform_

    def replayed_uniform(self, low=0.0, high=1.0, **kwargs):
        """uniform_ as Random_alpha and Linf_PGD_alpha call it: our draw, in arch_parameters() order."""
        if not draws:
            return uniform(self, low, high, **kwargs)
        assert abs(high - epsilon) < 1e-6 and abs(low + epsilon) < 1e-6, (low, high)
        return self.copy_(torch.from_numpy(draws.pop(0)))

    def our_draw():
        return [np.ascontiguousarray(sbs.to_original_columns(data[f"extra/noise/{name}"], DARTS_PRIMITIVES, ops))
                for name in CELLS.values()]

    def original():  # called under torch's default dtype float64, then float32
        torch.manual_seed(0)  # the initial weights are overwritten: only the alphas' draw needs a generator
        net = model_search.Network(*sbs.network_sizes(data), torch.nn.CrossEntropyLoss(), space)

        def fresh():
            net.train()
            sbs.load_search_state(net, args.data, DARTS_PRIMITIVES)
            for p in net.arch_parameters():
                p.grad = None

        x_train, y_train = sbs.torch_batch(data, "train")
        x_val, y_val = sbs.torch_batch(data, "val")
        torch.Tensor.uniform_ = replayed_uniform
        try:
            fresh()
            loss = net._loss(x_val, y_val)  # Architect._backward_step (first order, unperturbed softmax)
            loss.backward()
            grads = theirs([p.grad for p in net.arch_parameters()])

            fresh()  # train_search.py's weight step under --perturb_alpha random
            net.softmax_arch_parameters()
            draws[:] = our_draw()
            perturb.Random_alpha(net, x_train, y_train, epsilon)
            rs_weights = theirs(net.arch_parameters())
            rs_loss = net._loss(x_train, y_train, updateType="weight")

            fresh()  # ... and under --perturb_alpha pgd_linf
            net.softmax_arch_parameters()
            net.eval()
            with torch.no_grad():
                before = net._loss(x_train, y_train, updateType="weight").item()
            net.train()
            draws[:] = our_draw()
            perturb.Linf_PGD_alpha(net, x_train, y_train, epsilon, steps=steps)
            adv_weights = theirs(net.arch_parameters())
            net.eval()
            with torch.no_grad():
                after = net._loss(x_train, y_train, updateType="weight").item()
            net.train()
            adv_loss = net._loss(x_train, y_train, updateType="weight")
        finally:
            torch.Tensor.uniform_ = uniform
        return {"alpha-step loss": loss.item(), "alpha gradient (first order)": grads,
                "RS perturbed weights": rs_weights, "RS weight-step loss": rs_loss.item(),
                "ADV eval loss before the attack": before, "ADV attacked weights": adv_weights,
                "ADV eval loss after the attack": after, "ADV weight-step loss": adv_loss.item()}

    e = lambda k: float(data[f"extra/{k}"])  # noqa: E731
    sbs.compare_with_original({"alpha-step loss": e("loss"),
                               "alpha gradient (first order)": sbs.our_arrays(data, "grad", CELLS.values()),
                               "RS perturbed weights": sbs.our_arrays(data, "rs", CELLS.values()),
                               "RS weight-step loss": e("rs_loss"),
                               "ADV eval loss before the attack": e("adv_loss_before"),
                               "ADV attacked weights": sbs.our_arrays(data, "adv", CELLS.values()),
                               "ADV eval loss after the attack": e("adv_loss_after"),
                               "ADV weight-step loss": e("adv_loss")}, original)


def main(argv=None):
    args = build_parser().parse_args(argv)
    (run_ours if args.side == "ours" else run_original)(args)


if __name__ == "__main__":
    main()

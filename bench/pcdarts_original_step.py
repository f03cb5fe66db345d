"""PC-DARTS's alpha step side by side with the PyTorch original's (yuhuixu1993/PC-DARTS, the top-level
model_search.py and architect.py), on identical weights, alphas, betas, momentum buffers and batches (the
harness: bench/side_by_side.py). Not part of the tests: the original needs torch, which the project's venv
does not have, so the script runs twice, once in each environment.

    mkdir -p /tmp/pcdarts_orig && git --git-dir=/work/.mirror/yuhuixu1993+PC-DARTS/repo/.git archive HEAD \\
        | tar -x -C /tmp/pcdarts_orig
    .venv/bin/python bench/pcdarts_original_step.py ours --out /tmp/pcdarts_step.npz
    /tmp/torchenv/bin/python bench/pcdarts_original_step.py original --pc-darts /tmp/pcdarts_orig \\
        --data /tmp/pcdarts_step.npz

`ours` builds our PC-DARTS search network (--variant pcdarts, K = 4, the original's fixed self.k; on the cpu
kernels as a search runs, unless --cpu-kernels false) at a small
size (batch 8 of 3x16x16 N(0, 1) images, 10 classes, C 8, 5 cells: reductions at cells 1 and 3, seed 0),
takes --warm-steps weight steps (SGD lr 0.1, momentum 0.9, weight decay 3e-4, clip 5: the original's
train_search.py) so that the momentum buffers the virtual step reads are not zero, spreads the alphas and
the betas (0.5 * N(0, 1), so that a wrong op column or edge changes the loss), draws a training and a
validation batch and computes, with batch statistics: the first-order alpha step's loss and the gradient of
the alphas and betas; the second-order gradient of our BilevelOptimizer and the validation loss at the
virtual step's weights w'. `original` copies that state into the original's Network (betas_normal,
betas_reduce) and a torch SGD's momentum buffers and computes the same with its code: net._loss + backward
(Architect._backward_step), Architect._compute_unrolled_model and Architect._backward_step_unrolled (its
--unrolled, off by default), once under torch's default dtype float64 and once under float32; it prints per
quantity ||ours - original|| / ||original|| against each, the original in float32 against itself in float64,
and a last JSON line (side_by_side.compare_with_original). About 100 s.

Measured (the defaults), ours against the original in float64: the loss 1.3e-8, the first-order alpha and
beta gradients 9.8e-7 and 1.5e-6, the loss at w' 4.7e-8, the second-order alpha and beta gradients 4.6e-6 and
1.1e-5; the original in float32 against float64: 1.3e-8, 4.9e-7, 9.6e-7, 4.7e-8, 4.2e-6, 3.5e-6.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import side_by_side as sbs  # noqa: E402

OPTIMIZER = dict(lr=0.1, momentum=0.9, weight_decay=3e-4, grad_clip=5.0)  # PC-DARTS's train_search.py
ARCH_LR = 6e-4
BETAS = {"betas_normal": "beta_normal", "betas_reduce": "beta_reduction"}  # the original's attribute: ours


def build_parser():
    parser, _, _ = sbs.side_parser(__doc__, "--pc-darts", "the PC-DARTS repository's files (top level)", channels=8)
    return parser


def run_ours(args):
    sbs.project_on_path()
    from utils.search.variants.pcdarts import Pcdarts, PcdartsSettings

    # the betas spread too: 1e-3 * N(0, 1) would weigh every edge of a node alike
    step = sbs.OursStep(args, lambda setup: Pcdarts(PcdartsSettings(pc_k=4), setup), second_order=True,
                        spread_extra=BETAS.values(), arch_lr=ARCH_LR, **OPTIMIZER)
    step.export_both_orders(args.out, OPTIMIZER, "alpha and beta gradient")


def run_original(args):
    sbs.torch_for_original()
    model_search, architect, genotypes = sbs.import_original(args.pc_darts, "model_search", "architect", "genotypes")
    # Architect._backward_step_unrolled is the original's --unrolled, off by default
    sbs.compare_both_orders(args.data, model_search, architect, genotypes.PRIMITIVES, ARCH_LR, extra_arch=BETAS)


def main(argv=None):
    args = build_parser().parse_args(argv)
    (run_ours if args.side == "ours" else run_original)(args)


if __name__ == "__main__":
    main()

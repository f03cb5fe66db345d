"""Plain DARTS's alpha step side by side with the PyTorch original's (quark0/darts cnn/model_search.py and
architect.py), on identical weights, alphas, momentum buffers and batches: the example of
bench/side_by_side.py. Not part of the tests: the original needs torch, which the project's venv does
not have, so the script runs twice, once in each environment.

    # quark0/darts's cnn/ folder (e.g. extracted at /tmp/quark0/cnn), and a venv with torch and numpy
    .venv/bin/python bench/darts_original_step.py ours --out /tmp/darts_step.npz
    /tmp/torchenv/bin/python bench/darts_original_step.py original --darts-cnn /tmp/quark0/cnn \\
        --data /tmp/darts_step.npz

`ours` builds our search network (SearchVariant, plain DARTS) at a small size (batch 8 of 3x16x16 N(0, 1)
images, 10 classes, C 4, 5 cells: reductions at cells 1 and 3, seed 0), takes --warm-steps weight steps
(SGD lr 0.025, momentum 0.9, weight decay 3e-4, clip 5: quark0's train_search.py) so that the momentum
buffers the virtual step reads are not zero, spreads the alphas (0.5 * N(0, 1), so that a wrong op
column changes the loss), draws a training and a validation batch and computes, with batch statistics:
the first-order alpha step's loss (the frozen-weights validation graph) and alpha gradient; the
second-order alpha gradient of our BilevelOptimizer (virtual step xi = the weight lr, with momentum and
weight decay; finite-difference Hessian term, eps = 0.01 / ||dL_val/dw'||) and the validation loss at
the virtual step's weights w'. It saves them with the state (bench/side_by_side.export_search_state).
`original` copies that state into quark0's Network and a torch SGD's momentum buffers, and computes the
same with the original's code: net._loss + backward (first order), Architect._compute_unrolled_model
(the loss at w') and Architect._backward_step_unrolled (second order), once under torch's default dtype
float64 and once under float32; it prints per quantity the relative difference ||ours - original|| /
||original|| against each, the original in float32 against itself in float64, and a last JSON line
(side_by_side.compare_with_original). It takes about 20 s.

Measured (the defaults, ours on the cpu kernels), ours against the original in float64 at seeds 0 / 1 / 2
(--seed 2 with --warm-steps 0, no momentum): the loss 1.9e-8 / 6.8e-8 / 1.0e-7, the first-order alpha
gradient 8.4e-7 / 9.6e-7 / 8.5e-7, the loss at w' 1.8e-8 / 5.7e-8 / 3.6e-8, the second-order alpha gradient
4.4e-6 / 4.4e-6 / 4.6e-6. The original in float32 against itself in float64: 6.4e-7 / 5.7e-7 / 5.8e-7 on the
first-order gradient; on the second-order one 1e-5 at seeds 1 and 2 but 0.48 at seed 0, where float32
puts one activation of its reduction cell 1 (edge 8, sep_conv_5x5, second ReLU) on the other side of the
kink: its weight gradient moves by 0.6% (4% on that op's depthwise weight), which the virtual step and
the finite-difference Hessian term amplify. Ours without the cpu kernels (--cpu-kernels false, nnabla's
one-pass batch norm) does the same at seed 0 in cell 0: 3.1e-3 on the first-order gradient, 0.45 on the
second-order one.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import side_by_side as sbs  # noqa: E402

OPTIMIZER = dict(lr=0.025, momentum=0.9, weight_decay=3e-4, grad_clip=5.0)  # quark0's train_search.py


def build_parser():
    parser, _, _ = sbs.side_parser(__doc__, "--darts-cnn", "the cnn/ folder of quark0/darts")
    return parser


def run_ours(args):
    sbs.project_on_path()
    from utils.search.variant import DartsSettings, SearchVariant
    step = sbs.OursStep(args, lambda setup: SearchVariant(DartsSettings(), setup), second_order=True, **OPTIMIZER)
    step.export_both_orders(args.out, OPTIMIZER)


def run_original(args):
    sbs.torch_for_original()
    model_search, architect, genotypes = sbs.import_original(args.darts_cnn, "model_search", "architect",
                                                             "genotypes")
    sbs.compare_both_orders(args.data, model_search, architect, genotypes.PRIMITIVES, arch_lr=3e-4)


def main(argv=None):
    args = build_parser().parse_args(argv)
    (run_ours if args.side == "ours" else run_original)(args)


if __name__ == "__main__":
    main()

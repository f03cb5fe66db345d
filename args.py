"""Command line and YAML configuration for darts_search.py and darts_train.py.

Flag names and short forms follow the NNabla DARTS example so its command
lines keep working. A run can also be described by a YAML file (--config);
values given on the command line override the file, and the resolved
settings are written next to the run's outputs by utils.run.config_file.write_config so the run
can be repeated with `--config <monitor dir>/config.yaml`.
"""

import argparse
import copy
import dataclasses
import math
import os
import shlex

import yaml

from ops.user_error import UserError
from utils.run.command_line import (ANY, AT_LEAST_ONE, FRACTION, NOT_NEGATIVE, OPEN_FRACTION, POSITIVE, UNIT,
                                    CommandLineParser, Range)
from utils.run_files import COMPARED_SEARCH, COMPARED_TRAINING, compared_run, found_architecture
from utils.search.variant import declared_settings, epoch_counted_settings
from utils.search.variants import VARIANTS
from utils.search.variants.dadarts import DADARTS_PRESET

SPACES = ("cnn", "recurrent")
IMAGE_DATASETS = ("cifar10", "cifar100", "fashion-mnist", "mnist", "digits")
TEXT_DATASETS = ("ptb", "wikitext-2", "pydoc")

# The data sets whose seeds (var_nas, DADARTS) augment with a random affine map (S-D2).
AFFINE_AUGMENT_DATASETS = ("mnist", "fashion-mnist")
# The flags whose value brings defaults for other flags (set_recipe), in the order they are applied: a
# --space's recipe may choose the --dataset (recurrent: ptb), whose own recipe then applies; a search
# --variant's (its original's batch size and learning rates, SearchVariant.recipe) comes last.
RECIPE_FLAGS = ("space", "dataset", "variant")

_TRUE_WORDS = ("true", "1", "yes")
_FALSE_WORDS = ("false", "0", "no")


class ConfigError(UserError):
    """A --config file that cannot be used; the message is one line."""


def str2bool(s):
    """True/False from true/false, yes/no, 1/0 in any case (or a bool)."""
    if isinstance(s, bool):
        return s
    word = str(s).strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    # ArgumentTypeError so argparse prints this message as is.
    raise argparse.ArgumentTypeError(
        f"not a boolean: {s!r} (use true/false, yes/no or 1/0)")


def expanded_path(path):
    return os.path.expanduser(path)


def seed_list(text):
    """"0,1,2" as [0, 1, 2]: the seeds of repeated runs, each run once."""
    try:
        seeds = [int(part) for part in str(text).split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integer seeds: {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"a seed is given twice in {text!r}")
    return seeds


def _add_bool(parser, flag, default, help):
    # nargs='?' with const=True: "--flag" alone means True, "--flag no" False.
    # (type=bool, as in the NNabla example, makes "--flag False" True.)
    parser.add_argument(flag, type=str2bool, nargs="?", const=True,
                        default=default, metavar="BOOL", help=help)


IMAGE_DATASETS = ("cifar10", "cifar100", "fashion-mnist", "mnist", "digits")


def _common_parser(description, datasets=IMAGE_DATASETS):
    parser = CommandLineParser(
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        # Prefix matching would let "--second" mean --second-order today
        # and become an error (or something else) when a flag is added.
        allow_abbrev=False)
    add = parser.add_argument

    add("--config", type=str, default=None, metavar="FILE.yaml",
        help="YAML file of settings (keys are the long flag names); "
             "flags given on the command line override it")
    add("--context", "-c", choices=["cpu", "cudnn"], default="cpu",
        help="NNabla extension to run on")
    add("--device-id", "-d", type=str, default="0",
        help="GPU to use; only used with -c cudnn")
    add("--type-config", "-t", choices=["float", "half"], default="float",
        help="computation type")
    _add_bool(parser, "--comm", False,
              "one process of `mpirun -n N` with -c cudnn, through nnabla's data-parallel communicator (NCCL): "
              "each rank trains on its shard of every --batch-size batch (the global batch) and on the GPU of its "
              "local rank; with --seeds, rank r runs the seeds r, r + N, ... on its own GPU")
    _add_bool(parser, "--scale-lr", False,
              "with --comm, data parallel: the weights' --lr and --lr-min times N, the linear scaling rule for a "
              "--batch-size grown N times (the alphas' --arch-lr stays)")
    _add_bool(parser, "--cpu-kernels", True,
              "with -c cpu in float: run the convolutions, batch norms, sums and pooling of the CNN, and the "
              "matrix products, gates and loss of the recurrent models, on the multi-threaded kernels of ops/ "
              "(built by `make kernels`); false: nnabla's single-threaded ones")
    add("--seed", type=int, default=0)
    add("--seeds", type=seed_list, default=None, metavar="S1,S2,...",
        help="one run per seed, one after another, into <monitor-path>/seed_<s>/ "
             "(YAML: a list); replaces --seed")

    add("--space", choices=SPACES, default="cnn",
        help="what is searched or trained: CNN cells on images, or a recurrent cell on text "
             "(which changes the defaults of the shared flags to the paper's recurrent recipe)")
    add("--dataset", choices=datasets + TEXT_DATASETS, default="cifar10",
        help="image data sets for --space cnn, text corpora for --space recurrent; some change the defaults of "
             "other flags (imagenet, in darts_train.py: quark0's ImageNet recipe; mnist, fashion-mnist: "
             "--augment affine)")
    add("--data-dir", type=expanded_path, default="~/nnabla_data",
        help="where data sets are downloaded and cached")
    add("--cutout-length", type=int, default=16,
        help="side of the square cutout mask")
    add("--augment", choices=["darts", "affine"], default="darts",
        help="training augmentation: darts (pad, crop, horizontal flip) or affine (the seeds' random "
             "affine, plus a vertical flip on fashion-mnist); mnist and fashion-mnist default to affine")

    add("--epoch", "-e", type=int)
    add("--batch-size", "-b", type=int)
    add("--num-cells", type=int, help="number of cells in the network")
    add("--output-filter", type=int, default=16,
        help="initial channel count C")

    add("--lr", type=float, default=0.025,
        help="initial learning rate of the network weights")
    add("--lr-min", type=float, help="learning rate at the end of the "
                                      "cosine schedule")
    add("--momentum", type=float, default=0.9)
    add("--weight-decay", type=float, default=3e-4)
    add("--grad-clip", type=float, default=5.0,
        help="max global norm of the weight gradients")

    add("--monitor-path", "-m", type=str,
        help="directory for logs, checkpoints and config.yaml")
    add("--model-save-path", "-o", type=str, default=None,
        help="where parameters and checkpoints are saved (default: the monitor path)")
    _add_bool(parser, "--resume", False,
              "continue from the last checkpoint in the monitor path")
    _add_bool(parser, "--force-resume", False,
              "with --resume: accept settings that differ from the run's saved config.yaml (each one named in the "
              "log); the run directory's other checks still apply")
    _add_bool(parser, "--restart", False,
              "start over in a monitor path that holds a run: the old run is moved to <monitor-path>.previous-<N> "
              "(never deleted) once the new run's setup has succeeded")
    add("--progress-every", type=int, default=50, metavar="N",
        help="when stderr is not a terminal, print a progress line every N steps")
    _add_recurrent_flags(parser)
    only_in_space(parser, "cnn", "seeds", "cutout_length", "augment", "num_cells", "output_filter",
                  "lr_min", "momentum", "comm", "scale_lr")
    for dataset in AFFINE_AUGMENT_DATASETS:
        set_recipe(parser, "dataset", dataset, augment="affine")
    run_only(parser, "epoch", "lr", "lr_min", "momentum", "weight_decay", "grad_clip", "resume", "force_resume",
             "restart", "cutout_length", "augment", "progress_every", "seed", "seeds", "dropout", "dropouth",
             "dropoutx", "dropouti", "dropoute", "tar_beta", "comm", "scale_lr")
    return parser


def instead_of_the_run(parser, mode, *own):
    """Marks `mode` as a flag that does something instead of the script's run (its training or search), and
    `own` as flags only that mode reads."""
    if not hasattr(parser, "mode_flags"):
        parser.mode_flags = {}
    parser.mode_flags[mode] = own


def run_only(parser, *dests):
    """Marks flags that only the script's run reads (once or per --seeds): given on the command line with a
    mode of instead_of_the_run, one is an error. (Keys of a --config file are not: a run's config.yaml may
    describe the network a mode reads.)"""
    parser.run_only = getattr(parser, "run_only", ()) + dests


def _outside_the_mode(parser, args):
    """{dest: why} of the flags that the mode args selects (or the run) does not read."""
    modes = getattr(parser, "mode_flags", {})
    chosen = [mode for mode in modes if getattr(args, mode, None) is not None and getattr(args, mode) is not False]
    why = {dest: f"is read only with {_flag(mode)}" for mode, own in modes.items() if mode not in chosen
           for dest in own}
    if chosen:
        why.update({dest: f"does not apply to {_flag(chosen[0])}: it sets the script's run"
                    for dest in getattr(parser, "run_only", ())})
    return why


def only_in_space(parser, space, *dests):
    """Marks flags that only `space` uses: under the other space, giving one is an error."""
    if not hasattr(parser, "flag_spaces"):
        parser.flag_spaces = {}
    parser.flag_spaces.update({dest: space for dest in dests})


def _add_recurrent_flags(parser):
    group = parser.recurrent_group = parser.add_argument_group("recurrent cells (--space recurrent)")
    add = group.add_argument
    add("--nhid", type=int, help="embedding and hidden size (emsize = nhid = nhidlast)")
    add("--bptt", type=int, default=35, help="base sequence length of a batch")
    add("--eval-batch-size", type=int, default=10, help="batch size of validation")
    add("--dropout", type=float, default=0.75, help="locked dropout on the cell's output")
    add("--dropouth", type=float, default=0.25, help="dropout on the states entering every node (m_h)")
    add("--dropoutx", type=float, default=0.75, help="dropout on the cell's input (m_x)")
    add("--dropouti", type=float, default=0.2, help="locked dropout on the embedding's output")
    add("--dropoute", type=float, help="dropout of whole embedding rows")
    add("--tar-beta", type=float, default=1e-3, help="temporal activation regularisation weight")
    only_in_space(parser, "recurrent", *(action.dest for action in group._group_actions))


def set_recipe(parser, flag, value, **defaults):
    """Defaults of other flags when `flag` (one of RECIPE_FLAGS) is `value`: the recipe of a --space, a
    --dataset or a --variant. A value from the command line or --config wins over the recipe, the recipe over
    the parser's defaults (_apply_recipes)."""
    if flag not in RECIPE_FLAGS:
        raise ValueError(f"a recipe is keyed on one of {RECIPE_FLAGS}, not {flag!r}")
    if not hasattr(parser, "recipes"):
        parser.recipes = {}
    parser.recipes.setdefault((flag, value), {}).update(defaults)


def _apply_recipes(parser, args, given):
    """The recipes of the chosen --space, then of the --dataset (which the space's may have chosen), then of
    the --variant, for every flag not in `given`."""
    recipes = getattr(parser, "recipes", {})
    for flag in RECIPE_FLAGS:
        for dest, value in recipes.get((flag, getattr(args, flag, None)), {}).items():
            if dest not in given:
                setattr(args, dest, value)


def search_parser():
    """Parser for darts_search.py (architecture search)."""
    parser = _common_parser("DARTS architecture search.")
    add = parser.add_argument
    add("--model-arch-name", type=str, default=None,
        help="file the found architecture is written to (default: DARTS_arch.json in --monitor-path; --space "
             "recurrent: DARTS_rnn_arch.json)")
    _add_bool(parser, "--cutout", False, "apply cutout to training images")
    _add_bool(parser, "--second-order", False,
              "use the second order approximation for the architecture "
              "gradient")
    add("--train-portion", type=float, default=0.5,
        help="share of the training set used for the weights; the rest "
             "trains the architecture")
    add("--arch-lr", type=float, default=3e-4)
    add("--arch-beta1", type=float, default=0.5)
    add("--arch-beta2", type=float, default=0.999)
    add("--arch-weight-decay", type=float, default=1e-3)
    _add_bool(parser, "--draw-every-epoch", False,
              "draw the cells found after every epoch")
    add("--finetune-epochs", type=int, default=0, metavar="N",
        help="after the search, train the hard-discretized network's weights for N epochs (alphas fixed) "
             "and report its validation error in search_summary.json")
    add("--select-epochs", type=int, default=None, metavar="N",
        help="with --seeds: train each search's cell for N epochs on a held-out "
             "split of the training set and keep the best as --model-arch-name")
    add("--alpha-epoch", type=int, default=None, metavar="N",
        help="do not search: derive the architecture of epoch N from "
             "<monitor-path>/alpha_history.npz and write it to "
             "<monitor-path>/arch_alpha_epoch_<NNN>.json (0 = the initial alphas)")
    add("--extract-lambda", type=float, default=None, metavar="LAMBDA_TILDE",
        help="do not search: from the checkpoint of a finished --variant complexity search, write the cell "
             "at the normalised lambda (0..1) to <monitor-path>/arch_lambda_<LAMBDA_TILDE>_<mode>.json")
    # One flag for all of the seed's step rather than one per behaviour: reproducing its numbers needs them
    # together, and a half-original step is no published setting.
    _add_bool(parser.recurrent_group, "--original-unrolled-step", False,
              "with --second-order: the seed's second-order step as it runs, to reproduce its numbers: its virtual "
              "step leaves the tied embedding/decoder matrix unmoved, every pass draws new dropout masks, and "
              "the implicit term takes the uncapped clipping factor (README: Recurrent cells)")
    only_in_space(parser, "recurrent", "original_unrolled_step")
    _add_variants(parser)
    only_in_space(parser, "cnn", "cutout", "train_portion", "draw_every_epoch", "finetune_epochs", "select_epochs",
                  "extract_lambda")
    instead_of_the_run(parser, "alpha_epoch")
    instead_of_the_run(parser, "extract_lambda")
    # --model-arch-name is where the search writes its cell: the modes write files of their own names.
    run_only(parser, "dataset", "data_dir", "batch_size", "cpu_kernels", "cutout", "second_order", "train_portion",
             "arch_lr", "arch_beta1", "arch_beta2", "arch_weight_decay", "draw_every_epoch", "finetune_epochs",
             "select_epochs", "nhid", "bptt", "eval_batch_size", "original_unrolled_step", "model_arch_name")
    parser.set_defaults(epoch=50, batch_size=64, num_cells=8, lr_min=0.001,
                        monitor_path="search.monitor", nhid=300, dropoute=0.0)
    # quark0's rnn/train_search.py.
    set_recipe(parser, "space", "recurrent", dataset="ptb", epoch=50, batch_size=256, lr=20.0,
               weight_decay=5e-7, grad_clip=0.25, arch_lr=3e-3, arch_beta1=0.9)
    return parser


def _add_variants(parser):
    """--variant and each registered variant's flag group, generated from its Settings (utils.search.variant)."""
    parser.add_argument("--variant", choices=tuple(VARIANTS), default="darts",
                        help="the search variant: how the alphas become each pass's mixing weights, what the "
                             "steps train and validate, how the cell is derived")
    parser.variant_flags = {}  # dest -> the variant that declares it
    for variant in VARIANTS.values():
        if variant.recipe:
            set_recipe(parser, "variant", variant.name, **variant.recipe)
        group = parser.add_argument_group(variant.title)
        for field in declared_settings(variant):
            parser.variant_flags[field.name] = variant.name
            flag, meta = "--" + field.name.replace("_", "-"), field.metadata
            if isinstance(field.default, bool):
                _add_bool(group, flag, field.default, meta["help"])
            else:
                group.add_argument(flag, type=type(field.default), default=field.default, choices=meta["choices"],
                                   metavar=meta["metavar"], help=meta["help"])
    presets = parser.add_argument_group("presets")
    _add_bool(presets, "--dadarts", False,
              "--variant dadarts with the DADARTS README's settings: --dal-on-alphas --topk-on-alphas "
              "--linear-temperature-increase --hd-on-weights (with --linear-temperature-max 200) and "
              "--second-order, each unless given")
    _add_bool(presets, "--complexity-control", False, "--variant complexity")
    parser.variant_flags.update(dadarts="dadarts", complexity_control="complexity", extract_lambda="complexity")
    only_in_space(parser, "cnn", "variant", "dadarts", "complexity_control", *parser.variant_flags)


def train_parser():
    """Parser for darts_train.py (training a found architecture)."""
    parser = _common_parser("Train a DARTS architecture from scratch.", IMAGE_DATASETS + ("imagenet",))
    add = parser.add_argument
    add("--model-arch-name", type=str, default="DARTS_arch.json",
        help="architecture JSON file, a genotype string, or a named cell: "
             "DARTS_V1, DARTS_V2 (= DARTS), BANANAS, ASHA200, NASNet, "
             "AmoebaNet")
    add("--additional-filters-on-retrain", "-f", type=int, default=20,
        help="channels added to --output-filter: C = output-filter + this")
    _add_bool(parser, "--cutout", True, "apply cutout to training images")
    _add_bool(parser, "--auxiliary", True, "train with the auxiliary head")
    add("--auxiliary-weight", type=float, default=0.4)
    add("--drop-path-prob", type=float, default=0.2)
    add("--label-smoothing", type=float, default=0.0,
        help="label smoothing of the training losses (the ImageNet recipe: 0.1)")
    add("--lr-schedule", choices=["cosine", "exponential"], default="cosine",
        help="cosine from --lr to --lr-min, or --lr * --lr-decay ** epoch (the ImageNet recipe)")
    add("--lr-decay", type=float, default=0.97, help="per-epoch factor of --lr-schedule exponential")
    add("--image-size", type=int, default=224,
        help="imagenet: side of the training crops and of the centre crop evaluated")
    add("--num-workers", type=int, default=2,
        help="imagenet: processes decoding JPEG files (0: in the main process)")
    add("--save-interval", type=int, default=10,
        help="save parameters every N epochs")
    add("--drop-path-delta", type=float, default=None, metavar="D",
        help="drop-path probability D * epoch (var_nas' schedule) instead of --drop-path-prob * epoch / epochs")
    add("--cell-bn", choices=["affine", "none"], default="affine",
        help="none: the cells' batch normalisations learn no scale and shift (var_nas' one-hot fine-tuning)")
    _add_bool(parser, "--pool-bn", False, "pooling edges are followed by a batch normalisation (var_nas' PoolBN)")
    add("--keep-last", type=int, default=None, metavar="K",
        help="keep only the K latest params_epoch_NNN.h5 files (default: all)")
    _add_bool(parser, "--summary", False, "print a summary of the network")
    add("--evaluate", type=str, default=None, metavar="PARAMS.h5",
        help="only evaluate these parameters on the test set")
    add("--train-portion", type=float, default=None, metavar="P",
        help="train on this share of the training set and validate on the "
             "rest every epoch; best_params.h5 is chosen by validation error")
    add("--export", type=str, default=None, metavar="PARAMS.h5",
        help="only write the inference network with these parameters to "
             "<monitor-path>/model.<format>")
    add("--format", choices=["nnp", "onnx"], default="nnp",
        help="file format of --export")
    add("--import-weights", type=str, default=None, metavar="MODEL.pt",
        help="only convert a PyTorch checkpoint of quark0/darts' network (a state dict, a training checkpoint or "
             "a whole pickled model; read without torch) to <monitor-path>/imported_params.h5 for --evaluate, "
             "--export, --init-params; the network is the one the other flags describe")
    add("--init-params", type=str, default=None, metavar="PARAMS.h5",
        help="fine-tune: start the training from these parameters (--import-weights' imported_params.h5, a "
             "final_params.h5 or params_epoch_NNN.h5 of the same network: every parameter, batch-norm statistics "
             "included) instead of random ones; the optimiser starts afresh; --resume continues from the run's "
             "own checkpoint without reading this file again")
    add("--nonmono", type=int, default=5,
        help="recurrent: switch to averaged SGD when the validation loss is worse than the best of "
             "all but the last NONMONO epochs")
    only_in_space(parser, "cnn", "additional_filters_on_retrain", "cutout", "auxiliary", "auxiliary_weight",
                  "drop_path_prob", "label_smoothing", "lr_schedule", "lr_decay", "image_size", "num_workers",
                  "save_interval", "drop_path_delta", "cell_bn", "pool_bn", "keep_last", "train_portion", "export",
                  "format")
    only_in_space(parser, "recurrent", "nonmono")
    instead_of_the_run(parser, "summary")
    instead_of_the_run(parser, "evaluate")
    instead_of_the_run(parser, "export", "format")
    instead_of_the_run(parser, "import_weights")
    run_only(parser, "model_save_path", "cutout", "drop_path_prob", "drop_path_delta", "label_smoothing", "lr_schedule",
             "lr_decay", "save_interval", "keep_last", "train_portion", "nonmono", "init_params")
    parser.set_defaults(epoch=600, batch_size=96, num_cells=20, lr_min=0.0,
                        monitor_path="result.monitor", nhid=850, dropoute=0.1)
    # quark0's rnn/train.py; its epochs (8000) are an upper limit.
    set_recipe(parser, "space", "recurrent", dataset="ptb", epoch=8000, batch_size=64, lr=20.0,
               weight_decay=8e-7, grad_clip=0.25, model_arch_name="DARTS_rnn_arch.json")
    # quark0's cnn/train_imagenet.py, run with --auxiliary as its README does: C = 48 + 0, lr 0.1 times 0.97 at
    # every epoch (exponential_lr), label smoothing 0.1, no drop path; and no cutout, which it does not have.
    set_recipe(parser, "dataset", "imagenet", num_cells=14, output_filter=48, additional_filters_on_retrain=0,
               batch_size=128, epoch=250, lr=0.1, lr_schedule="exponential", lr_decay=0.97, momentum=0.9,
               weight_decay=3e-5, grad_clip=5.0, label_smoothing=0.1, auxiliary=True, auxiliary_weight=0.4,
               drop_path_prob=0.0, cutout=False)
    return parser


def variant_list(text):
    """"darts,dadarts" as ["darts", "dadarts"]: the variants darts_compare.py compares, each a registered
    --variant (dadarts: the --dadarts preset), each once."""
    names = [part.strip() for part in str(text).split(",")]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown variant {unknown[0]!r} in {text!r} "
                                         f"(registered: {', '.join(VARIANTS)})")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a variant is given twice in {text!r}")
    return names


# darts_compare.py compares every registered variant but these by default: a complexity-controlled search learns
# cells over a range of complexity budgets, not one cell (--variants complexity compares its cell at λ̃ = 0).
NOT_COMPARED_BY_DEFAULT = ("complexity",)
# What darts_compare.py gives every search alike, as darts_search.py's flags: the budget and the optimisers. A
# variant's recipe for any other shared flag is replaced by plain DARTS's value (compared_runs).
COMPARISON_SEARCH_FLAGS = {"epoch": "search_epochs", "batch_size": "batch_size", "num_cells": "search_cells",
                           "output_filter": "search_channels", "lr": "lr", "arch_lr": "arch_lr"}


def compare_parser():
    """Parser for darts_compare.py (the search variants, each searched and its cell trained at one budget)."""
    parser = CommandLineParser(
        description="Compare search variants at one budget: for each variant and seed a search, its cell trained "
                    "briefly from scratch and tested; then comparison.json, comparison.md and comparison.png.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter, allow_abbrev=False,
        ranges={"seeds": SEED_RANGE, "search_epochs": AT_LEAST_ONE, "train_epochs": AT_LEAST_ONE,
                "batch_size": AT_LEAST_ONE, "search_cells": AT_LEAST_ONE, "search_channels": AT_LEAST_ONE,
                "train_cells": AT_LEAST_ONE, "train_channels": AT_LEAST_ONE, "lr": POSITIVE, "arch_lr": POSITIVE,
                "progress_every": AT_LEAST_ONE})
    add = parser.add_argument
    add("--config", type=str, default=None, metavar="FILE.yaml",
        help="YAML file of settings (keys are the long flag names); flags given on the command line override it")
    add("--context", "-c", choices=["cpu", "cudnn"], default="cpu", help="NNabla extension to run on")
    add("--device-id", "-d", type=str, default="0", help="GPU to use; only used with -c cudnn")
    add("--dataset", choices=IMAGE_DATASETS, default="digits")
    add("--data-dir", type=expanded_path, default="~/nnabla_data", help="where data sets are downloaded and cached")
    add("--variants", type=variant_list, metavar="V1,V2,...",
        default=[name for name in VARIANTS if name not in NOT_COMPARED_BY_DEFAULT],
        help="the variants compared (YAML: a list); dadarts runs the --dadarts preset")
    add("--seeds", type=seed_list, default=[0, 1, 2], metavar="S1,S2,...",
        help="one search and one training per variant and seed (YAML: a list)")
    add("--variant-flags", type=str, default="", metavar="'V: --flag value; ...'",
        help="a variant's own settings for its searches (its flags, --second-order, --derivation), e.g. "
             "'dadarts: --second-order false'; the budget and the optimisers stay the comparison's")
    budget = parser.add_argument_group("the budget, the same for every variant")
    add = budget.add_argument
    add("--search-epochs", type=int, default=4)
    add("--train-epochs", type=int, default=8)
    add("--batch-size", "-b", type=int, default=64, help="of the searches and the trainings")
    add("--search-cells", type=int, default=3, help="cells of the search network")
    add("--search-channels", type=int, default=8, help="initial channel count C of the search network")
    add("--train-cells", type=int, default=5, help="cells of the network trained from the found cell")
    add("--train-channels", type=int, default=16, help="its initial channel count C")
    add("--lr", type=float, default=0.025, help="the weights' initial learning rate, searches and trainings")
    add("--arch-lr", type=float, default=3e-2,
        help="the alphas' learning rate (DARTS's 3e-4 is sized for 20,000 alpha steps; a short search takes about "
             "a hundred)")
    add = parser.add_argument
    add("--monitor-path", "-m", type=str, default="runs/compare",
        help="directory of the comparison: <variant>/seed_<s>/search and train, and its three outputs")
    _add_bool(parser, "--resume", False, "continue an interrupted comparison: finished runs are kept, an interrupted "
                                         "one resumes from its last checkpoint")
    _add_bool(parser, "--restart", False, "start over: the earlier comparison is moved to <monitor-path>.previous-<N>")
    add("--progress-every", type=int, default=50, metavar="N",
        help="when stderr is not a terminal, print a progress line every N steps")
    return parser


def parse_compare_args(parser, argv=None):
    """darts_compare.py's settings (command line, then --config, then the defaults); a bad one exits 2 with one line,
    and so does a run of the comparison whose command line darts_search.py or darts_train.py would refuse."""
    args = _parse(parser, argv)[0]
    if args.resume and args.restart:
        parser.error("--restart and --resume exclude each other: --resume continues the comparison in --monitor-path, "
                     "--restart moves it aside and starts over")
    compared_runs(parser, args)
    return args


def variant_flags(parser, args):
    """{variant: [flag, value, ...]} of --variant-flags 'V: --flag value; ...': each a compared variant given once,
    with flags that are its own settings (its Settings' fields, --second-order; dadarts: the preset's switches)."""
    search, flags = search_parser(), {}
    for part in filter(str.strip, args.variant_flags.split(";")):
        name, colon, text = part.partition(":")
        name = name.strip()
        if not colon or name not in args.variants:
            parser.error(f"--variant-flags: {part.strip()!r} must be '<variant>: <flags>' for a variant of --variants "
                         f"({', '.join(args.variants)})")
        if name in flags:
            parser.error(f"--variant-flags gives {name} twice")
        own = {f.name for f in dataclasses.fields(VARIANTS[name].Settings)} | {"second_order"}
        own |= set(DADARTS_PRESET) if name == "dadarts" else set()
        for token in shlex.split(text):
            action = search._option_string_actions.get(token.split("=")[0]) if token.startswith("-") else None
            if token.startswith("-") and (action is None or action.dest not in own):
                parser.error(f"--variant-flags {name}: {token.split('=')[0]} is not a setting of its own (the budget, "
                             f"the optimisers and the data are the comparison's, the same for every variant)")
        flags[name] = shlex.split(text)
    return flags


def _flag_value(value):
    return str(value).lower() if isinstance(value, bool) else str(value)


def compared_runs(parser, args):
    """[(variant, seed, the search's settings, the training's settings)] of a comparison, each parsed as
    darts_search.py and darts_train.py parse their command lines (a refused one is parser.error, naming the run).

    Every search gets COMPARISON_SEARCH_FLAGS from the comparison, plain DARTS's value of any other shared flag
    that its variant's recipe sets, and its settings counted in epochs of its original's search (PC-DARTS's
    warm-up, ...: utils.search.variant.epoch_counted_settings) scaled to the search; every training the same flags
    but the variant's cell. --variant-flags comes last, so it wins."""
    own_flags = variant_flags(parser, args)
    place = ["--dataset", args.dataset, "--data-dir", args.data_dir, "--context", args.context,
             "--progress-every", str(args.progress_every)] + (["--device-id", args.device_id]
                                                              if args.context == "cudnn" else [])
    plain = search_parser()
    plain_defaults = argparse.Namespace(space="cnn", dataset=args.dataset, variant="darts")
    runs = []
    for variant in args.variants:
        recipe = {dest: _run_default(plain, plain_defaults, dest) for dest in VARIANTS[variant].recipe
                  if dest not in COMPARISON_SEARCH_FLAGS}
        budget = {**recipe, **{dest: getattr(args, mine) for dest, mine in COMPARISON_SEARCH_FLAGS.items()}}
        chosen = ["--dadarts"] if variant == "dadarts" else ["--variant", variant]
        Settings = VARIANTS[variant].Settings
        defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
        scaled = [item for name, epochs in epoch_counted_settings(Settings).items()
                  for item in (_flag(name), str(round(defaults[name] * args.search_epochs / epochs)))]
        for seed in args.seeds:
            search_dir = os.path.join(args.monitor_path, compared_run(variant, seed, COMPARED_SEARCH))
            train_dir = os.path.join(args.monitor_path, compared_run(variant, seed, COMPARED_TRAINING))
            common = place + ["--seed", str(seed), "--batch-size", str(args.batch_size), "--lr", str(args.lr)] + (
                ["--resume"] if args.resume else [])
            search_argv = chosen + common + [item for dest, value in budget.items() if dest not in ("batch_size", "lr")
                                             for item in (_flag(dest), _flag_value(value))]
            search_argv += scaled + own_flags.get(variant, []) + ["--monitor-path", search_dir]
            train_argv = common + ["--epoch", str(args.train_epochs), "--num-cells", str(args.train_cells),
                                   "--output-filter", str(args.train_channels), "--additional-filters-on-retrain", "0",
                                   "--model-arch-name", found_architecture(search_dir, None), "--monitor-path",
                                   train_dir]
            runs.append((variant, seed, _parse_run(parser, search_parser(), search_argv, f"the {variant} search of "
                                                                                            f"seed {seed}"),
                         _parse_run(parser, train_parser(), train_argv, f"the {variant} training of seed {seed}")))
    return runs


def _parse_run(parser, run_parser, argv, run):
    """parse_args of `run_parser` whose refusal is `parser`'s one line, naming the run."""
    run_parser.error = lambda message: parser.error(f"{run}: {message}")
    return parse_args(run_parser, argv)


def _config_actions(parser):
    """Map each flag's dest to its action; these are the allowed YAML keys."""
    actions = {}
    for action in parser._actions:
        if action.dest in ("help", "config"):
            continue
        actions[action.dest] = action
    return actions


def _convert(action, key, value, path):
    """Check one YAML value the way argparse checks a command line value."""
    where = f"config {path}: '{key}'"
    if value is None:
        # Only settings whose default is None (e.g. model_save_path) may be
        # null, so a saved config with those keys loads again.
        if action.default is None:
            return None
        raise ConfigError(f"{where}: must not be null")
    if isinstance(value, list) and action.type in (seed_list, variant_list):
        value = ",".join(map(str, value))  # a YAML list of seeds (variants) reads as the flag's "0,1,2"
    if isinstance(value, (list, dict)):
        raise ConfigError(f"{where}: expected a single value, got {value!r}")
    if action.type is str2bool:
        try:
            return str2bool(value)
        except argparse.ArgumentTypeError as err:
            raise ConfigError(f"{where}: {err}") from None
    if isinstance(value, bool):
        # str(True) would pass as a path or a choice; that is a mistake.
        expected = action.type.__name__ if action.type else "str"
        raise ConfigError(f"{where}: expected a {expected}, got {value!r}")
    # Through str so that YAML floats do not silently become ints (int(3.7)),
    # and so that "3e-4", which YAML reads as a string, becomes a float.
    converted = str(value)
    if action.type is not None:
        try:
            converted = action.type(converted)
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            raise ConfigError(f"{where}: invalid {action.type.__name__} "
                              f"value: {value!r}") from None
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ConfigError(f"{where}: invalid choice: {value!r} "
                          f"(choose from {choices})")
    return converted


def _load_config(parser, path):
    """Read a YAML config into {dest: value}, validated against parser."""
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: "
                          f"{err.strerror}") from None
    except UnicodeDecodeError as err:  # random bytes, or a binary file given by mistake
        raise ConfigError(f"config file {path} is not UTF-8 text "
                          f"({err.reason} at byte {err.start})") from None
    except yaml.YAMLError as err:
        one_line = " ".join(str(err).split())
        raise ConfigError(f"broken YAML in config file {path}: "
                          f"{one_line}") from None
    if data is None:  # empty file, or comments only
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of flag "
                          f"names to values, got {type(data).__name__}")

    actions = _config_actions(parser)
    values = {}
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        if dest == "config":
            raise ConfigError(f"config {path}: '{key}' cannot be set inside "
                              f"a config file")
        if dest not in actions:
            raise ConfigError(f"config {path}: unknown key '{key}'")
        if dest in values:
            raise ConfigError(f"config {path}: '{key}' is given twice "
                              f"(as '_' and '-' spellings)")
        values[dest] = _convert(actions[dest], key, value, path)
    return values


# The range of every numeric flag of the two parsers (a variant's flags declare theirs in its Settings).
# The seeds are numpy's (np.random.seed takes 0 to 2**32 - 1).
SEED_RANGE = Range(0, 2**32 - 1)
FLAG_RANGES = {
    "seed": SEED_RANGE, "epoch": AT_LEAST_ONE, "batch_size": AT_LEAST_ONE, "num_cells": AT_LEAST_ONE,
    "output_filter": AT_LEAST_ONE, "cutout_length": NOT_NEGATIVE, "progress_every": AT_LEAST_ONE,
    "lr": POSITIVE, "lr_min": NOT_NEGATIVE, "momentum": FRACTION, "weight_decay": NOT_NEGATIVE, "grad_clip": POSITIVE,
    # --space recurrent
    "nhid": AT_LEAST_ONE, "bptt": Range(2), "eval_batch_size": AT_LEAST_ONE, "dropout": FRACTION, "dropouth": FRACTION,
    "dropoutx": FRACTION, "dropouti": FRACTION, "dropoute": FRACTION, "tar_beta": NOT_NEGATIVE, "nonmono": AT_LEAST_ONE,
    # darts_search.py
    "train_portion": OPEN_FRACTION, "arch_lr": POSITIVE, "arch_beta1": FRACTION, "arch_beta2": FRACTION,
    "arch_weight_decay": NOT_NEGATIVE, "finetune_epochs": NOT_NEGATIVE, "select_epochs": AT_LEAST_ONE,
    "alpha_epoch": NOT_NEGATIVE, "extract_lambda": UNIT,
    # darts_train.py (its --output-filter + --additional-filters-on-retrain is checked as a sum)
    "additional_filters_on_retrain": ANY, "auxiliary_weight": NOT_NEGATIVE, "drop_path_prob": FRACTION,
    "label_smoothing": FRACTION, "lr_decay": Range(0, 1, low_open=True), "image_size": Range(32),
    "num_workers": NOT_NEGATIVE, "save_interval": AT_LEAST_ONE, "drop_path_delta": NOT_NEGATIVE,
    "keep_last": AT_LEAST_ONE,
}


def _range_problems(args):
    """Values of the right type that still make no sense; each is one message. Whether a flag applies to
    the run at all is _inapplicable's business: here every flag the namespace holds has its range."""
    settings = vars(args)
    problems = [f"{_flag(dest)} must be a finite number, not {value}" for dest, value in settings.items()
                if isinstance(value, float) and not math.isfinite(value)]
    problems += [problem for dest, within in FLAG_RANGES.items() if dest in settings
                 if (problem := within.problem(_flag(dest), settings[dest]))]
    problems += [problem for seed in args.seeds or () if (problem := SEED_RANGE.problem("a seed of --seeds", seed))]
    checks = []
    if args.space == "recurrent":
        checks += [
            (args.dataset in TEXT_DATASETS, f"--space recurrent needs a text data set "
                                            f"({', '.join(TEXT_DATASETS)}), not {args.dataset}"),
            (args.type_config == "float",
             "--type-config half is for the CNN cells; --space recurrent computes in float"),
            (not getattr(args, "original_unrolled_step", False) or args.second_order,
             "--original-unrolled-step changes the second-order step: add --second-order"),
        ]
    else:
        checks.append((args.dataset not in TEXT_DATASETS,
                       f"--dataset {args.dataset} is a text corpus: add --space recurrent"))
        if getattr(args, "lr_schedule", "cosine") == "cosine":
            checks.append((args.lr_min <= args.lr, f"--lr-min {args.lr_min:g} must not exceed --lr {args.lr:g}: "
                                                   f"the cosine schedule falls from --lr to --lr-min"))
    if getattr(args, "select_epochs", None) is not None:
        checks.append((args.seeds is not None and len(args.seeds) >= 2,
                       "--select-epochs needs --seeds with two seeds or more"))
    if getattr(args, "variant", None) is not None and args.space == "cnn":
        checks += [(False, message) for message in VARIANTS[args.variant].Settings.from_args(args).problems(args)]
    if hasattr(args, "drop_path_prob"):
        checks += [
            (args.output_filter + args.additional_filters_on_retrain >= 1,
             "--output-filter + --additional-filters-on-retrain must be at least 1"),
            (args.drop_path_delta is None or args.drop_path_delta * (args.epoch - 1) < 1.0,
             "--drop-path-delta must be at least 0, with delta * (epochs - 1) below 1"),
        ]
    if args.dataset == "imagenet":
        checks += [(not args.cutout, "cutout is not part of the ImageNet recipe: run with --cutout false"),
                   (args.augment != "affine",
                    "--augment affine is for the digit sets; ImageNet has its own augmentation"),
                   (args.train_portion is None,
                    "--train-portion is not offered for imagenet, which has its own val/ tree")]
    return problems + [message for ok, message in checks if not ok]


def _run_default(parser, args, dest):
    """What `dest` is when no one sets it: the recipe of the chosen --space or --dataset, else the parser's default."""
    value = parser.get_default(dest)
    for flag in RECIPE_FLAGS:
        value = getattr(parser, "recipes", {}).get((flag, getattr(args, flag, None)), {}).get(dest, value)
    return value


def _unused_settings(parser, args, on_command_line):
    """Messages of settings someone chose (a value other than the run's default, on the command line or in
    --config) that the run would never read under its other settings: a silently ignored setting is a wrong
    result waiting to happen. (A variant's own settings are its Settings.problems'.) The machine's settings
    count only from the command line: a run's config.yaml, read on another machine, holds the first one's."""
    def unused(dests, because, given=None):
        chosen = [_flag(dest) for dest in dests
                  if hasattr(args, dest) and getattr(args, dest) != _run_default(parser, args, dest)
                  and (given is None or dest in given)]
        return [f"{' and '.join(chosen)} would never take effect: {because}"] if chosen else []

    problems = []
    if args.context != "cudnn":
        problems += unused(("device_id",), "it chooses the GPU of -c cudnn", on_command_line)
    if args.context != "cpu" or args.type_config != "float":
        problems += unused(("cpu_kernels",), "the multi-threaded kernels run under -c cpu -t float only",
                           on_command_line)
    if args.force_resume and not args.resume:
        problems.append("--force-resume would never take effect: it needs --resume")
    if getattr(args, "scale_lr", False) and (not args.comm or args.seeds is not None):
        problems.append("--scale-lr would never take effect: it scales a data-parallel run's learning rate (--comm "
                        "without --seeds)")
    if args.restart and args.resume:
        problems.append("--restart and --resume exclude each other: --resume continues the run in --monitor-path, "
                        "--restart moves it aside and starts over")
    if args.seeds is not None and getattr(args, "select_epochs", None) is None:
        problems += unused(("seed",), "--seeds gives each run its seed")
        if hasattr(args, "select_epochs"):  # darts_search.py: each search writes its cell into its seed_<s>/
            problems += unused(("model_arch_name",), "with --seeds each search writes its cell into its seed_<s>/ "
                                                     "directory; add --select-epochs to write the winner there")
    if args.space == "cnn":
        if not args.cutout:
            problems += unused(("cutout_length",), "it needs --cutout")
        elif args.cutout_length == 0:
            problems += unused(("cutout",), "--cutout-length is 0")
        if getattr(args, "lr_schedule", "cosine") != "cosine":
            problems += unused(("lr_min",), "it is where --lr-schedule cosine ends")
        else:
            problems += unused(("lr_decay",), "it is the factor of --lr-schedule exponential")
    if hasattr(args, "drop_path_prob") and args.space == "cnn":  # darts_train.py
        if not args.auxiliary:
            problems += unused(("auxiliary_weight",), "it needs --auxiliary")
        if args.drop_path_delta is not None:
            problems += unused(("drop_path_prob",), "--drop-path-delta sets the drop-path probability")
        if args.dataset != "imagenet":
            problems += unused(("image_size", "num_workers"), "they are read for --dataset imagenet only")
        files = args.epoch // max(args.save_interval, 1)  # the params_epoch_NNN.h5 the run writes
        if not files:
            problems += unused(("save_interval", "keep_last"), f"with --save-interval {args.save_interval} and "
                                                               f"--epoch {args.epoch} no params_epoch file is written")
        elif args.keep_last is not None and args.keep_last >= files:
            problems += unused(("keep_last",), f"--epoch {args.epoch} with --save-interval {args.save_interval} "
                                               f"writes {files} params_epoch file(s), all of which it keeps")
    if hasattr(args, "nonmono") and args.space == "recurrent" and args.nonmono > args.epoch - 2:
        # NT-ASGD switches in 0-based epoch e only when e > nonmono (utils.recurrent.ntasgd).
        problems += unused(("nonmono",), f"averaged SGD could start in epoch {args.nonmono + 2} at the earliest, "
                                         f"after --epoch {args.epoch}")
    return problems


def parse_with_config(parser, argv=None):
    """Parse argv (default sys.argv[1:]) with the parser's --config file under it: command line, then
    the file, then the defaults. Any parser with a --config flag (scripts/darts_random.py's too)."""
    return _parse(parser, argv)[0]


def _parse(parser, argv):
    """(args, the dests the command line or the --config file set, the dests the command line set)."""
    args = parser.parse_args(argv)
    on_command_line = given = _given_on_command_line(parser, argv)
    if args.config is not None:
        try:
            values = _load_config(parser, args.config)
        except ConfigError as err:
            parser.error(str(err))  # exits 2 with usage, no traceback
        # argparse only fills in a default when the namespace lacks the
        # attribute, and always sets the flags that were given. Starting from
        # the file's values therefore lets every given flag win, even one whose
        # value equals the default.
        args = parser.parse_args(argv, namespace=argparse.Namespace(**values))
        given = given | set(values)
    _apply_recipes(parser, args, given)
    return args, given, on_command_line


def parse_args(parser, argv=None):
    """Parse argv (default sys.argv[1:]), applying --config under it.

    Precedence: command line, then the config file, then the defaults. A value out of range or a flag
    that does not apply to the chosen space or variant exits 2 with one line, like any other bad flag
    (the modes are checked by utils.run.modes). Flags that do not apply are then removed from the namespace, so
    nothing can read them and config.yaml holds only the run's own settings.
    """
    args, given, on_command_line = _parse(parser, argv)
    _apply_presets(parser, args, given)
    inapplicable = _inapplicable(parser, args)
    problems = [f"{_flag(dest)} {why}" for dest, why in inapplicable.items() if dest in given]
    problems += _range_problems(args) + _unused_settings(parser, args, on_command_line)
    problems += [f"{_flag(dest)} {why}" for dest, why in _outside_the_mode(parser, args).items()
                 if dest in on_command_line]
    if problems:
        parser.error(problems[0])
    for dest in inapplicable:
        delattr(args, dest)
    return args


def _flag(dest):
    return "--" + dest.replace("_", "-")


def _apply_presets(parser, args, given):
    """--complexity-control is --variant complexity; --dadarts is --variant dadarts with DADARTS_PRESET's
    values for the flags not given (on the command line or in --config), e.g. --second-order False."""
    presets = [dest for dest in ("complexity_control", "dadarts") if getattr(args, dest, False)]
    if len(presets) == 2:
        parser.error("--complexity-control cannot be combined with --dadarts")
    for preset in presets:
        variant = parser.variant_flags[preset]
        if "variant" in given and args.variant != variant:
            parser.error(f"{_flag(preset)} is --variant {variant}, not --variant {args.variant}")
        args.variant = variant
    if getattr(args, "dadarts", False):
        for name, value in DADARTS_PRESET.items():
            if name not in given:
                setattr(args, name, value)


def _inapplicable(parser, args):
    """{dest: why} of the parser's flags that do not apply to this run's space and variant."""
    why = {dest: f"applies to --space {space} only" for dest, space in getattr(parser, "flag_spaces", {}).items()
           if space != args.space}
    variant = getattr(args, "variant", None)
    if variant is not None and "variant" not in why:
        own = {f.name for f in dataclasses.fields(VARIANTS[variant].Settings)}
        why.update({dest: f"is a flag of --variant {owner}, not of --variant {variant}"
                    for dest, owner in parser.variant_flags.items() if dest not in own and owner != variant})
    return why


def _given_on_command_line(parser, argv):
    """The dests of the flags argv sets: a parse in which no flag has a default sets only those."""
    probe = copy.deepcopy(parser)
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    probe._defaults = {}
    return set(vars(probe.parse_args(argv)))

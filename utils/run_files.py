"""The names of the files a run writes: every module that writes or reads one takes its name from here.

Names are relative to the run's monitor directory (parameter files and checkpoints: to --model-save-path,
which defaults to it). Readers of old runs depend on them, so a name changes here or nowhere.
"""
import os

# The resolved settings: --config reads the file back, --resume compares with it.
CONFIG = "config.yaml"
# Parameters, solver states and metadata after the last finished epoch, which --resume continues from.
CHECKPOINT = "checkpoint.npz"

# A search's raw alphas after every epoch (row 0 the initial ones); --alpha-epoch and alphas.png read it.
ALPHA_HISTORY = "alpha_history.npz"
# The same layout holding the mixing weights of DADARTS's top-k transform instead of raw alphas.
TOPK_HISTORY = "topk_history.npz"
# The architecture a CNN run found (search) or trained (training).
ARCHITECTURE = "DARTS_arch.json"
# The cell a recurrent search found (as ARCHITECTURE, by default in its monitor directory: found_architecture).
RECURRENT_SEARCH_ARCHITECTURE = "DARTS_rnn_arch.json"
# The recurrent cell of a recurrent run (the latest of a search, the one trained); its presence
# marks the directory as a recurrent run.
RECURRENT_ARCHITECTURE = "recurrent_arch.json"
# The architecture after every epoch of a search, one file each in this folder (epoch_architecture);
# sorted, the last of the pattern's matches is the latest.
EPOCH_ARCHITECTURES = "arch"
EPOCH_ARCHITECTURE_PATTERN = os.path.join(EPOCH_ARCHITECTURES, "epoch_*.json")
# The latest genotype of a search as the Genotype(...) string of the DARTS code.
GENOTYPE = "genotype.txt"

SEARCH_SUMMARY = "search_summary.json"
# A training's sizes and errors (utils.training.model_stats.SUMMARY_KEYS), or perplexities (recurrent).
SUMMARY = "summary.json"
# What the inspection modes of darts_train.py write (--summary, --evaluate; --export: exported_model), each
# under a name no run writes, so that inspecting a training never replaces one of its own files.
NETWORK_SUMMARY = "network_summary.json"
EVALUATION = "evaluation.json"
FINAL_PARAMS = "final_params.h5"
# darts_train.py --import-weights: a PyTorch checkpoint of quark0's networks as this project's parameters.
IMPORTED_PARAMS = "imported_params.h5"
# The parameters of the epoch with the lowest validation error.
BEST_PARAMS = "best_params.h5"
# The recurrent training's checkpoint of its best validated epoch, which a NaN loss rolls back to.
BEST_CHECKPOINT = "best.npz"
EPOCH_PARAMS_PREFIX, EPOCH_PARAMS_SUFFIX = "params_epoch_", ".h5"

# An ImageNet run's class names in label order, so that a label means the same class on every machine.
CLASS_LIST = "classes.txt"

# --seeds: the ranking of the searches' cells (search), the statistics over the seeds (training).
SELECTION = "selection.json"
AGGREGATE = "aggregate.json"
# darts_compare.py: the per-variant statistics, the same as a markdown table, and as a picture.
COMPARISON = "comparison.json"
COMPARISON_TABLE = "comparison.md"
COMPARISON_PICTURE = "comparison.png"
# darts_compare.py: the two runs of one variant and seed, in <monitor>/<variant>/seed_<s>/ (compared_run).
COMPARED_SEARCH, COMPARED_TRAINING = "search", "train"

# nnabla.monitor.MonitorSeries names its file after the series, spaces as '-'.
SERIES_SUFFIX = ".series.txt"
# Every run's series of epoch durations, in seconds (utils.run.run.Run writes it, curves.png names the unit).
EPOCH_TIME = "Epoch time"

# The pictures of utils.pictures.run_pictures.
CURVES_PICTURE = "curves.png"
ALPHAS_PICTURE = "alphas.png"
TOPK_ALPHAS_PICTURE = "alphas_topk.png"
CELL_PICTURES = "cells"


def epoch_architecture(epoch):
    """arch/epoch_NNN.json: the architecture after `epoch` epochs (1-based)."""
    return os.path.join(EPOCH_ARCHITECTURES, f"epoch_{epoch:03d}.json")


def epoch_cell_pictures_prefix(epoch):
    """The prefix of the cell pictures of one epoch (--draw-every-epoch), in CELL_PICTURES."""
    return f"epoch_{epoch:03d}_"


def alpha_epoch_architecture(epoch):
    """arch_alpha_epoch_NNN.json: the cell darts_search.py --alpha-epoch derives for epoch NNN (0: the initial
    alphas), a name of its own so that it never replaces the search's final cell or arch/epoch_NNN.json."""
    return f"arch_alpha_epoch_{epoch:03d}.json"


def found_architecture(monitor_path, model_arch_name, space="cnn"):
    """Where a search writes the cell it found: --model-arch-name if given, else its monitor directory's
    ARCHITECTURE (--space recurrent: RECURRENT_SEARCH_ARCHITECTURE), beside the run's other files. (A default in
    the current directory wrote over the repository's DARTS_arch.json, and over the cell of every earlier search.)"""
    if model_arch_name is not None:
        return model_arch_name
    return os.path.join(monitor_path, RECURRENT_SEARCH_ARCHITECTURE if space == "recurrent" else ARCHITECTURE)


def epoch_params(epoch):
    """params_epoch_NNN.h5: the parameters saved after `epoch` epochs (1-based)."""
    return f"{EPOCH_PARAMS_PREFIX}{epoch:03d}{EPOCH_PARAMS_SUFFIX}"


def lambda_alpha_history(lam_tilde):
    """A complexity-controlled search's alphas at λ̃: ALPHA_HISTORY for λ̃ = 0 (what --alpha-epoch and
    alphas.png read), alpha_history_lambda_<λ̃>.npz else."""
    return ALPHA_HISTORY if lam_tilde == 0 else f"alpha_history_lambda_{lam_tilde:g}.npz"


def exported_model(file_format):
    """model.nnp or model.onnx: the inference network of --export."""
    return f"model.{file_format}"


def series_file(name):
    """The file of the series `name`, as MonitorSeries writes it."""
    return name.replace(" ", "-") + SERIES_SUFFIX


def seed_directory(seed):
    """The sub-run of one seed of a --seeds run."""
    return f"seed_{seed}"


def compared_run(variant, seed, stage):
    """<variant>/seed_<s>/<stage>: the search (COMPARED_SEARCH) or the training (COMPARED_TRAINING) of one variant
    and seed in a darts_compare.py directory."""
    return os.path.join(variant, seed_directory(seed), stage)

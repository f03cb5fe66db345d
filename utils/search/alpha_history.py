"""alpha_history.npz: the raw alphas of a search after every epoch, and the architecture of any epoch.

The file holds `normal` and `reduction`, each (epochs so far + 1, 14, 8), row 0 the initial alphas,
edges in models.genotype.EDGES order and ops in ops.operations.SEARCH_OPS order.
"""
import os

import numpy as np

from models.derivation import derive_by_rule
from models.genotype import ArchitectureError, save_architecture
from utils.pictures.alpha_plot import ALPHA_HISTORY


def write_alpha_history(monitor_path, history, name=ALPHA_HISTORY):
    """history: {"normal": [arrays], "reduction": [arrays]}; replaced atomically.

    name TOPK_HISTORY holds DADARTS's top-k transformed weights in the same layout.
    """
    path = os.path.join(monitor_path, name)
    tmp = path + ".tmp.npz"
    np.savez(tmp, normal=np.stack(history["normal"]), reduction=np.stack(history["reduction"]))
    os.replace(tmp, path)


def derive_from_history(history_path, epoch, arch_path, rule="top-k"):
    """The architecture the alphas gave after `epoch` epochs (0 = the initial alphas) by a rule of
    models.derivation, written to arch_path."""
    try:
        history = np.load(history_path)
        normal, reduction = history["normal"], history["reduction"]
    except (OSError, KeyError, ValueError) as err:
        raise ArchitectureError(f"cannot read alpha history {history_path}: {err}") from None
    if not 0 <= epoch < len(normal):
        raise ArchitectureError(f"--alpha-epoch {epoch} is not in {history_path}, which has epochs 0..{len(normal) - 1}")
    arch = derive_by_rule(normal[epoch], reduction[epoch], rule)
    save_architecture(arch, arch_path)
    return arch


RECURRENT_KEY = "recurrent"


def write_recurrent_alpha_history(monitor_path, history):
    """history: list of (36, 5) alphas, the initial ones first; stored as `recurrent` (epochs + 1, 36, 5)."""
    path = os.path.join(monitor_path, ALPHA_HISTORY)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **{RECURRENT_KEY: np.stack(history)})
    os.replace(tmp, path)


def derive_recurrent_from_history(history_path, epoch, cell_path):
    """The recurrent cell the alphas gave after `epoch` epochs (0 = the initial alphas), written to cell_path."""
    from models.recurrent_genotype import derive_recurrent_genotype, save_recurrent_genotype
    try:
        with np.load(history_path) as history:
            alphas = history[RECURRENT_KEY]
    except (OSError, KeyError, ValueError) as err:
        raise ArchitectureError(f"cannot read recurrent alpha history {history_path}: {err}") from None
    if not 0 <= epoch < len(alphas):
        raise ArchitectureError(f"--alpha-epoch {epoch} is not in {history_path}, which has epochs 0..{len(alphas) - 1}")
    genotype = derive_recurrent_genotype(alphas[epoch])
    save_recurrent_genotype(genotype, cell_path)
    return genotype

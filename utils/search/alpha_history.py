"""alpha_history.npz: the raw alphas of a search after every epoch, and the architecture of any epoch.

The file holds `normal` and `reduction`, each (epochs so far + 1, 14, 8), row 0 the initial alphas,
edges in models.genotype.EDGES order and ops in ops.operations.SEARCH_OPS order.
"""
import os

import numpy as np

from models.genotype import ArchitectureError, save_architecture
from ops.unreadable_file import reading
from utils.run.checkpoint import write_npz
from utils.run_files import ALPHA_HISTORY


def write_alpha_history(monitor_path, history, name=ALPHA_HISTORY):
    """history: {"normal": [arrays], "reduction": [arrays]}; replaced atomically.

    name TOPK_HISTORY holds DADARTS's top-k transformed weights in the same layout.
    """
    write_npz(os.path.join(monitor_path, name),
              {"normal": np.stack(history["normal"]), "reduction": np.stack(history["reduction"])})


def derive_from_history(history_path, epoch, arch_path, derive):
    """The architecture the alphas gave after `epoch` epochs (0 = the initial alphas), written to arch_path.

    derive({alpha name: (14, 8) array}) gives the architecture (a search variant's derivation).
    """
    with reading(history_path, "alpha history", ArchitectureError), np.load(history_path) as history:
        normal, reduction = history["normal"], history["reduction"]
    if not 0 <= epoch < len(normal):
        raise ArchitectureError(f"--alpha-epoch {epoch} is not in {history_path}, "
                                f"which has epochs 0..{len(normal) - 1}")
    arch = derive({"alpha_normal": normal[epoch], "alpha_reduction": reduction[epoch]})
    save_architecture(arch, arch_path)
    return arch


RECURRENT_KEY = "recurrent"


def write_recurrent_alpha_history(monitor_path, history):
    """history: list of (36, 5) alphas, the initial ones first; stored as `recurrent` (epochs + 1, 36, 5)."""
    write_npz(os.path.join(monitor_path, ALPHA_HISTORY), {RECURRENT_KEY: np.stack(history)})


def derive_recurrent_from_history(history_path, epoch, cell_path):
    """The recurrent cell the alphas gave after `epoch` epochs (0 = the initial alphas), written to cell_path."""
    from models.recurrent_genotype import derive_recurrent_genotype, save_recurrent_genotype
    with reading(history_path, "recurrent alpha history", ArchitectureError), np.load(history_path) as history:
        alphas = history[RECURRENT_KEY]
    if not 0 <= epoch < len(alphas):
        raise ArchitectureError(f"--alpha-epoch {epoch} is not in {history_path}, "
                                f"which has epochs 0..{len(alphas) - 1}")
    genotype = derive_recurrent_genotype(alphas[epoch])
    save_recurrent_genotype(genotype, cell_path)
    return genotype


# The cells' keys in an alpha history file and in a checkpoint's arrays, by alpha name.
HISTORY_KEYS = {"alpha_normal": "normal", "alpha_reduction": "reduction"}


class AlphaHistory:
    """The alpha arrays a search records: the initial ones, then one row per epoch, each source in its file.

    sources: {file name: function giving {alpha name: (14, 8) array}} (a variant's histories()).
    """

    def __init__(self, sources):
        self.sources = sources
        self.rows = {name: {HISTORY_KEYS[alpha]: [array] for alpha, array in read().items()}
                     for name, read in sources.items()}

    def record(self, monitor_path):
        """Appends the current arrays of every source and rewrites its file."""
        for name, read in self.sources.items():
            for alpha, array in read().items():
                self.rows[name][HISTORY_KEYS[alpha]].append(array)
            write_alpha_history(monitor_path, self.rows[name], name)

    def arrays(self):
        """{"<file name>/<cell>": (rows, 14, 8)}: what a checkpoint keeps to resume the history."""
        return {f"{name}/{cell}": np.stack(rows) for name, cells in self.rows.items() for cell, rows in cells.items()}

    def resume(self, arrays):
        self.rows = {name: {cell: list(arrays[f"{name}/{cell}"]) for cell in HISTORY_KEYS.values()}
                     for name in self.sources}

"""alpha_history.npz: the raw alphas of a search after every epoch, and the architecture of any epoch.

The file holds `normal` and `reduction`, each (epochs so far + 1, 14, 8), row 0 the initial alphas,
edges in models.genotype.EDGES order and ops in ops.operations.SEARCH_OPS order; and a variant's own
architecture arrays under their own names in the same layout (PC-DARTS's `beta_normal`, (epochs + 1, 14)).
"""
import os

import numpy as np

from models.genotype import ArchitectureError, save_architecture
from ops.unreadable_file import reading
from utils.run.checkpoint import write_npz
from utils.run_files import ALPHA_HISTORY


# The cells' keys in an alpha history file and in a checkpoint's arrays, by alpha name; any other
# architecture array is kept under its own name.
HISTORY_KEYS = {"alpha_normal": "normal", "alpha_reduction": "reduction"}


def history_key(name):
    return HISTORY_KEYS.get(name, name)


def write_alpha_history(monitor_path, history, name=ALPHA_HISTORY):
    """history: {key: [arrays]} ("normal", "reduction", and a variant's own); replaced atomically.

    name TOPK_HISTORY holds DADARTS's top-k transformed weights in the same layout.
    """
    write_npz(os.path.join(monitor_path, name), {key: np.stack(rows) for key, rows in history.items()})


def history_values(history, epoch):
    """{architecture array name: its array after `epoch` epochs} of a loaded history file."""
    names = {key: name for name, key in HISTORY_KEYS.items()}
    return {names.get(key, key): history[key][epoch] for key in history.files}


def derive_from_history(history_path, epoch, arch_path, derive):
    """The architecture the alphas gave after `epoch` epochs (0 = the initial alphas), written to arch_path.

    derive({name: array}) gives the architecture (a search variant's derivation).
    """
    with reading(history_path, "alpha history", ArchitectureError), np.load(history_path) as history:
        epochs = len(history["normal"])
        values = history_values(history, epoch) if 0 <= epoch < epochs else None
    if values is None:
        raise ArchitectureError(f"--alpha-epoch {epoch} is not in {history_path}, "
                                f"which has epochs 0..{epochs - 1}")
    arch = derive(values)
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


class AlphaHistory:
    """The alpha arrays a search records: the initial ones, then one row per epoch, each source in its file.

    sources: {file name: function giving {name: array}} (a variant's histories()).
    """

    def __init__(self, sources):
        self.sources = sources
        self.rows = {name: {history_key(alpha): [array] for alpha, array in read().items()}
                     for name, read in sources.items()}

    def record(self, monitor_path):
        """Appends the current arrays of every source and rewrites its file."""
        for name, read in self.sources.items():
            for alpha, array in read().items():
                self.rows[name][history_key(alpha)].append(array)
            write_alpha_history(monitor_path, self.rows[name], name)

    def arrays(self):
        """{"<file name>/<key>": (rows, ...)}: what a checkpoint keeps to resume the history."""
        return {f"{name}/{key}": np.stack(rows) for name, keys in self.rows.items() for key, rows in keys.items()}

    def resume(self, arrays):
        self.rows = {name: {key: list(arrays[f"{name}/{key}"]) for key in keys} for name, keys in self.rows.items()}

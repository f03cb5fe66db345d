"""End-of-epoch checkpoints: parameters, solver states and run metadata in one atomically written file."""
import io
import json

import numpy as np

from ops.atomic_file import atomic_write
from ops.unreadable_file import reading
from ops.user_error import UserError


class CheckpointError(UserError):
    """A checkpoint that cannot be resumed from; the message is one line."""


def save_checkpoint(path, params, solvers, meta):
    """Writes {params, solver states, meta} to `path` so that a crash never leaves a partial file.

    params: {name: Variable}; solvers: {name: nnabla Solver}; meta: JSON-serialisable dict (numpy
    arrays go in as `meta["arrays"]`, a {name: ndarray} dict).
    """
    meta = dict(meta)
    arrays = {f"array/{k}": v for k, v in meta.pop("arrays", {}).items()}
    arrays.update({f"param/{name}": v.d for name, v in params.items()})
    for solver_name, solver in solvers.items():
        for param_name, state in solver.get_states().items():
            arrays[f"solver_t/{solver_name}/{param_name}"] = np.array(state.t)
            for key, value in state.pstate.items():
                arrays[f"solver/{solver_name}/{param_name}/{key}"] = value.d
    arrays["meta"] = np.array(json.dumps(meta))
    write_npz(path, arrays)


def write_npz(path, arrays):
    """np.savez's file of `arrays` ({name: ndarray}), written through ops.atomic_file. It is made in memory first:
    numpy leaves its zip file open when a write fails (a full disk), to fail again when it is collected."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with atomic_write(path, "wb") as f:
        f.write(buffer.getbuffer())


def load_checkpoint(path, params, solvers):
    """Writes the saved values into `params` and `solvers` in place and returns the metadata.

    A checkpoint that cannot be read (empty, cut short, damaged, of another network) is a CheckpointError.
    """
    with reading(path, "checkpoint", CheckpointError, hint="restore it from a copy, or start the run again"), \
            np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        for name, v in params.items():
            v.d = data[f"param/{name}"]
        for solver_name, solver in solvers.items():
            states = solver.get_states()
            for param_name, state in states.items():
                state.t = int(data[f"solver_t/{solver_name}/{param_name}"])
                for key, value in state.pstate.items():
                    value.d = data[f"solver/{solver_name}/{param_name}/{key}"]
            solver.set_states(states)
        meta["arrays"] = {k[len("array/"):]: data[k] for k in data.files if k.startswith("array/")}
    return meta

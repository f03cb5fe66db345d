"""End-of-epoch checkpoints: parameters, solver states and run metadata in one atomically written file."""
import json
import os

import numpy as np

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
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path, params, solvers):
    """Writes the saved values into `params` and `solvers` in place and returns the metadata."""
    try:
        data = np.load(path)
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
    except (OSError, KeyError, ValueError) as err:
        raise CheckpointError(f"cannot resume from {path}: {err}") from None
    return meta

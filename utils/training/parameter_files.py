"""The .h5 parameter files: written whole by nn.save_parameters, read back with errors a user can act on."""
import os

import h5py
import nnabla as nn

from ops.atomic_file import atomic_path
from utils.run.checkpoint import CheckpointError


class ParameterFileError(CheckpointError):
    """A parameter file that cannot be used; a CheckpointError so that fail_cleanly reports it."""


def save_parameter_file(path, params):
    """nn.save_parameters(path, params) through ops.atomic_file: a kill or a full disk leaves the old file or
    the whole new one, never a part."""
    with atomic_path(path) as temporary:
        nn.save_parameters(temporary, params)


def read_parameter_file(path):
    """{name: ndarray} of an .h5 written by nn.save_parameters, read without touching nnabla's registry."""
    if not os.path.isfile(path):
        raise ParameterFileError(f"parameter file {path!r} does not exist")
    values = {}

    def collect(name, item):
        if isinstance(item, h5py.Dataset):
            values[name] = item[...]
    try:
        with h5py.File(path, "r") as f:
            f.visititems(collect)
    except (OSError, ValueError) as err:
        reason = " ".join(str(err).split())
        raise ParameterFileError(f"cannot read parameter file {path!r}: {reason}") from None
    return values


def load_parameter_file(path, params, ignored_scope=None):
    """Writes the file's values into `params` ({name: Variable}); the two must describe the same network.

    Names under `ignored_scope` (the auxiliary head, which test graphs do not build) may be in the file.
    """
    values = read_parameter_file(path)
    missing = sorted(name for name in params if name not in values)
    unexpected = sorted(name for name in values
                        if name not in params and not (ignored_scope and name.startswith(ignored_scope + "/")))
    wrong_shape = sorted(name for name in params
                         if name in values and tuple(values[name].shape) != tuple(params[name].shape))
    for problem, names in (("lacks", missing), ("has unknown", unexpected), ("has wrongly shaped", wrong_shape)):
        if names:
            shapes = (f": {tuple(values[names[0]].shape)} in the file, {tuple(params[names[0]].shape)} in the network"
                      if names is wrong_shape else "")
            raise ParameterFileError(
                f"parameter file {path!r} does not fit this network (architecture, --num-cells, channels "
                f"or data set differ): it {problem} parameters such as {names[0]!r} ({len(names)} in all){shapes}")
    for name, variable in params.items():
        variable.d = values[name]

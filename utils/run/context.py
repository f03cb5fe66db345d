"""Selecting the nnabla backend (cpu or cudnn) with an error a user can act on."""
import nnabla as nn

from ops import cpu_kernels
from ops.user_error import UserError


class ContextError(UserError):
    """The requested backend cannot be used; the message is one line."""


def set_context(context, device_id="0", type_config="float"):
    """Makes `context` the default for every graph built afterwards and returns it."""
    if context == "cudnn":
        try:
            import nnabla_ext.cudnn  # noqa: F401  (only to tell whether the extension is installed)
        except ImportError:
            # .venv is built by uv and has no pip: make env (or uv pip) installs into it.
            raise ContextError("--context cudnn needs the CUDA extension: `make env CUDA=120` (or `uv pip install "
                               "--python .venv/bin/python nnabla-ext-cuda120==1.39.0`), or run with --context cpu"
                               ) from None
    # cpu accepts half too: nnabla's cpu kernels compute in fp16 there (slowly), which lets the tests
    # exercise the loss scaling that a GPU run depends on.
    from nnabla.ext_utils import get_extension_context
    ctx = get_extension_context(context, device_id=device_id, type_config=type_config)
    nn.set_default_context(ctx)
    return ctx


def check_precision(type_config, second_order):
    """Refuses the precision settings that cannot give a meaningful search.

    In half precision the second-order step's perturbations w +- eps * g, with eps = 0.01 / ||g||, are
    about 1e-5 per weight, below the spacing of fp16 numbers around typical weights (about 6e-5 at
    0.1), so the finite-difference Hessian term would be rounding noise.
    """
    if type_config == "half" and second_order:
        raise ContextError("--type-config half cannot run --second-order: its weight perturbations (~1e-5) are "
                           "below fp16 resolution; use --type-config float")


def uses_cpu_kernels(context, type_config, requested):
    """Whether the graphs are built on ops/cpu_kernels (--cpu-kernels): on the cpu, in float, when built."""
    if not (requested and context == "cpu" and type_config == "float"):
        return False
    if not cpu_kernels.available():
        print(f"note: {cpu_kernels.missing()}; using nnabla's single-threaded kernels", flush=True)
        return False
    return True

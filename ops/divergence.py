"""Divergence, a first-class event of every run: a loss (or the alphas) that stops being finite ends the run.

Every epoch loop (CNN search and training, recurrent search and training, the selection's brief trainings)
checks what it already reads back each step: the loss, which it copies to the host for its running mean
anyway, so the check costs no device-to-host copy of its own. Once an epoch, before anything is saved, it
checks the validation or test loss and every parameter (check_parameters; the checkpoint copies them to the
host then anyway): a NaN weight may leave the loss finite.

A diverged run stops with one line (DivergedError, a UserError: exit status 1) that names the epoch, the
step and the learning rate; nothing of the diverged epoch is written, so the checkpoint and parameters on
disk are those of the last finished epoch (never NaN ones), and the run's summary says `diverged` with
DivergedError.record instead of a result. Aggregates (--seeds, pareto) list such a run apart. It lives in
the lowest layer, as ops.user_error does, so that every layer can raise it or read the mark.
"""
import numpy as np

from ops.user_error import UserError

# The key of a run's summary (summary.json, search_summary.json) that marks it diverged.
DIVERGED = "diverged"


class DivergedError(UserError, ValueError):
    """A run stopped by a value that is not finite. record: {"run" (what diverged: "training", "search", ...),
    "epoch", "step" (both from 1, as printed), "lr"}, what the run's summary keeps under DIVERGED."""

    def __init__(self, message, record):
        super().__init__(message)
        self.record = record


def check_finite(value, run, epoch, step, lr, quantity="loss", advice="lower --lr", resumable=True):
    """DivergedError unless every element of `value` (a number or an array) is finite.

    run: what diverged ("training", "search"); epoch, step: 0-based, of the run's epoch loop (a check after
    an epoch's steps names its last step); lr: the learning rate of that step; quantity: what `value` is;
    resumable: whether the run keeps a checkpoint after every epoch for --resume.
    """
    values = np.asarray(value, dtype=np.float64)
    finite = np.isfinite(values)
    if finite.all():
        return
    record = {"run": run, "epoch": epoch + 1, "step": step + 1, "lr": float(lr)}
    if not resumable:
        kept = "nothing of it is kept"
    elif epoch:
        kept = f"the checkpoint of epoch {epoch} is kept (--resume continues from it)"
    else:
        kept = "nothing was saved before it"
    raise DivergedError(f"the {run} diverged in epoch {epoch + 1}, step {step + 1} ({quantity} "
                        f"{values[~finite].flat[0]} at lr {lr:g}); {kept}; {advice}", record)


def check_parameters(params, run, epoch, step, lr, advice="lower --lr", resumable=True):
    """check_finite of every array of params ({name: nn.Variable}), the first bad one named: once an epoch,
    before anything is saved. The loss alone does not show every NaN weight: a ReLU turns NaN activations
    into 0 (nnabla's max(x, 0)), so a network can compute a finite loss with NaN weights before it."""
    for name, variable in params.items():
        check_finite(variable.d, run, epoch, step, lr, f"parameter {name}", advice, resumable)


def describe(record):
    """'epoch 3, step 12, lr 1e+06' of a DivergedError.record."""
    return f"epoch {record['epoch']}, step {record['step']}, lr {record['lr']:g}"

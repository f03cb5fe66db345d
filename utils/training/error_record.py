"""The error figures of a training run, as summary.json reports them.

The final test error is the headline, as in the DARTS paper. The lowest test error over the epochs is
kept under a name that says it was picked on the test set (an oracle, optimistic by construction).
With a validation split (darts_train.py --train-portion) the epoch with the lowest validation error
is the honest choice: its test error is reported, and its parameters are the best checkpoint.
"""
from ops.divergence import DIVERGED

TEST_KEYS = ("final_test_error", "final_test_top5_error", "best_test_error_oracle")
VALIDATION_KEYS = ("final_valid_error", "best_valid_error", "best_valid_epoch", "test_error_at_best_valid",
                   "test_top5_error_at_best_valid")


def empty_errors(validated):
    """Every error key of a run (with or without a validation split), None until the first epoch."""
    return dict.fromkeys(TEST_KEYS + (VALIDATION_KEYS if validated else ()))


def record_epoch(errors, epoch, test, valid=None):
    """Updates `errors` in place with epoch `epoch`'s (0-based) evaluation.Scores on the test set and,
    with a split, on the validation set. Returns True when this epoch is the new best by validation
    error (ties keep the earlier epoch)."""
    errors["final_test_error"] = test.error
    errors["final_test_top5_error"] = test.top5_error
    oracle = errors["best_test_error_oracle"]
    errors["best_test_error_oracle"] = test.error if oracle is None else min(oracle, test.error)
    if valid is None:
        return False
    errors["final_valid_error"] = valid.error
    if errors["best_valid_error"] is not None and valid.error >= errors["best_valid_error"]:
        return False
    errors.update(best_valid_error=valid.error, best_valid_epoch=epoch + 1, test_error_at_best_valid=test.error,
                  test_top5_error_at_best_valid=test.top5_error)
    return True


def diverged_summary(summary, record):
    """The summary of a run that diverged (ops.divergence.DivergedError.record): marked DIVERGED, with no
    error figure, since none is the run's result (those of the epochs before are in the series)."""
    return {**summary, **{key: None for key in TEST_KEYS + VALIDATION_KEYS if key in summary}, DIVERGED: record}


def error_figures(summary):
    """The error keys of a summary, as a checkpoint keeps them for a resumed run."""
    return {key: summary[key] for key in TEST_KEYS + VALIDATION_KEYS if key in summary}

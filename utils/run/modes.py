"""A script's modes: the flag that selects each, what runs it in each space (--space), and which kind of run
an inspection mode belongs with.

An inspection mode (darts_train.py --summary, --evaluate, --export, --import-weights; darts_search.py
--alpha-epoch, --extract-lambda) reads a finished run, or a file of its own (--import-weights' PyTorch
checkpoint), and writes files of its own names (utils.run_files) beside it or in a new directory, never one
the run wrote. It runs only beside its own script's runs: pointed at the other script's directory, or
at a file inside one, it stops with one line before it reads or writes anything.
"""
import functools
import os
from dataclasses import dataclass

from ops.user_error import UserError
from utils.run.run_directory import usable_directory
from utils.run_files import AGGREGATE, ALPHA_HISTORY, FINAL_PARAMS, GENOTYPE, SEARCH_SUMMARY, SELECTION, SUMMARY

SEARCH, TRAINING = "search", "training"
# Files that only one kind of run writes, by which its directory is known. A search's come first: a search
# directory may hold a summary.json that darts_train.py --summary once wrote there.
RUN_MARKS = ((SEARCH, (ALPHA_HISTORY, GENOTYPE, SEARCH_SUMMARY, SELECTION)),
             (TRAINING, (SUMMARY, FINAL_PARAMS, AGGREGATE)))


class InspectionError(UserError):
    """An inspection mode pointed at the wrong kind of run; one line."""


@dataclass(frozen=True)
class Mode:
    """One thing a script does.

    name: what it does, for messages; flag: the setting (an argparse dest) that selects it when set
    (neither None nor False), None for the script's main run, which no flag selects; runs: {space:
    function} over the spaces that offer the mode; inspects: SEARCH or TRAINING for a mode that reads a
    finished run of that kind (--monitor-path, and the file its flag names if it names one) and writes
    only its own files beside it.
    """
    name: str
    flag: str | None
    runs: dict
    inspects: str | None = None


def run_kind(directory):
    """(SEARCH or TRAINING, the file that tells) of the run in `directory`, or (None, None)."""
    for kind, marks in RUN_MARKS:
        for mark in marks:
            if os.path.exists(os.path.join(directory, mark)):
                return kind, mark
    return None, None


# Where an inspection mode of each kind works, for its refusals.
_WORKS = {SEARCH: "reads a search's run directory",
          TRAINING: "writes beside a training's run or into a directory of its own"}


def _refuse_other_run(mode, subject, directory):
    """subject: how the message names `directory` ("--monitor-path DIR is", "--evaluate FILE is in")."""
    kind, mark = run_kind(directory)
    if kind is not None and kind != mode.inspects:
        raise InspectionError(f"{subject} a {kind}'s run directory ({os.path.join(directory, mark)}): "
                              f"{_option(mode.flag)} ({mode.name}) {_WORKS[mode.inspects]}")


def _inspect(mode, run, args, *rest):
    """Runs an inspection mode once what it is pointed at is checked. A failed write is one line like any
    OSError (utils.run.run.fail_cleanly), and leaves no part of a file (ops.atomic_file)."""
    monitor = args.monitor_path
    _refuse_other_run(mode, f"--monitor-path {monitor} is", monitor)
    read = getattr(args, mode.flag)
    if isinstance(read, str):  # a file the mode reads (--evaluate, --export PARAMS.h5)
        _refuse_other_run(mode, f"{_option(mode.flag)} {read} is in", os.path.dirname(read) or ".")
    if mode.inspects == TRAINING:  # it may write into a new directory: one it cannot write fails before the work
        usable_directory(monitor, "--monitor-path")
    return run(args, *rest)


def _option(dest):
    return "--" + dest.replace("_", "-")


def _is_set(value):
    # Not `value not in (None, False)`: 0 == False, and --alpha-epoch 0 is a mode.
    return value is not None and value is not False


def mode_to_run(parser, args, modes):
    """The function of the one mode of `modes` that args selects, in args.space (an inspection mode's checks
    what it is pointed at before it runs).

    Two modes at once, or a mode that args.space does not offer, is a bad command line like any
    other: parser.error, exit status 2, one error line.
    """
    chosen = [mode for mode in modes if mode.flag is not None and _is_set(getattr(args, mode.flag, None))]
    if len(chosen) > 1:
        first, second = chosen[:2]
        parser.error(f"{_option(first.flag)} ({first.name}) and {_option(second.flag)} ({second.name}) "
                     f"are two modes: give one")
    mode = chosen[0] if chosen else next(mode for mode in modes if mode.flag is None)
    if args.space not in mode.runs:
        offered = ", ".join(m.name for m in modes if args.space in m.runs)
        selector = _option(mode.flag) if mode.flag is not None else "the main run"
        parser.error(f"{selector} ({mode.name}) does not apply to --space {args.space}, which offers {offered}")
    if mode.inspects is None:
        return mode.runs[args.space]
    return functools.partial(_inspect, mode, mode.runs[args.space])

"""A script's modes: the flag that selects each, and what runs it in each space (--space)."""
from dataclasses import dataclass


@dataclass(frozen=True)
class Mode:
    """One thing a script does.

    name: what it does, for messages; flag: the setting (an argparse dest) that selects it when set
    (neither None nor False), None for the script's main run, which no flag selects; runs: {space:
    function} over the spaces that offer the mode.
    """
    name: str
    flag: str | None
    runs: dict


def _option(dest):
    return "--" + dest.replace("_", "-")


def _is_set(value):
    # Not `value not in (None, False)`: 0 == False, and --alpha-epoch 0 is a mode.
    return value is not None and value is not False


def mode_to_run(parser, args, modes):
    """The function of the one mode of `modes` that args selects, in args.space.

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
    return mode.runs[args.space]

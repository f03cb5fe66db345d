"""What every script's command line shares: a refused command line is one line, and every numeric flag a range.

CommandLineParser is argparse's parser whose errors are the one line that says what is wrong and where the
flags are explained (`--help`), exit status 2; argparse's own prints the whole usage block (34 to 49 lines
for darts_search.py and darts_train.py) first, which buries the line. Every parser of the entry points is
one (args.py, darts_plot.py, scripts/), subcommands included: argparse gives them their parent's class.

Range is the interval a numeric flag's value must lie in, and finite: nan and inf are never a setting.
It lives here, importing nothing of nnabla, so that darts_plot.py's command line stays light.
"""
import argparse
import dataclasses
import math

# The exit status of a refused command line, as argparse's.
USAGE_ERROR = 2


class CommandLineParser(argparse.ArgumentParser):
    """ranges: {dest: Range} of its numeric flags, which parse_args checks (a value of a list flag each)."""

    def __init__(self, *args, ranges=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.ranges = dict(ranges or {})

    def error(self, message):
        """The message on one line and exit status 2 (argparse.ArgumentParser.error's contract: never returns)."""
        one_line = " ".join(str(message).split())
        self.exit(USAGE_ERROR, f"{self.prog}: error: {one_line} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):
        parsed = super().parse_args(args, namespace)
        for dest, within in self.ranges.items():
            values = getattr(parsed, dest, None)
            for value in values if isinstance(values, list) else [values]:
                if (problem := within.problem("--" + dest.replace("_", "-"), value)):
                    self.error(problem)
        return parsed


@dataclasses.dataclass(frozen=True)
class Range:
    """Finite numbers from low to high (None: unbounded), each bound included unless it is open."""
    low: float = None
    high: float = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value):
        if not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self):
        """What a value must be, as the end of "--flag must be ..."."""
        low, high = _number(self.low), _number(self.high)
        if self.low is not None and self.high is not None:
            if self.low_open and self.high_open:
                return f"between {low} and {high}"
            return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if self.low is not None:
            if self.low == 0:
                return "positive" if self.low_open else "at least 0"
            return f"above {low}" if self.low_open else f"at least {low}"
        if self.high is not None:
            return f"below {high}" if self.high_open else f"at most {high}"
        return "a finite number"

    def problem(self, flag, value):
        """The message if `value` of `flag` (e.g. "--lr") is outside, else None."""
        if value is None or value in self:
            return None
        if not math.isfinite(value):
            return f"{flag} must be a finite number, not {value}"
        return f"{flag} must be {self}, not {_number(value)}"


def _number(value):
    """An int as it is, a float in %g (1e+06, 0.025)."""
    return str(value) if value is None or isinstance(value, int) else f"{value:g}"


# The ranges most flags have.
ANY = Range()
POSITIVE = Range(0, low_open=True)
NOT_NEGATIVE = Range(0)
AT_LEAST_ONE = Range(1)
FRACTION = Range(0, 1, high_open=True)  # [0, 1): a probability that must leave something, a momentum
OPEN_FRACTION = Range(0, 1, low_open=True, high_open=True)
UNIT = Range(0, 1)

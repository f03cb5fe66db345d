"""Driving the entry points as a user would, for the reliability tests (tests/test_reliability_*.py).

`drive(main, argv)` runs a script's main in this process (the embedded digits stand in for a download where
the test patches them: tests/conftest.py's tiny_search_runner) and gives back its exit status and what it
printed; an exception that escapes the script counts as a traceback, which no user-facing failure may be.
`snapshot(directory)` is every file below a directory with its bytes, to show that a failure left an
existing run exactly as it was.
"""
import contextlib
import io
import os
import traceback
from dataclasses import dataclass


@dataclass
class Outcome:
    code: object  # the exit status: 0 when main returned, SystemExit's code otherwise; None after a traceback
    stdout: str
    stderr: str

    @property
    def error_lines(self):
        return [line for line in self.stderr.splitlines() if line.strip()]


def drive(main, argv):
    """Outcome of main(argv) run in this process."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except BaseException:  # noqa: B902 (what escapes is what a user would see as a traceback)
            traceback.print_exc(file=err)
            code = None
    return Outcome(code, out.getvalue(), err.getvalue())


def assert_one_line_failure(outcome, code):
    """The failure a user should see: exit status `code`, one line on stderr, no traceback."""
    assert "Traceback" not in outcome.stderr, outcome.stderr
    assert outcome.code == code, (outcome.code, outcome.stderr)
    assert len(outcome.error_lines) == 1, outcome.stderr


def snapshot(directory):
    """{path relative to directory: bytes} of every file below it."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, directory)] = f.read()
    return files

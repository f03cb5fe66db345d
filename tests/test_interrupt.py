"""Ctrl-C (SIGINT) during a step ends every script with one line on stderr and exit status 130, and the run
resumes from its last checkpoint.

During a forward or backward pass Ctrl-C often lands in a Python callback of nnabla's C++ code (our cpu
kernels are such callbacks), whose KeyboardInterrupt then leaves nnabla as a SystemError chained to it.
The in-process tests deliver a real SIGINT inside such a callback, every time; the subprocess tests send
it from outside to a running script, as a user's Ctrl-C does.
"""
import contextlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import darts_train
from ops import cpu_kernels
from utils.run.run import caused_by_interrupt
from utils.run_files import CHECKPOINT

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MESSAGE = "interrupted: run again with --resume to continue from the last finished epoch"
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process that Ctrl-C ended

needs_kernels = pytest.mark.skipif(not cpu_kernels.available(), reason="the cpu kernels are not built")


def chained(error, cause=None, context=None):
    error.__cause__, error.__context__ = cause, context
    return error


def test_an_interrupt_is_found_through_the_exceptions_it_caused():
    assert caused_by_interrupt(KeyboardInterrupt())
    assert caused_by_interrupt(chained(SystemError("nnabla"), cause=KeyboardInterrupt()))
    assert caused_by_interrupt(chained(SystemError("nnabla"), context=KeyboardInterrupt()))
    assert caused_by_interrupt(chained(SystemError(), cause=chained(SystemError(), context=KeyboardInterrupt())))
    assert not caused_by_interrupt(chained(SystemError("nnabla"), cause=ValueError()))
    assert not caused_by_interrupt(RuntimeError())
    a, b = RuntimeError(), RuntimeError()
    assert not caused_by_interrupt(chained(a, context=chained(b, context=a)))  # a cycle ends the search


@pytest.fixture
def interrupt_in_a_kernel(monkeypatch):
    """interrupt(method, min_elements, when): the batch norms (and 1x1 convs) on inputs of min_elements or
    more run on the cpu kernels, which nnabla calls back from C++, and the first call of
    BatchNormalization.<method> ('forward_impl' or 'backward_impl') at which when() holds sends this
    process a SIGINT from inside the callback."""
    def interrupt(method, min_elements, when=lambda: True):
        # Only a few layers: the kernels' threads on many tiny layers make a step slow on a busy machine.
        monkeypatch.setattr(cpu_kernels, "MIN_ELEMENTS", min_elements)
        original = getattr(cpu_kernels.BatchNormalization, method)
        sent = []

        def patched(self, *args):
            if not sent and when():
                sent.append(True)
                os.kill(os.getpid(), signal.SIGINT)  # Python raises KeyboardInterrupt here, in the callback
            return original(self, *args)
        monkeypatch.setattr(cpu_kernels.BatchNormalization, method, patched)
        return sent
    with python_handles_interrupts():
        yield interrupt


@contextlib.contextmanager
def python_handles_interrupts():
    """Python's own SIGINT handler while active, whatever this process inherited (and so SIGINT's default in the
    processes it starts): a job that a non-interactive shell starts in the background starts with SIGINT ignored,
    which Python then keeps, and which a child process would inherit."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def ends_interrupted(main, argv, capsys):
    """Runs a script's main(argv), which must end as an interrupted run: exit 130, one line on stderr."""
    capsys.readouterr()
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
    except KeyboardInterrupt:
        pytest.fail("the interruption escaped the script")
    assert exit_info.value.code == INTERRUPTED
    assert capsys.readouterr().err.splitlines() == [MESSAGE]


@needs_kernels
@pytest.mark.parametrize("method", ["forward_impl", "backward_impl"])
def test_an_interrupt_inside_a_training_step_ends_with_one_line(tmp_path, capsys, interrupt_in_a_kernel, method):
    sent = interrupt_in_a_kernel(method, min_elements=100 * 12 * 8 * 8)  # the stem's output: batch x 3C x 8 x 8
    ends_interrupted(darts_train.main, ["--dataset", "digits", "--num-cells", "3", "--output-filter", "4", "-f", "0",
                                        "-b", "100", "--model-arch-name", "DARTS_V2", "-m", str(tmp_path)], capsys)
    assert sent


@needs_kernels
def test_an_interrupt_inside_a_search_step_ends_with_one_line(tiny_search, tmp_path, capsys, interrupt_in_a_kernel):
    # In the backward pass (the training tests cover the forward one too); from the stem's output on.
    sent = interrupt_in_a_kernel("backward_impl", min_elements=16 * 12 * 8 * 8)
    ends_interrupted(lambda argv: tiny_search(tmp_path, *argv), ["--epoch", "1"], capsys)
    assert sent


@pytest.mark.slow
@needs_kernels
def test_a_search_interrupted_inside_a_step_resumes_exactly(tiny_search, tmp_path, capsys, interrupt_in_a_kernel):
    parts = tmp_path / "parts"
    # In epoch 2, once epoch 1's checkpoint is written.
    sent = interrupt_in_a_kernel("backward_impl", min_elements=16 * 12 * 8 * 8,
                                 when=lambda: (parts / CHECKPOINT).exists())
    whole = tiny_search(tmp_path / "whole", "--epoch", "2")
    ends_interrupted(lambda argv: tiny_search(parts, *argv), ["--epoch", "2"], capsys)
    assert sent
    tiny_search(parts, "--epoch", "2", "--resume")
    for key in ("normal", "reduction"):
        np.testing.assert_array_equal(np.load(whole / "alpha_history.npz")[key],
                                      np.load(parts / "alpha_history.npz")[key])
    assert (whole / "DARTS_arch.json").read_text() == (parts / "DARTS_arch.json").read_text()


def interrupt_a_running_script(script, argv, tmp_path):
    """Starts `script` with argv and --progress-every 1, sends it SIGINT half way through its third step
    (timed from the progress lines of the first two), and returns (exit status, stderr)."""
    # stderr to a file: a pipe could fill with a long traceback.
    with open(tmp_path / "stderr.txt", "w+") as err, python_handles_interrupts():
        process = subprocess.Popen([sys.executable, "-u", os.path.join(ROOT, script), *argv, "--progress-every", "1"],
                                   cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            ended = {}
            for line in process.stdout:
                for step in (1, 2):
                    if f" step {step}/" in line:
                        ended[step] = time.monotonic()
                if 2 in ended:
                    # Half a step into the third: in its forward or backward pass, which take most of a step.
                    time.sleep((ended[2] - ended[1]) / 2)
                    process.send_signal(signal.SIGINT)
                    break
            else:
                pytest.fail(f"{script} ended before its second step")
            process.communicate(timeout=120)
        finally:
            process.kill()
        err.seek(0)
        return process.returncode, err.read()


def assert_one_line(err):
    lines = [line for line in err.splitlines() if "[nnabla][INFO]" not in line]
    assert lines == [MESSAGE], err[-2000:]


@pytest.mark.slow
@needs_kernels
def test_sigint_to_a_training_script_mid_step_ends_with_one_line(tmp_path):
    # C = 16 at batch 64: the larger layers run on the cpu kernels' callbacks.
    status, err = interrupt_a_running_script(
        "darts_train.py", ["--dataset", "digits", "--num-cells", "3", "--output-filter", "16", "-b", "64",
                           "--model-arch-name", "DARTS_V2", "-m", str(tmp_path / "run")], tmp_path)
    assert status == INTERRUPTED
    assert_one_line(err)


@pytest.mark.slow
@needs_kernels
def test_sigint_to_a_search_script_mid_step_ends_with_one_line(tmp_path):
    status, err = interrupt_a_running_script(
        "darts_search.py", ["--dataset", "digits", "--num-cells", "3", "--output-filter", "16", "--batch-size", "64",
                            "-m", str(tmp_path / "run"), "--model-arch-name", str(tmp_path / "arch.json")], tmp_path)
    assert status == INTERRUPTED
    assert_one_line(err)

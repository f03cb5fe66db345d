"""Every numeric flag has its range, every setting that would never take effect is refused, and every refused
command line is one line that points to --help (exit status 2), before anything is written.

Each row runs an entry point as a user would (tests/reliability.py's drive) in an empty working directory
with its outputs there, and asserts the exit status, the one line (no usage block, no traceback), what it
says, and that the directory is still empty.
"""
import dataclasses

import pytest

import darts_plot
import darts_search
import darts_train
import scripts.bilevel_toy
import scripts.darts_random
import scripts.demo
import scripts.demo_rnn
from args import FLAG_RANGES, search_parser, train_parser
from tests.reliability import assert_one_line_failure, drive
from utils.run.command_line import CommandLineParser, Range
from utils.search.variants import VARIANTS

S, T, P = darts_search.main, darts_train.main, darts_plot.main
RECURRENT = ["--space", "recurrent"]
DADARTS = ["--variant", "dadarts"]
COMPLEXITY = ["--variant", "complexity"]

# (entry point, argv, what the line says): values out of their range, and nan and inf anywhere.
RANGES = [
    (T, ["--lr", "nan"], "--lr must be a finite number, not nan"),
    (T, ["--lr", "inf"], "--lr must be a finite number, not inf"),
    (S, ["--lr=-inf"], "--lr must be a finite number, not -inf"),
    (T, ["--lr", "-0.5"], "--lr must be positive, not -0.5"),
    (S, ["--lr", "0"], "--lr must be positive, not 0"),
    (S, ["--seed", "-1"], "--seed must be in [0, 4294967295], not -1"),
    (T, ["--seed", "4294967296"], "--seed must be in [0, 4294967295], not 4294967296"),
    (T, ["--seeds", "0,-1"], "a seed of --seeds must be in [0, 4294967295], not -1"),
    (S, ["--arch-lr", "0"], "--arch-lr must be positive"),
    (S, ["--arch-lr", "nan"], "--arch-lr must be a finite number"),
    (S, ["--arch-beta1", "1"], "--arch-beta1 must be in [0, 1)"),
    (S, ["--arch-beta2", "-0.1"], "--arch-beta2 must be in [0, 1)"),
    (S, ["--arch-weight-decay", "-1"], "--arch-weight-decay must be at least 0"),
    (T, ["--momentum", "1"], "--momentum must be in [0, 1), not 1"),
    (S, ["--momentum", "-0.1"], "--momentum must be in [0, 1)"),
    (T, ["--weight-decay=-1e-4"], "--weight-decay must be at least 0"),
    (T, ["--grad-clip", "0"], "--grad-clip must be positive"),
    (S, ["--grad-clip", "inf"], "--grad-clip must be a finite number"),
    (T, ["--epoch", "0"], "--epoch must be at least 1"),
    (S, ["--batch-size", "0"], "--batch-size must be at least 1"),
    (T, ["--num-cells", "0"], "--num-cells must be at least 1"),
    (S, ["--output-filter", "0"], "--output-filter must be at least 1"),
    (T, ["--progress-every", "0"], "--progress-every must be at least 1"),
    (T, ["-f", "-20"], "--output-filter + --additional-filters-on-retrain must be at least 1"),
    (T, ["--cutout-length", "-1"], "--cutout-length must be at least 0"),
    (T, ["--drop-path-prob", "1"], "--drop-path-prob must be in [0, 1)"),
    (T, ["--drop-path-delta", "-0.1"], "--drop-path-delta must be at least 0"),
    (T, ["--label-smoothing", "1"], "--label-smoothing must be in [0, 1)"),
    (T, ["--auxiliary-weight", "-1"], "--auxiliary-weight must be at least 0"),
    (T, ["--lr-min", "-1"], "--lr-min must be at least 0"),
    (T, ["--lr-schedule", "exponential", "--lr-decay", "0"], "--lr-decay must be in (0, 1]"),
    (T, ["--lr-schedule", "exponential", "--lr-decay", "1.5"], "--lr-decay must be in (0, 1]"),
    (T, ["--dataset", "imagenet", "--image-size", "16"], "--image-size must be at least 32"),
    (T, ["--num-workers", "-1"], "--num-workers must be at least 0"),
    (T, ["--save-interval", "0"], "--save-interval must be at least 1"),
    (T, ["--keep-last", "0"], "--keep-last must be at least 1"),
    (T, ["--train-portion", "1.5"], "--train-portion must be between 0 and 1"),
    (S, ["--train-portion", "1"], "--train-portion must be between 0 and 1"),
    (S, ["--train-portion", "0"], "--train-portion must be between 0 and 1"),
    (S, ["--finetune-epochs", "-1"], "--finetune-epochs must be at least 0"),
    (S, ["--seeds", "0,1", "--select-epochs", "0"], "--select-epochs must be at least 1"),
    (S, ["--alpha-epoch", "-1"], "--alpha-epoch must be at least 0"),
    (S, ["--variant", "complexity", "--extract-lambda", "2"], "--extract-lambda must be in [0, 1]"),
    (T, RECURRENT + ["--nhid", "0"], "--nhid must be at least 1"),
    (S, RECURRENT + ["--bptt", "1"], "--bptt must be at least 2"),
    (T, RECURRENT + ["--eval-batch-size", "0"], "--eval-batch-size must be at least 1"),
    (T, RECURRENT + ["--dropout", "1"], "--dropout must be in [0, 1)"),
    (S, RECURRENT + ["--dropouth", "nan"], "--dropouth must be a finite number"),
    (T, RECURRENT + ["--dropoute", "-0.1"], "--dropoute must be in [0, 1)"),
    (S, RECURRENT + ["--tar-beta", "-1"], "--tar-beta must be at least 0"),
    (T, RECURRENT + ["--nonmono", "0"], "--nonmono must be at least 1"),
    (S, COMPLEXITY + ["--temperature-start", "0"], "--temperature-start must be positive"),
    (S, COMPLEXITY + ["--temperature-start", "inf"], "--temperature-start must be a finite number"),
    (S, COMPLEXITY + ["--temperature-delta", "-1", "--epoch", "3"], "--temperature-delta * (epochs - 1) must be"),
    (S, COMPLEXITY + ["--log10-lambda-min", "nan"], "--log10-lambda-min must be a finite number"),
    (S, DADARTS + ["--hd-on-weights", "--hd-start", "-1"], "--hd-start must be at least 0"),
    (S, DADARTS + ["--topk-on-alphas", "--topk-temperature", "-1"], "--topk-temperature must be at least 0"),
    (S, DADARTS + ["--topk-on-alphas", "--topk-k-edge", "-1"], "--topk-k-edge must be at least 0"),
    (S, DADARTS + ["--dal-on-alphas", "--dal-factor", "-1"], "--dal-factor must be at least 0"),
    (S, DADARTS + ["--dal-on-alphas", "--dal-starting-epoch", "-1"], "--dal-starting-epoch must be at least 0"),
    (S, DADARTS + ["--dal-on-alphas", "--linear-dal-factor-increase", "--dal-factor-max", "nan"],
     "--dal-factor-max must be a finite number"),
]

# Settings that would never take effect under the others.
NEVER_EFFECTIVE = [
    (S, DADARTS + ["--hd-on-weights", "--hd-start", "10", "--epoch", "2"],
     "--hd-start 10 would never take effect: --epoch 2 runs epochs 0 to 1"),
    (S, DADARTS + ["--dal-on-alphas", "--dal-starting-epoch", "5", "--epoch", "5"],
     "--dal-starting-epoch 5 would never take effect"),
    (S, ["--dadarts", "--topk-on-weights"], "--hd-on-weights would never take effect: --topk-on-weights wins"),
    (S, DADARTS + ["--topk-temperature", "3"], "--topk-temperature would never take effect: no top-k is on"),
    (S, DADARTS + ["--topk-k-node", "3"], "--topk-k-node would never take effect: no top-k is on"),
    (S, DADARTS + ["--linear-temperature-increase"], "--linear-temperature-increase would never take effect"),
    (S, DADARTS + ["--topk-on-alphas", "--linear-temperature-increase", "--topk-temperature", "3"],
     "--topk-temperature would never take effect: --linear-temperature-increase sets"),
    (S, DADARTS + ["--topk-on-alphas", "--linear-temperature-max", "10"],
     "--linear-temperature-max would never take effect: it needs --linear-temperature-increase"),
    (S, DADARTS + ["--dal-factor", "2"], "--dal-factor would never take effect: it needs --dal-on-alphas"),
    (S, DADARTS + ["--dal-cells", "normal"], "--dal-cells would never take effect: it needs --dal-on-alphas"),
    (S, DADARTS + ["--dal-on-alphas", "--linear-dal-factor-increase", "--dal-factor", "2"],
     "--dal-factor would never take effect: --linear-dal-factor-increase sets"),
    (S, DADARTS + ["--dal-on-alphas", "--dal-factor-max", "2"],
     "--dal-factor-max would never take effect: it needs --linear-dal-factor-increase"),
    (S, COMPLEXITY + ["--sampling-mode", "naive", "--temperature-delta", "0"],
     "--temperature-delta would never take effect: --sampling-mode naive"),
    (S, ["--cutout-length", "8"], "--cutout-length would never take effect: it needs --cutout"),
    (T, ["--cutout", "false", "--cutout-length", "8"], "--cutout-length would never take effect"),
    (T, ["--lr-schedule", "exponential", "--lr-min", "0.01"], "--lr-min would never take effect"),
    (T, ["--lr-decay", "0.5"], "--lr-decay would never take effect: it is the factor of --lr-schedule exponential"),
    (S, ["--lr", "0.0001"], "--lr-min 0.001 must not exceed --lr 0.0001"),
    (T, ["--auxiliary", "false", "--auxiliary-weight", "0.5"], "--auxiliary-weight would never take effect"),
    (T, ["--epoch", "10", "--drop-path-delta", "0.01", "--drop-path-prob", "0.3"],
     "--drop-path-prob would never take effect"),
    (T, ["--image-size", "64"], "--image-size would never take effect: they are read for --dataset imagenet only"),
    (T, ["--num-workers", "4"], "--num-workers would never take effect"),
    (T, ["--epoch", "5", "--save-interval", "8"], "--save-interval would never take effect"),
    (T, ["--epoch", "5", "--keep-last", "2"], "--keep-last would never take effect"),
    (T, ["--epoch", "4", "--save-interval", "2", "--keep-last", "2"],
     "--keep-last would never take effect: --epoch 4 with --save-interval 2 writes 2 params_epoch file(s)"),
    (S, ["--cutout", "--cutout-length", "0"], "--cutout would never take effect: --cutout-length is 0"),
    (T, RECURRENT + ["--epoch", "3", "--nonmono", "2"], "--nonmono would never take effect"),
    (T, ["--seeds", "0,1", "--seed", "5"], "--seed would never take effect: --seeds gives each run its seed"),
    (S, ["--seeds", "0,1", "--model-arch-name", "cell.json"], "--model-arch-name would never take effect"),
    (S, ["--force-resume"], "--force-resume would never take effect: it needs --resume"),
    (T, ["-d", "1"], "--device-id would never take effect: it chooses the GPU of -c cudnn"),
    (T, ["-t", "half", "--cpu-kernels", "false"], "--cpu-kernels would never take effect"),
    (T, ["--dataset", "imagenet", "--cutout", "true"], "cutout is not part of the ImageNet recipe"),
    (T, ["--dataset", "imagenet", "--augment", "affine"], "--augment affine is for the digit sets"),
    (T, ["--dataset", "imagenet", "--train-portion", "0.5"], "--train-portion is not offered for imagenet"),
    (S, ["--select-epochs", "2"], "--select-epochs needs --seeds"),
    (S, DADARTS + ["--topk-on-virtualstep"], "--topk-on-virtualstep needs --second-order"),
]

# Command lines argparse refuses, in every parser of the entry points.
ARGUMENT_ERRORS = [
    (T, ["--bogus"], "unrecognized arguments: --bogus"),
    (S, ["--lr", "abc"], "argument --lr: invalid float value: 'abc'"),
    (T, ["--context", "gpu"], "argument --context/-c: invalid choice: 'gpu'"),
    (S, ["--cutout", "maybe"], "not a boolean: 'maybe'"),
    (S, ["--seeds", "0,0"], "a seed is given twice"),
    (T, ["--epoch"], "argument --epoch/-e: expected one argument"),
    (S, ["--config", "absent.yaml"], "config file not found: absent.yaml"),
    (S, ["--summary"], "unrecognized arguments: --summary"),
    (P, [], "the following arguments are required: COMMAND"),
    (P, ["pareto"], "the following arguments are required: DIR"),
    (P, ["curves", "run", "--x", "time"], "argument --x: invalid choice: 'time'"),
    (P, ["curves", "a", "b", "--labels", "first"], "--labels has 1 label(s) for 2 directories"),
    (scripts.demo.main, ["--search-epochs", "0"], "--search-epochs must be at least 1"),
    (scripts.demo_rnn.main, ["--bptt", "1"], "--bptt must be at least 2"),
    (scripts.bilevel_toy.main, ["--xi", "0.1", "-1"], "--xi must be at least 0, not -1"),
    (scripts.bilevel_toy.main, ["--xi", "nan"], "--xi must be a finite number"),
    (scripts.darts_random.main, ["--num-cells-to-draw", "0", "--out", "cells"],
     "--num-cells-to-draw must be at least 1"),
    (scripts.darts_random.main, ["--num-cells-to-draw", "2", "--out", "cells", "--seed", "-1"],
     "--seed must be in [0, 4294967295]"),
    (scripts.darts_random.main, ["--num-cells-to-draw", "2"], "--out is required"),
]


@pytest.fixture
def nothing_runs(monkeypatch, tmp_path):
    """An empty working directory, and no run that could start: every script's run sets the context first,
    so a command line that is not refused fails there (instead of downloading a data set)."""
    def refuse(*args, **kwargs):
        raise AssertionError("a run started")
    for module in ("darts_train", "darts_search", "utils.recurrent.search", "utils.recurrent.train"):
        monkeypatch.setattr(f"{module}.set_context", refuse)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _refused(main, argv, says, workdir):
    run = ["-m", "run"] if main in (S, T) else []
    outcome = drive(main, argv + run)
    assert_one_line_failure(outcome, 2)
    line = outcome.error_lines[0]
    assert says in line and "--help" in line, line
    assert not list(workdir.iterdir()), list(workdir.iterdir())  # nothing written, not even the run's directory


@pytest.mark.parametrize("main, argv, says", RANGES, ids=[" ".join(row[1]) for row in RANGES])
def test_a_value_out_of_its_range_is_one_line(nothing_runs, main, argv, says):
    _refused(main, argv, says, nothing_runs)


@pytest.mark.parametrize("main, argv, says", NEVER_EFFECTIVE, ids=[" ".join(row[1]) for row in NEVER_EFFECTIVE])
def test_a_setting_that_would_never_take_effect_is_one_line(nothing_runs, main, argv, says):
    _refused(main, argv, says, nothing_runs)


@pytest.mark.parametrize("main, argv, says", ARGUMENT_ERRORS,
                         ids=[f"{row[0].__module__} {' '.join(row[1])}" for row in ARGUMENT_ERRORS])
def test_an_argument_error_is_one_line_that_points_to_help(nothing_runs, main, argv, says):
    _refused(main, argv, says, nothing_runs)


@pytest.mark.parametrize("make_parser", [search_parser, train_parser])
def test_every_numeric_flag_has_a_range(make_parser):
    """A numeric flag added without a range fails here: its range goes into args.FLAG_RANGES, or into its
    variant's Settings (setting(..., within=...))."""
    declared = {f.name for variant in VARIANTS.values() for f in dataclasses.fields(variant.Settings)
                if isinstance(f.metadata.get("within"), Range)}
    parser = make_parser()
    assert isinstance(parser, CommandLineParser)
    numeric = {action.dest for action in parser._actions if action.type in (int, float) and not action.choices}
    assert numeric and numeric <= set(FLAG_RANGES) | declared, numeric - set(FLAG_RANGES) - declared
    variant_numbers = {f.name for variant in VARIANTS.values() for f in dataclasses.fields(variant.Settings)
                       if type(f.default) in (int, float) and not f.metadata.get("choices")}
    assert variant_numbers <= declared, variant_numbers - declared


def test_the_defaults_are_in_range_and_take_effect(nothing_runs):
    """The checks refuse no default: every parser's and every variant's defaults parse."""
    from args import parse_args
    for make_parser in (search_parser, train_parser):
        for space in (["--space", "cnn"], RECURRENT):
            parse_args(make_parser(), space)
    for name in VARIANTS:
        parse_args(search_parser(), ["--variant", name])
    parse_args(search_parser(), ["--dadarts"])
    parse_args(train_parser(), ["--dataset", "imagenet"])
    # A GPU run's config.yaml read on the cpu: the machine's settings count from the command line only.
    (nothing_runs / "gpu.yaml").write_text("context: cudnn\ndevice_id: '1'\n")
    assert parse_args(train_parser(), ["--config", "gpu.yaml", "-c", "cpu"]).device_id == "1"

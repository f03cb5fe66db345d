"""darts_train.py end to end on the 8x8 digits: outputs, evaluation, resume, summary, user errors."""
import inspect
import json
import os

import h5py
import numpy as np
import pytest
import yaml

import darts_train
from darts_train import SERIES
from models.eval_network import CIFAR, CellVariant
from models.genotype import NAMED_ARCHITECTURES, load_architecture, save_architecture, to_genotype_string
from utils.run.monitoring import series_path
from utils.run_files import FINAL_PARAMS, epoch_params
from utils.training.model_stats import SUMMARY_KEYS

# 3 cells, C=4, 14 steps of 100 per epoch.
TINY = ["--dataset", "digits", "--num-cells", "3", "--output-filter", "4", "-f", "0", "-b", "100",
        "--model-arch-name", "DARTS_V2"]


def train(monitor, *extra):
    return darts_train.main(TINY + ["--save-interval", "1", "-m", str(monitor), *extra])


def run_mode(monitor, *extra):
    """darts_train.py in a mode (--summary, --evaluate, --export), which takes no training flag."""
    return darts_train.main(TINY + ["-m", str(monitor), *extra])


def read_json(path):
    with open(path) as f:
        return json.load(f)


def read_h5(path):
    values = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: values.__setitem__(name, item[...]) if isinstance(item, h5py.Dataset) else None)
    return values


def series_values(monitor, name):
    return np.loadtxt(series_path(str(monitor), name), ndmin=2)


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    monitor = tmp_path_factory.mktemp("two_epochs")
    train(monitor, "--epoch", "2")
    return monitor


@pytest.mark.slow
def test_training_writes_series_summary_parameters_and_config(two_epochs):
    for name in SERIES:
        values = series_values(two_epochs, name)
        assert values[:, 0].tolist() == [1, 2]  # epochs as the log counts them
    errors = series_values(two_epochs, "Test error")[:, 1]
    summary = read_json(two_epochs / "summary.json")
    assert set(SUMMARY_KEYS) <= set(summary)
    assert 0 < summary["params"] < summary["params_total"]
    assert summary["macs"] > summary["params"]
    assert summary["final_test_error"] == pytest.approx(errors[-1], abs=1e-6)
    assert summary["best_test_error_oracle"] == pytest.approx(errors.min(), abs=1e-6)
    for name in (epoch_params(1), epoch_params(2), FINAL_PARAMS, "checkpoint.npz"):
        assert (two_epochs / name).is_file(), name
    saved = read_h5(two_epochs / FINAL_PARAMS)
    assert any(name.endswith("/mean") for name in saved)  # batch-norm statistics, needed to evaluate
    with open(two_epochs / "config.yaml") as f:
        config = yaml.safe_load(f)
    assert config["epoch"] == 2 and config["num_cells"] == 3 and config["model_arch_name"] == "DARTS_V2"


def test_training_keeps_the_architecture_and_draws_its_cells_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no DARTS_arch.json here: the run must draw from what it trained
    train(tmp_path / "run", "--epoch", "1")
    assert load_architecture(str(tmp_path / "run" / "DARTS_arch.json")) == NAMED_ARCHITECTURES["DARTS_V2"]
    drawn = sorted(path.name for path in (tmp_path / "run" / "cells").iterdir())
    assert [name.split(".")[0] for name in drawn] == ["normal", "reduction"]


def test_evaluate_reproduces_the_final_test_error(two_epochs, tmp_path):
    error = run_mode(tmp_path, "--evaluate", str(two_epochs / FINAL_PARAMS))
    assert error == read_json(two_epochs / "summary.json")["final_test_error"]
    assert read_json(tmp_path / "evaluation.json")["test_error"] == error
    # The parameters after epoch 1 are a different network state.
    assert run_mode(tmp_path, "--evaluate", str(two_epochs / epoch_params(1))) != error


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(two_epochs, tmp_path):
    train(tmp_path, "--epoch", "1")
    train(tmp_path, "--epoch", "2", "--resume")
    expected, resumed = read_h5(two_epochs / FINAL_PARAMS), read_h5(tmp_path / FINAL_PARAMS)
    assert expected.keys() == resumed.keys()
    for name in expected:
        np.testing.assert_array_equal(resumed[name], expected[name], err_msg=name)
    for name in SERIES[:4]:
        np.testing.assert_array_equal(series_values(tmp_path, name), series_values(two_epochs, name))


def test_summary_reads_no_data(tmp_path):
    empty = tmp_path / "data"
    empty.mkdir()
    sizes = {}
    for dataset in ("cifar10", "cifar100"):
        monitor = tmp_path / dataset
        run_mode(monitor, "--dataset", dataset, "--data-dir", str(empty), "--summary")
        sizes[dataset] = read_json(monitor / "network_summary.json")
        assert os.listdir(monitor) == ["network_summary.json"]  # never a training's summary.json
    assert os.listdir(empty) == []
    # 90 more classes: 90 more rows in the classifier (64 features + bias) and in the auxiliary
    # classifier (768 + bias).
    assert sizes["cifar100"]["params"] - sizes["cifar10"]["params"] == 90 * 65
    assert sizes["cifar100"]["params_total"] - sizes["cifar10"]["params_total"] == 90 * 65 + 90 * 769
    assert set(sizes["cifar100"]) == {"params", "params_total", "macs"}  # a network's size, no errors


def summary_of(monitor, arch_spec):
    return run_mode(monitor, "--summary", "--model-arch-name", arch_spec, "--dataset", "cifar10")


def test_every_architecture_form_builds_the_same_network(tmp_path):
    arch = NAMED_ARCHITECTURES["DARTS_V2"]
    json_path = tmp_path / "arch.json"
    save_architecture(arch, str(json_path))
    genotype_path = tmp_path / "genotype.txt"
    genotype_path.write_text(to_genotype_string(arch))
    named = summary_of(tmp_path / "named", "DARTS_V2")
    for form, spec in (("json", str(json_path)), ("string", to_genotype_string(arch)),
                       ("genotype_file", str(genotype_path))):
        assert summary_of(tmp_path / form, spec) == named, spec
    assert summary_of(tmp_path / "v1", "DARTS_V1")["params"] != named["params"]


@pytest.mark.parametrize("content, message", [
    ('{"arch_normal": {"2": [[12, 0], [2, 1]], "3": [[2, 0]], "4": [[2, 0]], "5": [[2, 0]]}, '
     '"arch_reduction": {"2": [[4, 0]], "3": [[4, 0]], "4": [[4, 0]], "5": [[4, 0]]}}', "unknown op id 12"),
    ("this is not an architecture", "neither architecture JSON nor"),
    (None, "does not exist"),
])
def test_architecture_defects_exit_1_with_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "arch.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        run_mode(tmp_path / "monitor", "--summary", "--model-arch-name", str(path))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("make_file, message", [
    (lambda path: None, "does not exist"),
    (lambda path: path.write_text("not hdf5"), "cannot read parameter file"),
])
def test_bad_parameter_file_exits_1_with_one_line(tmp_path, capsys, make_file, message):
    path = tmp_path / "params.h5"
    make_file(path)
    with pytest.raises(SystemExit) as exit_info:
        run_mode(tmp_path / "monitor", "--evaluate", str(path))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_parameters_of_another_network_are_refused(two_epochs, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        darts_train.main(TINY + ["-m", str(tmp_path), "--num-cells", "4",
                                 "--evaluate", str(two_epochs / FINAL_PARAMS)])
    assert exit_info.value.code == 1
    assert "does not fit this network" in capsys.readouterr().err


class NetworkBuilt(Exception):
    """Stops a mode once it has built its networks (before any data or parameter file is read)."""


# What shapes a network: the arguments of build_train_graph and build_test_graph that a saved network must
# be rebuilt with (the input's batch size aside).
NETWORK_ARGUMENTS = ("num_classes", "channels", "num_cells", "ends", "cells")


@pytest.fixture
def networks_built(monkeypatch):
    """Records the network-shaping arguments of every graph darts_train builds, and stops the mode there."""
    built = []

    def recording(real):
        signature = inspect.signature(real)

        def build(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            built.append({"image": bound.arguments["input_shape"][1:],
                          **{name: bound.arguments[name] for name in NETWORK_ARGUMENTS}})
            return real(*args, **kwargs)
        return build

    def stop(*args, **kwargs):
        raise NetworkBuilt
    for name in ("build_train_graph", "build_test_graph"):
        monkeypatch.setattr(darts_train, name, recording(getattr(darts_train, name)))
    # Training and --summary summarise the network once built; --evaluate and --export then load parameters.
    monkeypatch.setattr(darts_train, "network_summary", stop)
    monkeypatch.setattr(darts_train, "network_size", stop)
    monkeypatch.setattr(darts_train, "load_parameter_file", stop)
    return built


def test_training_evaluate_summary_and_export_build_the_same_network(tmp_path, networks_built):
    """Every network-shaping flag reaches every mode: a network trained with them is evaluated, summarised
    and exported as it was trained (--export once ignored --cell-bn and --pool-bn)."""
    shaping = ["--cell-bn", "none", "--pool-bn", "--additional-filters-on-retrain", "2", "--auxiliary"]
    modes = {"training": [], "evaluate": ["--evaluate", "params.h5"], "summary": ["--summary"],
             "export": ["--export", "params.h5"]}
    per_mode = {}
    for mode, flags in modes.items():
        networks_built.clear()
        with pytest.raises(NetworkBuilt):
            darts_train.main(TINY + shaping + ["-m", str(tmp_path / mode)] + flags)
        per_mode[mode] = networks_built[:]
    assert len(per_mode["training"]) == 2  # the training graph and the test graph
    expected = {"image": (1, 8, 8), "num_classes": 10, "channels": 6, "num_cells": 3, "ends": CIFAR,
                "cells": CellVariant(affine=False, pool_bn=True)}
    for mode, settings in per_mode.items():
        assert settings and all(s == expected for s in settings), (mode, settings)


def test_impossible_settings_are_usage_errors(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        train(tmp_path, "--drop-path-prob", "1")
    assert exit_info.value.code == 2


def usage_error(capsys, argv):
    """The last stderr line of a command line darts_train.py refuses before running anything (exit 2)."""
    with pytest.raises(SystemExit) as exit_info:
        darts_train.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if "error:" in line] == err[-1:], err  # argparse's usage, then one error line
    return err[-1]


@pytest.fixture
def nothing_runs(monkeypatch):
    """Fails a test whose command line starts a mode (every mode sets the context first) instead of being
    refused: without the check, `--space recurrent --export` would start an 8000-epoch training."""
    def refuse(*args, **kwargs):
        raise AssertionError("a mode ran")
    monkeypatch.setattr(darts_train, "set_context", refuse)


RECURRENT = ["--space", "recurrent", "--model-arch-name", "DARTS_V2"]


@pytest.mark.parametrize("extra, flag", [(["--export", "params.h5"], "--export"), (["--seeds", "0,1"], "--seeds")])
def test_a_mode_the_recurrent_space_lacks_exits_2_with_one_line(tmp_path, capsys, nothing_runs, extra, flag):
    line = usage_error(capsys, RECURRENT + ["-m", str(tmp_path)] + extra)
    assert flag in line and "--space" in line, line
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("extra", [
    ["--summary", "--evaluate", "params.h5"],
    ["--evaluate", "params.h5", "--export", "params.h5"],
    ["--export", "params.h5", "--seeds", "0,1"],
])
def test_two_modes_at_once_exit_2_with_one_line(tmp_path, capsys, nothing_runs, extra):
    line = usage_error(capsys, TINY + ["-m", str(tmp_path)] + extra)
    flags = [arg for arg in extra if arg.startswith("--")]
    assert all(flag in line for flag in flags), line
    assert not os.listdir(tmp_path)


def test_two_modes_are_refused_under_the_recurrent_space_too(tmp_path, capsys, nothing_runs):
    line = usage_error(capsys, RECURRENT + ["-m", str(tmp_path), "--summary", "--evaluate", "params.h5"])
    assert "--summary" in line and "--evaluate" in line

"""darts_train.py --init-params PARAMS.h5: fine-tuning, a training that starts from given parameters.

The file is --import-weights' imported_params.h5 or any parameter file of the same network; the training's
first step runs with its values (batch-norm statistics included), a file that does not fit is one line, a
resumed fine-tuning continues from its own checkpoint, and the modes refuse the flag."""
import gzip
import os

import h5py
import nnabla as nn
import numpy as np
import pytest
import yaml

import darts_train
from models.eval_network import build_train_graph
from models.genotype import load_architecture
from models.recurrent import build_eval_model
from models.recurrent_genotype import load_recurrent_genotype
from utils.recurrent.torch_import import quark0_rnn_values
from utils.run.context import uses_cpu_kernels
from utils.run.monitoring import series_path
from utils.run_files import CONFIG, FINAL_PARAMS
from utils.training.parameter_files import load_parameter_file, read_parameter_file, save_parameter_file
from utils.training.torch_import import write_imported

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "import")
# tests/test_train.py's tiny network: 3 cells, C=4, the auxiliary head, digits (8x8, 10 classes), batch 100;
# without drop path, so that the first step's loss depends on the weights and the batch only.
TINY = ["--dataset", "digits", "--num-cells", "3", "--output-filter", "4", "-f", "0", "-b", "100",
        "--model-arch-name", "DARTS_V2", "--drop-path-prob", "0"]
INPUT, CLASSES, CHANNELS, CELLS = (1, 8, 8), 10, 4, 3


class FirstStep(Exception):
    """Stops a training at its first step, once recorded."""


def tiny_network(batch_size):
    return build_train_graph(load_architecture("DARTS_V2"), (batch_size,) + INPUT, CLASSES, CHANNELS, CELLS,
                             auxiliary=True, aux_weight=0.4, cpu_kernels=uses_cpu_kernels("cpu", "float", True))


@pytest.fixture(scope="module")
def params_file(tmp_path_factory):
    """A parameter file of the tiny network with values no initialiser gives: every weight drawn anew, every
    batch-norm statistic too (variances positive)."""
    path = tmp_path_factory.mktemp("init") / "params.h5"
    nn.clear_parameters()
    tiny_network(1)
    rng = np.random.default_rng(3)
    for name, variable in nn.get_parameters(grad_only=False).items():
        values = rng.normal(0.0, 0.3, variable.shape)
        variable.d = np.abs(values) + 0.5 if name.endswith("/var") else values
    save_parameter_file(str(path), nn.get_parameters(grad_only=False))
    nn.clear_parameters()
    return path


def fine_tune(monitor, params, *extra):
    return darts_train.main(TINY + ["-m", str(monitor), "--init-params", str(params), *extra])


def test_the_first_step_runs_with_the_files_weights_and_statistics(params_file, tmp_path, monkeypatch):
    seen = {}

    def first_step(graph, grad_scale=1.0):
        # Before the forward pass, which moves the batch-norm statistics.
        seen["params"] = {name: v.d.copy() for name, v in nn.get_parameters(grad_only=False).items()}
        seen["batch"] = graph.x.d.copy(), graph.y.d.copy()
        graph.loss.forward()
        seen["loss"] = float(graph.loss.d)
        raise FirstStep
    monkeypatch.setattr("utils.training.network_training.forward_backward", first_step)
    with pytest.raises(FirstStep):
        fine_tune(tmp_path, params_file, "--epoch", "1")

    saved = read_parameter_file(str(params_file))
    assert seen["params"].keys() == saved.keys()
    for name, value in saved.items():
        np.testing.assert_array_equal(seen["params"][name], value, err_msg=name)
    # The loss of a network loaded with the file, on the same batch.
    nn.clear_parameters()
    graph = tiny_network(100)
    load_parameter_file(str(params_file), nn.get_parameters(grad_only=False))
    graph.x.d, graph.y.d = seen["batch"]
    graph.loss.forward()
    assert seen["loss"] == pytest.approx(float(graph.loss.d), rel=1e-6)
    with open(tmp_path / CONFIG) as f:
        assert yaml.safe_load(f)["init_params"] == str(params_file)


def edited_copy(source, target, edit):
    target.write_bytes(source.read_bytes())
    with h5py.File(target, "r+") as f:
        edit(f)
    return target


BN_VAR = "cell1/preprocess0/bn/bn/var"


def _misshape(f):
    del f[BN_VAR]
    f[BN_VAR] = np.ones((1, 5, 1, 1), dtype=np.float32)


@pytest.mark.parametrize("edit, words", [
    (lambda f: f.__delitem__(BN_VAR), f"it lacks parameters such as '{BN_VAR}' (1 in all)"),
    (lambda f: f.create_dataset("extra/affine/W", data=np.zeros((2, 2), np.float32)),
     "it has unknown parameters such as 'extra/affine/W' (1 in all)"),
    (_misshape, f"it has wrongly shaped parameters such as '{BN_VAR}' (1 in all): (1, 5, 1, 1) in the file, "
                f"(1, 8, 1, 1) in the network"),
])
def test_a_missing_extra_or_misshapen_parameter_is_one_line_and_nothing_written(params_file, tmp_path, capsys, edit,
                                                                               words):
    path = edited_copy(params_file, tmp_path / "edited.h5", edit)
    with pytest.raises(SystemExit) as exited:
        fine_tune(tmp_path / "run", path, "--epoch", "1")
    err = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 1 and len(err) == 1 and words in err[0], err
    assert not os.path.exists(tmp_path / "run" / CONFIG)  # refused before the run's first write


def test_an_auxiliary_head_the_training_lacks_is_refused(params_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        fine_tune(tmp_path, params_file, "--epoch", "1", "--auxiliary", "false")
    assert exited.value.code == 1 and "has unknown parameters such as 'auxiliary_head/" in capsys.readouterr().err


def series(monitor, name):
    return np.loadtxt(series_path(str(monitor), name), ndmin=2)


@pytest.mark.slow
def test_a_resumed_fine_tuning_equals_an_uninterrupted_one_without_reading_the_file_again(params_file, tmp_path,
                                                                                         capsys):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    fine_tune(straight, params_file, "--epoch", "2")
    init = edited_copy(params_file, tmp_path / "init.h5", lambda f: None)
    fine_tune(resumed, init, "--epoch", "1")
    with pytest.raises(SystemExit) as exited:  # another file is another run: a setting like the others
        fine_tune(resumed, params_file, "--epoch", "2", "--resume")
    assert exited.value.code == 1 and f"init_params ('{init}' -> '{params_file}')" in capsys.readouterr().err
    init.write_bytes(b"gone")  # the checkpoint holds the run's weights now
    fine_tune(resumed, init, "--epoch", "2", "--resume")
    expected, got = read_parameter_file(str(straight / FINAL_PARAMS)), read_parameter_file(str(resumed / FINAL_PARAMS))
    assert expected.keys() == got.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    for name in ("Training loss", "Test loss"):
        np.testing.assert_array_equal(series(resumed, name), series(straight, name))


@pytest.fixture
def nothing_runs(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a mode ran")
    monkeypatch.setattr(darts_train, "set_context", refuse)


@pytest.mark.parametrize("mode", [["--evaluate", "p.h5"], ["--export", "p.h5"], ["--import-weights", "m.pt"],
                                  ["--summary"]])
def test_the_modes_refuse_init_params(tmp_path, capsys, nothing_runs, mode):
    with pytest.raises(SystemExit) as exited:
        darts_train.main(["-m", str(tmp_path), "--init-params", "p.h5", *mode])
    err = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2 and f"--init-params does not apply to {mode[0]}" in err[-1], err
    assert not os.listdir(tmp_path)


def ptb_corpus(data_dir, words):
    """data_dir/penn/{train,valid,test}.txt of `words` distinct words (the vocabulary adds <eos>)."""
    folder = data_dir / "penn"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train = [f"w{i}" for i in range(words)]
    lines = {"train": [" ".join(train[i:i + 5]) for i in range(0, words, 5)] * 3,
             "valid": [" ".join(rng.choice(train, 6)) for _ in range(6)],
             "test": [" ".join(rng.choice(train, 6)) for _ in range(4)]}
    for split, text in lines.items():
        (folder / f"{split}.txt").write_text("\n".join(text) + "\n")
    return str(data_dir)


def test_the_recurrent_training_starts_from_imported_weights(tmp_path, monkeypatch):
    """The language model imported from quark0's (the fixture: 30 words, nhid 16) is what the recurrent
    training's first epoch starts from."""
    record = np.load(os.path.join(FIXTURES, "ptb_expected.npz"))
    checkpoint = tmp_path / "ptb.pt"
    with gzip.open(os.path.join(FIXTURES, "ptb_legacy.pt.gz")) as packed:
        checkpoint.write_bytes(packed.read())
    ntoken, nhid = int(record["ntoken"]), int(record["nhid"])
    # As import_recurrent does, at the fixture's vocabulary (--import-weights --dataset ptb builds PTB's 10,000).
    genotype = load_recurrent_genotype("DARTS_V2")
    nn.clear_parameters()
    build_eval_model(genotype, 1, 1, ntoken, nhid, training=False)
    params = nn.get_parameters(grad_only=False)
    values = quark0_rnn_values(str(checkpoint), genotype, {name: v.shape for name, v in params.items()})
    imported = write_imported(params, values, str(tmp_path / "imported"))
    seen = {}

    def first_epoch(*args, **kwargs):
        seen.update({name: v.d.copy() for name, v in nn.get_parameters(grad_only=False).items()})
        raise FirstStep
    monkeypatch.setattr("utils.recurrent.train.train_epoch", first_epoch)
    with pytest.raises(FirstStep):
        darts_train.main(["--space", "recurrent", "--dataset", "ptb", "--model-arch-name", "DARTS_V2", "--nhid",
                          str(nhid), "--data-dir", ptb_corpus(tmp_path / "data", ntoken - 1), "-b", "2", "--bptt", "5",
                          "--eval-batch-size", "2", "--epoch", "1", "--init-params", imported,
                          "-m", str(tmp_path / "tuned")])
    saved = read_parameter_file(imported)
    assert seen.keys() == saved.keys()
    for name, value in saved.items():
        np.testing.assert_array_equal(seen[name], value, err_msg=name)

"""darts_train.py --import-weights: quark0/darts' PyTorch weights read without torch, mapped and converted.

The fixtures (tests/fixtures/import/, made by bench/make_import_fixtures.py with the originals' own code and
torch) are small networks of each kind in both checkpoint formats, with their eval-mode outputs."""
import gzip
import io
import os
import pickle
import zipfile

import nnabla as nn
import numpy as np
import pytest

import darts_train
from models.eval_network import CIFAR, IMAGENET, auxiliary_head, build_test_graph, build_train_graph
from models.genotype import Architecture, load_architecture
from models.recurrent import build_eval_model
from models.recurrent_genotype import load_recurrent_genotype
from ops.operations import OP_NAMES, OpMode
from ops.torch_checkpoint import TorchCheckpointError, read_checkpoint, state_dict
from utils.recurrent.torch_import import quark0_rnn_values
from utils.run_files import EVALUATION, IMPORTED_PARAMS
from utils.training.parameter_files import read_parameter_file
from utils.training.torch_import import (WeightImportError, checkpoint_tensors, match_tensors, quark0_cnn_key,
                                         quark0_cnn_values, torch_layout)

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "import")
FORMATS = ("zip", "legacy")
ENDS = {"cifar": CIFAR, "imagenet": IMAGENET}
ARCH = load_architecture("DARTS_V2")


def fixed_input(shape):
    """bench/make_import_fixtures.py's input: integer hashing, the same array on both sides."""
    n = np.arange(int(np.prod(shape)), dtype=np.int64)
    return (((n * 2654435761) % 1000) / 500.0 - 1.0).astype(np.float32).reshape(shape)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """{(network, format): path} of the unpacked fixtures."""
    folder = tmp_path_factory.mktemp("checkpoints")
    paths = {}
    for network in ("cifar", "imagenet", "ptb"):
        for fmt in FORMATS:
            path = folder / f"{network}_{fmt}.pt"
            with gzip.open(os.path.join(FIXTURES, f"{network}_{fmt}.pt.gz")) as packed:
                path.write_bytes(packed.read())
            paths[network, fmt] = str(path)
    return paths


def expected(network):
    return np.load(os.path.join(FIXTURES, f"{network}_expected.npz"))


def cnn_parameters(network, path, auxiliary=True):
    """Our network of the fixture, its parameters set from the checkpoint at `path`; (params, expected)."""
    record = expected(network)
    channels, layers, size = int(record["channels"]), int(record["layers"]), int(record["image_size"])
    nn.clear_parameters()
    build_train_graph(ARCH, (1, 3, size, size), 10, channels, layers, auxiliary=auxiliary, aux_weight=0.4,
                      ends=ENDS[network])
    params = nn.get_parameters(grad_only=False)
    values = quark0_cnn_values(path, ARCH, {name: v.shape for name, v in params.items()}, layers)
    for name, variable in params.items():
        variable.d = values[name]
    return params, record


def assert_float32_close(ours, theirs):
    # float32 rounding of the same sums in another order: ~1e-7 of the largest value, seen at 3e-7 at most
    scale = np.abs(theirs).max()
    assert np.abs(ours - theirs).max() <= 2e-6 * scale, np.abs(ours - theirs).max() / scale


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("network", ["cifar", "imagenet"])
def test_imported_cnn_gives_the_originals_eval_logits(checkpoints, network, fmt):
    _, record = cnn_parameters(network, checkpoints[network, fmt])
    size, channels, layers = int(record["image_size"]), int(record["channels"]), int(record["layers"])
    for cpu_kernels in (False, True):
        graph = build_test_graph(ARCH, (2, 3, size, size), 10, channels, layers, ends=ENDS[network],
                                 cpu_kernels=cpu_kernels)
        graph.x.d = fixed_input((2, 3, size, size))
        graph.logits.forward()
        assert_float32_close(graph.logits.d, record["logits"])
    # The auxiliary head, which eval logits never see, on the original's own input to it.
    x = nn.Variable(record["aux_input"].shape)
    x.d = record["aux_input"]
    aux = auxiliary_head(x, 10, OpMode(affine=True, test=True), ENDS[network].aux_feature_bn)
    aux.forward()
    assert_float32_close(aux.d, record["aux_logits"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_imported_language_model_gives_the_originals_outputs(checkpoints, fmt):
    record = expected("ptb")
    ntoken, nhid = int(record["ntoken"]), int(record["nhid"])
    tokens = record["tokens"]
    nn.clear_parameters()
    graph = build_eval_model(load_recurrent_genotype("DARTS_V2"), tokens.shape[0], tokens.shape[1], ntoken, nhid,
                             training=False)
    params = nn.get_parameters(grad_only=False)
    values = quark0_rnn_values(checkpoints["ptb", fmt], load_recurrent_genotype("DARTS_V2"),
                               {name: v.shape for name, v in params.items()})
    for name, variable in params.items():
        variable.d = values[name]
    targets = (tokens * 7 + 3) % ntoken
    graph.tokens.d, graph.targets.d, graph.hidden.d = tokens, targets, 0.0
    nn.forward_all([graph.nll, graph.last_hidden, graph.raw_output])
    assert_float32_close(graph.raw_output.d, record["raw_output"])
    assert_float32_close(graph.last_hidden.d, record["last_hidden"])
    picked = np.take_along_axis(record["log_prob"], targets[..., None], axis=2)
    assert graph.nll.d == pytest.approx(-picked.mean(), rel=1e-6)


def test_both_formats_hold_the_same_tensors(checkpoints):
    for network in ("cifar", "imagenet", "ptb"):
        zipped, legacy = (checkpoint_tensors(checkpoints[network, fmt])[1] for fmt in FORMATS)
        assert list(zipped) == list(legacy)
        assert all(np.array_equal(zipped[key], legacy[key]) for key in zipped)


def test_a_whole_pickled_model_is_walked_and_its_tied_matrix_shared(checkpoints):
    held = read_checkpoint(checkpoints["ptb", "legacy"])
    assert type(held).__name__ == "RNNModel"
    tensors = state_dict(held)
    assert list(tensors) == ["encoder.weight", "rnns.0._W0"] + [f"rnns.0._Ws.{i}" for i in range(8)] + \
        ["decoder.weight", "decoder.bias"]
    assert tensors["decoder.weight"].storage is tensors["encoder.weight"].storage


def test_a_training_checkpoint_gives_its_state_dict_and_a_data_parallel_prefix_goes():
    tensor = np.zeros((2, 3), np.float32)
    assert state_dict({"epoch": 3, "state_dict": {"module.a": _tensor(tensor)}}).keys() == {"a"}


def _tensor(array):
    from ops.torch_checkpoint import Storage, Tensor
    storage = Storage(array.dtype, "0", array.size)
    storage.array = array.ravel()
    return Tensor(storage, 0, array.shape, tuple(s // array.itemsize for s in array.strides))


# ---------------------------------------------------------------- layouts and names, per op kind

def test_layouts_depthwise_affine_batch_norm_and_convolution():
    rng = np.random.default_rng(0)
    depthwise, linear, bn, conv = (rng.standard_normal(s) for s in ((6, 1, 3, 3), (10, 7), (6,), (8, 6, 3, 3)))
    assert np.array_equal(torch_layout("depthwise_conv", depthwise), depthwise[:, 0])
    assert np.array_equal(torch_layout("affine", linear), linear.T)
    assert torch_layout("bn", bn).shape == (1, 6, 1, 1) and np.array_equal(torch_layout("bn", bn).ravel(), bn)
    assert torch_layout("conv", conv) is conv


def every_op_cell():
    ops = [op for op in OP_NAMES if op != "none"]
    pairs = [(OP_NAMES.index(op), node % 2) for node, op in enumerate(ops)]
    return {2 + i // 2: pairs[i:i + 2] for i in range(0, len(pairs), 2)}


def test_every_op_kind_maps_to_its_quark0_module():
    cell = every_op_cell()
    arch = Architecture(normal=cell, reduction=cell)
    nn.clear_parameters()
    build_train_graph(arch, (1, 3, 32, 32), 10, 4, 3, auxiliary=True, aux_weight=0.4)
    names = set(nn.get_parameters(grad_only=False))
    keys = {name: quark0_cnn_key(name, arch, {1, 2}, names) for name in names}
    assert None not in keys.values() and len(set(keys.values())) == len(keys)
    # edges in the genotype's pair order: node 2's are _ops 0 and 1, node 3's 2 and 3, ...
    assert keys["cell0/node2_edge0/dil_conv_3x3/dw/depthwise_conv/W"] == "cells.0._ops.0.op.1.weight"
    assert keys["cell0/node3_edge0/sep_conv_3x3/sep1_dw/depthwise_conv/W"] == "cells.0._ops.2.op.5.weight"
    assert keys["cell0/node3_edge1/sep_conv_5x5/sep1_bn/bn/var"] == "cells.0._ops.3.op.7.running_var"
    # stride-2 skip_connect in a reduction cell is a FactorizedReduce; after a reduction, so is preprocess0
    assert keys["cell1/node5_edge0/skip_connect/conv_2/conv/W"] == "cells.1._ops.6.conv_2.weight"
    assert keys["cell2/preprocess0/bn/bn/mean"] == "cells.2.preprocess0.bn.running_mean"
    assert keys["cell1/preprocess0/bn/bn/mean"] == "cells.1.preprocess0.op.2.running_mean"
    assert keys["cell0/node6_edge0/conv_7x1_1x7/conv_7x1/conv/W"] == "cells.0._ops.8.2.weight"
    assert keys["auxiliary_head/classifier/affine/W"] == "auxiliary_head.classifier.weight"
    assert keys["classifier/affine/affine/b"] == "classifier.bias"


# ---------------------------------------------------------------- errors: one line naming the tensor

@pytest.fixture(scope="module")
def cifar_tensors(checkpoints):
    record = expected("cifar")
    nn.clear_parameters()
    build_train_graph(ARCH, (1, 3, 32, 32), 10, int(record["channels"]), int(record["layers"]), auxiliary=True,
                      aux_weight=0.4)
    shapes = {name: v.shape for name, v in nn.get_parameters(grad_only=False).items()}
    return checkpoint_tensors(checkpoints["cifar", "zip"])[1], shapes


def cifar_match(tensors, shapes):
    names = set(shapes)
    return match_tensors(tensors, shapes, lambda name: quark0_cnn_key(name, ARCH, {1, 2}, names), "m.pt", "flags")


def test_the_untouched_fixture_matches(cifar_tensors):
    assert len(cifar_match(*cifar_tensors)) == len(cifar_tensors[1])


@pytest.mark.parametrize("change, words", [
    (lambda t: t.pop("cells.3._ops.3.op.1.weight"), "lacks tensor 'cells.3._ops.3.op.1.weight'"),
    (lambda t: t.update({"cells.9.preprocess1.op.1.weight": t["stem.0.weight"]}),
     "has tensor 'cells.9.preprocess1.op.1.weight', which no parameter"),
    (lambda t: t.update({"classifier.weight": t["classifier.weight"].T}),
     "tensor 'classifier.weight' has shape (64, 10)"),
    (lambda t: t.pop("auxiliary_head.features.6.running_var"), "lacks tensor 'auxiliary_head.features.6.running_var'"),
])
def test_a_missing_extra_or_misshapen_tensor_is_one_line_naming_it(cifar_tensors, change, words):
    tensors, shapes = cifar_tensors
    tensors = dict(tensors)
    change(tensors)
    with pytest.raises(WeightImportError) as raised:
        cifar_match(tensors, shapes)
    assert words in str(raised.value) and "\n" not in str(raised.value)


def test_the_batch_counter_is_dropped_but_nothing_else(cifar_tensors):
    tensors, shapes = cifar_tensors
    assert any(key.endswith("num_batches_tracked") for key in tensors)
    cifar_match({k: v for k, v in tensors.items() if not k.endswith("num_batches_tracked")}, shapes)


def test_a_checkpoint_without_the_auxiliary_head_needs_auxiliary_false(checkpoints):
    with pytest.raises(WeightImportError, match="it has tensor 'auxiliary_head.classifier.bias'"):
        cnn_parameters("cifar", checkpoints["cifar", "zip"], auxiliary=False)


def test_an_untied_decoder_is_refused(checkpoints):
    tensors = dict(checkpoint_tensors(checkpoints["ptb", "zip"])[1])
    tensors["decoder.weight"] = tensors["decoder.weight"] + 1
    with pytest.raises(WeightImportError, match="'decoder.weight' differs from 'encoder.weight'"):
        match_tensors(tensors, {"encoder/W": tensors["encoder.weight"].shape}, lambda n: "encoder.weight", "m", "",
                      tied=(("decoder.weight", "encoder.weight"),))


def test_another_recurrent_cell_than_the_pickled_one_is_refused(checkpoints):
    with pytest.raises(WeightImportError, match="not --model-arch-name's"):
        quark0_rnn_values(checkpoints["ptb", "zip"], load_recurrent_genotype("DARTS_V1"), {})


@pytest.mark.parametrize("content, words", [
    (b"", "empty or cut short"),
    (b"\x00\x01 random bytes", "not a PyTorch checkpoint"),
    (pickle.dumps({"weights": [1, 2]}), "not a PyTorch checkpoint"),
    (b"PK\x05\x06" + b"\x00" * 18, "not a PyTorch checkpoint"),
])
def test_a_file_that_is_no_checkpoint_is_one_line(tmp_path, content, words):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(TorchCheckpointError) as raised:
        read_checkpoint(str(path))
    assert words in str(raised.value) and str(path) in str(raised.value) and "\n" not in str(raised.value)


def test_a_cut_legacy_checkpoint_is_one_line(checkpoints, tmp_path):
    path = tmp_path / "cut.pt"
    path.write_bytes(open(checkpoints["cifar", "legacy"], "rb").read()[:-1000])
    with pytest.raises(TorchCheckpointError, match="cut short"):
        read_checkpoint(str(path))


# ---------------------------------------------------------------- a malicious pickle runs nothing

class _RunsCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _CallsStandIn:
    """A call of a class no checkpoint needs (REDUCE of a stand-in): refused, never imported."""
    def __reduce__(self):
        return zipfile.ZipFile, ("/nonexistent",)


def test_a_pickle_naming_a_system_function_is_refused_even_uncalled(tmp_path):
    path = tmp_path / "names.pt"
    path.write_bytes(legacy_stream({"stem.0.weight": os.system}))
    with pytest.raises(TorchCheckpointError, match="system, which this reader does not allow"):
        read_checkpoint(str(path))


def legacy_stream(obj):
    """A legacy torch file around `obj`: magic number, protocol, system information, the object, no storages."""
    stream = io.BytesIO()
    for part in (0x1950a86a20f9469cfc6c, 1001, {"little_endian": True}, obj, []):
        pickle.dump(part, stream, protocol=2)
    return stream.getvalue()


@pytest.mark.parametrize("wrap", ["legacy", "zip", "plain"])
@pytest.mark.parametrize("payload", ["os.system", "stand-in call"])
def test_a_malicious_pickle_is_refused_and_runs_nothing(tmp_path, wrap, payload):
    marker = tmp_path / "ran"
    evil = {"stem.0.weight": _RunsCommand(marker) if payload == "os.system" else _CallsStandIn()}
    path = tmp_path / "evil.pt"
    if wrap == "legacy":
        path.write_bytes(legacy_stream(evil))
    elif wrap == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("evil/data.pkl", pickle.dumps(evil, protocol=2))
    else:
        path.write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(TorchCheckpointError) as raised:
        read_checkpoint(str(path))
    message = str(raised.value)
    assert not marker.exists()
    assert "\n" not in message and str(path) in message
    if wrap != "plain":
        assert ("posix.system" in message or "os.system" in message) if payload == "os.system" \
            else "zipfile.ZipFile" in message


# ---------------------------------------------------------------- the command

class _FixtureSource:
    """The fixture's two images as a test set, labelled with the original's predictions."""
    input_shape, num_classes = (3, 32, 32), 10

    def __init__(self, logits):
        self.labels = logits.argmax(axis=1)

    def test_batches(self, batch_size):
        yield fixed_input((2, 3, 32, 32)), self.labels.reshape(2, 1), 2


def test_import_writes_imported_params_that_evaluate_reads(checkpoints, tmp_path, monkeypatch):
    flags = ["--model-arch-name", "DARTS_V2", "--num-cells", "4", "--output-filter", "4", "-f", "0", "-b", "2",
             "-m", str(tmp_path / "imported")]
    path = darts_train.main(flags + ["--import-weights", checkpoints["cifar", "legacy"]])
    assert path == str(tmp_path / "imported" / IMPORTED_PARAMS) and os.listdir(tmp_path / "imported") == [
        IMPORTED_PARAMS]
    saved = read_parameter_file(path)
    assert saved["classifier/affine/affine/W"].shape == (64, 10) and "auxiliary_head/bn2/bn/var" in saved
    record = expected("cifar")
    monkeypatch.setattr(darts_train, "open_source", lambda *args: _FixtureSource(record["logits"]))
    error = darts_train.main(flags[:-1] + [str(tmp_path / "evaluated"), "--evaluate", path])
    assert error == 0.0
    logits = record["logits"]
    loss = np.mean(np.log(np.exp(logits).sum(axis=1)) - logits.max(axis=1))
    with open(tmp_path / "evaluated" / EVALUATION) as f:
        assert __import__("json").load(f)["test_loss"] == pytest.approx(loss, rel=1e-5)


def test_import_refuses_flags_of_other_modes_and_a_bad_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        darts_train.main(["--import-weights", "m.pt", "--format", "onnx", "-m", str(tmp_path)])
    assert exited.value.code == 2 and "--format is read only with --export" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        darts_train.main(["--import-weights", "m.pt", "--epoch", "3", "-m", str(tmp_path)])
    assert exited.value.code == 2 and "--epoch does not apply to --import-weights" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as exited:
        darts_train.main(["--model-arch-name", "DARTS_V2", "--import-weights", str(bad), "-m", str(tmp_path / "o")])
    assert exited.value.code == 1
    assert f"cannot read PyTorch checkpoint {bad}" in capsys.readouterr().err
    assert not (tmp_path / "o" / IMPORTED_PARAMS).exists()

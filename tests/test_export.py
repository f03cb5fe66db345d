"""darts_train.py --export: the inference network as .nnp (reloaded by nnabla's NnpLoader) and as ONNX."""
import os
import subprocess
import sys

import nnabla as nn
import numpy as np
import pytest
from nnabla.utils.nnp_graph import NnpLoader

import darts_train
from models.eval_network import DARTS_CELLS, CellVariant, build_test_graph
from models.genotype import Architecture, save_architecture
from ops.operations import OPS
from utils.training.export import BATCH_AXIS, EXECUTOR_NAME, INPUT_NAME, NETWORK_NAME, OUTPUT_NAME

# Every op of the table, at stride 1 in the normal cell and from the inputs at stride 2 in the reduction cell.
CELL = {2: [(0, 0), (1, 1)], 3: [(2, 0), (3, 1)], 4: [(4, 0), (5, 1), (6, 3)], 5: [(6, 0), (7, 1), (2, 4)],
        6: [(8, 0), (9, 1), (5, 2)]}
ALL_OPS = Architecture(normal=CELL, reduction=CELL, normal_concat=[2, 4, 5, 6], reduction_concat=[3, 6])
CHANNELS, CELLS = 4, 3
BATCH = 8  # the in-memory network's batch; the exported file is read at batch 1 and at this one
SETTINGS = ["--dataset", "digits", "--num-cells", str(CELLS), "--output-filter", str(CHANNELS), "-f", "0"]


def test_the_architecture_uses_every_op():
    assert {op for node in CELL.values() for op, _ in node} == set(range(len(OPS)))


def saved_network(folder, cells=DARTS_CELLS):
    """Parameters of the test network (with `cells`), weights and batch-norm running statistics random, in
    an .h5 file, and the logits the training code's own test graph computes from them for a fixed input."""
    arch_path = folder / "arch.json"
    save_architecture(ALL_OPS, str(arch_path))
    nn.clear_parameters()
    graph = build_test_graph(ALL_OPS, (BATCH, 1, 8, 8), 10, CHANNELS, CELLS, cells=cells)
    rng = np.random.default_rng(0)
    for name, v in nn.get_parameters(grad_only=False).items():
        v.d = rng.uniform(0.5, 1.5, v.shape) if name.endswith("/var") else rng.normal(0, 0.5, v.shape)
    params_path = folder / "params.h5"
    nn.save_parameters(str(params_path), nn.get_parameters(grad_only=False))
    graph.x.d = rng.normal(size=graph.x.shape)
    graph.logits.forward()
    nn.clear_parameters()
    return folder, arch_path, params_path, graph.x.d.copy(), graph.logits.d.copy()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return saved_network(tmp_path_factory.mktemp("export"))


def export(trained, fmt, *flags):
    folder, arch_path, params_path, _, _ = trained
    monitor = folder / fmt
    darts_train.main(SETTINGS + ["--model-arch-name", str(arch_path), "--export", str(params_path),
                                 "--format", fmt, "-m", str(monitor), *flags])
    return monitor / f"model.{fmt}"


def assert_nnp_gives_the_logits(path, x, logits, batch):
    """The .nnp read by NnpLoader at `batch` gives the in-memory network's logits, batch by batch."""
    nn.clear_parameters()
    network = NnpLoader(str(path)).get_network(NETWORK_NAME, batch_size=batch)
    assert network.inputs[INPUT_NAME].shape == (batch, 1, 8, 8)
    for start in range(0, len(x), batch):
        network.inputs[INPUT_NAME].d = x[start:start + batch]
        network.outputs[OUTPUT_NAME].forward()
        np.testing.assert_allclose(network.outputs[OUTPUT_NAME].d, logits[start:start + batch], rtol=1e-5, atol=1e-5)
    assert np.std(logits) > 0.1  # the parameters were really loaded, not initial ones


@pytest.fixture(scope="module")
def nnp_file(trained):
    return export(trained, "nnp")


@pytest.mark.parametrize("batch", [1, BATCH])
def test_nnp_reloads_with_nnablas_loader_at_any_batch_size_and_gives_the_same_logits(trained, nnp_file, batch):
    assert_nnp_gives_the_logits(nnp_file, trained[3], trained[4], batch)


def test_a_network_saved_with_var_nas_cells_exports_with_its_flags(tmp_path):
    """--cell-bn none --pool-bn (no affine BN in the cells, a BN after every pooling edge) reach the export."""
    saved = saved_network(tmp_path, CellVariant(affine=False, pool_bn=True))
    path = export(saved, "nnp", "--cell-bn", "none", "--pool-bn")
    assert_nnp_gives_the_logits(path, saved[3], saved[4], BATCH)


def test_nnp_runs_in_nnablas_cpp_runtime_at_a_batch_size_other_than_the_files(trained, nnp_file, tmp_path):
    """nnabla's C++ command-line runtime (nbla infer, shipped in nnabla's wheel), at batch BATCH."""
    bindir = os.path.join(os.path.dirname(nn.__file__), "bin")
    if not os.path.exists(os.path.join(bindir, "nbla")):
        pytest.skip("this nnabla wheel has no nbla binary")
    path = nnp_file
    x, logits = trained[3], trained[4]
    x.astype(np.float32).tofile(tmp_path / "x.bin")
    run = subprocess.run([os.path.join(bindir, "nbla"), "infer", "-e", EXECUTOR_NAME, "-b", str(BATCH),
                          "-o", str(tmp_path / "y"), str(path), str(tmp_path / "x.bin")],
                         capture_output=True, text=True, env={**os.environ, "LD_LIBRARY_PATH": bindir}, timeout=60)
    assert run.returncode == 0, run.stderr[-500:]
    out = np.fromfile(tmp_path / "y_0.bin", np.float32).reshape(logits.shape)
    np.testing.assert_allclose(out, logits, rtol=1e-5, atol=1e-5)


def test_onnx_is_a_valid_inference_graph(trained):
    onnx = pytest.importorskip("onnx", reason="the optional packages of requirements-onnx.txt are not installed")
    model = onnx.load(str(export(trained, "onnx")))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input if i.name == INPUT_NAME] == [INPUT_NAME]
    assert [o.name for o in model.graph.output] == [OUTPUT_NAME]
    dims = [d.dim_param or d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert dims == [BATCH_AXIS, 10]
    ops = {node.op_type for node in model.graph.node}
    assert {"Conv", "BatchNormalization", "MaxPool", "AveragePool", "Concat", "Gemm"} <= ops
    # Batch normalisation runs on stored statistics: one BatchNormalization node per BN layer, no dropout.
    assert "Dropout" not in ops
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(model.SerializeToString())
    x, logits = trained[3], trained[4]
    for batch in (1, BATCH):  # the ONNX graph runs at any batch size
        for start in range(0, len(x), batch):
            out = session.run(None, {INPUT_NAME: x[start:start + batch].astype(np.float32)})[0]
            np.testing.assert_allclose(out, logits[start:start + batch], rtol=1e-5, atol=1e-5)


def test_onnx_without_its_packages_is_a_one_line_error(trained, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    with pytest.raises(SystemExit) as exit_info:
        export(trained, "onnx")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert "requirements-onnx.txt" in err and len(err.splitlines()) == 1

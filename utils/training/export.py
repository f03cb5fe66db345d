"""Writing a built inference graph for other runtimes: nnabla's .nnp (its C++ runtime and NnpLoader) and ONNX.

The .nnp is written by nnabla's own save API with a variable batch size; ONNX is converted from it by
nnabla's converter, whose ONNX part comes with the optional nnabla-converter package and the onnx
package (requirements-onnx.txt).
"""
import os
import tempfile

from nnabla.utils.save import save

from ops.atomic_file import atomic_path
from ops.user_error import UserError

FORMATS = ("nnp", "onnx")
NETWORK_NAME = "inference"
EXECUTOR_NAME = "runtime"
INPUT_NAME = "x"
OUTPUT_NAME = "y"
BATCH_AXIS = "batch"  # the name of the ONNX graph's free first axis
# nnabla's converter names its opset-11 table with ONNX's own count_include_pad for pooling "tensorrt".
# Its plain "11" table imitates average pooling without the padding by edge-padding the input, which
# changes the averages at the borders (0.39 off on a unit-variance input, measured).
ONNX_OPSET = "tensorrt"


class ExportError(UserError, ValueError):
    """An export that cannot be done here; the message is one line."""


def save_nnp(x, output, path):
    """The graph from input variable `x` to `output`, with the parameters it reads, as an .nnp file.

    Loaded at any batch size (the batch size of `x` when none is asked): nnabla's save frees the batch
    axis of every shape, and our graphs keep no batch size in a function's arguments.
    """
    contents = {
        "networks": [{"name": NETWORK_NAME, "batch_size": x.shape[0],
                      "outputs": {OUTPUT_NAME: output}, "names": {INPUT_NAME: x}}],
        "executors": [{"name": EXECUTOR_NAME, "network": NETWORK_NAME,
                       "data": [INPUT_NAME], "output": [OUTPUT_NAME]}],
    }
    save(path, contents, variable_batch_size=True)


def _onnx_exporter():
    try:
        import onnx  # noqa: F401  (the exporter needs it; importing it first gives the clearer error)
        from nnabla.utils.converter.onnx import OnnxExporter
    except ImportError as error:
        raise ExportError(f"ONNX export needs nnabla-converter and onnx ({error}); install them as "
                          f"requirements-onnx.txt says") from None
    return OnnxExporter


def free_batch_axis(onnx_path):
    """Marks the first axis of the ONNX graph's inputs and outputs as a free size named BATCH_AXIS.

    nnabla's converter writes the .nnp's batch size into every shape it declares. Nothing inside our
    graphs depends on it (slices and reshapes leave the batch axis free: ops.operations.spatial_slice
    and dense), so only the declared shapes of the inputs and outputs need it freed; the intermediate
    shapes are dropped for runtimes to infer.
    """
    import onnx
    model = onnx.load(onnx_path)
    parameters = {tensor.name for tensor in model.graph.initializer}  # listed as inputs by some IR versions
    for value in list(model.graph.input) + list(model.graph.output):
        if value.name not in parameters:
            value.type.tensor_type.shape.dim[0].dim_param = BATCH_AXIS
    del model.graph.value_info[:]
    onnx.save(model, onnx_path)


def nnp_to_onnx(nnp_path, onnx_path):
    """Converts an .nnp file to ONNX (opset ONNX_OPSET) with nnabla's converter, any batch size."""
    exporter = _onnx_exporter()
    from nnabla.utils.converter.nnabla import NnpImporter
    nnp = NnpImporter(nnp_path, expand_network=True, executor_index=None).execute()
    exporter(nnp, -1, -1, opset=ONNX_OPSET).execute(onnx_path)  # batch size and IR version: the file's, onnx's
    free_batch_axis(onnx_path)


def export_network(x, output, path):
    """Writes the graph x -> output to `path`, as .nnp or .onnx by its extension, whole or not at all (a
    failed or interrupted export leaves an earlier file of that name as it was)."""
    fmt = os.path.splitext(path)[1].lstrip(".")
    if fmt not in FORMATS:
        raise ExportError(f"cannot export to {path!r}: the file must end in .nnp or .onnx")
    if fmt == "onnx":
        _onnx_exporter()  # fails before any work when the packages are missing
    with atomic_path(path) as partial:  # keeps the extension, which nnabla's save goes by
        if fmt == "nnp":
            save_nnp(x, output, partial)
            return
        with tempfile.TemporaryDirectory() as tmp:
            nnp_path = os.path.join(tmp, "network.nnp")
            save_nnp(x, output, nnp_path)
            nnp_to_onnx(nnp_path, partial)

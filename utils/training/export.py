"""Writing a built inference graph for other runtimes: nnabla's .nnp (its C++ runtime and NnpLoader) and ONNX.

The .nnp is written by nnabla's own save API with a variable batch size; ONNX is converted from it by
nnabla's converter, whose ONNX part comes with the optional nnabla-converter package and the onnx
package (requirements-onnx.txt).
"""
import os
import tempfile

from nnabla.utils.save import save

from ops.user_error import UserError

FORMATS = ("nnp", "onnx")
NETWORK_NAME = "inference"
INPUT_NAME = "x"
OUTPUT_NAME = "y"
# nnabla's converter names its opset-11 table with ONNX's own count_include_pad for pooling "tensorrt".
# Its plain "11" table imitates average pooling without the padding by edge-padding the input, which
# changes the averages at the borders (0.39 off on a unit-variance input, measured).
ONNX_OPSET = "tensorrt"


class ExportError(UserError, ValueError):
    """An export that cannot be done here; the message is one line."""


def save_nnp(x, output, path):
    """The graph from input variable `x` to `output`, with the parameters it reads, as an .nnp file.

    Loaded with the batch size of `x`: slices in the graph (FactorizedReduce, the zero op) keep it.
    """
    contents = {
        "networks": [{"name": NETWORK_NAME, "batch_size": x.shape[0],
                      "outputs": {OUTPUT_NAME: output}, "names": {INPUT_NAME: x}}],
        "executors": [{"name": "runtime", "network": NETWORK_NAME,
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


def nnp_to_onnx(nnp_path, onnx_path):
    """Converts an .nnp file to ONNX (opset ONNX_OPSET) with nnabla's converter."""
    exporter = _onnx_exporter()
    from nnabla.utils.converter.nnabla import NnpImporter
    nnp = NnpImporter(nnp_path, expand_network=True, executor_index=None).execute()
    exporter(nnp, -1, -1, opset=ONNX_OPSET).execute(onnx_path)  # batch size and IR version: the file's, onnx's


def export_network(x, output, path):
    """Writes the graph x -> output to `path`, as .nnp or .onnx by its extension."""
    fmt = os.path.splitext(path)[1].lstrip(".")
    if fmt not in FORMATS:
        raise ExportError(f"cannot export to {path!r}: the file must end in .nnp or .onnx")
    if fmt == "nnp":
        save_nnp(x, output, path)
        return
    _onnx_exporter()  # fails before any work when the packages are missing
    with tempfile.TemporaryDirectory() as tmp:
        nnp_path = os.path.join(tmp, "network.nnp")
        save_nnp(x, output, nnp_path)
        nnp_to_onnx(nnp_path, path)

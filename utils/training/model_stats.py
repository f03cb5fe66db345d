"""Size and cost of an nnabla network: learned weights by scope, multiply-accumulates from the graph.

Weights are the parameters with need_grad (convolution and affine weights, batch-norm scale and
shift), as quark0's count_parameters_in_MB counts torch parameters; batch-norm running statistics
are state, not weights.

MACs count the layers that dominate the cost, read off the built graph: convolutions (grouped ones
included), depthwise convolutions and affine layers. Batch normalisation, pooling, activations and
additions are left out, as is usual for reported multiply-adds.
"""
import nnabla as nn
import numpy as np

from models.eval_network import AUX_SCOPE
from ops.cpu_kernels import DepthwiseConvolution, DepthwisePointwise, PointwiseConvolution
from ops.cpu_reduce import FactorizedReduce
from ops.cpu_sums import WeightedSum
from utils.training.error_record import TEST_KEYS, empty_errors

# The size of a network (what --summary reports); a training's summary adds its errors.
SIZE_KEYS = ("params", "params_total", "macs")
SUMMARY_KEYS = SIZE_KEYS + TEST_KEYS


def count_parameters(params, exclude_scope=None):
    """Total size of {name: Variable}, leaving out the names under `exclude_scope` if given."""
    prefix = None if exclude_scope is None else exclude_scope.rstrip("/") + "/"
    return int(sum(v.size for name, v in params.items() if prefix is None or not name.startswith(prefix)))


def parameters_by_scope(params, depth=1):
    """{scope: size} grouped by the first `depth` components of each name ("cell3/..." -> "cell3")."""
    counts = {}
    for name, v in params.items():
        scope = "/".join(name.split("/")[:depth])
        counts[scope] = counts.get(scope, 0) + int(v.size)
    return counts


def _function_macs(function):
    kind = function.info.type_name
    if kind in ("Convolution", "DepthwiseConvolution", DepthwiseConvolution.NAME, PointwiseConvolution.NAME):
        # Weight (out, in / group, kh, kw) or (channels * multiplier, kh, kw): each output element
        # takes size / shape[0] products either way.
        weight = function.inputs[1]
        return int(np.prod(function.outputs[0].shape)) * (weight.size // weight.shape[0])
    if kind == DepthwisePointwise.NAME:
        # A depthwise convolution (K * K products per element of its output), then a 1x1 one (one per channel).
        depthwise, pointwise = function.inputs[1], function.inputs[2]
        elements = int(np.prod(function.outputs[0].shape[2:])) * function.outputs[0].shape[0]
        return elements * (depthwise.size + pointwise.size)
    if kind == FactorizedReduce.NAME:
        # Its two 1x1 convolutions: each output element takes one product per input channel.
        return int(np.prod(function.outputs[0].shape)) * function.inputs[0].shape[1]
    if kind == "Affine":
        base_axis = function.info.args.get("base_axis", 1)
        samples = int(np.prod(function.inputs[0].shape[:base_axis]))
        return samples * function.inputs[1].size
    if kind == WeightedSum.NAME and len(function.inputs[-1].shape) < 3:
        # The mixed op's sum with weights shared by the batch, counted as the Affine it replaces off the kernels.
        return function.inputs[-1].size * function.outputs[0].size
    return 0


def count_macs(output):
    """Multiply-accumulates of one forward pass of the graph that computes `output` (all of its batch)."""
    total = [0]

    def add(function):
        total[0] += _function_macs(function)
    output.visit(add)
    return total[0]


def macs_per_image(output):
    """count_macs for one sample; `output` has the batch on axis 0 (logits, say)."""
    return count_macs(output) // output.shape[0]


def network_size(logits):
    """SIZE_KEYS of the evaluation network whose parameters are registered and whose logits are given."""
    weights = nn.get_parameters(grad_only=True)
    return {"params": count_parameters(weights, exclude_scope=AUX_SCOPE),
            "params_total": count_parameters(weights),
            "macs": macs_per_image(logits)}


def network_summary(logits, validated=False):
    """SUMMARY_KEYS: network_size and the errors None (and the validation ones too with `validated`), to be
    filled in by training."""
    return {**network_size(logits), **empty_errors(validated)}


def describe_size(summary):
    text = f"weights: {summary['params']:,}"
    if summary["params_total"] != summary["params"]:
        text += f" ({summary['params_total']:,} with the auxiliary head)"
    return text + f", MACs per image: {summary['macs']:,}"

"""PyTorch weights of quark0/darts' networks as this project's parameters: the names and the layouts.

quark0's NetworkCIFAR and NetworkImageNet (cnn/model.py) hold the same layers as models.eval_network, under
torch module paths: `cells.3._ops.5.op.1.weight` is the first depthwise convolution of the sixth op of cell 3,
and a Cell's `_ops` follow the genotype's (op, input) pairs, two per node, which is our
`cell3/node4_edge1/...` (models.genotype: nodes from 2 up, each node's edges in the genotype's order).
quark0_cnn_key gives the torch name of each of our parameters; match_tensors takes the values and converts
their layouts:
- convolutions: OIHW in both, as they are;
- depthwise convolutions: torch's (C, 1, k, k) is nnabla's (C, k, k);
- nn.Linear's weight (out, in) is PF.affine's W (in, out), transposed;
- batch norm: weight, bias, running_mean, running_var (C,) are gamma, beta, mean, var (1, C, 1, 1); the
  batch counter (num_batches_tracked, torch >= 0.4.1) counts steps and is never read in eval, so it is dropped.
Every tensor is accounted for: a parameter of ours without its tensor, a tensor no parameter takes, or one of
the wrong shape stops the import with one line that names it (WeightImportError), never a random layer.
"""
import os

import numpy as np

from models.network import reduction_cells
from ops.torch_checkpoint import read_checkpoint, state_dict
from ops.user_error import UserError
from utils.run_files import IMPORTED_PARAMS
from utils.training.parameter_files import save_parameter_file

BN_FIELDS = {"gamma": "weight", "beta": "bias", "mean": "running_mean", "var": "running_var"}
WEIGHT_FIELDS = {"W": "weight", "b": "bias"}
# Torch's bookkeeping, no weight: dropped and said so.
COUNTERS = ("num_batches_tracked",)

# (our scope, our layer) -> torch module, for the layers outside the cells.
NETWORK_LAYERS = {
    ("stem", "conv"): "stem.0", ("stem", "bn"): "stem.1",  # CIFAR
    ("stem0", "conv1"): "stem0.0", ("stem0", "bn1"): "stem0.1", ("stem0", "conv2"): "stem0.3",  # ImageNet
    ("stem0", "bn2"): "stem0.4", ("stem1", "conv"): "stem1.1", ("stem1", "bn"): "stem1.2",
    ("classifier", "affine"): "classifier",
    # Both auxiliary heads: ReLU, AvgPool, Conv 1x1, BN, ReLU, Conv 2x2, BN (CIFAR only), ReLU; Linear.
    ("auxiliary_head", "conv1"): "auxiliary_head.features.2", ("auxiliary_head", "bn1"): "auxiliary_head.features.3",
    ("auxiliary_head", "conv2"): "auxiliary_head.features.5", ("auxiliary_head", "bn2"): "auxiliary_head.features.6",
    ("auxiliary_head", "classifier"): "auxiliary_head.classifier",
}
# A cell's preprocessing: ReLUConvBN's nn.Sequential(ReLU, Conv2d, BN), or a FactorizedReduce.
RELU_CONV_BN = {"conv": "op.1", "bn": "op.2"}
FACTORIZED_REDUCE = {"conv_1": "conv_1", "conv_2": "conv_2", "bn": "bn"}
# An op's layers: our scope inside the op -> torch module inside quark0's op (operations.py).
SEP_CONV = {"sep0_dw": "op.1", "sep0_pw": "op.2", "sep0_bn": "op.3", "sep1_dw": "op.5", "sep1_pw": "op.6",
            "sep1_bn": "op.7"}
DIL_CONV = {"dw": "op.1", "pw": "op.2", "bn": "op.3"}
OP_LAYERS = {"sep_conv_3x3": SEP_CONV, "sep_conv_5x5": SEP_CONV, "sep_conv_7x7": SEP_CONV,
             "dil_conv_3x3": DIL_CONV, "dil_conv_5x5": DIL_CONV,
             "skip_connect": FACTORIZED_REDUCE,  # at stride 2 only: the identity has no weights
             "conv_7x1_1x7": {"conv_1x7": "1", "conv_7x1": "2", "bn": "3"}}


class WeightImportError(UserError):
    """A checkpoint that does not fit the network the flags describe; one line naming the tensor."""


def edge_positions(cell):
    """{'node<n>_edge<k>': index in quark0's Cell._ops}: the edges node by node, each node's in its order."""
    positions = {}
    for node in sorted(cell):
        for edge in range(len(cell[node])):
            positions[f"node{node}_edge{edge}"] = len(positions)
    return positions


def quark0_cnn_key(name, arch, reduction_cells, names):
    """The torch state-dict key of our parameter `name` in quark0's networks, or None if it has no counterpart.

    reduction_cells: the indices of the reduction cells; names: all our parameter names (a preprocess0 with
    conv_1 is a FactorizedReduce, whose batch norm is `bn`, not ReLUConvBN's `op.2`)."""
    *scopes, layer, kind, param = name.split("/")
    field = (BN_FIELDS if kind == "bn" else WEIGHT_FIELDS).get(param)
    if field is None or not scopes:
        return None
    if len(scopes) == 1:
        module = NETWORK_LAYERS.get((scopes[0], layer))
        return None if module is None else f"{module}.{field}"
    if not scopes[0].startswith("cell") or not scopes[0][4:].isdigit():
        return None
    index = int(scopes[0][4:])
    if len(scopes) == 2 and scopes[1] in ("preprocess0", "preprocess1"):
        factorized = f"{scopes[0]}/{scopes[1]}/conv_1/conv/W" in names
        module = (FACTORIZED_REDUCE if factorized else RELU_CONV_BN).get(layer)
        return None if module is None else f"cells.{index}.{scopes[1]}.{module}.{field}"
    if len(scopes) == 3:
        cell, _ = arch.cell(index in reduction_cells)
        position = edge_positions(cell).get(scopes[1])
        module = OP_LAYERS.get(scopes[2], {}).get(layer)
        if position is None or module is None:
            return None
        return f"cells.{index}._ops.{position}.{module}.{field}"
    return None


def torch_layout(kind, value):
    """A torch tensor in nnabla's layout, for the parameter kind (the scope nnabla's parametric function
    names it with: conv, depthwise_conv, affine, bn)."""
    if kind == "depthwise_conv" and value.ndim == 4 and value.shape[1] == 1:
        return value.reshape(value.shape[0], *value.shape[2:])
    if kind == "affine" and value.ndim == 2:
        return value.T
    if kind == "bn" and value.ndim == 1:
        return value.reshape(1, -1, 1, 1)
    return value


def match_tensors(tensors, shapes, key_of, source, hint, kind_of=None, tied=()):
    """{our name: float32 array} from the checkpoint's {torch key: array}, for our {name: shape}.

    key_of(name): the torch key of our parameter (None: it has none); kind_of(name): its layout kind
    (default: the second-last scope); tied: (key, key it must equal) pairs of tensors that torch stores twice
    (a decoder tied to its embedding), accounted for once checked. source names the file in messages and
    hint says which flags describe the network."""
    kind_of = kind_of or (lambda name: name.split("/")[-2])
    fits = f"{source} does not fit the network of these flags ({hint})"
    keys = {name: key_of(name) for name in shapes}
    unknown = [name for name, key in keys.items() if key is None]
    if unknown:
        raise WeightImportError(f"{fits}: this network's {unknown[0]!r} has no counterpart in quark0's networks "
                                f"({len(unknown)} such parameters)")
    missing = [(key, name) for name, key in keys.items() if key not in tensors]
    if missing:
        raise WeightImportError(f"{fits}: it lacks tensor {missing[0][0]!r} (for {missing[0][1]}; "
                                f"{len(missing)} missing in all)")
    values = {}
    for name, shape in shapes.items():
        value = torch_layout(kind_of(name), np.asarray(tensors[keys[name]]))
        if tuple(value.shape) != tuple(shape):
            raise WeightImportError(f"{fits}: tensor {keys[name]!r} has shape {tuple(tensors[keys[name]].shape)}, "
                                    f"where {name} needs {tuple(shape)}")
        values[name] = np.ascontiguousarray(value, dtype=np.float32)
    used = set(keys.values())
    for key, original in tied:
        if key in tensors and original in tensors:
            if not np.array_equal(tensors[key], tensors[original]):
                raise WeightImportError(f"{source}: tensor {key!r} differs from {original!r}, which this "
                                        f"project's model ties it to")
            used.add(key)
    extra = sorted(key for key in tensors if key not in used and key.rsplit(".", 1)[-1] not in COUNTERS)
    if extra:
        raise WeightImportError(f"{fits}: it has tensor {extra[0]!r}, which no parameter of this network takes "
                                f"({len(extra)} such tensors)")
    return values


def checkpoint_tensors(path):
    """(what the file holds, {torch key: array} of its state dict) of a checkpoint read without torch."""
    held = read_checkpoint(path)
    tensors = state_dict(held)
    if tensors is None:
        raise WeightImportError(f"{path} holds no state dict or nn.Module (it holds a {type(held).__name__}): "
                                f"give the file quark0's scripts save (utils.save, torch.save(model, ...))")
    return held, {key: tensor.numpy() for key, tensor in tensors.items()}


def quark0_cnn_values(path, arch, shapes, num_cells):
    """{our name: array} for our parameters {name: shape} from a checkpoint of quark0's NetworkCIFAR or
    NetworkImageNet (a state dict, or cnn/train_imagenet.py's training checkpoint)."""
    _, tensors = checkpoint_tensors(path)
    reductions = reduction_cells(num_cells)
    return match_tensors(tensors, shapes, lambda name: quark0_cnn_key(name, arch, reductions, shapes), path,
                         "--model-arch-name, --num-cells, --output-filter + --additional-filters-on-retrain, "
                         "--auxiliary, --dataset")


def write_imported(params, values, monitor_path):
    """Sets the parameters {name: Variable} to the imported values and writes them, as every run's parameters
    are written, to <monitor_path>/imported_params.h5; returns its path."""
    for name, variable in params.items():
        variable.d = values[name]
    os.makedirs(monitor_path, exist_ok=True)
    path = os.path.join(monitor_path, IMPORTED_PARAMS)
    save_parameter_file(path, params)
    return path

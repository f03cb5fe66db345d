"""darts_train.py --space recurrent --import-weights MODEL.pt: quark0's language model (rnn/model.py
RNNModel, pickled whole by rnn/train.py, or its state dict) as this project's parameters.

The layouts are the same in both: the cell's fused matrices W0 (ninp + nhid, 2 nhid) and W_i (nhid, 2 nhid)
are multiplied from the right ([x, h] W0, then split into c and h), as models.recurrent does. The decoder is
tied to the embedding, so torch stores the (ntoken, ninp) matrix twice (encoder.weight, decoder.weight):
it is imported once, after checking that both copies are equal. A whole pickled model also says its cell:
a genotype other than --model-arch-name's is refused.
"""
import nnabla as nn

from models.recurrent import EMBEDDING_NAME, EMBEDDING_SCOPE, build_eval_model
from ops.recurrent_ops import RECURRENT_OP_NAMES
from ops.torch_checkpoint import PickledObject, is_module
from utils.data.text import vocabulary_size
from utils.training.torch_import import WeightImportError, checkpoint_tensors, match_tensors, write_imported

CELL = "rnns.0"


def quark0_rnn_key(name):
    """The torch key of our language model's parameter `name`, or None."""
    if name == f"{EMBEDDING_SCOPE}/{EMBEDDING_NAME}":
        return "encoder.weight"
    if name == "decoder/b":
        return "decoder.bias"
    if name == "cell/W0":
        return f"{CELL}._W0"
    if name.startswith("cell/W") and name[6:].isdigit():
        return f"{CELL}._Ws.{int(name[6:]) - 1}"
    return None


def pickled_genotype(held):
    """The (op name, input) pairs of a whole pickled RNNModel's cell, or None (a state dict says nothing)."""
    if not is_module(held):
        return None
    rnns = held.attributes().get("_modules", {}).get("rnns")
    cell = rnns.attributes().get("_modules", {}).get("0") if isinstance(rnns, PickledObject) else None
    genotype = cell.attributes().get("genotype") if isinstance(cell, PickledObject) else None
    if not isinstance(genotype, PickledObject) or not genotype.args:
        return None
    return [tuple(pair) for pair in genotype.args[0]]


def quark0_rnn_values(path, genotype, shapes):
    """{our name: array} for our language model's {name: shape} from quark0's RNNModel in `path`."""
    held, tensors = checkpoint_tensors(path)
    theirs = pickled_genotype(held)
    ours = [(RECURRENT_OP_NAMES[op], node) for op, node in genotype.recurrent]
    if theirs is not None and theirs != ours:
        raise WeightImportError(f"{path} holds a model of the cell {theirs}, not --model-arch-name's {ours}")
    return match_tensors(tensors, shapes, quark0_rnn_key, path, "--model-arch-name, --nhid, --dataset",
                         kind_of=lambda name: "matrix", tied=(("decoder.weight", "encoder.weight"),))


def import_recurrent(args, genotype):
    """--import-weights MODEL.pt: the weights of quark0's language model as <monitor>/imported_params.h5."""
    ntoken = vocabulary_size(args.dataset, args.data_dir)
    build_eval_model(genotype, 1, 1, ntoken, args.nhid, training=False)
    params = nn.get_parameters(grad_only=False)
    values = quark0_rnn_values(args.import_weights, genotype, {name: v.shape for name, v in params.items()})
    path = write_imported(params, values, args.monitor_path)
    print(f"{len(values)} tensors of {args.import_weights} written to {path}")
    return path

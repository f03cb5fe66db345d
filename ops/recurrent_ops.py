"""The activations a recurrent DARTS cell chooses from, under quark0/darts' op ids.

The ids are the positions in quark0's PRIMITIVES list, so its genotypes and alpha columns read
the same here. Op 0, 'none', removes an edge: it has no activation and is never built.
"""
from dataclasses import dataclass
from typing import Callable, Optional

import nnabla.functions as F


@dataclass(frozen=True)
class RecurrentOp:
    op_id: int
    name: str
    activation: Optional[Callable]  # None for 'none'


RECURRENT_OPS = (
    RecurrentOp(0, "none", None),
    RecurrentOp(1, "tanh", F.tanh),
    RecurrentOp(2, "relu", F.relu),
    RecurrentOp(3, "sigmoid", F.sigmoid),
    RecurrentOp(4, "identity", F.identity),
)
RECURRENT_OP_NAMES = tuple(op.name for op in RECURRENT_OPS)
NONE_OP = 0
TANH_OP = 1  # node 0's activation in every cell
# The ops a search cell mixes: every one but 'none', in id order.
ACTIVE_OPS = tuple(op.op_id for op in RECURRENT_OPS if op.activation is not None)


def recurrent_op(op_id):
    if not 0 <= op_id < len(RECURRENT_OPS):
        raise ValueError(f"unknown recurrent op id {op_id}; op ids are 0..{len(RECURRENT_OPS) - 1}")
    return RECURRENT_OPS[op_id]


def activation(op_id):
    """The nnabla function of an op; 'none' has none, since its edge is never built."""
    op = recurrent_op(op_id)
    if op.activation is None:
        raise ValueError(f"recurrent op {op_id} ({op.name!r}) has no activation")
    return op.activation

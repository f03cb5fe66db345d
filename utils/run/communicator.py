"""The data-parallel communicator behind the few calls the runs make: rank, size, all_reduce, broadcast, barrier.

A multi-GPU run (`mpirun -n N python darts_train.py --context cudnn --comm ...`) goes through nnabla's own
MultiProcessDataParalellCommunicator (NCCL, from nnabla-ext-cuda), one process per GPU; a run without --comm is
one process, OneProcess, whose collectives do nothing. tests/rank_processes.py holds a cpu double of several
local processes with the same methods: a test tool, never a transport for runs.
"""
import contextlib
import importlib
import os
import sys

import nnabla as nn
import numpy as np

from ops.user_error import UserError

INSTALL = ("--comm runs one process per GPU through nnabla's NCCL communicator: it needs nnabla-ext-cuda "
           "(`make env CUDA=120`) and MPI (OpenMPI's mpirun), and is launched as `mpirun -n N python ... "
           "--context cudnn --comm`")


class CommunicatorError(UserError):
    """--comm cannot start, or another rank stopped; one line."""


class OneProcess:
    """A run of one process: its collectives have nothing to exchange."""
    rank = 0
    size = 1

    def device(self, requested):
        return requested

    def all_reduce(self, arrays):
        pass

    def broadcast(self, arrays):
        pass

    def barrier(self):
        pass

    def abort(self):
        pass


ONE_PROCESS = OneProcess()


class NnablaCommunicator:
    """nnabla's MultiProcessDataParalellCommunicator: every call takes the whole list of arrays at once, which
    NCCL packs into one buffer (inplace=False), as nnabla's distributed examples call it."""

    def __init__(self, comm):
        self._comm = comm
        self.rank, self.size, self.local_rank = comm.rank, comm.size, comm.local_rank

    def device(self, requested):
        """Each process drives the GPU of its rank on its machine, whatever --device-id says."""
        return str(self.local_rank)

    def all_reduce(self, arrays):
        """Every rank's arrays become their mean over the ranks."""
        self._comm.all_reduce(arrays, division=True, inplace=False)

    def broadcast(self, arrays):
        """Every rank's arrays become rank 0's."""
        self._comm.bcast(arrays, 0, inplace=False)

    def barrier(self):
        self._comm.barrier()

    def abort(self):
        """MPI_Abort: mpirun stops every rank, which would otherwise wait in their next collective for ever."""
        self._comm.abort()


def open_communicator(comm, type_config):
    """nnabla's communicator with --comm (args.comm), else None: a run of one process."""
    if not comm:
        return None
    try:
        import nnabla.communicators as C
        from nnabla.ext_utils import get_extension_context
        importlib.import_module("nnabla_ext.cuda")  # only to tell whether the extension is installed
        communicator = C.MultiProcessDataParalellCommunicator(get_extension_context("cudnn", type_config=type_config))
        communicator.init()
    except Exception as error:  # ImportError, or the C++ side's RuntimeError without MPI or NCCL
        raise CommunicatorError(f"{INSTALL} ({type(error).__name__}: {' '.join(str(error).split())[:200]})"
                                ) from None
    return NnablaCommunicator(communicator)


@contextlib.contextmanager
def stopping_the_others(comm):
    """A rank that fails says so on one line and stops the others (comm.abort) rather than leaving them to wait."""
    try:
        yield
    except BaseException as error:
        if comm.size > 1 and not (isinstance(error, SystemExit) and error.code in (0, None)):
            if not isinstance(error, CommunicatorError):  # a peer's stop was said by the peer
                reason = " ".join(str(error).split()) or type(error).__name__
                print(f"rank {comm.rank} of {comm.size} failed, stopping every rank: {reason}", file=sys.stderr,
                      flush=True)
            comm.abort()
        raise


@contextlib.contextmanager
def quiet_unless_first(comm, data_parallel):
    """Only rank 0 prints a data-parallel run's log (the others compute the same epochs); errors stay on stderr.
    The ranks of a --seeds run each print their own seeds' runs."""
    if comm.rank == 0 or not data_parallel:
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


def mean_over_ranks(comm, values):
    """The means over the ranks of a few floats (an epoch's loss means of each rank's shards), in one call."""
    if comm.size == 1:
        return list(values)
    array = nn.NdArray.from_numpy_array(np.asarray(values, dtype=np.float32))
    comm.all_reduce([array])
    return [float(v) for v in array.data]

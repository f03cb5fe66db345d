"""A TEST TOOL: a cpu stand-in for nnabla's data-parallel communicator, so that the tests can run several ranks.

Runs use nnabla's MultiProcessDataParalellCommunicator (utils.run.communicator, --comm under mpirun); this double
has the same methods (rank, size, device, all_reduce, broadcast, barrier, abort) over Python's multiprocessing
pipes: rank 0 is the hub every other rank talks to. A rank whose peer has stopped (its process ended, or it
aborted) raises CommunicatorError, one line, instead of waiting for ever.
"""
import multiprocessing
import queue
import time
import traceback

import numpy as np

from utils.run.communicator import CommunicatorError


class PipeCommunicator:
    def __init__(self, rank, size, connections):
        """connections: rank 0's {peer rank: Connection}, another rank's {0: Connection}."""
        self.rank, self.size = rank, size
        self._connections = connections

    def device(self, requested):
        return requested

    def _receive(self, peer):
        try:
            return self._connections[peer].recv()
        except (EOFError, OSError):
            raise CommunicatorError(f"rank {peer} stopped; rank {self.rank} stops too") from None

    def _send(self, peer, value):
        try:
            self._connections[peer].send(value)
        except OSError:
            raise CommunicatorError(f"rank {peer} stopped; rank {self.rank} stops too") from None

    def all_reduce(self, arrays):
        values = [a.data.copy() for a in arrays]
        if self.rank == 0:
            for peer in self._connections:
                values = [v + w for v, w in zip(values, self._receive(peer))]
            values = [(v / self.size).astype(v.dtype) for v in values]
            for peer in self._connections:
                self._send(peer, values)
        else:
            self._send(0, values)
            values = self._receive(0)
        for array, value in zip(arrays, values):
            array.data[...] = value

    def broadcast(self, arrays):
        if self.rank == 0:
            for peer in self._connections:
                self._send(peer, [a.data.copy() for a in arrays])
        else:
            for array, value in zip(arrays, self._receive(0)):
                array.data[...] = value

    def barrier(self):
        self.all_reduce([])

    def abort(self):
        for connection in self._connections.values():
            connection.close()


def _rank_main(rank, size, connections, results, released, target, arguments):
    """A rank's process; it stays alive, its pipes open, until run_ranks has every rank's outcome (`released`):
    the worst case of a failed rank whose process does not end by itself (a data loader's thread, a cleanup that
    hangs), so that only the run's own stopping (utils.run.communicator.stopping_the_others) can free the others."""
    comm = PipeCommunicator(rank, size, connections)
    try:
        value = target(comm, *arguments)
        results.put((rank, 0, value))
    except SystemExit as stop:
        results.put((rank, stop.code if isinstance(stop.code, int) else 1, None))
    except BaseException:
        traceback.print_exc()
        results.put((rank, 1, None))
    released.wait()


class RanksHung(AssertionError):
    """Some rank gave no outcome in time: it waits for a peer that stopped without telling it."""


def run_ranks(size, target, *arguments, timeout=300):
    """target(comm, *arguments) in `size` fresh processes (spawned: the tests' process may hold threads), one per
    rank; returns [(exit code, return value)] by rank, or raises RanksHung after `timeout` seconds without every
    outcome. target must be a module-level function."""
    context = multiprocessing.get_context("spawn")
    links = {peer: context.Pipe() for peer in range(1, size)}
    connections = [{peer: hub for peer, (hub, _) in links.items()}] + [{0: links[r][1]} for r in range(1, size)]
    results, released = context.Queue(), context.Event()
    processes = [context.Process(target=_rank_main, args=(rank, size, connections[rank], results, released, target,
                                                          arguments)) for rank in range(size)]
    for process in processes:
        process.start()
    for hub, end in links.values():  # only the ranks hold the pipes, so a rank's end closes with its process
        hub.close()
        end.close()
    deadline = time.monotonic() + timeout
    outcome = {}
    try:
        while len(outcome) < size:
            try:
                rank, code, value = results.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise RanksHung(f"ranks {sorted(set(range(size)) - set(outcome))} gave no outcome in {timeout} s"
                                ) from None
            outcome[rank] = (code, value)
    finally:
        released.set()
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.terminate()
                process.join()
    return [outcome[rank] for rank in range(size)]


def as_arrays(params):
    """{name: numpy copy} of a {name: Variable} dict, for a rank to send back."""
    return {name: np.array(v.d) for name, v in params.items()}

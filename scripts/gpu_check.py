"""The check a GPU user runs first, in a few minutes: one verdict line per check, to paste into a report.

    python scripts/gpu_check.py                      # one GPU: cudnn against cpu, float and half, times, memory
    mpirun -n 2 python scripts/gpu_check.py --comm   # then: the data-parallel gradient against one GPU's

On one GPU, with the same weights and the same batch on cudnn and on cpu: the search step's losses and gradients
(first order: the weight and alpha gradients; second order: the unrolled alpha gradient) and the training step's
(DARTS_V2 with its auxiliary head), in float and in half precision (--type-config half, looser tolerance), then
the time per step and the GPU's peak memory. With --comm under mpirun (nnabla's NCCL communicator), every rank
takes its half of a batch; the all-reduced weight gradient must equal the mean of the shards' gradients that
rank 0 computes alone on one GPU.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import nnabla as nn  # noqa: E402
import numpy as np  # noqa: E402

from models.eval_network import build_train_graph  # noqa: E402
from models.genotype import load_architecture  # noqa: E402
from models.graph import feed, forward_backward  # noqa: E402
from models.search_network import (alpha_parameters, all_weight_state, create_alphas, search_network,  # noqa: E402
                                   softmax_weights, weight_parameters)
from utils.optim.solvers import SGD, Adam  # noqa: E402
from utils.run.communicator import open_communicator  # noqa: E402
from utils.run.context import ContextError, set_context  # noqa: E402
from utils.run.run import seed_everything  # noqa: E402
from utils.search.bilevel import BilevelOptimizer, build_search_graphs  # noqa: E402

CLASSES = 10
# Relative to the largest gradient entry: float32 on cudnn (other convolution algorithms, other summation
# orders) against cpu; half precision rounds at ~1e-3 per operation.
TOLERANCE = {"float": 1e-3, "half": 5e-2}


def parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device-id", default="0", help="the GPU of the single-GPU checks")
    p.add_argument("--batch-size", type=int, default=16, help="the (global) batch of every check")
    p.add_argument("--steps", type=int, default=20, help="steps timed per check")
    p.add_argument("--comm", action="store_true", help="under mpirun -n N: the data-parallel check")
    return p


def search_problem(second_order, batch, all_reduce=None):
    """A 2-cell search network at C=8 on 32x32 inputs, its graphs and its optimiser, from seed 0; all_reduce: a
    data-parallel communicator's, which the weight optimiser then averages the gradients with."""
    nn.clear_parameters()
    rng = seed_everything(0)
    alphas = create_alphas(rng)

    def network(x, frozen, purpose):
        return search_network(x, softmax_weights(alphas), CLASSES, channels=8, num_cells=2, frozen=frozen)
    graphs = build_search_graphs(network, (batch, 3, 32, 32), second_order)
    weights = weight_parameters()
    optimizer = BilevelOptimizer(graphs, weights, all_weight_state(), alpha_parameters(),
                                 SGD(weights, 0.025, 0.9, 3e-4, 5.0, all_reduce=all_reduce),
                                 Adam(alpha_parameters(), 3e-4, 0.5, 0.999, 1e-3))
    return graphs, optimizer


def batches(batch):
    rng = np.random.RandomState(1)
    return [(rng.randn(batch, 3, 32, 32).astype(np.float32), rng.randint(0, CLASSES, (batch, 1))) for _ in range(2)]


def search_gradients(second_order, batch, timing):
    """{name: gradient} and the loss of one search step's passes (no update), and the step's time (timing: a
    Timing)."""
    graphs, optimizer = search_problem(second_order, batch)
    train_batch, val_batch = batches(batch)
    feed(graphs.val, val_batch)
    feed(graphs.train, train_batch)
    if second_order:
        feed(graphs.hessian, train_batch)
        optimizer.alpha_optimizer.zero_grad()
        optimizer.unrolled_alpha_gradient()
        loss = float(graphs.val.loss.d)
    else:
        optimizer.weight_optimizer.zero_grad()
        forward_backward(graphs.train)
        forward_backward(graphs.val)
        loss = float(graphs.train.loss.d)
    params = {**(alpha_parameters() if second_order else nn.get_parameters(grad_only=True))}
    grads = {name: np.array(v.g, dtype=np.float32) for name, v in params.items()}
    return loss, grads, timing(lambda: optimizer.step(train_batch, val_batch))


def training_gradients(batch, timing):
    nn.clear_parameters()
    seed_everything(0)
    graph = build_train_graph(load_architecture("DARTS_V2"), (batch, 3, 32, 32), CLASSES, 16, 5, auxiliary=True,
                              aux_weight=0.4)
    feed(graph, batches(batch)[0])
    optimizer = SGD(nn.get_parameters(grad_only=True), 0.025, 0.9, 3e-4, 5.0)
    optimizer.zero_grad()
    forward_backward(graph)
    loss = float(graph.loss.d)
    grads = {name: np.array(v.g, dtype=np.float32) for name, v in nn.get_parameters(grad_only=True).items()}

    def step():
        optimizer.zero_grad()
        forward_backward(graph)
        optimizer.step()
    return loss, grads, timing(step)


class Timing:
    """The mean time of `steps` steps on the GPU `device_id`, after one that allocates and picks the convolution
    algorithms; the GPU is synchronized before the clock stops."""

    def __init__(self, steps, device_id):
        self.steps, self.device_id = steps, device_id

    def __call__(self, step):
        step()
        started = time.time()
        for _ in range(self.steps):
            step()
        _synchronize(self.device_id)
        return (time.time() - started) / self.steps


def _synchronize(device_id):
    try:
        import nnabla_ext.cuda
        nnabla_ext.cuda.synchronize(device_id=device_id)
    except (ImportError, AttributeError):
        pass


def peak_memory(device_id):
    """The device's peak allocation as nnabla_ext.cuda reports it, or what nvidia-smi says is used now."""
    try:
        import nnabla_ext.cuda
        return f"{nnabla_ext.cuda.max_allocated_memory(int(device_id)) / 2 ** 20:.0f} MiB peak"
    except (ImportError, AttributeError):
        pass
    query = os.popen(f"nvidia-smi --query-gpu=memory.used --format=csv,noheader -i {device_id} 2>/dev/null")
    used = query.read().strip()
    return f"{used} used (nvidia-smi)" if used else "peak memory unknown"


def compare(name, context, device_id, type_config, compute):
    """One verdict line: compute() on cpu (float) against it on `context` (GPU device_id) in `type_config`."""
    set_context("cpu", "0", "float")
    cpu_loss, cpu_grads, cpu_time = compute()
    set_context(context, device_id, type_config)
    gpu_loss, gpu_grads, gpu_time = compute()
    scale = max(float(np.abs(g).max()) for g in cpu_grads.values()) or 1.0
    error = max(float(np.abs(gpu_grads[n] - g).max()) for n, g in cpu_grads.items()) / scale
    loss_error = abs(gpu_loss - cpu_loss) / max(abs(cpu_loss), 1e-6)
    ok = error <= TOLERANCE[type_config] and loss_error <= TOLERANCE[type_config]
    print(f"{'PASS' if ok else 'FAIL'}  {name} ({type_config}): loss {gpu_loss:.5f} vs cpu {cpu_loss:.5f}, "
          f"max gradient difference {error:.1e} of the largest (tolerance {TOLERANCE[type_config]:g}); "
          f"{gpu_time * 1000:.1f} ms/step on {context} vs {cpu_time * 1000:.1f} on cpu; {peak_memory(device_id)}",
          flush=True)
    return ok


def data_parallel_check(comm, batch_size, timing):
    """The all-reduced gradient of the ranks' shards of a global batch of batch_size against rank 0's mean of the
    same shards' gradients."""
    per_rank = batch_size // comm.size
    graphs, optimizer = search_problem(False, per_rank, all_reduce=comm.all_reduce)
    x, y = batches(batch_size)[0]

    def shard_gradients(rank):
        feed(graphs.train, (x[rank * per_rank:(rank + 1) * per_rank], y[rank * per_rank:(rank + 1) * per_rank]))
        optimizer.weight_optimizer.zero_grad()
        forward_backward(graphs.train)
        return [np.array(v.g) for v in optimizer.weights.values()]
    alone = [np.mean(grads, axis=0) for grads in zip(*[shard_gradients(r) for r in range(comm.size)])]
    shard_gradients(comm.rank)
    optimizer.weight_optimizer.average_gradients()
    reduced = [np.array(v.g) for v in optimizer.weights.values()]
    step_time = timing(lambda: optimizer.step(*batches(per_rank)))
    if comm.rank == 0:
        scale = max(float(np.abs(g).max()) for g in alone) or 1.0
        error = max(float(np.abs(r - a).max()) for r, a in zip(reduced, alone)) / scale
        ok = error <= TOLERANCE["float"]
        print(f"{'PASS' if ok else 'FAIL'}  data parallel over {comm.size} GPUs: all-reduced gradient vs one GPU's "
              f"mean of the shards' gradients, max difference {error:.1e} of the largest; "
              f"{step_time * 1000:.1f} ms per first-order search step of {per_rank} images per GPU", flush=True)
        return ok
    return True


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        set_context("cudnn", args.device_id, "float")
        if args.comm:
            comm = open_communicator(True, "float")
            device_id = comm.device(args.device_id)
            set_context("cudnn", device_id, "float")
            ok = data_parallel_check(comm, args.batch_size, Timing(args.steps, device_id))
        else:
            b, timing = args.batch_size, Timing(args.steps, args.device_id)
            checks = [("search step, first order", "float", lambda: search_gradients(False, b, timing)),
                      ("search step, second order", "float", lambda: search_gradients(True, b, timing)),
                      ("training step", "float", lambda: training_gradients(b, timing)),
                      # half cannot run second order (utils.run.context.check_precision)
                      ("search step, first order", "half", lambda: search_gradients(False, b, timing)),
                      ("training step", "half", lambda: training_gradients(b, timing))]
            ok = all([compare(name, "cudnn", args.device_id, type_config, compute)
                      for name, type_config, compute in checks])
    except ContextError as error:
        print(f"gpu check: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # a communicator without MPI, a cudnn failure: one line to report
        print(f"gpu check: {type(error).__name__}: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    print("verdict: every check passed" if ok else "verdict: a check FAILED; report these lines", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

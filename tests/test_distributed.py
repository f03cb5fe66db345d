"""Data parallel on cpu, through the multi-process double of nnabla's communicator (tests/rank_processes.py)."""
import json
import os
import subprocess
import sys
import time

import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF
import numpy as np
import pytest

import darts_search
import darts_train
import utils.training.network_training
from models.graph import build_graph, feed
from models.search_network import ALPHA_NAMES
from rank_processes import as_arrays, run_ranks
from utils.data.shards import rank_shard
from utils.optim.solvers import SGD, Adam
from utils.run.communicator import ONE_PROCESS
from utils.run.run import seed_everything
from utils.run_files import FINAL_PARAMS
from utils.search.bilevel import BilevelOptimizer, build_search_graphs
from utils.search.variant import SearchSetup
from utils.search.variants.sdarts import SdartsAdv, SdartsAdvSettings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH, CLASSES = 8, 4
TINY_TRAIN = ["--dataset", "digits", "--num-cells", "3", "--output-filter", "4", "-f", "0", "-b", "50",
              "--model-arch-name", "DARTS_V2", "--train-portion", "0.1", "--save-interval", "1"]
TINY_SEARCH = ["--dataset", "digits", "--num-cells", "2", "--output-filter", "4", "-b", "32",
               "--train-portion", "0.1"]


def bilevel_steps(comm, second_order):
    """Two search steps of a BN-free smooth mixture on rank comm.rank's shard of two fixed global batches, with
    gradient clipping active; returns the weights and alphas."""
    nn.clear_parameters()
    rng = seed_everything(0)
    alpha = nn.parameter.get_parameter_or_create("arch/alpha", (1, 3), rng.randn(1, 3).astype(np.float32))

    def network(x, frozen, purpose):
        with nn.parameter_scope("net"):
            hidden = F.tanh(PF.affine(x, 6, fix_parameters=frozen, name="in"))
            mix = F.split(F.softmax(alpha, axis=1), axis=1)
            mixed = sum(F.tanh(PF.affine(hidden, 6, fix_parameters=frozen, name=f"op{k}")) * F.reshape(w, (1, 1))
                        for k, w in enumerate(mix))
            return PF.affine(mixed, CLASSES, fix_parameters=frozen, name="out")
    per_rank = BATCH // comm.size
    graphs = build_search_graphs(network, (per_rank, 5), second_order=second_order)
    with nn.parameter_scope("net"):
        weights = nn.get_parameters()
    reduce = comm.all_reduce if comm.size > 1 else None
    optimizer = BilevelOptimizer(graphs, weights, weights, {"alpha": alpha},
                                 SGD(weights, 0.1, 0.9, 3e-4, 0.05, all_reduce=reduce),
                                 Adam({"alpha": alpha}, 3e-2, 0.5, 0.999, 1e-3, all_reduce=reduce))
    data = np.random.RandomState(1)
    for _ in range(2):
        batches = [(data.randn(BATCH, 5).astype(np.float32), data.randint(0, CLASSES, (BATCH, 1)))
                   for _ in range(2)]
        shard = slice(comm.rank * per_rank, (comm.rank + 1) * per_rank)
        train_batch, val_batch = [(x[shard], y[shard]) for x, y in batches]
        feed(graphs.val, val_batch)
        optimizer.step(train_batch, val_batch)
    return as_arrays({**weights, "alpha": alpha})


def both_orders(comm):
    return [bilevel_steps(comm, order) for order in (False, True)]


def test_two_ranks_with_half_batches_step_as_one_rank_with_the_whole_batch():
    whole = both_orders(ONE_PROCESS)
    ranks = run_ranks(2, both_orders)
    assert [code for code, _ in ranks] == [0, 0]
    for order, reference in enumerate(whole):
        for code, values in ranks:
            for name, value in reference.items():
                np.testing.assert_allclose(values[order][name], value, rtol=1e-4, atol=1e-6, err_msg=name)
    # The check can tell: a rank on its half batch alone moves elsewhere.
    alone = both_orders(_HalfOfTwo())
    assert any(not np.allclose(alone[1][n], whole[1][n], rtol=1e-4, atol=1e-6) for n in whole[1])


class _HalfOfTwo:
    """Rank 0 of two, without exchanging anything: its own half batch's gradients."""
    rank, size = 0, 2

    def all_reduce(self, arrays):
        pass


def sdarts_attack(comm):
    """SDARTS-ADV's mixing weights for the weight step, attacked on rank comm.rank's shard of a global batch."""
    nn.clear_parameters()
    seed_everything(0)
    per_rank = BATCH // comm.size
    shape = (per_rank, 1, 8, 8)
    adv = SdartsAdv(SdartsAdvSettings(), SearchSetup(shape, CLASSES, 4, 3, seed=0, rng=np.random.RandomState(0),
                                                     all_reduce=comm.all_reduce))
    build_graph(lambda x: adv.network(x, frozen=False, purpose="weights"), shape)  # the weights exist
    adv.start_epoch(9, 10)
    data = np.random.RandomState(2)
    x, y = data.randn(BATCH, 1, 8, 8).astype(np.float32), data.randint(0, CLASSES, (BATCH, 1))
    shard = slice(comm.rank * per_rank, (comm.rank + 1) * per_rank)
    adv.before_weight_step((x[shard], y[shard]))
    return {"loss": adv.attack_loss(adv.clean_weights()), **{name: np.array(adv.perturbed[name].d)
                                                             for name in ALPHA_NAMES}}


@pytest.mark.slow
def test_sdarts_adv_attacks_along_the_global_batch_s_gradient_on_every_rank():
    whole = sdarts_attack(ONE_PROCESS)
    ranks = run_ranks(2, sdarts_attack)
    assert [code for code, _ in ranks] == [0, 0]
    for _, attacked in ranks:  # the attack's loss (whether it is kept) and its mixing weights
        for name in ("loss",) + ALPHA_NAMES:
            np.testing.assert_allclose(attacked[name], whole[name], rtol=1e-5, atol=1e-6, err_msg=name)
    alone = sdarts_attack(_HalfOfTwo())  # a rank attacking with its own shard's gradient moves elsewhere
    assert any(not np.allclose(alone[n], whole[n], rtol=1e-5, atol=1e-6) for n in ALPHA_NAMES)


class WriteAudit:
    """The file-system writes (open for writing, rename, mkdir, remove) of this process under `root`."""

    def __init__(self, root):
        self.root, self.writes = str(root), []
        sys.addaudithook(self)

    def __call__(self, event, args):
        if event == "open" and args[0] is not None and isinstance(args[0], (str, bytes, os.PathLike)):
            mode, flags = args[1], args[2]
            writing = (mode is not None and any(c in mode for c in "wax+")) or \
                (mode is None and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            paths = [args[0]] if writing else []
        elif event in ("os.rename", "os.mkdir", "os.remove"):
            paths = [args[0]]
        else:
            return
        self.writes += [os.fsdecode(p) for p in paths if os.path.abspath(os.fsdecode(p)).startswith(self.root)]


def unlike_start(module):
    """The ranks after the first draw other initial weights (as another GPU's nondeterministic initialisation
    could): only rank 0's broadcast makes the ranks train one network."""
    module.seed_everything = lambda seed: seed_everything(seed + 1000)


def script_rank(comm, script, argvs, audit_root):
    """One rank of darts_train.py or darts_search.py (argvs: by rank), its initial weights unlike rank 0's;
    returns its writes under audit_root, its parameters and the training batches it fed (darts_train.py) or
    whether its search variant was given the communicator's all_reduce (darts_search.py)."""
    main = {"train": darts_train, "search": darts_search}[script]
    if comm.rank:
        unlike_start(main)
    fed = []
    feed = utils.training.network_training.feed
    utils.training.network_training.feed = lambda graph, batch: fed.append(np.array(batch[0])) or feed(graph, batch)
    setup = darts_search.SearchSetup  # for the search: whether its variant averages over the ranks (SDARTS-ADV)
    darts_search.SearchSetup = lambda *a, **k: (made := setup(*a, **k), fed.append(made.all_reduce == comm.all_reduce)
                                                )[0]
    audit = WriteAudit(audit_root)
    main.main(argvs[comm.rank], communicator=comm)
    return audit.writes, as_arrays(nn.get_parameters(grad_only=False)), fed


def seeds_rank(comm, argv, audit_root, monitor):
    """script_rank of darts_train.py --seeds, where rank 1 starts its seeds only once rank 0 has finished all of
    its own: rank 0 must then wait (the barrier) for rank 1's summaries rather than read them early."""
    if comm.rank:
        train = darts_train.train

        def late_train(args, arch):
            while not os.path.exists(os.path.join(monitor, "seed_2", FINAL_PARAMS)):
                time.sleep(0.02)
            return train(args, arch)
        darts_train.train = late_train
    return script_rank(comm, "train", [argv] * comm.size, audit_root)


def test_the_ranks_shards_are_one_global_batch():
    class Loader:
        steps_per_epoch = 3

        def next(self):
            return np.arange(10), np.arange(10) * 2
    assert rank_shard(Loader, 0, 1) is Loader
    shards = [rank_shard(Loader(), rank, 2).next() for rank in range(2)]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in shards]), np.arange(10))
    np.testing.assert_array_equal(np.concatenate([y for _, y in shards]), np.arange(10) * 2)
    assert [len(x) for x, _ in shards] == [5, 5] and rank_shard(Loader(), 1, 2).steps_per_epoch == 3


@pytest.mark.slow
def test_data_parallel_training_writes_on_rank_0_only_and_resumes_on_every_rank(tmp_path):
    monitor = str(tmp_path / "run")
    first = run_ranks(2, script_rank, "train", [TINY_TRAIN + ["-e", "1", "-m", monitor]] * 2, str(tmp_path))
    assert [code for code, _ in first] == [0, 0]
    (writes0, params0, fed0), (writes1, params1, fed1) = [value for _, value in first]
    assert writes0 and writes1 == []
    # Each rank fed its own half of every global batch of 50.
    assert len(fed0) == len(fed1) > 0 and all(len(x0) == len(x1) == 25 for x0, x1 in zip(fed0, fed1))
    assert all(not np.array_equal(x0, x1) for x0, x1 in zip(fed0, fed1))
    for name in params0:  # rank 0's start, averaged gradients and running statistics: one network on both ranks
        np.testing.assert_allclose(params1[name], params0[name], rtol=1e-5, atol=1e-6, err_msg=name)
    resumed = run_ranks(2, script_rank, "train", [TINY_TRAIN + ["-e", "2", "--resume", "-m", monitor]] * 2,
                        str(tmp_path))
    assert [code for code, _ in resumed] == [0, 0]
    (_, params0, _), (writes1, params1, _) = [value for _, value in resumed]
    assert writes1 == []
    assert any(not np.allclose(params0[n], first[0][1][1][n]) for n in params0)  # it trained on
    for name in params0:
        np.testing.assert_allclose(params1[name], params0[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_seeds_are_spread_over_the_ranks_and_aggregated_once_all_are_done(tmp_path):
    monitor = str(tmp_path / "seeds")
    argv = TINY_TRAIN + ["-e", "1", "--seeds", "0,1,2", "-m", monitor]
    ranks = run_ranks(2, seeds_rank, argv, str(tmp_path), monitor)
    assert [code for code, _ in ranks] == [0, 0]
    rank1_writes = ranks[1][1][0]
    assert rank1_writes and all(os.sep + "seed_1" in path for path in rank1_writes)
    assert not any(os.sep + "seed_1" in path for path in ranks[0][1][0])
    with open(os.path.join(monitor, "aggregate.json")) as f:
        aggregate = json.load(f)
    assert aggregate["seeds"] == [0, 1, 2]
    assert aggregate["final_test_error"]["n"] == 3 and set(aggregate["final_test_error"]["per_seed"]) == {"0", "1",
                                                                                                         "2"}


def test_a_failing_rank_stops_the_others_with_one_line(tmp_path, capfd):
    good = TINY_TRAIN + ["-e", "1", "-m", str(tmp_path / "run")]
    bad = good[:good.index("DARTS_V2")] + ["no_such_cell.json"] + good[good.index("DARTS_V2") + 1:]
    # The double keeps a failed rank's process alive: only the run's own stop frees rank 0 from its collective.
    ranks = run_ranks(2, script_rank, "train", [good, bad], str(tmp_path), timeout=60)
    assert [code for code, _ in ranks] == [1, 1]
    err = capfd.readouterr().err
    assert "error: rank 1 stopped; rank 0 stops too" in err
    assert "rank 1 of 2 failed, stopping every rank" in err


@pytest.mark.slow
def test_data_parallel_second_order_search_gives_one_cell_written_once(tmp_path):
    monitor = str(tmp_path / "search")
    argv = TINY_SEARCH + ["-e", "1", "--second-order", "-m", monitor]
    ranks = run_ranks(2, script_rank, "search", [argv] * 2, str(tmp_path))
    assert [code for code, _ in ranks] == [0, 0]
    (writes0, params0, shared0), (writes1, params1, shared1) = [value for _, value in ranks]
    assert writes0 and writes1 == [] and shared0 == shared1 == [True]
    assert os.path.exists(os.path.join(monitor, "DARTS_arch.json"))
    for name in params0:
        np.testing.assert_allclose(params1[name], params0[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_comm_without_the_cuda_extension_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "darts_train.py", "--context", "cudnn", "--comm", "-e", "1",
                             "-m", str(tmp_path / "x")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "--comm runs one process per GPU" in result.stderr


def test_scale_lr_without_a_data_parallel_run_is_refused(tmp_path):
    with pytest.raises(SystemExit) as stop:
        darts_train.main(TINY_TRAIN + ["--scale-lr", "-m", str(tmp_path)])
    assert stop.value.code == 2


def test_the_gpu_check_parses_on_cpu_and_says_in_one_line_that_cudnn_is_missing():
    script = os.path.join(ROOT, "scripts", "gpu_check.py")
    shown = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and "--comm" in shown.stdout
    result = subprocess.run([sys.executable, script, "--steps", "1"], capture_output=True, text=True)
    lines = [line for line in result.stderr.splitlines() if "[nnabla]" not in line]
    assert result.returncode == 1 and lines == [lines[0]] and lines[0].startswith("gpu check: --context cudnn needs")

"""DARTS architecture search: learns a normal and a reduction cell and writes them as DARTS_arch.json in its
monitor directory (or to --model-arch-name).

    python darts_search.py --context cpu --dataset digits --epoch 5 --monitor-path runs/search
    python darts_search.py --space recurrent --dataset ptb --monitor-path runs/rnn-search   (utils/recurrent/search.py)
    python darts_search.py --dataset digits --epoch 5 --seeds 0,1,2,3 --select-epochs 5 -m runs/searches

With --seeds, one search per seed runs into <monitor-path>/seed_<s>/ (its architecture in that
directory's DARTS_arch.json). With --select-epochs N as well, each found cell then trains for N epochs
in the search network's size (--num-cells, --output-filter) on --train-portion of the training set,
is scored on the rest of the training set (never the test set), and the ranking goes to
<monitor-path>/selection.json; the winner is written to --model-arch-name (default:
<monitor-path>/DARTS_arch.json). That split is drawn apart
from every search's (utils.search.selection): each candidate's alpha half holds about the same share of the
held-out images, which selection.json counts.
"""
import logging
import os

# nnabla logs at INFO from its import on (every extension and data iterator it creates); a run's own
# lines are what matter, from whatever directory it starts.
logging.getLogger("nnabla").setLevel(logging.WARNING)

import nnabla as nn
import numpy as np

from args import parse_args, search_parser
from models.complexity import architecture_parameters
from models.derivation import derive_by_rule, extracted_file_name
from models.genotype import (ArchitectureError, load_architecture, save_architecture, to_genotype_string,
                             write_text_atomically)
from models.hypernetwork import Hypernetwork, LambdaInput
from models.search_network import all_weight_state, alpha_parameters, weight_parameters
from ops.divergence import DIVERGED, DivergedError, check_finite, check_parameters, describe
from ops.unreadable_file import reading
from utils.data.datasets import load_dataset
from utils.data.pipeline import BatchLoader, split_indices
from utils.data.shards import rank_shard, shard_size
from utils.optim.mixed_precision import describe_loss_scale, loss_scale_for
from utils.optim.solvers import SGD, Adam, cosine_lr
from utils.pictures.cell_diagram import draw_architecture
from utils.recurrent.search import search_recurrent
from utils.run.checkpoint import load_checkpoint
from utils.run.communicator import (ONE_PROCESS, mean_over_ranks, open_communicator, quiet_unless_first,
                                    stopping_the_others)
from utils.run.context import check_precision, set_context, uses_cpu_kernels
from utils.run.modes import SEARCH, Mode, mode_to_run
from utils.run.run import EPOCH_TIME, Progress, Run, fail_cleanly, seed_everything, write_json
from utils.run_files import (ALPHA_HISTORY, CELL_PICTURES, CHECKPOINT, GENOTYPE, SEARCH_SUMMARY, SELECTION,
                             alpha_epoch_architecture, epoch_architecture, epoch_cell_pictures_prefix,
                             found_architecture)
from utils.search.alpha_history import AlphaHistory, derive_from_history, derive_recurrent_from_history
from utils.search.bilevel import BilevelOptimizer, build_search_graphs
from utils.search.finetune import finetune_discretized
from utils.search.recalibration import calibration_batches
from utils.search.selection import others_searches, search_data_overlap, select_architecture
from utils.search.variant import SearchSetup
from utils.search.variants import VARIANTS
from utils.training.evaluation import RunningMean, classification_error, image_set_scores
from utils.training.protocol import open_seeds_run, per_seed_args, seeds_of_rank

# Per epoch: the means over the steps of the weight step's and the alpha step's batches, then one
# eval-mode pass over the whole alpha half, of the network the weights train (the supernet, or the
# hard-discretized network under --hd-on-weights) and of the hard-discretized network, the latter on
# batch-norm statistics of its own (computed on the weight half). A variant adds its own.
SERIES = ("Training loss", "Training error", "Alpha-step loss", "Alpha-step error",
          "Validation loss", "Validation error", "Discretized validation error", EPOCH_TIME)
# What a diverged search's line advises.
SEARCH_ADVICE = "lower --lr or --arch-lr"


def search_epoch(optimizer, train_loader, val_loader, steps, desc, progress_every, clock, epoch):
    """`steps` search steps of 0-based epoch `epoch` of a run timed by `clock` (a RunClock); returns the
    epoch means of the batch series."""
    names = ("Training loss", "Training error", "Alpha-step loss", "Alpha-step error")
    stats = {name: RunningMean() for name in names}
    bar = Progress(steps, desc, progress_every, clock, epoch)
    for step in bar:
        train_batch, val_batch = train_loader.next(), val_loader.next()
        optimizer.step(train_batch, val_batch)
        train_graph, val_graph = optimizer.weight_graph, optimizer.val_graph
        losses = {"alpha-step loss": float(val_graph.loss.d), "training loss": float(train_graph.loss.d)}
        for quantity, loss in losses.items():  # read back for the means anyway
            check_finite(loss, "search", epoch, step, optimizer.weight_optimizer.lr, quantity, SEARCH_ADVICE)
        stats["Training loss"].add(losses["training loss"])
        stats["Training error"].add(classification_error(train_graph.logits.d, train_batch[1]))
        stats["Alpha-step loss"].add(losses["alpha-step loss"])
        stats["Alpha-step error"].add(classification_error(val_graph.logits.d, val_batch[1]))
        bar.set_postfix(loss=f"{stats['Training loss'].mean:.3f}", acc=f"{1 - stats['Training error'].mean:.3f}")
    return {name: s.mean for name, s in stats.items()}


def search(args, comm=ONE_PROCESS):
    """comm: the data-parallel communicator (utils.run.communicator); each rank takes its shard of every global
    batch of --batch-size images, every rank computes the same steps of the averaged gradients, rank 0 writes."""
    check_precision(args.type_config, args.second_order)
    set_context(args.context, comm.device(args.device_id), args.type_config)
    per_rank = shard_size(args.batch_size, comm.size)
    data = load_dataset(args.dataset, args.data_dir)
    Variant = VARIANTS[args.variant]
    run = Run.open(vars(args), SERIES + Variant.series, outputs={"model_arch_name": found_architecture(
        args.monitor_path, args.model_arch_name)}, writes=comm.rank == 0)

    nn.clear_parameters()  # a run owns the global parameter registry from here on
    setup = SearchSetup((per_rank,) + data.train_x.shape[1:], data.num_classes, args.output_filter,
                        args.num_cells, args.seed, seed_everything(args.seed),
                        uses_cpu_kernels(args.context, args.type_config, args.cpu_kernels), comm.all_reduce)
    variant = Variant(Variant.Settings.from_args(args), setup)
    graphs = build_search_graphs(variant.network, setup.input_shape, args.second_order, variant.alpha_penalty,
                                 variant.separate_virtual)
    weights = weight_parameters()
    all_reduce = comm.all_reduce if comm.size > 1 else None  # both steps see the global batch's gradients
    lr_factor = comm.size if args.scale_lr else 1  # the linear scaling rule, only when asked
    weight_opt = SGD(weights, args.lr * lr_factor, args.momentum, args.weight_decay, args.grad_clip,
                     loss_scale=loss_scale_for(args.type_config), all_reduce=all_reduce, cpu_kernels=setup.cpu_kernels)
    alpha_opt = Adam(alpha_parameters(), args.arch_lr, args.arch_beta1, args.arch_beta2, args.arch_weight_decay,
                     loss_scale=loss_scale_for(args.type_config), all_reduce=all_reduce)
    loss_scales = {name: opt.loss_scale for name, opt in (("weights", weight_opt), ("alphas", alpha_opt))
                   if opt.loss_scale is not None}
    optimizer = BilevelOptimizer(graphs, weights, all_weight_state(), alpha_parameters(), weight_opt, alpha_opt,
                                 steps=variant)
    history = AlphaHistory(variant.histories())

    weights_idx, arch_idx = split_indices(len(data.train_y), args.train_portion, args.seed)
    cutout = args.cutout_length if args.cutout else 0
    # An epoch takes as many steps as the smaller half has batches; a resume continues each loader after the
    # batches it gave, which for the larger half is not the start of one of its own epochs.
    steps = min(len(weights_idx), len(arch_idx)) // args.batch_size

    def loader(idx, seed):
        return rank_shard(BatchLoader(data.train_x[idx], data.train_y[idx], args.batch_size, data.mean, data.std,
                                      augment=args.augment, hflip=data.hflip, vflip=data.vflip,
                                      cutout_length=cutout, seed=seed, batches_drawn=run.start_epoch * steps),
                          comm.rank, comm.size)

    # Every rank validates on the whole alpha half (the same network, so the same figures and decisions).
    def validate(graph):
        return image_set_scores(graph, data.train_x[arch_idx], data.train_y[arch_idx], per_rank,
                                data.mean, data.std)

    def calibration():  # what the discretized network's batch-norm statistics are computed on
        return calibration_batches(data.train_x[weights_idx], per_rank, data.mean, data.std)

    def validation_summary():
        validation, discretized = variant.validation_scores(validate, calibration)
        return validation, {"validation_error": validation.error, "discretized_validation_error": discretized.error}
    train_loader, val_loader = loader(weights_idx, args.seed), loader(arch_idx, args.seed + 1)

    try:
        # The run's first write, once its setup has succeeded: a setup that fails leaves an earlier run as it was.
        meta = run.start({**all_weight_state(), **{f"arch/{k}": v for k, v in alpha_parameters().items()}},
                         {"weights": weight_opt.solver, "alphas": alpha_opt.solver}, args.resume)
        if meta is not None:
            weight_opt.resume_learning_rate(meta["weight_lr"])
            for name, state in (meta.get("loss_scales") or {}).items():
                if name in loss_scales:
                    loss_scales[name].load_state(state)
            history.resume(meta["arrays"])
        comm.broadcast([v.data for v in {**all_weight_state(), **alpha_parameters()}.values()])
        # Each rank's batch norms see its shard's statistics (nnabla's distributed examples); their running
        # statistics are averaged once an epoch, before the validation every rank runs alike.
        running_statistics = [v.data for v in all_weight_state().values() if not v.need_grad]
        for epoch in run.remaining_epochs():
            weight_opt.set_learning_rate(cosine_lr(epoch, args.epoch, args.lr, args.lr_min) * lr_factor)
            variant.start_epoch(epoch, args.epoch)
            values = search_epoch(optimizer, train_loader, val_loader, steps,
                                  f"search epoch {epoch + 1}/{args.epoch}", args.progress_every, run.clock, epoch)
            values = dict(zip(values, mean_over_ranks(comm, list(values.values()))))
            comm.all_reduce(running_statistics)
            # The alphas and the weights, once an epoch (a ReLU hides a NaN weight from the losses).
            check_parameters(nn.get_parameters(grad_only=False), "search", epoch, steps - 1, weight_opt.lr,
                             SEARCH_ADVICE)
            validation, summary = validation_summary()
            check_finite(validation.loss, "search", epoch, steps - 1, weight_opt.lr, "validation loss", SEARCH_ADVICE)
            values.update({"Validation loss": validation.loss, "Validation error": validation.error,
                           "Discretized validation error": summary["discretized_validation_error"]})
            values.update(variant.epoch_values())
            arch = variant.cell()
            if run.writes:
                history.record(run.monitor_path)
                save_architecture(arch, os.path.join(run.monitor_path, epoch_architecture(epoch + 1)))
                # the log prints it once, at the end
                write_text_atomically(os.path.join(run.monitor_path, GENOTYPE), to_genotype_string(arch) + "\n")
                if args.draw_every_epoch:
                    draw_architecture(arch, os.path.join(run.monitor_path, CELL_PICTURES),
                                      prefix=epoch_cell_pictures_prefix(epoch + 1))
            run.end_epoch(epoch, values,
                          meta={"weight_lr": weight_opt.lr,
                                "loss_scales": {name: scale.state() for name, scale in loss_scales.items()},
                                "arrays": history.arrays()},
                          message=f"lr {weight_opt.lr:.5f}  "
                                  f"train loss {values['Training loss']:.4f} err {values['Training error']:.4f}  "
                                  f"val loss {values['Validation loss']:.4f} err {values['Validation error']:.4f}  "
                                  f"discretized err {values['Discretized validation error']:.4f}"
                                  + "".join(describe_loss_scale(scale, f"{name} loss scale")
                                          for name, scale in loss_scales.items()))
        if run.start_epoch == args.epoch:  # resumed after the last epoch: nothing above validated
            _, summary = validation_summary()
        summary.update(finetune_discretized(variant, weight_opt, train_loader, args.finetune_epochs,
                                            validate, calibration))
        if run.writes:
            write_json(os.path.join(run.monitor_path, SEARCH_SUMMARY), summary)
    except DivergedError as diverged:  # the last finished epoch's files stay; the summary says what happened
        if run.writes:
            write_json(os.path.join(run.monitor_path, SEARCH_SUMMARY),
                       {"validation_error": None, "discretized_validation_error": None, DIVERGED: diverged.record})
        run.close()
        raise
    finally:
        train_loader.close()
        val_loader.close()

    arch = variant.cell()
    out = found_architecture(run.monitor_path, args.model_arch_name)
    if run.writes:
        save_architecture(arch, out)
    run.close()
    print(f"architecture written to {out}: {to_genotype_string(arch)}")
    return arch


def search_seeds(args, comm=ONE_PROCESS):
    """--seeds: one search per seed into <monitor>/seed_<s>/; with --select-epochs, the selection. Under --comm
    rank r searches the seeds r, r + N, ... on its own device, and rank 0 selects once every rank is done."""
    winner_path = found_architecture(args.monitor_path, args.model_arch_name)
    parent = (open_seeds_run(args, outputs={"model_arch_name": winner_path} if args.select_epochs else None)
              if comm.rank == 0 else None)
    comm.barrier()  # the directory checked (and an old run moved aside) before any rank writes into it
    arch_files, diverged = {}, {}
    for seed in seeds_of_rank(args.seeds, comm):
        seed_args = per_seed_args(args, seed)
        seed_args.model_arch_name = found_architecture(seed_args.monitor_path, None)
        print(f"seed {seed}: searching into {seed_args.monitor_path}", flush=True)
        try:
            search(seed_args)
        except DivergedError as error:  # the other seeds still search; the selection leaves this one out
            print(f"seed {seed}: {error}", flush=True)
            diverged[f"seed_{seed}"] = error.record
            continue
        arch_files[f"seed_{seed}"] = seed_args.model_arch_name
    comm.barrier()
    if comm.rank != 0:
        return None
    arch_files, diverged = others_searches(args, arch_files, diverged)
    which = "; ".join(f"{name} in {describe(record)}" for name, record in diverged.items())
    if args.select_epochs is None or not arch_files:
        parent.close()
        if diverged:
            raise DivergedError(f"{len(diverged)} of {len(args.seeds)} searches diverged ({which})", diverged)
        return None

    data = load_dataset(args.dataset, args.data_dir)
    settings = {"num_classes": data.num_classes, "channels": args.output_filter, "num_cells": args.num_cells,
                "epochs": args.select_epochs, "batch_size": args.batch_size, "lr": args.lr, "lr_min": args.lr_min,
                "momentum": args.momentum, "weight_decay": args.weight_decay, "grad_clip": args.grad_clip,
                "cutout_length": args.cutout_length if args.cutout else 0, "hflip": data.hflip, "seed": args.seed,
                "type_config": args.type_config,
                "cpu_kernels": uses_cpu_kernels(args.context, args.type_config, args.cpu_kernels)}
    candidates = {name: load_architecture(path) for name, path in arch_files.items()}
    # The training images only: whatever the selection does, it cannot see the test set.
    ranking, sizes = select_architecture(candidates, data.train_x, data.train_y, data.mean, data.std, settings,
                                         args.train_portion)
    for entry in ranking:
        entry["architecture"] = arch_files[entry["candidate"]]
    winner = ranking[0]
    # What each search saw of the selection's images: about the same for every candidate (selection_split).
    overlap = search_data_overlap(len(data.train_y), args.train_portion, args.seed,
                                  {f"seed_{seed}": seed for seed in args.seeds})
    selection = {"select_epochs": args.select_epochs, "channels": args.output_filter, "num_cells": args.num_cells,
                 **sizes, "search_data_overlap": overlap, "ranking": ranking, "winner": winner["candidate"],
                 "written_to": winner_path, **({DIVERGED: diverged} if diverged else {})}
    path = os.path.join(args.monitor_path, SELECTION)
    write_json(path, selection)
    save_architecture(candidates[winner["candidate"]], winner_path)
    parent.close()
    print(f"selection written to {path}; {winner['candidate']} wins with held-out error "
          f"{winner['held_out_error']:.4f}; its architecture written to {winner_path}")
    if diverged:
        raise DivergedError(f"{len(diverged)} of {len(args.seeds)} searches diverged ({which}) and were left out of "
                            f"the selection in {path}", diverged)
    return selection


def extract(args):
    """--extract-lambda: the cell at λ̃ from the checkpoint of a finished complexity-controlled search."""
    path = os.path.join(args.model_save_path or args.monitor_path, CHECKPOINT)
    if not os.path.exists(path):
        raise ArchitectureError(f"--extract-lambda needs the checkpoint of a --complexity-control search; "
                                f"{path} does not exist")
    nn.clear_parameters()
    hypernetwork = Hypernetwork(LambdaInput(args.log10_lambda_min, args.log10_lambda_max), np.random.RandomState(0))
    knots = {f"arch/{k}": v for k, v in alpha_parameters().items()}
    with reading(path, "checkpoint", ArchitectureError), np.load(path) as saved:
        held = set(saved.files)
    if not {f"param/{name}" for name in knots} <= held:
        raise ArchitectureError(f"--extract-lambda needs the checkpoint of a --complexity-control search; "
                                f"{path} holds no hypernetwork")
    load_checkpoint(path, knots, {})
    alphas = hypernetwork.alphas_at(args.extract_lambda)
    arch = derive_by_rule(alphas["alpha_normal"], alphas["alpha_reduction"], args.extract_mode)
    out = os.path.join(args.monitor_path, extracted_file_name(args.extract_lambda, args.extract_mode))
    save_architecture(arch, out)
    params = architecture_parameters(arch, args.output_filter, args.num_cells)
    print(f"cell at normalised lambda {args.extract_lambda:g} ({args.extract_mode}) written to {out}: "
          f"{params} weights in its ops at C={args.output_filter}, {args.num_cells} cells")
    return out, params


def derive_epoch(args):
    """--alpha-epoch: the cell of a recorded epoch, derived as the search's variant derives it, written to
    <monitor>/arch_alpha_epoch_NNN.json (never to the search's --model-arch-name)."""
    Variant = VARIANTS[args.variant]
    settings = Variant.Settings.from_args(args)
    out = os.path.join(args.monitor_path, alpha_epoch_architecture(args.alpha_epoch))
    derive_from_history(os.path.join(args.monitor_path, ALPHA_HISTORY), args.alpha_epoch, out,
                        lambda values: Variant.derive(settings, values))
    print(f"architecture of epoch {args.alpha_epoch} written to {out}")
    return out


def derive_recurrent_epoch(args):
    """--alpha-epoch under --space recurrent."""
    out = os.path.join(args.monitor_path, alpha_epoch_architecture(args.alpha_epoch))
    derive_recurrent_from_history(os.path.join(args.monitor_path, ALPHA_HISTORY), args.alpha_epoch, out)
    print(f"recurrent cell of epoch {args.alpha_epoch} written to {out}")
    return out


# The modes the flags select (the search when none does). The two inspection modes read a finished search
# and write files of their own names beside it (utils.run.modes).
MODES = (Mode("cell extraction", "extract_lambda", {"cnn": extract}, inspects=SEARCH),
         Mode("derivation of a recorded epoch", "alpha_epoch",
              {"cnn": derive_epoch, "recurrent": derive_recurrent_epoch}, inspects=SEARCH),
         Mode("seeds", "seeds", {"cnn": search_seeds}),
         Mode("search", None, {"cnn": search, "recurrent": search_recurrent}))


def main(argv=None, communicator=None):
    """communicator: a test's stand-in for --comm's (tests/rank_processes.py)."""
    parser = search_parser()
    args = parse_args(parser, argv)
    run_mode = mode_to_run(parser, args, MODES)
    with fail_cleanly():
        comm = communicator or open_communicator(getattr(args, "comm", False), args.type_config)
        ranks = comm or ONE_PROCESS
        with stopping_the_others(ranks), quiet_unless_first(ranks, getattr(args, "seeds", None) is None):
            return run_mode(args) if comm is None else run_mode(args, comm=comm)


if __name__ == "__main__":
    main()

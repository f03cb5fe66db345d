"""Trains a DARTS architecture from scratch: the evaluation network, auxiliary head, drop path, cutout.

    python darts_train.py --model-arch-name DARTS_V2 --dataset digits --epoch 10 -m runs/train
    python darts_train.py --model-arch-name DARTS_V2 --summary          # size and MACs, reads no data
    python darts_train.py --model-arch-name arch.json --evaluate runs/train/final_params.h5 -m runs/eval
    python darts_train.py --model-arch-name DARTS_V2 --dataset digits --epoch 10 --seeds 0,1,2 -m runs/seeds
    python darts_train.py --model-arch-name arch.json --export runs/train/final_params.h5 --format nnp -m runs/export
    python darts_train.py --space recurrent --dataset ptb --model-arch-name DARTS_V2   (utils/recurrent/train.py)
    python darts_train.py --model-arch-name DARTS_V2 --auxiliary --import-weights cifar10_model.pt -m runs/released
    python darts_train.py --model-arch-name DARTS_V2 --init-params runs/released/imported_params.h5 -e 20 -m runs/ft

The defaults train the paper's network: 20 cells, C = --output-filter + --additional-filters-on-retrain
= 36, batch 96, 600 epochs, from random weights or, fine-tuning, from --init-params PARAMS.h5 (every parameter
of the network, batch-norm statistics included; the optimiser starts afresh). Outputs, in the monitor
directory unless said otherwise:

- config.yaml (the resolved settings) and the MonitorSeries files of SERIES (and VALIDATION_SERIES with
  --train-portion), one line per epoch; "Training loss" is the objective trained on, cross-entropy plus
  the weighted auxiliary loss;
- checkpoint.npz after every epoch (in --model-save-path), which --resume continues from;
- params_epoch_<NNN>.h5 every --save-interval epochs and final_params.h5 at the end, in
  --model-save-path (default: the monitor directory): every parameter of the network, batch-norm
  statistics and auxiliary head included, as written by nn.save_parameters;
- summary.json (utils.training.model_stats.SUMMARY_KEYS): weights without and with the auxiliary head, MACs of one
  image at test time, and the errors of utils.training.error_record as fractions (null before the first epoch):
  the final test error is the headline, the lowest one is best_test_error_oracle (picked on the test set);
- with --train-portion P: training on P of the training set, validation on the rest every epoch, and
  best_params.h5 (in --model-save-path), the parameters of the epoch with the lowest validation error;
- with --seeds S1,S2,...: one such run per seed in seed_<s>/, then aggregate.json and a printed table
  (utils.training.protocol: mean, sample std, n and per-seed values);
- network_summary.json with --summary: the weights and MACs of the network alone;
- evaluation.json with --evaluate: the test error and top-5 error of the given parameters;
- model.nnp or model.onnx with --export: the inference network with the given parameters;
- imported_params.h5 with --import-weights: the weights of a PyTorch checkpoint of quark0/darts' network
  (utils.training.torch_import; --space recurrent: utils.recurrent.torch_import), which --evaluate, --export
  and --init-params read (these four modes write no other file, and nothing into a search's directory);
- DARTS_arch.json: the architecture trained, so the run's cell diagrams can be drawn from its directory.
"""
import logging
import os

# nnabla logs at INFO from its import on (every extension and data iterator it creates); a run's own
# lines are what matter, from whatever directory it starts.
logging.getLogger("nnabla").setLevel(logging.WARNING)

import nnabla as nn

from args import parse_args, train_parser
from models.eval_network import (AUX_SCOPE, CIFAR, IMAGENET, CellVariant, DropPath, build_test_graph, build_train_graph,
                                 drop_path_schedule)
from models.genotype import load_architecture, save_architecture
from models.recurrent_genotype import load_recurrent_genotype
from ops.divergence import DIVERGED, DivergedError, check_finite
from utils.data.shards import rank_shard, shard_size
from utils.data.sources import open_source, source_info
from utils.optim.mixed_precision import describe_loss_scale, loss_scale_for
from utils.optim.solvers import SGD, cosine_lr, exponential_lr
from utils.recurrent.torch_import import import_recurrent
from utils.recurrent.train import evaluate_recurrent, summarise_recurrent, train_recurrent
from utils.run.communicator import (ONE_PROCESS, mean_over_ranks, open_communicator, quiet_unless_first,
                                    stopping_the_others)
from utils.run.context import set_context, uses_cpu_kernels
from utils.run.modes import TRAINING, Mode, mode_to_run
from utils.run.run import EPOCH_TIME, Run, fail_cleanly, keep_last_files, seed_everything, write_json
from utils.run_files import (AGGREGATE, ARCHITECTURE, BEST_PARAMS, EPOCH_PARAMS_PREFIX, EPOCH_PARAMS_SUFFIX, EVALUATION,
                             FINAL_PARAMS, NETWORK_SUMMARY, SUMMARY, epoch_params, exported_model)
from utils.training.error_record import diverged_summary, error_figures, record_epoch
from utils.training.evaluation import batch_scores
from utils.training.export import export_network
from utils.training.model_stats import describe_size, network_size, network_summary
from utils.training.network_training import GraphsBySize, train_epoch
from utils.training.parameter_files import load_parameter_file, save_parameter_file
from utils.training.protocol import (aggregate_runs, diverged_seeds_warning, format_table, open_seeds_run,
                                     others_summaries, per_seed_args, seeds_of_rank)
from utils.training.torch_import import quark0_cnn_values, write_imported

SERIES = ("Training loss", "Training error", "Test loss", "Test error", "Test top5 error", EPOCH_TIME)
VALIDATION_SERIES = ("Validation loss", "Validation error")


def network_channels(args):
    return args.output_filter + args.additional_filters_on_retrain


def network_ends(args):
    """quark0's ImageNet network has its own stem and auxiliary head around the same cells."""
    return IMAGENET if args.dataset == "imagenet" else CIFAR


def cell_variant(args):
    """--cell-bn and --pool-bn: DARTS's cells, or var_nas' one-hot fine-tuning ones."""
    return CellVariant(affine=args.cell_bn == "affine", pool_bn=args.pool_bn)


def network_settings(args):
    """Every flag that shapes the network, as keyword arguments of build_train_graph and build_test_graph.

    Training, --evaluate, --summary and --export all build from this, so that saved parameters are read
    back into the network that was trained (an export without --cell-bn once did not fit its parameters).
    """
    return {"channels": network_channels(args), "num_cells": args.num_cells, "ends": network_ends(args),
            "cells": cell_variant(args)}


def uses_drop_path(args):
    return args.drop_path_delta > 0 if args.drop_path_delta is not None else args.drop_path_prob > 0


def learning_rate(args, epoch):
    if args.lr_schedule == "exponential":
        return exponential_lr(epoch, args.lr, args.lr_decay)
    return cosine_lr(epoch, args.epoch, args.lr, args.lr_min)


def summarise(args, arch):
    """--summary: builds the network for the data set's input size and classes without reading data; its
    sizes go to network_summary.json, never to a training's summary.json in the same directory."""
    shape, num_classes = source_info(args.dataset, args.image_size)
    # Training mode without drop path has the test graph's layers (so its MACs) and the auxiliary head.
    graph = build_train_graph(arch, (1,) + shape, num_classes, auxiliary=args.auxiliary,
                              aux_weight=args.auxiliary_weight, **network_settings(args))
    summary = network_size(graph.logits)
    os.makedirs(args.monitor_path, exist_ok=True)
    path = os.path.join(args.monitor_path, NETWORK_SUMMARY)
    write_json(path, summary)
    print(f"network: {args.num_cells} cells, C={network_channels(args)}, input {shape}, {num_classes} classes")
    print(describe_size(summary))
    print(f"summary written to {path}")
    return summary


def evaluate(args, arch):
    """--evaluate PARAMS.h5: the test (ImageNet: validation) errors of saved parameters, written to evaluation.json."""
    source = open_source(args.dataset, args.data_dir, args.image_size, args.num_workers)
    shape = (args.batch_size,) + source.input_shape
    graph = build_test_graph(arch, shape, source.num_classes, **network_settings(args),
                             cpu_kernels=uses_cpu_kernels(args.context, args.type_config, args.cpu_kernels))
    load_parameter_file(args.evaluate, nn.get_parameters(grad_only=False), AUX_SCOPE)
    scores = batch_scores(graph, source.test_batches(args.batch_size))
    os.makedirs(args.monitor_path, exist_ok=True)
    path = os.path.join(args.monitor_path, EVALUATION)
    write_json(path, {"parameters": args.evaluate, "test_error": scores.error, "top5_error": scores.top5_error,
                      "test_loss": scores.loss, "test_images": scores.images})
    print(f"test error {scores.error:.4f}  top-5 error {scores.top5_error:.4f}  loss {scores.loss:.4f}  "
          f"({scores.images} images)  written to {path}")
    return scores.error


def export(args, arch):
    """--export PARAMS.h5: the inference network with these parameters as <monitor>/model.<format>."""
    shape, num_classes = source_info(args.dataset, args.image_size)
    graph = build_test_graph(arch, (1,) + shape, num_classes, **network_settings(args))
    load_parameter_file(args.export, nn.get_parameters(grad_only=False), AUX_SCOPE)
    os.makedirs(args.monitor_path, exist_ok=True)
    path = os.path.join(args.monitor_path, exported_model(args.format))
    export_network(graph.x, graph.logits, path)
    print(f"inference network written to {path} (input 'x' {graph.x.shape[1:]}, output 'y': logits)")
    return path


def import_weights(args, arch):
    """--import-weights MODEL.pt: quark0's PyTorch weights of this network (auxiliary head included with
    --auxiliary) as <monitor>/imported_params.h5, which --evaluate, --export and --init-params read."""
    shape, num_classes = source_info(args.dataset, args.image_size)
    graph = build_train_graph(arch, (1,) + shape, num_classes, auxiliary=args.auxiliary,
                              aux_weight=args.auxiliary_weight, **network_settings(args))
    params = nn.get_parameters(grad_only=False)
    values = quark0_cnn_values(args.import_weights, arch, {name: v.shape for name, v in params.items()},
                               args.num_cells)
    path = write_imported(params, values, args.monitor_path)
    print(f"{len(values)} parameters of {args.import_weights} written to {path}")
    print(describe_size(network_size(graph.logits)))
    return path


def train(args, arch, comm=ONE_PROCESS):
    """comm: the data-parallel communicator (utils.run.communicator); each rank trains on its shard of every
    global batch of --batch-size images, and only rank 0 writes."""
    validated = args.train_portion is not None
    per_rank = shard_size(args.batch_size, comm.size)
    source = open_source(args.dataset, args.data_dir, args.image_size, args.num_workers, args.train_portion,
                         args.seed)
    run = Run.open(vars(args), SERIES + (VALIDATION_SERIES if validated else ()), writes=comm.rank == 0)
    summary_path = os.path.join(run.monitor_path, SUMMARY)

    seed_everything(args.seed)  # the same initial weights on every rank, which rank 0's broadcast then ensures
    shape = (per_rank,) + source.input_shape
    settings = network_settings(args)
    drop_path = DropPath() if uses_drop_path(args) else None
    fast = uses_cpu_kernels(args.context, args.type_config, args.cpu_kernels)
    # ImageNet's loader ends each epoch with the rest of the images, a smaller batch with a graph of its own.
    train_graphs = GraphsBySize(lambda size: build_train_graph(
        arch, (size,) + source.input_shape, source.num_classes, auxiliary=args.auxiliary,
        aux_weight=args.auxiliary_weight, drop_path=drop_path, label_smoothing=args.label_smoothing,
        cpu_kernels=fast, **settings), per_rank)
    test_graph = build_test_graph(arch, shape, source.num_classes, cpu_kernels=fast, **settings)
    network_state = nn.get_parameters(grad_only=False)  # weights and batch-norm statistics
    # Each rank normalises its shard by the shard's batch statistics (no synchronised batch norm, as nnabla's
    # distributed examples); the running statistics are averaged over the ranks once an epoch, before the test.
    running_statistics = [v.data for v in network_state.values() if not v.need_grad]
    lr_factor = comm.size if args.scale_lr else 1  # the linear scaling rule, only when asked
    optimizer = SGD(nn.get_parameters(grad_only=True), args.lr * lr_factor, args.momentum, args.weight_decay,
                    args.grad_clip, loss_scale=loss_scale_for(args.type_config),
                    all_reduce=comm.all_reduce if comm.size > 1 else None, cpu_kernels=fast)
    summary = network_summary(test_graph.logits, validated)
    print(describe_size(summary))
    if args.init_params is not None and not run.resumes:  # a resumed run's weights are its checkpoint's
        load_parameter_file(args.init_params, network_state)
        print(f"fine-tuning: starting from the parameters of {args.init_params}")

    if validated:
        print(f"training on {len(source.train_idx)} images, validating on {len(source.valid_idx)}")
    loader = rank_shard(source.train_loader(args.batch_size, args.seed, run.start_epoch,
                                            cutout_length=args.cutout_length if args.cutout else 0,
                                            augment=args.augment), comm.rank, comm.size)
    try:
        # The run's first write, once its setup has succeeded: a setup that fails leaves an earlier run as it was.
        meta = run.start(network_state, {"weights": optimizer.solver}, args.resume)
        if meta is not None:
            optimizer.resume_learning_rate(meta["lr"])
            summary.update(meta["errors"])
            if optimizer.loss_scale is not None and meta.get("loss_scale"):
                optimizer.loss_scale.load_state(meta["loss_scale"])
        comm.broadcast([v.data for v in network_state.values()])
        if run.writes:
            save_architecture(arch, os.path.join(run.monitor_path, ARCHITECTURE))
            source.describe(run.monitor_path)
            write_json(summary_path, summary)
        for epoch in run.remaining_epochs():
            optimizer.set_learning_rate(learning_rate(args, epoch) * lr_factor)
            if drop_path is not None:
                drop_path.set_prob(drop_path_schedule(epoch, args.epoch, args.drop_path_prob, args.drop_path_delta))
            train_loss, train_error = train_epoch(train_graphs, loader, optimizer, drop_path, args.seed,
                                                  epoch, f"train epoch {epoch + 1}/{args.epoch}", run.clock,
                                                  args.progress_every, rank=comm.rank)
            train_loss, train_error = mean_over_ranks(comm, [train_loss, train_error])
            comm.all_reduce(running_statistics)  # every rank then tests, and rank 0 saves, the same network
            test = batch_scores(test_graph, source.test_batches(per_rank))
            # The last step's update is seen only here: weights it made NaN give a NaN test loss.
            check_finite(test.loss, "training", epoch, loader.steps_per_epoch - 1, optimizer.lr, "test loss")
            values = {"Training loss": train_loss, "Training error": train_error, "Test loss": test.loss,
                      "Test error": test.error, "Test top5 error": test.top5_error}
            message = (f"lr {optimizer.lr:.5f}  train loss {train_loss:.4f} err {train_error:.4f}  "
                       f"test loss {test.loss:.4f} err {test.error:.4f} top-5 {test.top5_error:.4f}")
            if optimizer.loss_scale is not None:
                message += describe_loss_scale(optimizer.loss_scale)
            valid = None
            if validated:
                valid = batch_scores(test_graph, source.validation_batches(per_rank))
                values.update({"Validation loss": valid.loss, "Validation error": valid.error})
                message += f"  valid err {valid.error:.4f}"
            if record_epoch(summary, epoch, test, valid) and run.writes:
                save_parameter_file(os.path.join(run.save_dir, BEST_PARAMS), network_state)
            if (epoch + 1) % args.save_interval == 0 and run.writes:
                save_parameter_file(os.path.join(run.save_dir, epoch_params(epoch + 1)), network_state)
                keep_last_files(run.save_dir, EPOCH_PARAMS_PREFIX, EPOCH_PARAMS_SUFFIX, args.keep_last)
            if run.writes:
                write_json(summary_path, summary)
            run.end_epoch(epoch, values, message=message,
                          meta={"lr": optimizer.lr, "errors": error_figures(summary),
                                "loss_scale": optimizer.loss_scale.state() if optimizer.loss_scale else None})
    except DivergedError as diverged:  # the last finished epoch's files stay; the summary says what happened
        if run.writes:
            write_json(summary_path, diverged_summary(summary, diverged.record))
        run.close()
        raise
    finally:
        loader.close()

    final_path = os.path.join(run.save_dir, FINAL_PARAMS)
    if run.writes:
        save_parameter_file(final_path, network_state)
    print(f"parameters written to {final_path}; final test error {summary['final_test_error']} "
          f"(lowest over the epochs, an oracle: {summary['best_test_error_oracle']})")
    if validated:
        print(f"best validation error {summary['best_valid_error']} after epoch {summary['best_valid_epoch']}, "
              f"test error then {summary['test_error_at_best_valid']}; its parameters are {BEST_PARAMS}")
    run.close()
    return summary


def train_seeds(args, arch, comm=ONE_PROCESS):
    """--seeds: one training per seed into <monitor>/seed_<s>/, then aggregate.json and the table. Under --comm
    rank r trains the seeds r, r + N, ... on its own device, and rank 0 aggregates once every rank is done."""
    parent = open_seeds_run(args) if comm.rank == 0 else None
    comm.barrier()  # the directory checked (and an old run moved aside) before any rank writes into it
    summaries = {}
    for seed in seeds_of_rank(args.seeds, comm):
        seed_args = per_seed_args(args, seed)
        print(f"seed {seed}: training into {seed_args.monitor_path}", flush=True)
        nn.clear_parameters()
        try:
            summaries[seed] = train(seed_args, arch)
        except DivergedError as diverged:  # the other seeds still run; the aggregate lists this one apart
            print(f"seed {seed}: {diverged}", flush=True)
            summaries[seed] = {DIVERGED: diverged.record}
    comm.barrier()
    if comm.rank != 0:
        return None
    summaries = others_summaries(args, summaries, SUMMARY)
    aggregate = aggregate_runs(summaries)
    path = os.path.join(args.monitor_path, AGGREGATE)
    write_json(path, aggregate)
    parent.close()
    print(format_table(aggregate))
    print(f"written to {path}")
    if aggregate.get(DIVERGED):
        raise DivergedError(f"{diverged_seeds_warning(aggregate)}; {path} lists them apart", aggregate[DIVERGED])
    return aggregate


# What the script does: the mode the flag selects (training when none does), run in each --space by a
# function of (args, the cell of --model-arch-name). A mode a space lacks is a command-line error. The
# inspection modes write their own files only, beside a training or in a new directory (utils.run.modes).
MODES = (Mode("summary", "summary", {"cnn": summarise, "recurrent": summarise_recurrent}, inspects=TRAINING),
         Mode("evaluation", "evaluate", {"cnn": evaluate, "recurrent": evaluate_recurrent}, inspects=TRAINING),
         Mode("export", "export", {"cnn": export}, inspects=TRAINING),
         Mode("import", "import_weights", {"cnn": import_weights, "recurrent": import_recurrent}, inspects=TRAINING),
         Mode("seeds", "seeds", {"cnn": train_seeds}),
         Mode("training", None, {"cnn": train, "recurrent": train_recurrent}))
CELL_LOADERS = {"cnn": load_architecture, "recurrent": load_recurrent_genotype}


def main(argv=None, communicator=None):
    """Runs the script; returns what its mode does: the summary dict (training, --summary; recurrent: the
    perplexities), the test error (--evaluate; recurrent: the perplexities), the aggregate dict (--seeds)
    or the written file's path (--export, --import-weights); None on the ranks after the first.
    communicator: a test's stand-in for --comm's (tests/rank_processes.py)."""
    parser = train_parser()
    args = parse_args(parser, argv)
    run_mode = mode_to_run(parser, args, MODES)
    with fail_cleanly():
        comm = communicator or open_communicator(getattr(args, "comm", False), args.type_config)
        ranks = comm or ONE_PROCESS
        with stopping_the_others(ranks), quiet_unless_first(ranks, getattr(args, "seeds", None) is None):
            cell = CELL_LOADERS[args.space](args.model_arch_name)
            set_context(args.context, ranks.device(args.device_id), args.type_config)
            # Parameters are created by name in nnabla's global registry; a second run in the same
            # process (tests, notebooks) must not pick up the first one's weights.
            nn.clear_parameters()
            return run_mode(args, cell) if comm is None else run_mode(args, cell, comm=comm)


if __name__ == "__main__":
    main()

"""Trains a DARTS architecture from scratch: the evaluation network, auxiliary head, drop path, cutout.

    python darts_train.py --model-arch-name DARTS_V2 --dataset digits --epoch 10 -m runs/train
    python darts_train.py --model-arch-name DARTS_V2 --summary          # size and MACs, reads no data
    python darts_train.py --model-arch-name arch.json --evaluate runs/train/final_params.h5 -m runs/eval
    python darts_train.py --space recurrent --dataset ptb --model-arch-name DARTS_V2   (darts_train_recurrent.py)

The defaults train the paper's network: 20 cells, C = --output-filter + --additional-filters-on-retrain
= 36, batch 96, 600 epochs. Outputs, in the monitor directory unless said otherwise:

- config.yaml (the resolved settings) and the MonitorSeries files of SERIES, one line per epoch;
  "Training loss" is the objective trained on, cross-entropy plus the weighted auxiliary loss;
- checkpoint.npz after every epoch (in --model-save-path), which --resume continues from;
- params_epoch_<NNN>.h5 every --save-interval epochs and final_params.h5 at the end, in
  --model-save-path (default: the monitor directory): every parameter of the network, batch-norm
  statistics and auxiliary head included, as written by nn.save_parameters;
- summary.json (utils.training.model_stats.SUMMARY_KEYS): weights without and with the auxiliary head, MACs of one image at
  test time, and the last and best test errors as fractions (null before the first epoch);
- evaluation.json with --evaluate: the test error of the given parameters;
- DARTS_arch.json: the architecture trained, so the run's cell diagrams can be drawn from its directory.
"""
import os
import sys

import nnabla as nn
import numpy as np
from tqdm import tqdm

from args import parse_args, save_config, train_parser
from models.eval_network import AUX_SCOPE, DropPath, build_test_graph, build_train_graph, drop_path_schedule
from models.genotype import load_architecture, save_architecture
from models.graph import feed, forward_backward
from utils.data.datasets import dataset_info, load_dataset
from utils.data.pipeline import BatchLoader
from utils.pictures.run_pictures import FINAL_ARCH
from utils.training.context import set_context
from utils.training.evaluation import RunningMean, classification_error, test_loss_and_error
from utils.training.model_stats import describe_size, network_summary
from utils.training.optim import SGD, cosine_lr
from utils.training.parameter_files import load_parameter_file
from utils.training.run import EPOCH_TIME, Run, fail_cleanly, quiet_nnabla_logging, seed_everything, write_json

SERIES = ("Training loss", "Training error", "Test loss", "Test error", EPOCH_TIME)
SUMMARY_NAME = "summary.json"
EVALUATION_NAME = "evaluation.json"
FINAL_PARAMS_NAME = "final_params.h5"
# Keeps the drop-path noise apart from the data pipeline's shuffling (0) and augmentation (1) streams.
_DROP_PATH_STREAM = 2


def epoch_params_name(epoch):
    """Name of the parameters saved after `epoch` epochs (1-based)."""
    return f"params_epoch_{epoch:03d}.h5"


def network_channels(args):
    return args.output_filter + args.additional_filters_on_retrain


def summarise(args, arch):
    """--summary: builds the network for the data set's input size and classes without reading data."""
    shape, num_classes = dataset_info(args.dataset)
    # Training mode without drop path has the test graph's layers (so its MACs) and the auxiliary head.
    graph = build_train_graph(arch, (1,) + shape, num_classes, network_channels(args), args.num_cells,
                              auxiliary=args.auxiliary, aux_weight=args.auxiliary_weight)
    summary = network_summary(graph.logits)
    os.makedirs(args.monitor_path, exist_ok=True)
    path = os.path.join(args.monitor_path, SUMMARY_NAME)
    write_json(path, summary)
    print(f"network: {args.num_cells} cells, C={network_channels(args)}, input {shape}, {num_classes} classes")
    print(describe_size(summary))
    print(f"summary written to {path}")
    return summary


def evaluate(args, arch):
    """--evaluate PARAMS.h5: the test error of saved parameters, written to evaluation.json."""
    data = load_dataset(args.dataset, args.data_dir)
    shape = (args.batch_size,) + data.test_x.shape[1:]
    graph = build_test_graph(arch, shape, data.num_classes, network_channels(args), args.num_cells)
    load_parameter_file(args.evaluate, nn.get_parameters(grad_only=False), AUX_SCOPE)
    loss, error = test_loss_and_error(graph, data, args.batch_size)
    os.makedirs(args.monitor_path, exist_ok=True)
    path = os.path.join(args.monitor_path, EVALUATION_NAME)
    write_json(path, {"parameters": args.evaluate, "test_error": error, "test_loss": loss,
                      "test_images": int(len(data.test_y))})
    print(f"test error {error:.4f}  loss {loss:.4f}  ({len(data.test_y)} images)  written to {path}")
    return error


def train_epoch(graph, loader, optimizer, drop_path, seed, epoch, desc):
    """One epoch of SGD steps; returns the mean training loss and error."""
    loss, error = RunningMean(), RunningMean()
    bar = tqdm(range(loader.steps_per_epoch), desc=desc, leave=False, disable=not sys.stderr.isatty())
    for step in bar:
        batch = loader.next()
        feed(graph, batch)
        if drop_path is not None:
            drop_path.resample(np.random.default_rng([seed, _DROP_PATH_STREAM, epoch, step]))
        optimizer.zero_grad()
        forward_backward(graph)
        optimizer.step()
        loss.add(float(graph.loss.d))
        error.add(classification_error(graph.logits.d, batch[1]))
        bar.set_postfix(loss=f"{loss.mean:.3f}", acc=f"{1 - error.mean:.3f}")
    return loss.mean, error.mean


def train(args, arch):
    data = load_dataset(args.dataset, args.data_dir)
    run = Run(args.monitor_path, args.model_save_path, args.epoch, SERIES)
    save_config(args, run.monitor_path)
    save_architecture(arch, os.path.join(run.monitor_path, FINAL_ARCH))
    summary_path = os.path.join(run.monitor_path, SUMMARY_NAME)

    seed_everything(args.seed)
    shape = (args.batch_size,) + data.train_x.shape[1:]
    channels = network_channels(args)
    drop_path = DropPath() if args.drop_path_prob > 0 else None
    train_graph = build_train_graph(arch, shape, data.num_classes, channels, args.num_cells,
                                    auxiliary=args.auxiliary, aux_weight=args.auxiliary_weight,
                                    drop_path=drop_path)
    test_graph = build_test_graph(arch, shape, data.num_classes, channels, args.num_cells)
    network_state = nn.get_parameters(grad_only=False)  # weights and batch-norm statistics
    optimizer = SGD(nn.get_parameters(grad_only=True), args.lr, args.momentum, args.weight_decay,
                    args.grad_clip)
    summary = network_summary(test_graph.logits)
    print(describe_size(summary))

    meta = run.start(network_state, {"weights": optimizer.solver}, args.resume)
    if meta is not None:
        optimizer.resume_learning_rate(meta["lr"])
        summary["final_test_error"] = meta["final_test_error"]
        summary["best_test_error"] = meta["best_test_error"]
    write_json(summary_path, summary)

    loader = BatchLoader(data.train_x, data.train_y, args.batch_size, data.mean, data.std, augment=True,
                         hflip=data.hflip, cutout_length=args.cutout_length if args.cutout else 0,
                         seed=args.seed, start_epoch=run.start_epoch)
    try:
        for epoch in run.remaining_epochs():
            optimizer.set_learning_rate(cosine_lr(epoch, args.epoch, args.lr, args.lr_min))
            if drop_path is not None:
                drop_path.set_prob(drop_path_schedule(epoch, args.epoch, args.drop_path_prob))
            train_loss, train_error = train_epoch(train_graph, loader, optimizer, drop_path, args.seed,
                                                  epoch, f"train epoch {epoch + 1}/{args.epoch}")
            test_loss, test_error = test_loss_and_error(test_graph, data, args.batch_size)

            best = summary["best_test_error"]
            summary["final_test_error"] = test_error
            summary["best_test_error"] = test_error if best is None else min(best, test_error)
            if (epoch + 1) % args.save_interval == 0:
                nn.save_parameters(os.path.join(run.save_dir, epoch_params_name(epoch + 1)), network_state)
            write_json(summary_path, summary)
            run.end_epoch(epoch, {"Training loss": train_loss, "Training error": train_error,
                                  "Test loss": test_loss, "Test error": test_error},
                          meta={"lr": optimizer.lr, "final_test_error": summary["final_test_error"],
                                "best_test_error": summary["best_test_error"]},
                          message=f"lr {optimizer.lr:.5f}  train loss {train_loss:.4f} err {train_error:.4f}  "
                                  f"test loss {test_loss:.4f} err {test_error:.4f}")
    finally:
        loader.close()

    final_path = os.path.join(run.save_dir, FINAL_PARAMS_NAME)
    nn.save_parameters(final_path, network_state)
    print(f"parameters written to {final_path}; final test error {summary['final_test_error']}, "
          f"best {summary['best_test_error']}")
    return summary


def main(argv=None):
    """Runs the script; returns the summary dict (training, --summary) or the test error (--evaluate)."""
    quiet_nnabla_logging()
    args = parse_args(train_parser(), argv)
    if args.space == "recurrent":
        return main_recurrent(args)
    with fail_cleanly():
        arch = load_architecture(args.model_arch_name)
        set_context(args.context, args.device_id, args.type_config)
        # Parameters are created by name in nnabla's global registry; a second run in the same
        # process (tests, notebooks) must not pick up the first one's weights.
        nn.clear_parameters()
        if args.summary:
            return summarise(args, arch)
        if args.evaluate is not None:
            return evaluate(args, arch)
        return train(args, arch)


def main_recurrent(args):
    from darts_train_recurrent import DivergedError, evaluate_recurrent, summarise_recurrent, train_recurrent
    from models.recurrent_genotype import load_recurrent_genotype
    with fail_cleanly():
        try:
            genotype = load_recurrent_genotype(args.model_arch_name)
            set_context(args.context, args.device_id, args.type_config)
            nn.clear_parameters()
            if args.summary:
                return summarise_recurrent(args, genotype)
            if args.evaluate is not None:
                return evaluate_recurrent(args, genotype)
            return train_recurrent(args, genotype)
        except DivergedError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()

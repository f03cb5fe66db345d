"""Trains a DARTS architecture from scratch: the evaluation network, auxiliary head, drop path, cutout.

    python darts_train.py --model-arch-name DARTS_V2 --dataset digits --epoch 10 -m runs/train
    python darts_train.py --model-arch-name DARTS_V2 --summary          # size and MACs, reads no data
    python darts_train.py --model-arch-name arch.json --evaluate runs/train/final_params.h5 -m runs/eval

The defaults train the paper's network: 20 cells, C = --output-filter + --additional-filters-on-retrain
= 36, batch 96, 600 epochs. Outputs, in the monitor directory unless said otherwise:

- config.yaml (the resolved settings) and the MonitorSeries files of SERIES, one line per epoch;
  "Training loss" is the objective trained on, cross-entropy plus the weighted auxiliary loss;
- checkpoint.npz after every epoch (in --model-save-path), which --resume continues from;
- params_epoch_<NNN>.h5 every --save-interval epochs and final_params.h5 at the end, in
  --model-save-path (default: the monitor directory): every parameter of the network, batch-norm
  statistics and auxiliary head included, as written by nn.save_parameters;
- summary.json (SUMMARY_KEYS): weights without and with the auxiliary head, MACs of one image at
  test time, and the last and best test errors as fractions (null before the first epoch);
- evaluation.json with --evaluate: the test error of the given parameters.
"""
import json
import os
import sys
import time

import numpy as np
from tqdm import tqdm

from args import parse_args, save_config, train_parser
from utils.training.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, save_checkpoint
from utils.training.run import RunningMean, classification_error, fail_cleanly, seed_everything
from utils.pictures.run_pictures import draw_run

SERIES = ("Training loss", "Training error", "Test loss", "Test error", "Epoch time")
SUMMARY_NAME = "summary.json"
SUMMARY_KEYS = ("params", "params_total", "macs", "final_test_error", "best_test_error")
EVALUATION_NAME = "evaluation.json"
FINAL_PARAMS_NAME = "final_params.h5"
# Keeps the drop-path noise apart from the data pipeline's shuffling (0) and augmentation (1) streams.
_DROP_PATH_STREAM = 2


class ParameterFileError(CheckpointError):
    """A parameter file that cannot be evaluated; a CheckpointError so that fail_cleanly reports it."""


def epoch_params_name(epoch):
    """Name of the parameters saved after `epoch` epochs (1-based)."""
    return f"params_epoch_{epoch:03d}.h5"


def network_channels(args):
    return args.output_filter + args.additional_filters_on_retrain


def write_json(path, data):
    """Whole file or the old one: a crash mid-write never leaves half a JSON file."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def network_summary(logits, final_test_error=None, best_test_error=None):
    """SUMMARY_KEYS of the network whose parameters are registered and whose (test) logits are given."""
    import nnabla as nn
    from models.eval_network import AUX_SCOPE
    from utils.training.model_stats import count_parameters, macs_per_image

    weights = nn.get_parameters(grad_only=True)
    return {"params": count_parameters(weights, exclude_scope=AUX_SCOPE),
            "params_total": count_parameters(weights),
            "macs": macs_per_image(logits),
            "final_test_error": final_test_error,
            "best_test_error": best_test_error}


def describe_size(summary):
    text = f"weights: {summary['params']:,}"
    if summary["params_total"] != summary["params"]:
        text += f" ({summary['params_total']:,} with the auxiliary head)"
    return text + f", MACs per image: {summary['macs']:,}"


def cross_entropy_per_sample(logits, labels):
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(logits)), labels.reshape(-1)]


def test_loss_and_error(graph, data, batch_size):
    """Mean cross-entropy and error over the whole test set; padding in the last batch is not counted."""
    from utils.data.pipeline import eval_batches

    loss, error = RunningMean(), RunningMean()
    for x, y, n_valid in eval_batches(data.test_x, data.test_y, batch_size, data.mean, data.std):
        graph.x.d, graph.y.d = x, y
        graph.logits.forward(clear_buffer=True)
        logits, labels = graph.logits.d[:n_valid], y[:n_valid]
        loss.add(float(cross_entropy_per_sample(logits, labels).mean()), n_valid)
        error.add(classification_error(logits, labels), n_valid)
    return loss.mean, error.mean


def read_parameter_file(path):
    """{name: ndarray} of an .h5 written by nn.save_parameters, read without touching nnabla's registry."""
    import h5py

    if not os.path.isfile(path):
        raise ParameterFileError(f"parameter file {path!r} does not exist")
    values = {}

    def collect(name, item):
        if isinstance(item, h5py.Dataset):
            values[name] = item[...]
    try:
        with h5py.File(path, "r") as f:
            f.visititems(collect)
    except (OSError, ValueError) as err:
        reason = " ".join(str(err).split())
        raise ParameterFileError(f"cannot read parameter file {path!r}: {reason}") from None
    return values


def load_parameter_file(path, params, ignored_scope):
    """Writes the file's values into `params` ({name: Variable}); the two must describe the same network.

    Names under `ignored_scope` (the auxiliary head, which test graphs do not build) may be in the file.
    """
    values = read_parameter_file(path)
    missing = sorted(name for name in params if name not in values)
    unexpected = sorted(name for name in values
                        if name not in params and not name.startswith(ignored_scope + "/"))
    wrong_shape = sorted(name for name in params
                         if name in values and tuple(values[name].shape) != tuple(params[name].shape))
    for problem, names in (("lacks", missing), ("has unknown", unexpected), ("has wrongly shaped", wrong_shape)):
        if names:
            raise ParameterFileError(
                f"parameter file {path!r} does not fit this network (architecture, --num-cells, channels "
                f"or data set differ): it {problem} parameters such as {names[0]!r} ({len(names)} in all)")
    for name, variable in params.items():
        variable.d = values[name]


def summarise(args, arch):
    """--summary: builds the network for the data set's input size and classes without reading data."""
    from models.eval_network import build_train_graph
    from utils.data.datasets import dataset_info

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
    import nnabla as nn
    from models.eval_network import AUX_SCOPE, build_test_graph
    from utils.data.datasets import load_dataset

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
    from models.graph import feed, forward_backward

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
    import nnabla as nn
    from models.eval_network import DropPath, build_test_graph, build_train_graph, drop_path_schedule
    from utils.data.pipeline import BatchLoader
    from utils.data.datasets import load_dataset
    from utils.training.monitoring import EpochSeries
    from utils.training.optim import SGD, cosine_lr

    data = load_dataset(args.dataset, args.data_dir)
    os.makedirs(args.monitor_path, exist_ok=True)
    save_config(args, args.monitor_path)
    save_dir = args.model_save_path or args.monitor_path
    os.makedirs(save_dir, exist_ok=True)
    checkpoint_path = os.path.join(save_dir, CHECKPOINT_NAME)
    summary_path = os.path.join(args.monitor_path, SUMMARY_NAME)

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
    solvers = {"weights": optimizer.solver}
    summary = network_summary(test_graph.logits)
    print(describe_size(summary))

    start_epoch = 0
    if args.resume and os.path.exists(checkpoint_path):
        meta = load_checkpoint(checkpoint_path, network_state, solvers)
        start_epoch = meta["epoch"]
        optimizer.resume_learning_rate(meta["lr"])
        summary["final_test_error"] = meta["final_test_error"]
        summary["best_test_error"] = meta["best_test_error"]
        print(f"resuming from {checkpoint_path} after epoch {start_epoch}")
    write_json(summary_path, summary)

    loader = BatchLoader(data.train_x, data.train_y, args.batch_size, data.mean, data.std, augment=True,
                         hflip=data.hflip, cutout_length=args.cutout_length if args.cutout else 0,
                         seed=args.seed, start_epoch=start_epoch)
    monitor = EpochSeries(args.monitor_path, SERIES, first_epoch=start_epoch)
    try:
        for epoch in range(start_epoch, args.epoch):
            started = time.time()
            optimizer.set_learning_rate(cosine_lr(epoch, args.epoch, args.lr, args.lr_min))
            if drop_path is not None:
                drop_path.set_prob(drop_path_schedule(epoch, args.epoch, args.drop_path_prob))
            train_loss, train_error = train_epoch(train_graph, loader, optimizer, drop_path, args.seed,
                                                  epoch, f"train epoch {epoch + 1}/{args.epoch}")
            test_loss, test_error = test_loss_and_error(test_graph, data, args.batch_size)
            values = {"Training loss": train_loss, "Training error": train_error,
                      "Test loss": test_loss, "Test error": test_error, "Epoch time": time.time() - started}
            monitor.add(epoch, values)

            best = summary["best_test_error"]
            summary["final_test_error"] = test_error
            summary["best_test_error"] = test_error if best is None else min(best, test_error)
            if (epoch + 1) % args.save_interval == 0:
                nn.save_parameters(os.path.join(save_dir, epoch_params_name(epoch + 1)), network_state)
            save_checkpoint(checkpoint_path, network_state, solvers,
                            {"epoch": epoch + 1, "lr": optimizer.lr,
                             "final_test_error": summary["final_test_error"],
                             "best_test_error": summary["best_test_error"]})
            write_json(summary_path, summary)
            print(f"epoch {epoch + 1}/{args.epoch}  lr {optimizer.lr:.5f}  "
                  f"train loss {train_loss:.4f} err {train_error:.4f}  "
                  f"test loss {test_loss:.4f} err {test_error:.4f}  {values['Epoch time']:.1f}s", flush=True)
            draw_run(args.monitor_path)
    finally:
        loader.close()

    final_path = os.path.join(save_dir, FINAL_PARAMS_NAME)
    nn.save_parameters(final_path, network_state)
    print(f"parameters written to {final_path}; final test error {summary['final_test_error']}, "
          f"best {summary['best_test_error']}")
    return summary


def main(argv=None):
    """Runs the script; returns the summary dict (training, --summary) or the test error (--evaluate)."""
    args = parse_args(train_parser(), argv)
    with fail_cleanly():
        import nnabla as nn
        from models.genotype import load_architecture
        from utils.training.context import set_context

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


if __name__ == "__main__":
    main()

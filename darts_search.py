"""DARTS architecture search: learns a normal and a reduction cell and writes them as DARTS_arch.json.

    python darts_search.py --context cpu --dataset digits --epoch 5 --monitor-path runs/search
    python darts_search.py --space recurrent --dataset ptb --monitor-path runs/rnn-search   (utils/recurrent/search.py)
    python darts_search.py --dataset digits --epoch 5 --seeds 0,1,2,3 --select-epochs 5 -m runs/searches

With --seeds, one search per seed runs into <monitor-path>/seed_<s>/ (its architecture in that
directory's DARTS_arch.json). With --select-epochs N as well, each found cell then trains for N epochs
in the search network's size (--num-cells, --output-filter) on --train-portion of the training set,
is scored on the rest of the training set (never the test set), and the ranking goes to
<monitor-path>/selection.json; the winner is written to --model-arch-name.
"""
import logging
import os

# nnabla logs at INFO from its import on (every extension and data iterator it creates); a run's own
# lines are what matter, from whatever directory it starts.
logging.getLogger("nnabla").setLevel(logging.WARNING)

import nnabla as nn
import numpy as np

from args import CONFIG_FILE_NAME, parse_args, save_config, search_parser
from models.complexity import architecture_parameters
from models.derivation import derive_by_rule
from models.extraction import extract_architecture, extracted_file_name
from models.genotype import ArchitectureError, load_architecture, save_architecture, to_genotype_string
from models.graph import feed, forward_backward
from models.hypernetwork import Hypernetwork, LambdaInput
from models.network import dense_classifier
from models.search_network import all_weight_state, alpha_parameters, create_alphas, search_network, weight_parameters
from utils.data.datasets import load_dataset
from utils.data.pipeline import BatchLoader, split_indices
from utils.optim.mixed_precision import describe_loss_scale, loss_scale_for
from utils.optim.solvers import SGD, Adam, cosine_lr
from utils.pictures.alpha_plot import TOPK_HISTORY
from utils.pictures.cell_diagram import draw_architecture
from utils.pictures.run_pictures import FINAL_ARCH
from utils.run.checkpoint import CHECKPOINT_NAME, load_checkpoint
from utils.run.context import check_precision, set_context, uses_cpu_kernels
from utils.run.run import EPOCH_TIME, Progress, Run, fail_cleanly, seed_everything, write_json
from utils.search.alpha_history import (ALPHA_HISTORY, derive_from_history, derive_recurrent_from_history,
                                        write_alpha_history)
from utils.search.bilevel import BilevelOptimizer, build_search_graphs
from utils.search.selection import SELECTION_NAME, select_architecture
from utils.search.variants.complexity import ComplexityControl, ComplexitySettings
from utils.search.variants.dadarts import ArchitectureWeights, DadartsSettings
from utils.training.evaluation import RunningMean, classification_error, image_set_scores
from utils.training.protocol import per_seed_args

# Per epoch: the means over the steps of the weight step's and the alpha step's batches, then one
# eval-mode pass over the whole alpha half, of the network the weights train (the supernet, or the
# hard-discretized network under --hd-on-weights) and of the hard-discretized network.
SERIES = ("Training loss", "Training error", "Alpha-step loss", "Alpha-step error",
          "Validation loss", "Validation error", "Discretized validation error", EPOCH_TIME)
DADARTS_SERIES = ("Temperature", "DAL")
COMPLEXITY_SERIES = ("Temperature", "Complexity penalty", "Expected parameters at lambda 0",
                     "Expected parameters at lambda 1")
GENOTYPE_NAME = "genotype.txt"
SUMMARY_NAME = "search_summary.json"


def search_epoch(optimizer, train_loader, val_loader, steps, desc, progress_every=50):
    """`steps` search steps; returns the epoch means of the batch series."""
    names = ("Training loss", "Training error", "Alpha-step loss", "Alpha-step error")
    stats = {name: RunningMean() for name in names}
    bar = Progress(steps, desc, progress_every)
    for _ in bar:
        train_batch, val_batch = train_loader.next(), val_loader.next()
        optimizer.step(train_batch, val_batch)
        train_graph, val_graph = optimizer.weight_graph, optimizer.val_graph
        stats["Training loss"].add(float(train_graph.loss.d))
        stats["Training error"].add(classification_error(train_graph.logits.d, train_batch[1]))
        stats["Alpha-step loss"].add(float(val_graph.loss.d))
        stats["Alpha-step error"].add(classification_error(val_graph.logits.d, val_batch[1]))
        bar.set_postfix(loss=f"{stats['Training loss'].mean:.3f}", acc=f"{1 - stats['Training error'].mean:.3f}")
    return {name: s.mean for name, s in stats.items()}


def finetune_discretized(graph, weight_opt, train_loader, epochs):
    """--finetune-epochs: weight steps on the hard-discretized network of the final alphas, which stay fixed."""
    for _ in range(epochs * train_loader.steps_per_epoch):
        feed(graph, train_loader.next())
        weight_opt.zero_grad()
        forward_backward(graph, weight_opt.grad_scale)
        weight_opt.step()


def search(args):
    check_precision(args.type_config, args.second_order)
    set_context(args.context, args.device_id, args.type_config)
    data = load_dataset(args.dataset, args.data_dir)
    settings = DadartsSettings.from_args(args)
    dadarts = settings != DadartsSettings()
    complexity = args.complexity_control
    extra_series = COMPLEXITY_SERIES if complexity else DADARTS_SERIES if dadarts else ()
    run = Run(args.monitor_path, args.model_save_path, args.epoch, SERIES + extra_series)
    run.check_resume_settings(vars(args), os.path.join(run.monitor_path, CONFIG_FILE_NAME), args.force_resume)
    save_config(args, run.monitor_path)

    nn.clear_parameters()  # a run owns the global parameter registry from here on
    rng = seed_everything(args.seed)
    shape = (args.batch_size,) + data.train_x.shape[1:]
    sizes = (data.num_classes, args.output_filter, args.num_cells)
    fast = uses_cpu_kernels(args.context, args.type_config, args.cpu_kernels)
    if complexity:
        arch_weights = ComplexityControl(ComplexitySettings.from_args(args), args.seed, rng, shape, *sizes,
                                         cpu_kernels=fast)
        classifier = arch_weights.classifier
    else:
        arch_weights = ArchitectureWeights(settings, create_alphas(rng), shape, *sizes, cpu_kernels=fast)
        classifier = dense_classifier

    def network(x, frozen, purpose):
        return search_network(x, arch_weights.mixing(purpose), *sizes, frozen=frozen, classifier=classifier,
                              cpu_kernels=fast)
    graphs = build_search_graphs(network, shape, args.second_order, arch_weights.alpha_penalty,
                                 separate_virtual=settings.topk_on_virtualstep != settings.topk_on_weights)
    weights = weight_parameters()
    weight_opt = SGD(weights, args.lr, args.momentum, args.weight_decay, args.grad_clip,
                     loss_scale=loss_scale_for(args.type_config))
    alpha_opt = Adam(alpha_parameters(), args.arch_lr, args.arch_beta1, args.arch_beta2, args.arch_weight_decay,
                     loss_scale=loss_scale_for(args.type_config))
    loss_scales = {name: opt.loss_scale for name, opt in (("weights", weight_opt), ("alphas", alpha_opt))
                   if opt.loss_scale is not None}
    optimizer = BilevelOptimizer(graphs, weights, all_weight_state(), alpha_parameters(), weight_opt, alpha_opt,
                                 steps=arch_weights)

    def alpha_arrays():
        alphas = arch_weights.alphas
        return {"normal": alphas["alpha_normal"].d.copy(), "reduction": alphas["alpha_reduction"].d.copy()}

    def topk_arrays():
        values = arch_weights.transformed_weights()
        return {"normal": values["alpha_normal"], "reduction": values["alpha_reduction"]}
    histories = {ALPHA_HISTORY: alpha_arrays}
    if settings.uses_topk:
        histories[TOPK_HISTORY] = topk_arrays
    if complexity:
        histories = arch_weights.histories()
    history = {name: {cell: [array] for cell, array in arrays().items()} for name, arrays in histories.items()}
    meta = run.start({**all_weight_state(), **{f"arch/{k}": v for k, v in alpha_parameters().items()}},
                     {"weights": weight_opt.solver, "alphas": alpha_opt.solver}, args.resume)
    if meta is not None:
        weight_opt.resume_learning_rate(meta["weight_lr"])
        for name, state in (meta.get("loss_scales") or {}).items():
            if name in loss_scales:
                loss_scales[name].load_state(state)
        history = {name: {cell: list(meta["arrays"][f"{name}/{cell}"]) for cell in ("normal", "reduction")}
                   for name in histories}

    weights_idx, arch_idx = split_indices(len(data.train_y), args.train_portion, args.seed)
    cutout = args.cutout_length if args.cutout else 0

    def loader(idx, seed):
        return BatchLoader(data.train_x[idx], data.train_y[idx], args.batch_size, data.mean, data.std,
                           augment=args.augment, hflip=data.hflip, vflip=data.vflip, cutout_length=cutout,
                           seed=seed, start_epoch=run.start_epoch)

    def validate(graph):
        return image_set_scores(graph, data.train_x[arch_idx], data.train_y[arch_idx], args.batch_size,
                                data.mean, data.std)

    def derived():
        if complexity:
            return arch_weights.derived()
        alphas = arch_weights.alphas
        return derive_by_rule(alphas["alpha_normal"].d, alphas["alpha_reduction"].d, args.derivation)
    train_loader, val_loader = loader(weights_idx, args.seed), loader(arch_idx, args.seed + 1)
    steps = min(train_loader.steps_per_epoch, val_loader.steps_per_epoch)

    try:
        for epoch in run.remaining_epochs():
            weight_opt.set_learning_rate(cosine_lr(epoch, args.epoch, args.lr, args.lr_min))
            arch_weights.start_epoch(epoch, args.epoch)
            values = search_epoch(optimizer, train_loader, val_loader, steps,
                                  f"search epoch {epoch + 1}/{args.epoch}", args.progress_every)
            validation = validate(arch_weights.validation_graph())
            discretized = validate(arch_weights.discretized_graph(test=True))
            values.update({"Validation loss": validation.loss, "Validation error": validation.error,
                           "Discretized validation error": discretized.error})
            summary = {"validation_error": validation.error, "discretized_validation_error": discretized.error}
            if dadarts:
                values.update({"Temperature": float(arch_weights.temperature.d), "DAL": arch_weights.dal_value()})
            if complexity:
                values.update(arch_weights.epoch_values())
            for name, arrays in histories.items():
                for cell, array in arrays().items():
                    history[name][cell].append(array)
                write_alpha_history(run.monitor_path, history[name], name)
            arch = derived()
            save_architecture(arch, os.path.join(run.monitor_path, "arch", f"epoch_{epoch + 1:03d}.json"))
            genotype = to_genotype_string(arch)
            with open(os.path.join(run.monitor_path, GENOTYPE_NAME), "w") as f:
                f.write(genotype + "\n")
            print(genotype)
            if args.draw_every_epoch:
                draw_architecture(arch, os.path.join(run.monitor_path, "cells"), prefix=f"epoch_{epoch + 1:03d}_")
            run.end_epoch(epoch, values,
                          meta={"weight_lr": weight_opt.lr,
                                "loss_scales": {name: scale.state() for name, scale in loss_scales.items()},
                                "arrays": {f"{name}/{cell}": np.stack(arrays) for name, h in history.items()
                                           for cell, arrays in h.items()}},
                          message=f"lr {weight_opt.lr:.5f}  "
                                  f"train loss {values['Training loss']:.4f} err {values['Training error']:.4f}  "
                                  f"val loss {values['Validation loss']:.4f} err {values['Validation error']:.4f}  "
                                  f"discretized err {values['Discretized validation error']:.4f}"
                                  + "".join(describe_loss_scale(scale, f"{name} loss scale")
                                          for name, scale in loss_scales.items()))
        if run.start_epoch == args.epoch:  # resumed after the last epoch: nothing above validated
            summary = {"validation_error": validate(arch_weights.validation_graph()).error,
                       "discretized_validation_error": validate(arch_weights.discretized_graph(test=True)).error}
        if args.finetune_epochs:
            finetune_discretized(arch_weights.discretized_graph(test=False), weight_opt, train_loader,
                                 args.finetune_epochs)
            summary["finetune_epochs"] = args.finetune_epochs
            summary["finetuned_discretized_validation_error"] = validate(
                arch_weights.discretized_graph(test=True)).error
        write_json(os.path.join(run.monitor_path, SUMMARY_NAME), summary)
    finally:
        train_loader.close()
        val_loader.close()

    arch = derived()
    save_architecture(arch, args.model_arch_name)
    print(f"architecture written to {args.model_arch_name}")
    return arch


def search_seeds(args):
    """--seeds: one search per seed into <monitor>/seed_<s>/; with --select-epochs, the selection."""
    save_config(args, args.monitor_path)
    arch_files = {}
    for seed in args.seeds:
        seed_args = per_seed_args(args, seed)
        seed_args.model_arch_name = os.path.join(seed_args.monitor_path, FINAL_ARCH)
        print(f"seed {seed}: searching into {seed_args.monitor_path}", flush=True)
        search(seed_args)
        arch_files[f"seed_{seed}"] = seed_args.model_arch_name
    if args.select_epochs is None:
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
    selection = {"select_epochs": args.select_epochs, "channels": args.output_filter, "num_cells": args.num_cells,
                 **sizes, "ranking": ranking, "winner": winner["candidate"], "written_to": args.model_arch_name}
    path = os.path.join(args.monitor_path, SELECTION_NAME)
    write_json(path, selection)
    save_architecture(candidates[winner["candidate"]], args.model_arch_name)
    print(f"selection written to {path}; {winner['candidate']} wins with held-out error "
          f"{winner['held_out_error']:.4f}; its architecture written to {args.model_arch_name}")
    return selection


def extract(args):
    """--extract-lambda: the cell at λ̃ from the checkpoint of a finished complexity-controlled search."""
    path = os.path.join(args.model_save_path or args.monitor_path, CHECKPOINT_NAME)
    if not os.path.exists(path):
        raise ArchitectureError(f"--extract-lambda needs the checkpoint of a --complexity-control search; "
                                f"{path} does not exist")
    nn.clear_parameters()
    hypernetwork = Hypernetwork(LambdaInput(args.log10_lambda_min, args.log10_lambda_max), np.random.RandomState(0))
    load_checkpoint(path, {f"arch/{k}": v for k, v in alpha_parameters().items()}, {})
    arch = extract_architecture(hypernetwork.alphas_at(args.extract_lambda), args.extract_mode)
    out = os.path.join(args.monitor_path, extracted_file_name(args.extract_lambda, args.extract_mode))
    save_architecture(arch, out)
    params = architecture_parameters(arch, args.output_filter, args.num_cells)
    print(f"cell at normalised lambda {args.extract_lambda:g} ({args.extract_mode}) written to {out}: "
          f"{params} weights in its ops at C={args.output_filter}, {args.num_cells} cells")
    return out, params


def main(argv=None):
    args = parse_args(search_parser(), argv)
    with fail_cleanly():
        if args.extract_lambda is not None:
            extract(args)
        elif args.space == "recurrent" and args.alpha_epoch is not None:
            derive_recurrent_from_history(os.path.join(args.monitor_path, ALPHA_HISTORY), args.alpha_epoch,
                                          args.model_arch_name)
            print(f"recurrent cell of epoch {args.alpha_epoch} written to {args.model_arch_name}")
        elif args.space == "recurrent":
            from utils.recurrent.search import search_recurrent
            search_recurrent(args)
        elif args.alpha_epoch is not None:
            derive_from_history(os.path.join(args.monitor_path, ALPHA_HISTORY), args.alpha_epoch,
                                args.model_arch_name, args.derivation)
            print(f"architecture of epoch {args.alpha_epoch} written to {args.model_arch_name}")
        elif args.seeds is not None:
            return search_seeds(args)
        else:
            return search(args)


if __name__ == "__main__":
    main()

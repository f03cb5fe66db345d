"""DARTS architecture search: learns a normal and a reduction cell and writes them as DARTS_arch.json.

    python darts_search.py --context cpu --dataset digits --epoch 5 --monitor-path runs/search
    python darts_search.py --space recurrent --dataset ptb --monitor-path runs/rnn-search   (darts_search_recurrent.py)
"""
import os
import sys

import nnabla as nn
import numpy as np
from tqdm import tqdm

from args import parse_args, save_config, search_parser
from models.genotype import derive_architecture, save_architecture
from models.search_network import alpha_parameters, all_weight_state, create_alphas, search_network, weight_parameters
from utils.data.datasets import load_dataset
from utils.data.pipeline import BatchLoader, split_indices
from utils.pictures.cell_diagram import draw_architecture
from utils.training.alpha_history import (ALPHA_HISTORY, derive_from_history, derive_recurrent_from_history,
                                           write_alpha_history)
from utils.training.bilevel import BilevelOptimizer, build_search_graphs
from utils.training.context import set_context
from utils.training.evaluation import RunningMean, classification_error
from utils.training.optim import SGD, Adam, cosine_lr
from utils.training.run import EPOCH_TIME, Run, fail_cleanly, quiet_nnabla_logging, seed_everything

SERIES = ("Training loss", "Training error", "Validation loss", "Validation error", EPOCH_TIME)


def search_epoch(optimizer, train_loader, val_loader, steps, desc):
    """`steps` search steps; returns the epoch means of the SERIES but EPOCH_TIME."""
    train_graph, val_graph = optimizer.train_graph, optimizer.val_graph
    stats = {name: RunningMean() for name in SERIES if name != EPOCH_TIME}
    bar = tqdm(range(steps), desc=desc, leave=False, disable=not sys.stderr.isatty())
    for _ in bar:
        train_batch, val_batch = train_loader.next(), val_loader.next()
        optimizer.step(train_batch, val_batch)
        stats["Training loss"].add(float(train_graph.loss.d))
        stats["Training error"].add(classification_error(train_graph.logits.d, train_batch[1]))
        stats["Validation loss"].add(float(val_graph.loss.d))
        stats["Validation error"].add(classification_error(val_graph.logits.d, val_batch[1]))
        bar.set_postfix(loss=f"{stats['Training loss'].mean:.3f}", acc=f"{1 - stats['Training error'].mean:.3f}")
    return {name: s.mean for name, s in stats.items()}


def search(args):
    set_context(args.context, args.device_id, args.type_config)
    data = load_dataset(args.dataset, args.data_dir)
    run = Run(args.monitor_path, args.model_save_path, args.epoch, SERIES)
    save_config(args, run.monitor_path)

    nn.clear_parameters()  # a run owns the global parameter registry from here on
    rng = seed_everything(args.seed)
    alphas = create_alphas(rng)
    shape = (args.batch_size,) + data.train_x.shape[1:]

    def network(x, frozen):
        return search_network(x, alphas, data.num_classes, args.output_filter, args.num_cells, frozen)
    graphs = build_search_graphs(network, shape, args.second_order)
    weights = weight_parameters()
    weight_opt = SGD(weights, args.lr, args.momentum, args.weight_decay, args.grad_clip)
    alpha_opt = Adam(alpha_parameters(), args.arch_lr, args.arch_beta1, args.arch_beta2, args.arch_weight_decay)
    optimizer = BilevelOptimizer(graphs, weights, all_weight_state(), alpha_parameters(), weight_opt, alpha_opt)

    history = {"normal": [alphas["alpha_normal"].d.copy()], "reduction": [alphas["alpha_reduction"].d.copy()]}
    meta = run.start({**all_weight_state(), **{f"arch/{k}": v for k, v in alpha_parameters().items()}},
                     {"weights": weight_opt.solver, "alphas": alpha_opt.solver}, args.resume)
    if meta is not None:
        weight_opt.resume_learning_rate(meta["weight_lr"])
        history = {k: list(meta["arrays"][k]) for k in ("normal", "reduction")}

    weights_idx, arch_idx = split_indices(len(data.train_y), args.train_portion, args.seed)
    cutout = args.cutout_length if args.cutout else 0

    def loader(idx, seed):
        return BatchLoader(data.train_x[idx], data.train_y[idx], args.batch_size, data.mean, data.std,
                           augment=True, hflip=data.hflip, cutout_length=cutout, seed=seed,
                           start_epoch=run.start_epoch)
    train_loader, val_loader = loader(weights_idx, args.seed), loader(arch_idx, args.seed + 1)
    steps = min(train_loader.steps_per_epoch, val_loader.steps_per_epoch)

    try:
        for epoch in run.remaining_epochs():
            weight_opt.set_learning_rate(cosine_lr(epoch, args.epoch, args.lr, args.lr_min))
            values = search_epoch(optimizer, train_loader, val_loader, steps,
                                  f"search epoch {epoch + 1}/{args.epoch}")
            history["normal"].append(alphas["alpha_normal"].d.copy())
            history["reduction"].append(alphas["alpha_reduction"].d.copy())
            write_alpha_history(run.monitor_path, history)
            arch = derive_architecture(history["normal"][-1], history["reduction"][-1])
            save_architecture(arch, os.path.join(run.monitor_path, "arch", f"epoch_{epoch + 1:03d}.json"))
            if args.draw_every_epoch:
                draw_architecture(arch, os.path.join(run.monitor_path, "cells"), prefix=f"epoch_{epoch + 1:03d}_")
            run.end_epoch(epoch, values,
                          meta={"weight_lr": weight_opt.lr, "arrays": {k: np.stack(v) for k, v in history.items()}},
                          message=f"lr {weight_opt.lr:.5f}  "
                                  f"train loss {values['Training loss']:.4f} err {values['Training error']:.4f}  "
                                  f"val loss {values['Validation loss']:.4f} err {values['Validation error']:.4f}")
    finally:
        train_loader.close()
        val_loader.close()

    arch = derive_architecture(history["normal"][-1], history["reduction"][-1])
    save_architecture(arch, args.model_arch_name)
    print(f"architecture written to {args.model_arch_name}")
    return arch


def main(argv=None):
    quiet_nnabla_logging()
    args = parse_args(search_parser(), argv)
    with fail_cleanly():
        if args.space == "recurrent" and args.alpha_epoch is not None:
            derive_recurrent_from_history(os.path.join(args.monitor_path, ALPHA_HISTORY), args.alpha_epoch,
                                          args.model_arch_name)
            print(f"recurrent cell of epoch {args.alpha_epoch} written to {args.model_arch_name}")
        elif args.space == "recurrent":
            from darts_search_recurrent import search_recurrent
            search_recurrent(args)
        elif args.alpha_epoch is not None:
            derive_from_history(os.path.join(args.monitor_path, ALPHA_HISTORY), args.alpha_epoch,
                                args.model_arch_name)
            print(f"architecture of epoch {args.alpha_epoch} written to {args.model_arch_name}")
        else:
            search(args)


if __name__ == "__main__":
    main()

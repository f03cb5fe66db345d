"""Training a language model with a recurrent cell (quark0's rnn/train.py), run by
`darts_train.py --space recurrent`.

    python darts_train.py --space recurrent --dataset ptb --model-arch-name DARTS_V2 -m runs/rnn-train
    python darts_train.py --space recurrent --model-arch-name DARTS_V2 --summary     # size, reads no data
    python darts_train.py --space recurrent --model-arch-name DARTS_V2 --evaluate runs/rnn-train/best_params.h5
    python darts_train.py --space recurrent --model-arch-name DARTS_V2 --init-params runs/ptb/imported_params.h5 ...

From random weights, or (fine-tuning) from --init-params PARAMS.h5. SGD with the learning rate scaled by each
batch's length, switching to averaged SGD (NT-ASGD, utils.recurrent.ntasgd) when the validation loss stops
improving; validation then uses the averaged weights. The best validated weights are kept (best.npz for
rollback, best_params.h5); a NaN loss rolls back to them and training goes on with the next epoch's data, with
a warning line, and summary.json lists every roll-back under "rollbacks" (where the loss diverged); before any
validated weights a NaN loss ends the run as a divergence (ops.divergence). At the end the best weights are
tested at batch 1. Outputs in the monitor directory: config.yaml, recurrent_arch.json, the series of SERIES,
summary.json (SUMMARY_KEYS), the checkpoint for --resume.
"""
import contextlib
import math
import os

import nnabla as nn
import numpy as np

from models.recurrent import build_eval_model
from models.recurrent_genotype import save_recurrent_genotype, to_genotype_string
from ops.divergence import DIVERGED, DivergedError, check_finite, check_parameters, describe
from utils.data.text import batchify, epoch_batches, load_corpus, train_sequence_length, vocabulary_size
from utils.optim.solvers import SGD
from utils.pictures.run_pictures import draw_run
from utils.recurrent.language_model import (TRAIN_MASKS, GraphCache, draw_masks, dropouts_of, feed, forward_backward,
                                            mask_rng, perplexity, stream_loss)
from utils.recurrent.ntasgd import PolyakAverage, should_switch_to_asgd
from utils.run.checkpoint import load_checkpoint, save_checkpoint
from utils.run.context import set_context, uses_cpu_kernels
from utils.run.monitoring import EpochSeries
from utils.run.run import EPOCH_TIME, Progress, Run, seed_everything, write_json
from utils.run_files import BEST_CHECKPOINT, BEST_PARAMS, EVALUATION, NETWORK_SUMMARY, RECURRENT_ARCHITECTURE, SUMMARY
from utils.training.evaluation import RunningMean
from utils.training.parameter_files import load_parameter_file, save_parameter_file

SERIES = ("Training perplexity", "Validation perplexity", EPOCH_TIME)
TEST_SERIES = "Test perplexity"
SUMMARY_KEYS = ("params", "valid_ppl", "test_ppl")
TEST_BATCH_SIZE = 1


# What a diverged training's line advises.
TRAINING_ADVICE = "lower --lr or --grad-clip"


def model_graphs(args, genotype, ntoken, batch_size, training, rng=None):
    fast = uses_cpu_kernels(args.context, args.type_config, args.cpu_kernels)
    return GraphCache(lambda seq_len: build_eval_model(genotype, seq_len, batch_size, ntoken, args.nhid, training,
                                                       tar_beta=args.tar_beta, rng=rng, cpu_kernels=fast))


def summarise_recurrent(args, genotype):
    """--summary: the parameter count of the language model, without reading the corpus (PTB, WikiText-2), in
    network_summary.json (never a training's summary.json)."""
    ntoken = vocabulary_size(args.dataset, args.data_dir)
    model_graphs(args, genotype, ntoken, 1, training=False)[1]
    params = int(sum(v.size for v in nn.get_parameters(grad_only=True).values()))
    summary = {"params": params}
    os.makedirs(args.monitor_path, exist_ok=True)
    path = os.path.join(args.monitor_path, NETWORK_SUMMARY)
    write_json(path, summary)
    print(f"language model: {to_genotype_string(genotype)}, nhid {args.nhid}, vocabulary {ntoken}")
    print(f"weights: {params:,}")
    print(f"summary written to {path}")
    return summary


def evaluate_recurrent(args, genotype):
    """--evaluate PARAMS.h5: validation and test perplexity of saved weights, written to evaluation.json."""
    corpus = load_corpus(args.dataset, args.data_dir)
    ntoken = len(corpus.vocabulary)
    valid_graphs = model_graphs(args, genotype, ntoken, args.eval_batch_size, training=False)
    test_graphs = model_graphs(args, genotype, ntoken, TEST_BATCH_SIZE, training=False)
    valid_graphs[args.bptt]
    load_parameter_file(args.evaluate, nn.get_parameters(grad_only=False))
    result = {"parameters": args.evaluate,
              "valid_ppl": perplexity(stream_loss(valid_graphs, batchify(corpus.valid, args.eval_batch_size), args.bptt)),
              "test_ppl": perplexity(stream_loss(test_graphs, batchify(corpus.test, TEST_BATCH_SIZE), args.bptt))}
    os.makedirs(args.monitor_path, exist_ok=True)
    path = os.path.join(args.monitor_path, EVALUATION)
    write_json(path, result)
    print(f"valid ppl {result['valid_ppl']:.2f}  test ppl {result['test_ppl']:.2f}  written to {path}")
    return result


def train_epoch(graphs, train_data, optimizer, polyak, args, epoch, clock):
    """One epoch (0-based) of the seed's train() in a run timed by `clock` (a RunClock); returns its mean
    training loss (nll per word). A loss that is not finite raises ops.divergence.DivergedError before
    its step, a parameter that is not finite at the end of the epoch too."""
    dropouts = dropouts_of(args)
    loss = RunningMean()
    hidden = np.zeros((args.batch_size, args.nhid), dtype=np.float32)
    batches = list(epoch_batches(train_data, lambda r: train_sequence_length(r, args.bptt), args.seed, epoch))
    bar = Progress(batches, f"train epoch {epoch + 1}/{args.epoch}", args.progress_every, clock, epoch)
    for batch in bar:
        graph = graphs[len(batch.data)]
        draw_masks(graph, mask_rng(args.seed, epoch, batch.step, TRAIN_MASKS), dropouts)
        feed(graph, batch.data, batch.target, hidden)
        lr = args.lr * batch.seq_len / args.bptt
        optimizer.set_learning_rate(lr)
        optimizer.zero_grad()
        forward_backward(graph.loss)
        # Before the step, so that the weights stay those of the last finite loss.
        check_finite(float(graph.loss.d), "training", epoch, batch.step, lr, advice=TRAINING_ADVICE)
        optimizer.step()
        if polyak is not None:
            polyak.update()
        hidden = graph.last_hidden.d.copy()
        loss.add(float(graph.nll.d), len(batch.data))
        bar.set_postfix(ppl=f"{perplexity(loss.mean):.1f}")
    check_parameters(nn.get_parameters(grad_only=False), "training", epoch, batch.step, lr, TRAINING_ADVICE)
    return loss.mean


class TrainingState:
    """What NT-ASGD decides by, saved in every checkpoint."""

    def __init__(self, meta=None):
        meta = meta or {}
        self.asgd = meta.get("asgd", False)
        self.val_losses = meta.get("val_losses", [])
        self.best_val_loss = meta.get("best_val_loss", math.inf)
        self.rollbacks = meta.get("rollbacks", [])  # DivergedError.records of the epochs rolled back

    def meta(self, polyak):
        return {"asgd": self.asgd, "val_losses": self.val_losses, "best_val_loss": self.best_val_loss,
                "rollbacks": self.rollbacks, "polyak_steps": polyak.steps,
                "arrays": {f"polyak/{name}": a for name, a in polyak.average.items()}}


def restore_polyak(polyak, meta):
    prefix = "polyak/"
    polyak.load_state(meta["polyak_steps"], {k[len(prefix):]: v for k, v in meta["arrays"].items()
                                             if k.startswith(prefix)})


def train_recurrent(args, genotype):
    set_context(args.context, args.device_id, args.type_config)
    corpus = load_corpus(args.dataset, args.data_dir)
    ntoken = len(corpus.vocabulary)
    train_data = batchify(corpus.train, args.batch_size)
    valid_data = batchify(corpus.valid, args.eval_batch_size)
    test_data = batchify(corpus.test, TEST_BATCH_SIZE)
    run = Run.open(vars(args), SERIES)
    best_checkpoint = os.path.join(run.save_dir, BEST_CHECKPOINT)
    best_params = os.path.join(run.save_dir, BEST_PARAMS)

    nn.clear_parameters()
    rng = seed_everything(args.seed)
    graphs = model_graphs(args, genotype, ntoken, args.batch_size, training=True, rng=rng)
    graphs[args.bptt]  # creates the weights
    valid_graphs = model_graphs(args, genotype, ntoken, args.eval_batch_size, training=False)
    if args.init_params is not None and not run.resumes:  # a resumed run's weights are its checkpoint's
        load_parameter_file(args.init_params, nn.get_parameters(grad_only=False))
        print(f"fine-tuning: starting from the parameters of {args.init_params}")
    params = nn.get_parameters(grad_only=True)
    optimizer = SGD(params, args.lr, 0.0, args.weight_decay, args.grad_clip,
                    cpu_kernels=uses_cpu_kernels(args.context, args.type_config, args.cpu_kernels))
    solvers = {"weights": optimizer.solver}
    polyak = PolyakAverage(params)
    summary = {"params": int(sum(v.size for v in params.values())), "valid_ppl": None, "test_ppl": None}
    print(f"weights: {summary['params']:,}")

    # The run's first write, once its setup has succeeded: a setup that fails leaves an earlier run as it was.
    meta = run.start(params, solvers, args.resume)
    save_recurrent_genotype(genotype, os.path.join(run.monitor_path, RECURRENT_ARCHITECTURE))
    state = TrainingState(meta)
    if meta is not None:
        restore_polyak(polyak, meta)
        summary["valid_ppl"] = perplexity(state.best_val_loss)
        if state.rollbacks:
            summary["rollbacks"] = state.rollbacks

    for epoch in run.remaining_epochs():
        try:
            train_loss = train_epoch(graphs, train_data, optimizer, polyak if state.asgd else None, args, epoch,
                                     run.clock)
        except DivergedError as diverged:
            if not os.path.exists(best_checkpoint):  # nothing validated to roll back to: the run ends
                write_json(os.path.join(run.monitor_path, SUMMARY),
                           {**summary, "valid_ppl": None, "test_ppl": None, DIVERGED: diverged.record})
                run.close()
                raise
            # As the seed does: back to the best validated weights, and on with the training.
            rollbacks = state.rollbacks + [diverged.record]
            best_meta = load_checkpoint(best_checkpoint, params, solvers)
            state = TrainingState(best_meta)
            state.rollbacks = rollbacks
            restore_polyak(polyak, best_meta)
            summary["rollbacks"] = rollbacks
            train_loss = math.nan
            print(f"warning: the loss became not finite in {describe(diverged.record)}: rolled back to the best "
                  f"validated weights (of epoch {best_meta['epoch']}) and going on, as quark0's rnn/train.py does "
                  f"(summary.json counts the roll-backs; {TRAINING_ADVICE} if they recur)", flush=True)

        averaged = polyak.swapped_in() if state.asgd else contextlib.nullcontext()
        with averaged:
            val_loss = stream_loss(valid_graphs, valid_data, args.bptt)
            if val_loss < state.best_val_loss:
                state.best_val_loss = val_loss
                save_checkpoint(best_checkpoint, params, solvers, {"epoch": epoch + 1, **state.meta(polyak)})
                save_parameter_file(best_params, params)
        if not state.asgd:
            if should_switch_to_asgd(val_loss, state.val_losses, args.nonmono):
                state.asgd = True
                polyak.load_state(0, polyak.average)
                print(f"epoch {epoch + 1}: validation stopped improving, switching to averaged SGD")
            state.val_losses.append(val_loss)

        summary["valid_ppl"] = perplexity(state.best_val_loss)
        write_json(os.path.join(run.monitor_path, SUMMARY), summary)
        values = {"Training perplexity": perplexity(train_loss), "Validation perplexity": perplexity(val_loss)}
        run.end_epoch(epoch, values, meta=state.meta(polyak),
                      message=f"{'ASGD' if state.asgd else 'SGD'}  train ppl {values['Training perplexity']:.2f}  "
                              f"valid ppl {values['Validation perplexity']:.2f}")

    load_parameter_file(best_params, params)
    test_graphs = model_graphs(args, genotype, ntoken, TEST_BATCH_SIZE, training=False)
    summary["test_ppl"] = perplexity(stream_loss(test_graphs, test_data, args.bptt))
    # A series of one point, at the last epoch, written only now so no picture meets it empty.
    EpochSeries(run.monitor_path, (TEST_SERIES,)).add(args.epoch - 1, {TEST_SERIES: summary["test_ppl"]})
    draw_run(run.monitor_path)
    write_json(os.path.join(run.monitor_path, SUMMARY), summary)
    run.close()
    print(f"best valid ppl {summary['valid_ppl']:.2f}  test ppl {summary['test_ppl']:.2f} (best weights, batch 1)")
    return summary

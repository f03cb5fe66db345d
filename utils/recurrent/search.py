"""Recurrent cell search (quark0's rnn/train_search.py), run by `darts_search.py --space recurrent`.

    python darts_search.py --space recurrent --dataset ptb --monitor-path runs/rnn-search

Outputs in the monitor directory: config.yaml; the series of SERIES (perplexities per epoch);
alpha_history.npz (`recurrent`, (epochs + 1, 36, 5)); after every epoch the cell of the current
alphas as recurrent_arch.json, arch/epoch_NNN.json and genotype.txt; the checkpoint for --resume;
at the end the cell as JSON in --model-arch-name (default: DARTS_rnn_arch.json in the monitor directory).

A NaN or infinite loss or alpha stops the search with one line naming the epoch, the step and the learning
rate (ops.divergence.DivergedError), as the CNN search stops: nothing of the diverged epoch is written,
so the checkpoint and outputs are those of the last finished epoch. The losses are checked at every step
(they are read back anyway), the alpha and the validation loss once an epoch.
"""
import os

import nnabla as nn
import numpy as np

from models.genotype import write_text_atomically
from models.recurrent import ALPHA_NAME, ARCH_SCOPE, WEIGHT_SCOPE, build_search_model, create_alpha
from models.recurrent_genotype import derive_recurrent_genotype, save_recurrent_genotype, to_genotype_string
from ops.divergence import check_finite, check_parameters
from utils.data.datasets import DataError
from utils.data.text import Batch, batchify, epoch_batches, get_batch, load_corpus, search_sequence_length
from utils.optim.solvers import SGD, Adam
from utils.recurrent.language_model import GraphCache, dropouts_of, perplexity, stream_loss
from utils.recurrent.search_step import RecurrentSearchStep
from utils.run.context import set_context, uses_cpu_kernels
from utils.run.run import EPOCH_TIME, Progress, Run, seed_everything
from utils.run_files import GENOTYPE, RECURRENT_ARCHITECTURE, epoch_architecture, found_architecture
from utils.search.alpha_history import write_recurrent_alpha_history
from utils.training.evaluation import RunningMean

SERIES = ("Training perplexity", "Validation perplexity", EPOCH_TIME)


# What a diverged search's line advises.
SEARCH_ADVICE = "lower --lr or --arch-lr"


def scope_parameters(scope, grad_only):
    prefix = scope + "/"
    return {name: v for name, v in nn.get_parameters(grad_only=grad_only).items() if name.startswith(prefix)}


def validation_window(search_data, position, bptt):
    """The seed reads the validation stream at position % (rows - 1), cut short near its end; here the
    window always has bptt rows (position % (rows - bptt)), so the search needs at most two graphs."""
    start = position % (len(search_data) - bptt)
    return get_batch(search_data, start, bptt)


def search_recurrent(args):
    set_context(args.context, args.device_id, args.type_config)
    corpus = load_corpus(args.dataset, args.data_dir)
    ntoken = len(corpus.vocabulary)
    train_data = batchify(corpus.train, args.batch_size)
    search_data = batchify(corpus.valid, args.batch_size)
    valid_data = batchify(corpus.valid, args.eval_batch_size)
    for name, rows in (("train", len(train_data)), ("valid", len(search_data))):
        if rows <= args.bptt + 1:
            raise DataError(f"{args.dataset}: the {name} split gives {rows} rows at batch size {args.batch_size}, "
                            f"too few for --bptt {args.bptt}; lower --batch-size or --bptt")
    run = Run.open(vars(args), SERIES, outputs={"model_arch_name": found_architecture(
        args.monitor_path, args.model_arch_name, "recurrent")})

    nn.clear_parameters()
    rng = seed_everything(args.seed)
    alpha = create_alpha(rng)
    fast = uses_cpu_kernels(args.context, args.type_config, args.cpu_kernels)
    graphs = GraphCache(lambda seq_len: build_search_model(alpha, seq_len, args.batch_size, ntoken, args.nhid,
                                                           training=True, tar_beta=args.tar_beta, rng=rng,
                                                           cpu_kernels=fast))
    eval_graphs = GraphCache(lambda seq_len: build_search_model(alpha, seq_len, args.eval_batch_size, ntoken,
                                                                args.nhid, training=False, rng=rng, cpu_kernels=fast))
    graphs[args.bptt]  # creates the weights
    weights = scope_parameters(WEIGHT_SCOPE, grad_only=True)
    network_state = scope_parameters(WEIGHT_SCOPE, grad_only=False)
    alphas = {f"{ARCH_SCOPE}/{ALPHA_NAME}": alpha}
    weight_opt = SGD(weights, args.lr, 0.0, args.weight_decay, args.grad_clip, cpu_kernels=fast)
    alpha_opt = Adam(alphas, args.arch_lr, args.arch_beta1, args.arch_beta2, args.arch_weight_decay)
    stepper = RecurrentSearchStep(graphs, weights, network_state, alphas, weight_opt, alpha_opt,
                                  dropouts_of(args), args.second_order, args.original_unrolled_step)

    history = [alpha.d.copy()]
    # The run's first write, once its setup has succeeded: a setup that fails leaves an earlier run as it was.
    meta = run.start({**network_state, **alphas}, {"weights": weight_opt.solver, "alphas": alpha_opt.solver},
                     args.resume)
    if meta is not None:
        history = list(meta["arrays"]["recurrent"])

    for epoch in run.remaining_epochs():
        stepper.reset_hidden(args.batch_size, args.nhid)
        train_loss = RunningMean()
        last = 0, args.lr  # the last step's index and learning rate
        batches = list(epoch_batches(train_data, lambda r: search_sequence_length(r, args.bptt), args.seed, epoch))
        bar = Progress(batches, f"search epoch {epoch + 1}/{args.epoch}", args.progress_every, run.clock, epoch)
        for batch in bar:
            if len(batch.data) < batch.seq_len:
                break  # the stream's tail: a third length is not worth a graph
            val_batch = Batch(batch.step, batch.position, args.bptt,
                              *validation_window(search_data, batch.position, args.bptt))
            lr = args.lr * batch.seq_len / args.bptt
            nll, val_nll = stepper.step(batch, val_batch, lr, args.seed, epoch)
            for quantity, loss in (("alpha-step loss", val_nll), ("training loss", nll)):
                check_finite(loss, "search", epoch, batch.step, lr, quantity, SEARCH_ADVICE)
            train_loss.add(nll, len(batch.data))
            bar.set_postfix(ppl=f"{perplexity(train_loss.mean):.1f}")
            last = batch.step, lr
        # The alpha and the weights, once an epoch.
        check_parameters({**network_state, **alphas}, "search", epoch, *last, SEARCH_ADVICE)
        valid_loss = stream_loss(eval_graphs, valid_data, args.bptt)
        check_finite(valid_loss, "search", epoch, *last, "validation loss", SEARCH_ADVICE)
        valid_ppl = perplexity(valid_loss)

        history.append(alpha.d.copy())
        write_recurrent_alpha_history(run.monitor_path, history)
        genotype = derive_recurrent_genotype(alpha.d)
        save_recurrent_genotype(genotype, os.path.join(run.monitor_path, epoch_architecture(epoch + 1)))
        save_recurrent_genotype(genotype, os.path.join(run.monitor_path, RECURRENT_ARCHITECTURE))
        write_text_atomically(os.path.join(run.monitor_path, GENOTYPE), to_genotype_string(genotype) + "\n")
        train_ppl = perplexity(train_loss.mean)
        run.end_epoch(epoch, {"Training perplexity": train_ppl, "Validation perplexity": valid_ppl},
                      meta={"arrays": {"recurrent": np.stack(history)}},
                      message=f"train ppl {train_ppl:.2f}  valid ppl {valid_ppl:.2f}")  # the cell: genotype.txt

    genotype = derive_recurrent_genotype(history[-1])
    out = found_architecture(run.monitor_path, args.model_arch_name, "recurrent")
    save_recurrent_genotype(genotype, out)
    run.close()
    print(f"recurrent cell written to {out}: {to_genotype_string(genotype)}")
    return genotype

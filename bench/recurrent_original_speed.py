"""Tokens per second of the PyTorch original's recurrent steps (quark0/darts rnn/) on cpu, for a side-by-side
with bench/recurrent_step.py. Not part of the project: it imports the original's own files from the rnn/ folder
you point it at, and needs torch, which the project's venv does not have.

    git -C <quark0/darts checkout> archive HEAD rnn | tar -x -C /tmp/quark0
    /tmp/torchenv/bin/python bench/recurrent_original_speed.py --darts-rnn /tmp/quark0/rnn --case train
    .venv/bin/python bench/recurrent_step.py --size ptb --steps 1 --cases train

The cases are those of bench/recurrent_step.py at PTB size (10,000 words, bptt 35): `train` is train.py's loop
body for DARTS_V2 (850 units, batch 64, its default dropouts: forward, nll, TAR 1e-3, backward, clip 0.25, SGD
lr 20 wdecay 8e-7); `search_first_order` / `search_second_order` are train_search.py's (300 units, batch 256):
architect.step, then the weight step. Random token ids stand in for text. torch.set_num_threads(--threads);
`.cuda()` does nothing, and embedded_dropout, which calls a torch internal removed since, is replaced by the
same computation on today's F.embedding. Last line: JSON {case, tokens_per_s, tokens_per_cpu_s, s_per_step,
peak_rss_mb}.
"""
import argparse
import json
import resource
import statistics
import sys
import time
from types import SimpleNamespace

NTOKEN, BPTT = 10000, 35
CASES = ("train", "search_first_order", "search_second_order")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--darts-rnn", required=True, help="the rnn/ directory of a quark0/darts checkout")
    parser.add_argument("--case", choices=CASES, default="train")
    parser.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up step (median)")
    parser.add_argument("--threads", type=int, default=2)
    return parser


def load_original(darts_rnn):
    import torch
    import torch.nn.functional as F
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    sys.path.insert(0, darts_rnn)
    import model

    def embedded_dropout(embed, words, dropout=0.1, scale=None):
        weight = embed.weight
        if dropout:
            mask = weight.new_empty((weight.size(0), 1)).bernoulli_(1 - dropout) / (1 - dropout)
            weight = mask * weight
        return F.embedding(words, weight)
    model.embedded_dropout = embedded_dropout
    return torch, model


def main(argv=None):
    args = build_parser().parse_args(argv)
    import warnings
    warnings.filterwarnings("ignore")  # the original's deprecated torch signatures
    torch, model = load_original(args.darts_rnn)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    import genotypes
    if args.case == "train":
        nhid, batch = 850, 64
        net = model.RNNModel(NTOKEN, nhid, nhid, nhid, 0.75, 0.25, 0.75, 0.2, 0.1, cell_cls=model.DARTSCell,
                             genotype=genotypes.DARTS_V2)
        lr, wdecay = 20.0, 8e-7
    else:
        import model_search
        from architect import Architect
        nhid, batch = 300, 256
        net = model_search.RNNModelSearch(NTOKEN, nhid, nhid, nhid, 0.75, 0.25, 0.75, 0.2, 0.0)
        lr, wdecay = 20.0, 5e-7
        architect = Architect(net, SimpleNamespace(wdecay=wdecay, clip=0.25, arch_lr=3e-3, arch_wdecay=1e-3))
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, weight_decay=wdecay)
    hidden = net.init_hidden(batch)
    hidden_valid = net.init_hidden(batch)

    def tokens():
        t = torch.randint(0, NTOKEN, (BPTT + 1, batch))
        return t[:-1], t[1:].reshape(-1)

    def step():
        nonlocal hidden, hidden_valid
        net.train()
        data, targets = tokens()
        hidden = [h.detach() for h in hidden]
        if args.case != "train":
            data_valid, targets_valid = tokens()
            hidden_valid = [h.detach() for h in hidden_valid]
            hidden_valid, _ = architect.step(hidden, data, targets, hidden_valid, data_valid, targets_valid,
                                             optimizer, args.case == "search_second_order")
            hidden_valid = [h.detach() for h in hidden_valid]
        optimizer.zero_grad()
        log_prob, hidden, rnn_hs, _ = net(data, hidden, return_h=True)
        loss = torch.nn.functional.nll_loss(log_prob.view(-1, log_prob.size(2)), targets)
        loss = loss + sum(1e-3 * (h[1:] - h[:-1]).pow(2).mean() for h in rnn_hs[-1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 0.25)
        optimizer.step()

    step()  # warm-up
    times, cpu_times = [], []
    for _ in range(args.steps):
        started, cpu_started = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu_started)
    seconds, cpu_seconds = statistics.median(times), statistics.median(cpu_times)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"original {args.case}: {seconds:.2f} s per step, {BPTT * batch / seconds:.1f} tokens/s on "
          f"{args.threads} threads ({BPTT * batch / cpu_seconds:.1f} per cpu-second), peak RSS {peak:.0f} MB")
    print(json.dumps({"case": args.case, "tokens_per_s": round(BPTT * batch / seconds, 1),
                      "tokens_per_cpu_s": round(BPTT * batch / cpu_seconds, 1),
                      "s_per_step": round(seconds, 3), "peak_rss_mb": round(peak)}))


if __name__ == "__main__":
    main()

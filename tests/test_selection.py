"""darts_search.py --seeds --select-epochs: several searches, then the best cell by held-out training images."""
import dataclasses
import json

import numpy as np
import pytest

import darts_search
from models.genotype import load_architecture
from ops import cpu_kernels
from tests.helpers import digits_head
from utils.data.pipeline import split_indices
from utils.run import run as run_module
from utils.search.selection import select_architecture

TINY = ["--dataset", "digits", "--batch-size", "16", "--num-cells", "1", "--output-filter", "4", "--epoch", "1"]


def read_json(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def digits_slice():
    return digits_head(96)


@pytest.fixture(scope="module")
def selected(tmp_path_factory, digits_slice):
    """Two searches and their selection, on data whose test set is NaN: reading it would show."""
    poisoned = dataclasses.replace(digits_slice, test_x=np.full(digits_slice.test_x.shape, np.nan),
                                   test_y=np.full(digits_slice.test_y.shape, -1))
    monitor = tmp_path_factory.mktemp("selection")
    patch = pytest.MonkeyPatch()
    patch.setattr(darts_search, "load_dataset", lambda name, data_dir: poisoned)
    patch.setattr(run_module, "draw_run", lambda monitor_path: [])  # pictures are not what is tested here
    try:
        darts_search.main(TINY + ["--seeds", "5,6", "--select-epochs", "1", "-m", str(monitor),
                                  "--model-arch-name", str(monitor / "winner.json")])
    finally:
        patch.undo()
    return monitor


def settings(data):
    return {"num_classes": data.num_classes, "channels": 4, "num_cells": 1, "epochs": 1, "batch_size": 16,
            "lr": 0.025, "lr_min": 0.001, "momentum": 0.9, "weight_decay": 3e-4, "grad_clip": 5.0,
            "cutout_length": 0, "hflip": data.hflip, "seed": 0, "type_config": "float",
            "cpu_kernels": cpu_kernels.available()}  # as darts_search.py decides on the cpu


def test_each_seed_searches_into_its_own_directory(selected):
    for seed in (5, 6):
        assert (selected / f"seed_{seed}" / "DARTS_arch.json").is_file()
        assert (selected / f"seed_{seed}" / "alpha_history.npz").is_file()
    assert load_architecture(str(selected / "seed_5" / "DARTS_arch.json")) != \
        load_architecture(str(selected / "seed_6" / "DARTS_arch.json"))


def test_selection_ranks_by_held_out_error_and_writes_the_winner(selected):
    selection = read_json(selected / "selection.json")
    errors = [entry["held_out_error"] for entry in selection["ranking"]]
    assert errors == sorted(errors) and all(np.isfinite(errors))
    assert [entry["candidate"] for entry in selection["ranking"]] in (["seed_5", "seed_6"], ["seed_6", "seed_5"])
    winner = selection["ranking"][0]
    assert selection["winner"] == winner["candidate"]
    assert load_architecture(str(selected / "winner.json")) == load_architecture(winner["architecture"])
    assert selection["train_images"] + selection["held_out_images"] == 96  # the training slice, split


def test_selection_never_reads_the_test_set(selected, digits_slice):
    """The run above had a NaN test set; the same selection on the real data gives the same figures."""
    candidates = {f"seed_{seed}": load_architecture(str(selected / f"seed_{seed}" / "DARTS_arch.json"))
                  for seed in (5, 6)}
    ranking, _ = select_architecture(candidates, digits_slice.train_x, digits_slice.train_y, digits_slice.mean,
                                     digits_slice.std, settings(digits_slice), train_portion=0.5)
    written = read_json(selected / "selection.json")["ranking"]
    assert [(e["candidate"], e["held_out_error"], e["held_out_loss"]) for e in ranking] == \
        [(e["candidate"], e["held_out_error"], e["held_out_loss"]) for e in written]


def test_ties_go_to_the_lower_loss_then_the_earlier_candidate(monkeypatch):
    from utils.search import selection as selection_module
    from utils.training.evaluation import Scores
    scores = {"a": Scores(1.0, 0.5, 0.1), "b": Scores(0.9, 0.5, 0.1), "c": Scores(0.9, 0.5, 0.1), "d": Scores(2.0, 0.4, 0.1)}
    monkeypatch.setattr(selection_module, "brief_training", lambda arch, *args, **kwargs: scores[arch])
    ranking, sizes = select_architecture({name: name for name in scores}, np.zeros((10, 1, 8, 8), np.uint8),
                                         np.arange(10), (0.5,), (0.5,), {"seed": 0}, 0.6)
    assert [entry["candidate"] for entry in ranking] == ["d", "b", "c", "a"]
    assert sizes == {"train_images": 6, "held_out_images": 4}


def held_out_counts(train, held_out, search_splits):
    """{candidate: (held-out images in its alpha half, in its weight half, training images in its alpha half,
    in its weight half)}; search_splits {candidate: (weights_idx, arch_idx)}."""
    return {name: (len(set(held_out) & set(arch)), len(set(held_out) & set(weights)),
                   len(set(train) & set(arch)), len(set(train) & set(weights)))
            for name, (weights, arch) in search_splits.items()}


def test_selection_json_counts_what_each_search_saw_of_the_selection_split(selected):
    selection = read_json(selected / "selection.json")
    overlap = selection["search_data_overlap"]
    assert set(overlap) == {"seed_5", "seed_6"}
    for name, counts in overlap.items():
        assert counts["held_out_in_alpha_half"] + counts["held_out_in_weight_half"] == selection["held_out_images"]
        assert counts["train_in_alpha_half"] + counts["train_in_weight_half"] == selection["train_images"]
        # The search's alpha half (split_indices on its seed, as darts_search.search draws it) has 48 images.
        assert counts["held_out_in_alpha_half"] + counts["train_in_alpha_half"] == 48


@pytest.mark.parametrize("selection_seed", [0, 3])
def test_no_candidate_search_overlaps_the_selection_split_more_than_the_others(monkeypatch, capsys,
                                                                               selection_seed):
    """Four searches (seeds 0..3) on the digits' 1497 training images, half for the weights, half for the
    alphas; the selection with --seed among them. Its held-out images must not be (or lean towards) the
    alpha half of the search with that seed: every candidate's alpha half holds about as many of them as a
    half drawn independently would, within 4 standard deviations of the hypergeometric count."""
    from utils.search import selection as selection_module
    from utils.training.evaluation import Scores
    n, portion, seeds = 1497, 0.5, (0, 1, 2, 3)
    seen = {}

    def brief_training(arch, train_set, held_out_set, settings, desc):
        seen[arch] = (train_set[1], held_out_set[1])  # the labels are the image indices
        return Scores(0.5, 0.5, 1.0)
    monkeypatch.setattr(selection_module, "brief_training", brief_training)
    select_architecture({f"seed_{s}": f"seed_{s}" for s in seeds}, np.zeros((n, 1, 1, 1), np.uint8), np.arange(n),
                        (0.5,), (0.5,), {"seed": selection_seed}, portion)
    (train, held_out), = {(tuple(t), tuple(h)) for t, h in seen.values()}  # one split for every candidate
    assert len(set(train) | set(held_out)) == n and not set(train) & set(held_out)
    counts = held_out_counts(train, held_out, {f"seed_{s}": split_indices(n, portion, s) for s in seeds})
    print(f"--seed {selection_seed}: held-out {len(held_out)}, train {len(train)}; per search seed: "
          "(held-out in alpha half, held-out in weight half, train in alpha half, train in weight half)")
    for name, row in counts.items():
        print(f"  {name}: {row}")
    alpha_share = (n - int(n * portion)) / n
    for held_out_in_alpha, _, train_in_alpha, _ in counts.values():
        for size, count in ((len(held_out), held_out_in_alpha), (len(train), train_in_alpha)):
            sd = np.sqrt(size * alpha_share * (1 - alpha_share) * (n - size) / (n - 1))
            assert abs(count - size * alpha_share) <= 4 * sd, counts


def test_select_epochs_needs_several_seeds(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        darts_search.main(TINY + ["--select-epochs", "2", "-m", str(tmp_path)])
    assert exit_info.value.code == 2

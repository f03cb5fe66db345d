"""Picking the best of several searches, as DARTS does: each derived cell is trained briefly from scratch
and the one with the lowest error on held-out images wins.

Only training images take part: a share of them trains, the rest is held out. select_architecture is
never given the test set, so the choice cannot have looked at it.

Every search has seen every training image, either in its weight half or in its alpha half, so no
held-out set is new to all candidates; what matters is that it is new to none in particular. The
selection's split is therefore drawn from a seed no search uses (selection_split): each candidate's
alpha half holds about the same share of the held-out images. Drawn from --seed as a search's split is,
it would be exactly the alpha half of the search with that seed, whose cell was picked on those images.
"""
import json
import os

import numpy as np

from ops.divergence import DIVERGED
from ops.unreadable_file import reading
from utils.data.pipeline import split_indices
from utils.run_files import SEARCH_SUMMARY, found_architecture
from utils.training.network_training import brief_training
from utils.training.protocol import seed_dir

# The selection's split is drawn from the two-word seed (seed, SELECTION_STREAM); a search's split from its
# one-word seed (below 2**32, as np.random.seed requires), so no search seed gives the selection's split.
SELECTION_STREAM = 0x5E1EC7


def selection_split(n, train_portion, seed):
    """(train_idx, held_out_idx) of the selection: split_indices on a seed that no search's split is drawn from."""
    return split_indices(n, train_portion, [seed, SELECTION_STREAM])


def search_data_overlap(n, train_portion, seed, search_seeds):
    """How many of the selection's images each search has seen, and in which half.

    n, train_portion, seed: the selection's split (selection_split); search_seeds: {candidate: the seed of
    its search}, whose split is split_indices(n, train_portion, that seed) as in darts_search.search.
    Returns {candidate: {"held_out_in_alpha_half", "held_out_in_weight_half", "train_in_alpha_half",
    "train_in_weight_half"}}, counts of images.
    """
    selection = dict(zip(("train", "held_out"), selection_split(n, train_portion, seed)))
    overlap = {}
    for name, search_seed in search_seeds.items():
        halves = dict(zip(("weight", "alpha"), split_indices(n, train_portion, search_seed)))
        overlap[name] = {f"{kind}_in_{half}_half": int(np.intersect1d(images, halves[half]).size)
                         for kind, images in reversed(selection.items()) for half in ("alpha", "weight")}
    return overlap


def select_architecture(candidates, images, labels, mean, std, settings, train_portion):
    """Ranks {name: Architecture} by held-out error after network_training.brief_training.

    images, labels: the training set (uint8 NCHW, ints); train_portion of selection_split(settings["seed"])
    trains each candidate and the rest is held out. Returns (ranking, split sizes),
    the ranking a list of {"candidate", "held_out_error", "held_out_top5_error", "held_out_loss"}, best
    first; ties go to the lower loss, then to the earlier candidate.
    """
    train_idx, held_out_idx = selection_split(len(labels), train_portion, settings["seed"])
    train_set = (images[train_idx], labels[train_idx], mean, std)
    held_out_set = (images[held_out_idx], labels[held_out_idx], mean, std)
    results = []
    for order, (name, arch) in enumerate(candidates.items()):
        scores = brief_training(arch, train_set, held_out_set, settings, desc=f"select {name}")
        print(f"candidate {name}: held-out error {scores.error:.4f} loss {scores.loss:.4f}", flush=True)
        results.append((scores.error, scores.loss, order, {
            "candidate": name, "held_out_error": scores.error, "held_out_top5_error": scores.top5_error,
            "held_out_loss": scores.loss}))
    ranking = [entry for *_, entry in sorted(results, key=lambda r: r[:3])]
    return ranking, {"train_images": int(len(train_idx)), "held_out_images": int(len(held_out_idx))}


def others_searches(args, arch_files, diverged):
    """(arch_files, diverged) of every seed of args.seeds, in their order, as search_seeds keeps them ({"seed_<s>":
    found cell's path}, {"seed_<s>": divergence record}): this rank's as given, and those of the seeds other ranks
    searched (--comm) from their seed directories: search_summary.json says whether one diverged."""
    all_files, all_diverged = {}, {}
    for seed in args.seeds:
        name = f"seed_{seed}"
        if name in arch_files or name in diverged:
            all_files.update({name: arch_files[name]} if name in arch_files else {})
            all_diverged.update({name: diverged[name]} if name in diverged else {})
            continue
        path = os.path.join(seed_dir(args.monitor_path, seed), SEARCH_SUMMARY)
        with reading(path, f"seed {seed}'s search summary"), open(path, encoding="utf-8") as f:
            record = json.load(f).get(DIVERGED)
        if record:
            all_diverged[name] = record
        else:
            all_files[name] = found_architecture(seed_dir(args.monitor_path, seed), None)
    return all_files, all_diverged

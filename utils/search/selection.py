"""Picking the best of several searches, as DARTS does: each derived cell is trained briefly from scratch
and the one with the lowest error on held-out images wins.

Only training images take part: a share of them trains, the rest is held out. select_architecture is
never given the test set, so the choice cannot have looked at it.
"""
from utils.data.pipeline import split_indices
from utils.training.network_training import brief_training


def select_architecture(candidates, images, labels, mean, std, settings, train_portion):
    """Ranks {name: Architecture} by held-out error after network_training.brief_training.

    images, labels: the training set (uint8 NCHW, ints); the first train_portion of a split seeded by
    settings["seed"] trains each candidate and the rest is held out. Returns (ranking, split sizes),
    the ranking a list of {"candidate", "held_out_error", "held_out_top5_error", "held_out_loss"}, best
    first; ties go to the lower loss, then to the earlier candidate.
    """
    train_idx, held_out_idx = split_indices(len(labels), train_portion, settings["seed"])
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

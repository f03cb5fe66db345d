"""Classification metrics: running means of batch figures, and the loss and errors over a whole image set."""
from collections import namedtuple

import numpy as np

from utils.data.pipeline import eval_batches


def classification_error(logits, labels):
    return float(np.mean(np.argmax(logits, axis=1) != labels.reshape(-1)))


def top_k_misses(logits, labels, k):
    """How many rows of `logits` do not have their label among their k largest values."""
    labels = np.asarray(labels).reshape(-1, 1)
    top = np.argpartition(-np.asarray(logits), k - 1, axis=1)[:, :k]
    return int(np.sum(~np.any(top == labels, axis=1)))


def cross_entropy_per_sample(logits, labels):
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(logits)), labels.reshape(-1)]


class RunningMean:
    def __init__(self):
        self.total = 0.0
        self.count = 0

    def add(self, value, count=1):
        self.total += value * count
        self.count += count

    @property
    def mean(self):
        return self.total / max(self.count, 1)


# Mean cross-entropy, top-1 error and top-5 error of a set of images (as fractions), and their number.
Scores = namedtuple("Scores", "loss error top5_error images", defaults=(0,))
TOP5 = 5


def batch_scores(graph, batches):
    """Scores of a test graph over (x, y, n_valid) batches; padding in the last batch is not counted.

    With 5 classes or fewer the top-5 error is 0: every label is among the 5 largest logits.
    """
    loss, error, top5 = RunningMean(), RunningMean(), RunningMean()
    for x, y, n_valid in batches:
        graph.x.d, graph.y.d = x, y
        graph.logits.forward(clear_buffer=True)
        logits, batch_labels = graph.logits.d[:n_valid], y[:n_valid]
        loss.add(float(cross_entropy_per_sample(logits, batch_labels).mean()), n_valid)
        error.add(classification_error(logits, batch_labels), n_valid)
        k = min(TOP5, logits.shape[1])
        top5.add(top_k_misses(logits, batch_labels, k) / n_valid, n_valid)
    return Scores(loss.mean, error.mean, top5.mean, error.count)


def image_set_scores(graph, images_u8, labels, batch_size, mean, std):
    """Scores of a test graph over every image of an in-memory set once."""
    return batch_scores(graph, eval_batches(images_u8, labels, batch_size, mean, std))


def test_scores(graph, data, batch_size):
    """Scores over the whole test set of a utils.data.datasets.Dataset."""
    return image_set_scores(graph, data.test_x, data.test_y, batch_size, data.mean, data.std)


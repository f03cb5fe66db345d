"""Classification metrics: running means of batch figures, and the loss and error over a whole test set."""
import numpy as np



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


def test_metrics(graph, batches):
    """Mean cross-entropy, top-1 and top-5 error over (x, y, n_valid) batches; padding is not counted."""
    loss, error, top5 = RunningMean(), RunningMean(), RunningMean()
    for x, y, n_valid in batches:
        graph.x.d, graph.y.d = x, y
        graph.logits.forward(clear_buffer=True)
        logits, labels = graph.logits.d[:n_valid], y[:n_valid]
        loss.add(float(cross_entropy_per_sample(logits, labels).mean()), n_valid)
        error.add(classification_error(logits, labels), n_valid)
        top5.add(top_k_misses(logits, labels, min(5, logits.shape[1])) / n_valid, n_valid)
    return {"loss": loss.mean, "error": error.mean, "top5_error": top5.mean, "images": error.count}

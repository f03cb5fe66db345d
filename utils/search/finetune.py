"""--finetune-epochs: weight steps on the hard-discretized network of the final alphas, which stay fixed."""
import nnabla as nn

from models.graph import feed, forward_backward
from ops.divergence import check_finite, check_parameters


def finetune_discretized(variant, weight_optimizer, train_loader, epochs, score, calibration):
    """Trains variant.discretized_graph's weights for `epochs` epochs; returns the summary entries
    ({} for 0 epochs). The eval-mode discretized network is then scored as every epoch scores it:
    variant.discretized_scores(score, calibration), on batch-norm statistics of its own. Its steps read
    nothing back: a divergence shows in the parameters at the end and that score's loss
    (ops.divergence.DivergedError)."""
    if not epochs:
        return {}
    graph = variant.discretized_graph(test=False)
    for _ in range(epochs * train_loader.steps_per_epoch):
        feed(graph, train_loader.next())
        weight_optimizer.zero_grad()
        forward_backward(graph, weight_optimizer.grad_scale)
        weight_optimizer.step()
    where = ("fine-tuning (--finetune-epochs)", epochs - 1, train_loader.steps_per_epoch - 1, weight_optimizer.lr)
    check_parameters(nn.get_parameters(grad_only=False), *where, resumable=False)
    scores = variant.discretized_scores(score, calibration)
    check_finite(scores.loss, *where, "validation loss", resumable=False)
    return {"finetune_epochs": epochs, "finetuned_discretized_validation_error": scores.error}

"""Training an evaluation network from scratch: the epoch loop darts_train.py runs, and the brief training
darts_search.py --select-epochs gives each searched cell."""
import nnabla as nn
import numpy as np

from models.eval_network import build_test_graph, build_train_graph
from models.graph import feed, forward_backward
from ops.divergence import check_finite, check_parameters
from utils.data.pipeline import BatchLoader
from utils.optim.mixed_precision import loss_scale_for
from utils.optim.solvers import SGD, cosine_lr
from utils.run.run import Progress, RunClock
from utils.training.evaluation import RunningMean, classification_error, image_set_scores

# Keeps the drop-path noise apart from the data pipeline's shuffling (0) and augmentation (1) streams.
DROP_PATH_STREAM = 2


class GraphsBySize:
    """The static training graph of each batch size, build(batch_size), built when first asked for.

    nnabla's graphs have fixed shapes, and a loader that ends its epochs with a smaller batch (ImageNet's
    keeps it, as quark0's DataLoader does) needs a second graph for it. The graphs share the parameters
    (nnabla's registry, by name) and a DropPath. The graph of batch_size is built at once, so that the
    parameters are created where they were before.
    """

    def __init__(self, build, batch_size):
        self._build = build
        self._graphs = {batch_size: build(batch_size)}

    def __call__(self, batch_size):
        if batch_size not in self._graphs:
            self._graphs[batch_size] = self._build(batch_size)
        return self._graphs[batch_size]


def train_epoch(graphs, loader, optimizer, drop_path, seed, epoch, desc, clock, progress_every=50, run="training",
                resumable=True, rank=0):
    """One epoch (0-based `epoch` of a run timed by `clock`, a RunClock) of SGD steps on graphs(batch size)
    (GraphsBySize); returns the training loss and error, means over the epoch's images.

    A loss that is not finite raises ops.divergence.DivergedError naming the `run` and the step (the
    loss is read back every step for the mean anyway), and so does a parameter that is not finite at the
    end (nnabla's registry: the network's); `resumable`: whether the run keeps checkpoints. rank: a data-parallel
    rank's drop-path noise is its own stream (rank 0's is that of a run on one device)."""
    rank_key = [rank] if rank else []
    loss, error = RunningMean(), RunningMean()
    bar = Progress(loader.steps_per_epoch, desc, progress_every, clock, epoch)
    for step in bar:
        batch = loader.next()
        size = len(batch[1])
        graph = graphs(size)
        feed(graph, batch)
        if drop_path is not None:
            drop_path.resample(np.random.default_rng([seed, DROP_PATH_STREAM, epoch, step] + rank_key), size)
        optimizer.zero_grad()
        forward_backward(graph, optimizer.grad_scale)
        optimizer.step()
        value = float(graph.loss.d)
        check_finite(value, run, epoch, step, optimizer.lr, resumable=resumable)
        loss.add(value, size)
        error.add(classification_error(graph.logits.d, batch[1]), size)
        bar.set_postfix(loss=f"{loss.mean:.3f}", acc=f"{1 - error.mean:.3f}")
    check_parameters(nn.get_parameters(grad_only=False), run, epoch, loader.steps_per_epoch - 1, optimizer.lr,
                     resumable=resumable)
    return loss.mean, error.mean


def brief_training(arch, train_set, held_out_set, settings, desc):
    """Trains `arch` from scratch on train_set and returns its evaluation.Scores on held_out_set.

    Each set is (images_u8, labels, mean, std). settings: num_classes, channels, num_cells, epochs, batch_size, lr,
    lr_min, momentum, weight_decay, grad_clip, cutout_length, hflip, seed, type_config, cpu_kernels. The network has neither
    auxiliary head nor drop path: a short run only has to rank cells. Uses nnabla's global parameter
    registry, which it clears first.
    """
    s = settings
    images, labels, mean, std = train_set
    nn.clear_parameters()
    nn.random.seed(s["seed"])
    num_classes = s["num_classes"]
    shape = (s["batch_size"],) + images.shape[1:]
    graphs = GraphsBySize(lambda size: build_train_graph(arch, (size,) + images.shape[1:], num_classes, s["channels"],
                                                         s["num_cells"], auxiliary=False, aux_weight=0.0,
                                                         cpu_kernels=s["cpu_kernels"]), s["batch_size"])
    test_graph = build_test_graph(arch, shape, num_classes, s["channels"], s["num_cells"], cpu_kernels=s["cpu_kernels"])
    optimizer = SGD(nn.get_parameters(grad_only=True), s["lr"], s["momentum"], s["weight_decay"], s["grad_clip"],
                    loss_scale=loss_scale_for(s["type_config"]), cpu_kernels=s["cpu_kernels"])
    loader = BatchLoader(images, labels, s["batch_size"], mean, std, augment="darts", hflip=s["hflip"],
                         cutout_length=s["cutout_length"], seed=s["seed"])
    try:
        clock = RunClock(s["epochs"])
        for epoch in range(s["epochs"]):
            optimizer.set_learning_rate(cosine_lr(epoch, s["epochs"], s["lr"], s["lr_min"]))
            train_epoch(graphs, loader, optimizer, None, s["seed"], epoch, f"{desc} epoch {epoch + 1}/{s['epochs']}",
                        clock, run=f"brief training ({desc})", resumable=False)
    finally:
        loader.close()
    held_out_images, held_out_labels, held_out_mean, held_out_std = held_out_set
    return image_set_scores(test_graph, held_out_images, held_out_labels, s["batch_size"], held_out_mean, held_out_std)

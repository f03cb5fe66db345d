"""The step of a recurrent cell search (quark0's rnn/train_search.py and rnn/architect.py).

Each step first moves alpha on a validation window, then the weights on a training window, each with
its own hidden state carried from the previous step. Alpha follows the negative log-likelihood only;
the weights follow it plus TAR. Masks are drawn once per batch, so every pass over the same batch in
a second-order step sees the same network.

original_unrolled_step: the seed's second-order step as it runs, for reproducing its numbers. Its
virtual step leaves the tied embedding/decoder matrix where it is (architect.py's load_state_dict writes
the moved matrix as encoder.weight and then the unmoved one back as decoder.weight, the same tensor);
every forward pass draws new dropout masks, so the three passes on the training batch and the weight
step each see a network of their own (the Hessian term is then mostly mask noise); and the implicit
term is scaled by the uncapped clipping factor (its bug Q1, see ClippedUnrolledStep).
"""
import numpy as np

from models.recurrent import SEARCH_EMBEDDING
from utils.recurrent.language_model import (PASS_MASKS, TRAIN_MASKS, VALID_MASKS, draw_masks, feed, forward_backward,
                                            mask_rng)
from utils.search.bilevel import ClippedUnrolledStep, UnrolledPasses


class RecurrentSearchStep:
    """graphs: a GraphCache of training-mode search graphs at the search batch size, shared by the
    training and validation windows; weights {name: Variable} (the SGD's), network_state the weights
    plus batch-norm statistics, alphas {name: Variable}; weight_optimizer an optim.SGD without
    momentum, alpha_optimizer an optim.Adam."""

    def __init__(self, graphs, weights, network_state, alphas, weight_optimizer, alpha_optimizer, dropouts,
                 second_order, original_unrolled_step=False):
        self.graphs = graphs
        self.weights = weights
        self.network_state = network_state
        self.alphas = alphas
        self.weight_optimizer = weight_optimizer
        self.alpha_optimizer = alpha_optimizer
        self.dropouts = dropouts
        self.second_order = second_order
        self.original_unrolled_step = original_unrolled_step
        self.train_hidden = self.val_hidden = None
        self._unrolled = None

    def unrolled(self):
        """Built on first use, after a resume has written the checkpoint into the arrays it reads."""
        if self._unrolled is None:
            original = self.original_unrolled_step
            self._unrolled = ClippedUnrolledStep(self.weights, self.network_state, self.weight_optimizer,
                                                 unmoved=(SEARCH_EMBEDDING,) if original else (),
                                                 uncapped_implicit=original)
        return self._unrolled

    def reset_hidden(self, batch_size, nhid):
        """Zero states, as at the start of every epoch of the seed."""
        self.train_hidden = np.zeros((batch_size, nhid), dtype=np.float32)
        self.val_hidden = np.zeros((batch_size, nhid), dtype=np.float32)

    def step(self, train_batch, val_batch, lr, seed, epoch):
        """One search step at weight learning rate lr (already scaled by the sequence length).

        train_batch and val_batch are utils.data.text.Batch. Returns (training nll, validation nll)
        of the passes that moved the weights and alpha.
        """
        train_graph, val_graph = self.graphs[len(train_batch.data)], self.graphs[len(val_batch.data)]
        train_masks = draw_masks(train_graph, mask_rng(seed, epoch, train_batch.step, TRAIN_MASKS), self.dropouts)
        val_masks = draw_masks(val_graph, mask_rng(seed, epoch, train_batch.step, VALID_MASKS), self.dropouts)
        pass_masks = mask_rng(seed, epoch, train_batch.step, PASS_MASKS) if self.original_unrolled_step else None
        self.weight_optimizer.set_learning_rate(lr)

        val_nll, self.val_hidden = self.alpha_gradient(train_batch, val_batch, train_masks, val_masks, pass_masks)
        self.alpha_optimizer.step()

        self.weight_optimizer.zero_grad()
        feed(train_graph, train_batch.data, train_batch.target, self.train_hidden, train_masks)
        forward_backward(train_graph.loss)
        self.weight_optimizer.step()
        self.train_hidden = train_graph.last_hidden.d.copy()
        return float(train_graph.nll.d), val_nll

    def alpha_gradient(self, train_batch, val_batch, train_masks, val_masks, pass_masks=None):
        """Leaves the alpha gradient of this step in the alphas' grads (first order: of the validation nll;
        second order: the unrolled one, with xi the weight optimiser's current learning rate).
        pass_masks: None, or a numpy Generator from which each pass on the training batch draws masks of
        its own instead of using train_masks (the seed's step). Returns the validation nll and the hidden
        state after the validation window."""
        train_graph, val_graph = self.graphs[len(train_batch.data)], self.graphs[len(val_batch.data)]
        result = {}

        def train_pass():
            masks = train_masks if pass_masks is None else draw_masks(train_graph, pass_masks, self.dropouts)
            feed(train_graph, train_batch.data, train_batch.target, self.train_hidden, masks)
            forward_backward(train_graph.nll)

        def val_pass():
            feed(val_graph, val_batch.data, val_batch.target, self.val_hidden, val_masks)
            forward_backward(val_graph.nll)
            result["val"] = (float(val_graph.nll.d), val_graph.last_hidden.d.copy())

        self.alpha_optimizer.zero_grad()
        if self.second_order:
            self.unrolled().alpha_gradient(UnrolledPasses(train_pass, val_pass, train_pass), self.alphas,
                                           self.alpha_optimizer, self.weight_optimizer.lr)
        else:
            self.weight_optimizer.zero_grad()
            val_pass()
        return result["val"]

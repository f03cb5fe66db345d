"""Non-monotonically triggered averaged SGD (Merity et al.; quark0's rnn/train.py).

Training runs plain SGD until the validation loss stops improving: once more than `nonmono` epochs
have been validated and the loss is worse than the best of all but the last `nonmono` of them, it
switches for good to ASGD. torch's ASGD with t0 = 0 and lambd = 0 is SGD plus the running mean of
the iterates since the switch, which is validated and saved in place of the weights; that is
PolyakAverage here (nnabla has no ASGD solver).
"""
import contextlib

import numpy as np


def should_switch_to_asgd(val_loss, earlier_val_losses, nonmono):
    """The seed's trigger: earlier_val_losses are those of the SGD epochs before this one."""
    return len(earlier_val_losses) > nonmono and val_loss > min(earlier_val_losses[:-nonmono])


class PolyakAverage:
    """ax <- ax + (p - ax) / step over the parameters {name: Variable}, step counted from 1 at the switch."""

    def __init__(self, params):
        self.params = params
        self.steps = 0
        self.average = {name: np.array(p.d, dtype=np.float64) for name, p in params.items()}

    def update(self):
        self.steps += 1
        for name, p in self.params.items():
            ax = self.average[name]
            ax += (p.d - ax) / self.steps

    @contextlib.contextmanager
    def swapped_in(self):
        """The averaged values in the parameters for the duration (validation, saving), then the iterate again."""
        current = {name: p.d.copy() for name, p in self.params.items()}
        for name, p in self.params.items():
            p.d = self.average[name]
        try:
            yield
        finally:
            for name, p in self.params.items():
                p.d = current[name]

    def state(self):
        """(steps, {name: array}) for a checkpoint."""
        return self.steps, {name: a.copy() for name, a in self.average.items()}

    def load_state(self, steps, average):
        self.steps = int(steps)
        for name in self.average:
            self.average[name] = np.array(average[name], dtype=np.float64)

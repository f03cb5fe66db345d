"""Dynamic loss scaling for --type-config half: fp16 passes, float master weights.

Under a half context nnabla runs the forward and backward passes in fp16, whose smallest normal
number is 6e-5 (subnormals end at 6e-8): most of a network's weight gradients would round to zero.
The loss is therefore backpropagated times a scale S, and the optimiser divides the gradients by S
in float before it steps. A step whose scaled gradients overflowed (inf or NaN) is skipped and
halves S, and every `growth_interval` clean steps in a row double it (the recipe of nnabla's
DynamicLossScalingUpdater and of torch.cuda.amp.GradScaler). S starts at 2**15, not GradScaler's
2**16: here the loss's own gradient, S itself, is an fp16 number, and 2**16 is past fp16's largest (65504).

The weights stay float because the optimisers' solvers and graphs run in a float context
(array_graphs.float_context): they read the fp16 gradients as float and write float weights, which
the passes then read as fp16 copies.
"""
import math


def loss_scale_for(type_config):
    """The loss scaling a run at `type_config` needs: None in float."""
    return DynamicLossScale() if type_config == "half" else None


def describe_loss_scale(loss_scale, label="loss scale"):
    """For the end-of-epoch log line."""
    return f"  {label} {loss_scale.scale:g} ({loss_scale.skipped_steps} steps skipped)"


class DynamicLossScale:
    def __init__(self, scale=2.0 ** 15, growth_interval=2000, factor=2.0):
        self.scale = scale
        self.growth_interval = growth_interval
        self.factor = factor
        self.clean_steps = 0
        self.skipped_steps = 0

    def unscale(self, solver, scaled_norm):
        """Divides the solver's gradients by the scale, given their global norm as backpropagated.

        Returns the norm of the true gradients, or None when they overflowed: the caller then skips
        its step, and the scale is lowered for the next one.
        """
        if not math.isfinite(scaled_norm):
            self.scale /= self.factor
            self.clean_steps = 0
            self.skipped_steps += 1
            return None
        solver.scale_grad(1.0 / self.scale)
        norm = scaled_norm / self.scale
        self.clean_steps += 1
        if self.clean_steps == self.growth_interval:
            self.scale *= self.factor
            self.clean_steps = 0
        return norm

    def state(self):
        return {"scale": self.scale, "clean_steps": self.clean_steps, "skipped_steps": self.skipped_steps}

    def load_state(self, state):
        self.scale = float(state["scale"])
        self.clean_steps = int(state["clean_steps"])
        self.skipped_steps = int(state["skipped_steps"])

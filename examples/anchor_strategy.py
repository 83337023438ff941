"""A strategy in a file of its own: ``neurosculpt run --plugin examples/anchor_strategy.py
-s anchor``. Walked through in docs/strategies.md."""

import torch

from neurosculpt.strategies import Strategy, register


@register
class Anchor(Strategy):
    """Pull every parameter towards its value at the end of the previous task (an L2 anchor:
    EWC with uniform importance, the baseline of Kirkpatrick et al. 2017).

    Args:
        lam: strength of the pull, ``lam / 2 * sum (theta - theta_prev)^2``.
    """

    name = "anchor"

    def __init__(self, lam: float = 1.0) -> None:
        super().__init__()
        self.lam = lam
        self.hparams = {"lam": lam}  # how a resumed run rebuilds this strategy
        self.tasks_done = 0  # plain Python state: saved by get_extra_state below

    def after_task(self, ctx) -> None:
        for name, p in ctx.model.named_parameters():  # buffers go into every checkpoint
            self.set_buffer("anchor__" + name.replace(".", "__"), p.detach().clone())
        self.tasks_done += 1
        ctx.record["anchor"] = {"tasks_done": self.tasks_done}  # into results.json

    def loss(self, ctx, loss: torch.Tensor) -> torch.Tensor:
        for name, p in ctx.model.named_parameters():
            anchor = self._buffers.get("anchor__" + name.replace(".", "__"))
            if anchor is not None and anchor.shape == p.shape:  # grown tensors start free
                loss = loss + self.lam / 2 * ((p - anchor) ** 2).sum()
        return loss

    def get_extra_state(self) -> dict:
        return {"tasks_done": self.tasks_done}

    def set_extra_state(self, state: dict) -> None:
        self.tasks_done = state["tasks_done"]

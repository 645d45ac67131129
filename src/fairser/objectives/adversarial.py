"""Adversarial removal of the sensitive attribute (gender by default): a classifier of its values on the shared
embedding behind a gradient-reversal layer."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from fairser.objectives._common import check_choice, check_range, require_field
from fairser.objectives.base import GroupBatch, Objective, ObjectiveOutput, register

__all__ = [
    "GradientReversal",
    "SensitiveAdversary",
    "grad_reverse",
    "reversed_sensitive_loss",
    "sensitive_classifier",
]


class GradientReversal(torch.autograd.Function):
    """Gradient-reversal layer (Ganin & Lempitsky 2015, "Unsupervised Domain Adaptation by
    Backpropagation"): the identity forward, the gradient multiplied by ``-coeff`` backward."""

    @staticmethod
    def forward(ctx, x: Tensor, coeff: float) -> Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.coeff * grad, None


def grad_reverse(x: Tensor, *, coeff: float = 1.0) -> Tensor:
    """Apply :class:`GradientReversal` to ``x``."""
    return GradientReversal.apply(x, coeff)


def sensitive_classifier(*, name: str, embed_dim: int, hidden: int, n_values: int) -> nn.Sequential:
    """A two-layer classifier of the sensitive attribute (``n_values`` logits; gender: male, female) on an
    ``embed_dim``-wide embedding."""
    if int(embed_dim) < 1 or int(hidden) < 1 or int(n_values) < 1:
        raise ValueError(
            f"{name}: embed_dim={embed_dim}, hidden={hidden} and n_values={n_values} must be >= 1"
        )
    return nn.Sequential(
        nn.Linear(int(embed_dim), int(hidden)), nn.ReLU(), nn.Linear(int(hidden), int(n_values))
    )


def reversed_sensitive_loss(
    classifier: nn.Module, batch: GroupBatch, *, name: str, embed_dim: int
) -> tuple[Tensor, dict[str, float]]:
    """Cross-entropy of ``classifier`` (its logits: one per sensitive value) against ``batch.sensitive`` on
    the gradient-reversed embedding, over the samples whose value is known.

    Returns the loss (0 when no value is known) and ``{"sensitive_acc": ...}`` (empty when no value is known).
    """
    embedding = require_field(batch, "embedding", name)
    if embedding.dim() != 2 or embedding.shape[1] != embed_dim:
        raise ValueError(
            f"{name}: GroupBatch.embedding has shape {tuple(embedding.shape)}; expected (N, {embed_dim}) (embed_dim)"
        )
    known = (batch.sensitive >= 0).to(batch.losses.dtype)
    n_known = known.sum()
    logits = classifier(grad_reverse(embedding))
    if batch.sensitive.numel() and int(batch.sensitive.max()) >= logits.shape[1]:
        raise ValueError(
            f"{name}: sensitive value {int(batch.sensitive.max())} but the classifier has {logits.shape[1]} "
            "outputs (n_values)"
        )
    ce = F.cross_entropy(logits, batch.sensitive.clamp_min(0), reduction="none")
    loss = (ce * known).sum() / n_known.clamp_min(1.0)
    logs: dict[str, float] = {}
    if n_known > 0:
        with torch.no_grad():
            correct = ((logits.argmax(dim=1) == batch.sensitive).to(known.dtype) * known).sum()
        logs["sensitive_acc"] = float(correct / n_known)
    return loss, logs


@register
class SensitiveAdversary(Objective):
    """Adversarial removal of the sensitive attribute (Ganin & Lempitsky 2015): ``L = L_CE + alpha_t * L_s``.

    ``L_s`` is the cross-entropy of a ``k``-way classifier of the sensitive attribute's values (gender: male /
    female; an MLP owned by this objective, optimised by the trainer with the model) on ``batch.embedding``
    seen through a gradient-reversal layer, averaged over the samples whose value is known (0 when there are
    none). The adversary descends ``alpha_t * L_s`` while the encoder producing the embedding ascends it,
    which removes the attribute's information from the embedding; this
    is Ganin & Lempitsky's update rule, eqs. (13)-(15), where the domain classifier's step is scaled by the
    same ``lambda``. ``alpha_t`` warms up from 0 to ``alpha`` over ``warmup_steps`` training steps, by
    their schedule ``2 / (1 + exp(-10 p)) - 1`` (``schedule="dann"``, default) or linearly, with
    ``p = min(1, step / warmup_steps)``.

    Parameters
    ----------
    n_domains, n_classes : int
        Number of domains and emotion classes.
    n_values : int
        Number of values of the sensitive attribute, the adversary's outputs (default 2, gender).
    embed_dim : int
        Dimension of ``batch.embedding``.
    hidden : int
        Width of the adversary's hidden layer.
    alpha : float
        Final weight of the adversary's loss (>= 0).
    warmup_steps : int
        Steps to reach ``alpha`` (0: ``alpha`` from the start).
    schedule : {"dann", "linear"}
        Warm-up shape.
    """

    name = "adversarial"
    compares_values = True
    requires = ("embed_dim",)

    def __init__(
        self,
        *,
        n_domains: int,
        n_classes: int,
        n_values: int = 2,
        embed_dim: int,
        hidden: int = 64,
        alpha: float = 1.0,
        warmup_steps: int = 1000,
        schedule: str = "dann",
    ) -> None:
        super().__init__(n_domains=n_domains, n_classes=n_classes, n_values=n_values)
        self.adversary = sensitive_classifier(
            name=self.name, embed_dim=embed_dim, hidden=hidden, n_values=self.n_values
        )
        self.embed_dim = int(embed_dim)
        self.alpha = check_range(self.name, "alpha", alpha, low=0.0)
        self.warmup_steps = int(check_range(self.name, "warmup_steps", warmup_steps, low=0))
        self.schedule = check_choice(self.name, "schedule", schedule, ("dann", "linear"))
        self.step: Tensor
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def current_alpha(self) -> float:
        """``alpha_t`` at the current training step."""
        if self.warmup_steps == 0:
            return self.alpha
        p = min(1.0, int(self.step) / self.warmup_steps)
        ramp = 2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0 if self.schedule == "dann" else p
        return self.alpha * ramp

    def forward(self, batch: GroupBatch) -> ObjectiveOutput:
        erm = batch.losses.mean()
        sensitive_loss, sensitive_logs = reversed_sensitive_loss(
            self.adversary, batch, name=self.name, embed_dim=self.embed_dim
        )
        alpha = self.current_alpha()
        loss = erm + alpha * sensitive_loss
        if self.training:
            self.step += 1
        logs = {
            "erm": float(erm.detach()),
            "sensitive_loss": float(sensitive_loss.detach()),
            "alpha": alpha,
            **sensitive_logs,
        }
        return ObjectiveOutput(loss=loss, logs=logs)

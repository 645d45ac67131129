"""CVaR-DRO: the mean of the worst alpha-fraction of per-sample losses (needs no demographic labels)."""

from __future__ import annotations

import math

import torch

from fairser.objectives._common import check_range
from fairser.objectives.base import GroupBatch, Objective, ObjectiveOutput, register

__all__ = ["CVaR"]


@register
class CVaR(Objective):
    """CVaR-DRO: ``L = CVaR_alpha(l)``, the mean of the worst ``alpha``-fraction of the batch's losses.

    The conditional value at risk (Rockafellar & Uryasev 2000) as a DRO objective over all reweightings of
    the samples by at most ``1 / alpha`` (Levy, Carmon, Duchi, Sidford 2020, "Large-Scale Methods for
    Distributionally Robust Optimization"). With ``k = alpha * N`` not an integer, the ``ceil(k)``-th largest
    loss enters with weight ``k - floor(k)``: ``L = (sum_{i < floor(k)} l_(i) + (k - floor(k)) l_(floor(k)))
    / k`` over the losses sorted in decreasing order, the exact discrete CVaR. ``alpha = 1`` is ERM.

    Parameters
    ----------
    n_domains, n_classes, n_values : int
        Unused (the objective needs no groups); kept for the common signature.
    alpha : float
        Fraction of worst samples in ``(0, 1]`` (default 0.2, our choice).
    """

    name = "cvar"

    def __init__(self, *, n_domains: int, n_classes: int, n_values: int = 2, alpha: float = 0.2) -> None:
        super().__init__(n_domains=n_domains, n_classes=n_classes, n_values=n_values)
        self.alpha = check_range(self.name, "alpha", alpha, low=0.0, high=1.0, low_open=True)

    def forward(self, batch: GroupBatch) -> ObjectiveOutput:
        losses = batch.losses
        n = losses.shape[0]
        if n == 0:
            raise ValueError("cvar: the batch is empty")
        k = self.alpha * n
        top, _ = torch.topk(losses, math.ceil(k - 1e-9))
        weights = (k - torch.arange(top.shape[0], device=top.device, dtype=top.dtype)).clamp(0.0, 1.0)
        loss = (weights * top).sum() / k
        return ObjectiveOutput(
            loss=loss, logs={"erm": float(losses.detach().mean()), "cvar": float(loss.detach())}
        )

"""Empirical risk minimisation: the mean per-sample loss (the baseline of every comparison)."""

from __future__ import annotations

from fairser.objectives.base import GroupBatch, Objective, ObjectiveOutput, register

__all__ = ["ERM"]


@register
class ERM(Objective):
    """ERM: ``L = mean_i l_i`` (Vapnik 1992); the baseline of the ERM-MinMaxGAP paper (Pang et al. 2026)."""

    name = "erm"

    def forward(self, batch: GroupBatch) -> ObjectiveOutput:
        loss = batch.losses.mean()
        return ObjectiveOutput(loss=loss, logs={"erm": float(loss.detach())})

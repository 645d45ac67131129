"""Soft parity penalties: differentiable ΔSP and ΔEO on predicted probabilities, within each domain."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor
from torch.nn import functional as F

from fairser.objectives._common import check_choice, check_range, require_field
from fairser.objectives.base import GroupBatch, Objective, ObjectiveOutput, register

__all__ = ["SoftDEO", "SoftDSP", "cell_means"]


def cell_means(values: Tensor, cell: Tensor, n_cells: int) -> tuple[Tensor, Tensor]:
    """Mean of ``values`` (N,) or (N, C) over the samples of each cell, and the cell sizes (vectorised).

    Samples with ``cell < 0`` are ignored; an empty cell has mean 0 and count 0 (no NaN, no NaN gradient).
    """
    dump = torch.full_like(cell, n_cells)
    idx = torch.where(cell >= 0, cell, dump)
    sums = values.new_zeros((n_cells + 1, *values.shape[1:])).index_add(0, idx, values)
    counts = torch.bincount(idx, minlength=n_cells + 1)[:n_cells].to(values.dtype)
    shape = (n_cells,) + (1,) * (values.dim() - 1)
    return sums[:n_cells] / counts.clamp_min(1.0).view(shape), counts


class _SoftParity(Objective):
    """``L = L_ERM + beta * penalty``; the penalty is the gap of a per-class rate between the values of the
    sensitive attribute, within each domain, reduced over classes (``mean`` or ``max``) and averaged over the
    domains where it is defined.

    The gap of class ``c`` in domain ``d`` is ``max_v rate(d, v, c) - min_v rate(d, v, c)`` over the values
    ``v`` whose rate is defined there, and is defined when at least two values' rates are (with gender:
    ``|rate(d, male, c) - rate(d, female, c)|``, defined where both are). Samples with an unknown value take
    part in no rate.
    """

    needs_y: ClassVar[bool] = False
    compares_values = True

    def __init__(
        self, *, n_domains: int, n_classes: int, n_values: int = 2, beta: float = 1.0, reduce: str = "mean"
    ) -> None:
        super().__init__(n_domains=n_domains, n_classes=n_classes, n_values=n_values)
        self.beta = check_range(self.name, "beta", beta, low=0.0)
        self.reduce = check_choice(self.name, "reduce", reduce, ("mean", "max"))

    def rates(self, batch: GroupBatch, probs: Tensor) -> tuple[Tensor, Tensor]:
        """Per (domain, value, class) rates ``(D, k, C)`` and where each rate is defined ``(D, k, C)``."""
        raise NotImplementedError  # pragma: no cover - interface

    def penalty(self, batch: GroupBatch) -> Tensor:
        logits = require_field(batch, "logits", self.name)
        if logits.dim() != 2 or logits.shape[1] != self.n_classes:
            raise ValueError(
                f"{self.name}: GroupBatch.logits has shape {tuple(logits.shape)}; expected (N, {self.n_classes})"
            )
        rate, has_rate = self.rates(batch, F.softmax(logits, dim=1))
        defined = has_rate.sum(dim=1) >= 2  # (D, C): at least two values have the rate
        mask = defined.to(rate.dtype)
        high = torch.where(has_rate, rate, -torch.inf).amax(dim=1)
        low = torch.where(has_rate, rate, torch.inf).amin(dim=1)
        gap = torch.where(defined, high - low, 0.0) * mask  # (D, C), 0 (and no gradient) where undefined
        if self.reduce == "mean":
            per_domain = gap.sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
        else:
            per_domain = gap.amax(dim=1)
        domain_ok = defined.any(dim=1).to(rate.dtype)
        return (per_domain * domain_ok).sum() / domain_ok.sum().clamp_min(1.0)

    def forward(self, batch: GroupBatch) -> ObjectiveOutput:
        erm = batch.losses.mean()
        penalty = self.penalty(batch)
        loss = erm + self.beta * penalty
        return ObjectiveOutput(
            loss=loss, logs={"erm": float(erm.detach()), "penalty": float(penalty.detach())}
        )


@register
class SoftDSP(_SoftParity):
    """Soft statistical-parity penalty: per class ``c`` and domain ``d``, ``max_v - min_v`` over the values
    ``v`` present in ``d`` of the soft selection rate ``mean_{i in (d, v)} p_ic`` (for gender
    ``|mean_{i in (d, male)} p_ic - mean_{i in (d, female)} p_ic|``; METHODS.md §3, "Soft parity penalty"),
    on softmax probabilities of ``batch.logits``; the differentiable relaxation of ΔSP (replacing the hard
    prediction by its probability, the relaxation used e.g. by FNNC, Padala & Gujar, IJCAI 2020).

    Parameters
    ----------
    beta : float
        Penalty weight (>= 0, default 1.0).
    reduce : {"mean", "max"}
        Reduction over classes (the mean and the max ΔSP of METHODS.md §2).
    """

    name = "soft_dsp"

    def rates(self, batch: GroupBatch, probs: Tensor) -> tuple[Tensor, Tensor]:
        means, counts = cell_means(probs, self.batch_groups(batch), self.n_groups)
        present = counts.view(self.n_domains, self.n_values) > 0
        shape = (self.n_domains, self.n_values, self.n_classes)
        return means.view(shape), present[:, :, None].expand(shape)


@register
class SoftDEO(_SoftParity):
    """Soft equal-opportunity penalty: per class ``c`` and domain ``d``, the gap (``max_v - min_v``; for
    gender the male-female gap) of the soft true-positive rate ``mean_{i in (d, v), y_i = c} p_ic`` (ΔEO of
    METHODS.md §2 with the hard prediction replaced by its probability) over the values with samples of
    class ``c`` in ``d``; defined where at least two values have such samples. Needs ``y``.

    Parameters
    ----------
    beta : float
        Penalty weight (>= 0, default 1.0).
    reduce : {"mean", "max"}
        Reduction over the classes where the gap is defined.
    """

    name = "soft_deo"
    needs_y = True

    def rates(self, batch: GroupBatch, probs: Tensor) -> tuple[Tensor, Tensor]:
        y = require_field(batch, "y", self.name)
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.n_classes):
            raise ValueError(f"{self.name}: labels y must lie in [0, {self.n_classes}); got {y.tolist()}")
        group = self.batch_groups(batch)
        cell = torch.where(group >= 0, group * self.n_classes + y, group)
        true_prob = probs.gather(1, y.view(-1, 1)).squeeze(1)
        means, counts = cell_means(true_prob, cell, self.n_groups * self.n_classes)
        shape = (self.n_domains, self.n_values, self.n_classes)
        return means.view(shape), counts.view(shape) > 0

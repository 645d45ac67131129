"""Group DRO: minimise the loss of the worst group by online exponentiated-gradient group weights."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from fairser.objectives._common import check_choice, check_range, require_field
from fairser.objectives.base import GroupBatch, Objective, ObjectiveOutput, group_mean_losses, register

__all__ = ["GroupDRO"]


@register
class GroupDRO(Objective):
    """Group DRO (Sagawa, Koh, Hashimoto, Liang 2020, "Distributionally Robust Neural Networks", Algorithm 1).

    Each step, for the groups present in the batch, ``q_g <- q_g * exp(eta * (Lbar_g + C / sqrt(n_g)))``,
    then ``q`` is renormalised (absent groups keep their weight before renormalisation), and
    ``L = sum_g q_g * (Lbar_g + C / sqrt(n_g))`` over the present groups (as in the authors' code, the
    weights are updated before the loss is formed and are not renormalised over the present groups).
    Samples with an unknown sensitive value belong to no group and do not enter the loss; a batch with no
    group gives ``L = 0`` (zero gradient).

    Parameters
    ----------
    n_domains, n_classes : int
        Number of domains and emotion classes.
    n_values : int
        Number of values ``k`` of the sensitive attribute (default 2, gender).
    groups : {"domain_gender", "domain_gender_label"}
        Groups ``(d, s)`` (default) or ``(d, s, y)`` (then the batch must carry ``y``), ``s`` the value of
        the sensitive attribute (gender by default; the option names keep their first spelling); group id
        ``k * d + s``, resp. ``(k * d + s) * n_classes + y``.
    eta : float
        Step size of the group-weight update (Sagawa et al.'s ``eta_q``, default 0.01 as in their code).
    adjustment : float
        ``C`` of the generalisation adjustment ``C / sqrt(n_g)`` (0 = none).
    group_counts : array of shape (n_groups,), optional
        Training-set size ``n_g`` of each group, in group-id order; by default counted in :meth:`setup`
        (the trainer calls it with the training set's metadata).

    Notes
    -----
    ``q`` is a buffer (saved in ``state_dict``) and is updated only in training mode.
    """

    name = "groupdro"
    compares_values = True

    def __init__(
        self,
        *,
        n_domains: int,
        n_classes: int,
        n_values: int = 2,
        groups: str = "domain_gender",
        eta: float = 0.01,
        adjustment: float = 0.0,
        group_counts: np.ndarray | Tensor | None = None,
    ) -> None:
        super().__init__(n_domains=n_domains, n_classes=n_classes, n_values=n_values)
        self.groups = check_choice(self.name, "groups", groups, ("domain_gender", "domain_gender_label"))
        self.eta = check_range(self.name, "eta", eta, low=0.0)
        self.adjustment = check_range(self.name, "adjustment", adjustment, low=0.0)
        n_dro = self.n_groups * (self.n_classes if self.groups == "domain_gender_label" else 1)
        self.n_dro_groups = n_dro
        self.q: Tensor
        self.adj: Tensor
        self.register_buffer("q", torch.full((n_dro,), 1.0 / n_dro))
        self.register_buffer("adj", torch.zeros(n_dro), persistent=False)
        self._counts_given = self._has_counts = group_counts is not None
        if group_counts is not None:
            self._set_counts(torch.as_tensor(np.asarray(group_counts), dtype=torch.float32))

    def _set_counts(self, counts: Tensor) -> None:
        if counts.shape != (self.n_dro_groups,):
            raise ValueError(
                f"{self.name}: group_counts has shape {tuple(counts.shape)}; expected ({self.n_dro_groups},) "
                f"for groups={self.groups!r} with {self.n_domains} domains"
            )
        if (counts < 0).any():
            raise ValueError(f"{self.name}: group_counts must be >= 0; got {counts.tolist()}")
        self.adj = (self.adjustment / counts.clamp_min(1.0).sqrt()).to(self.adj.device)

    def setup(self, *, domain: Tensor, sensitive: Tensor, y: Tensor) -> None:
        """Count the training samples of each group for the size adjustment (unless ``group_counts`` given)."""
        if self._counts_given:
            return
        domain, sensitive, y = (torch.as_tensor(v, dtype=torch.long) for v in (domain, sensitive, y))
        batch = GroupBatch(
            losses=torch.zeros(len(domain)), domain=domain, sensitive=sensitive, y=y, n_values=self.n_values
        )
        group = self.group_ids(batch)
        self._set_counts(torch.bincount(group[group >= 0], minlength=self.n_dro_groups).float())
        self._has_counts = True

    def group_ids(self, batch: GroupBatch) -> Tensor:
        """DRO group id of each sample (-1 for an unknown sensitive value)."""
        group = self.batch_groups(batch)
        if self.groups == "domain_gender":
            return group
        y = require_field(batch, "y", self.name)
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.n_classes):
            raise ValueError(f"{self.name}: labels y must lie in [0, {self.n_classes}); got {y.tolist()}")
        return torch.where(group >= 0, group * self.n_classes + y, group)

    def forward(self, batch: GroupBatch) -> ObjectiveOutput:
        if self.adjustment > 0 and not self._has_counts:
            raise ValueError(
                f"{self.name}: adjustment={self.adjustment} needs the training group sizes: pass group_counts=... "
                "or call setup() with the training set"
            )
        means, counts = group_mean_losses(batch.losses, self.group_ids(batch), self.n_dro_groups)
        present = counts > 0
        adjusted = means + self.adj.to(means.dtype)
        q = self.q
        if self.training:
            with torch.no_grad():
                step = torch.where(present, self.eta * adjusted.detach(), torch.zeros_like(adjusted))
                q = q * torch.exp(step.to(q.dtype))
                q = q / q.sum()
                self.q.copy_(q)
        loss = (q.to(adjusted.dtype) * torch.where(present, adjusted, torch.zeros_like(adjusted))).sum()
        worst = int(q.argmax())
        logs = {
            "erm": float(batch.losses.detach().mean()),
            "robust_loss": float(loss.detach()),
            "worst_group": float(worst),
            "q_max": float(q[worst]),
        }
        return ObjectiveOutput(loss=loss, logs=logs)

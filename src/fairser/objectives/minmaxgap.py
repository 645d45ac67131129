"""ERM-MinMaxGAP: ERM plus an adaptively weighted penalty on the largest male-female loss gap over domains.

Pang, Gao, Kawahara, Chen (2026), the seed paper of fairser. The paper's exact rule for the adaptive weight
is not public; the options below are the ones documented in METHODS.md §3 **(our choice)**.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from fairser.objectives._common import check_choice, check_range
from fairser.objectives.base import GroupBatch, Objective, ObjectiveOutput, register

__all__ = ["GapPenalty", "GroupStats", "MinMaxGap"]

_RATIO_EPS = 1e-8


class GroupStats(NamedTuple):
    """One batch's group statistics (NumPy, float64), from :meth:`MinMaxGap.group_statistics`."""

    means: np.ndarray  # (n_domains, 2) mean loss of (domain, male) and (domain, female); 0 if absent
    counts: np.ndarray  # (n_domains, 2) sample counts
    erm: float  # mean loss over the whole batch (unknown gender included)
    slot: Tensor  # (N,) slot 3 * domain + gender + 1 of each sample (slot 0 of a domain: unknown gender)
    slot_sums: np.ndarray  # (n_domains, 3) loss sums per slot


class GapPenalty(NamedTuple):
    """One step's penalty ``R_t`` and what its gradient and state updates need (NumPy, no autograd)."""

    r: float
    worst: int  # arg-max domain, -1 when no domain has both genders
    n_valid: int  # domains where both genders have a loss estimate
    d_r_d_mean: np.ndarray  # (n_domains, 2) dR/d(batch mean loss of group (d, gender))
    estimates: np.ndarray  # (n_domains, 2) group loss estimates (the EMA after this step)
    present: np.ndarray  # (n_domains, 2) bool, group present in the batch


@register
class MinMaxGap(Objective):
    r"""ERM-MinMaxGAP (Pang, Gao, Kawahara, Chen 2026): ``L = L_ERM + lambda_t * R_t``.

    ``R_t = max_d gap(Lbar(d, male), Lbar(d, female))`` over the domains ``d`` where *both* genders have a
    loss estimate; a domain with a missing gender contributes nothing, and with no such domain ``R_t = 0``
    (finite value, finite gradient). Unknown-gender samples count in ``L_ERM`` only.

    Parameters
    ----------
    n_domains, n_classes : int
        Number of domains and emotion classes.
    gap : {"abs", "squared"}
        ``|Lbar_m - Lbar_f|`` (default) or ``(Lbar_m - Lbar_f)**2``.
    max : {"hard", "smooth"}
        ``hard`` (default): the exact maximum; its gradient flows only into the worst domain's samples.
        ``smooth``: ``tau * logsumexp(gap_d / tau)`` over the valid domains, an upper bound on the maximum
        (by at most ``tau * log(n_valid)``) that spreads the gradient over domains by softmax weights.
    tau : float
        Temperature of the smooth maximum (> 0).
    estimate : {"batch", "ema"}
        ``batch`` (default): group losses are means over the batch. ``ema``: each group's loss estimate is
        ``beta * ema_g.detach() + (1 - beta) * Lbar_g(batch)`` when the group is in the batch (only the
        current batch's term carries gradient, scaled by ``1 - beta``), the stored ``ema_g`` (no gradient) when
        it is not, and ``Lbar_g(batch)`` the first time it is seen. After the step the stored EMA becomes the
        detached estimate, i.e. ``ema_g <- beta * ema_g + (1 - beta) * Lbar_g``. A domain counts as valid once
        both its genders have been seen, so small batches that rarely hold both genders of a domain still
        see a penalty (for small batches; METHODS.md §3).
    beta : float
        EMA momentum in ``[0, 1)``.
    weight : {"fixed", "dual", "ratio"}
        How ``lambda_t`` adapts. ``fixed``: ``lambda_t = lam``. ``dual`` (default): projected dual ascent
        on a gap budget, ``lambda_{t+1} = max(0, lambda_t + eta * (R_t - budget))`` starting at ``lam``;
        the weight rises while the gap exceeds the budget and decays (to 0 at most) once it is met;
        ``lambda_t`` is a buffer saved in ``state_dict``. ``ratio``: ``lambda_t = lam *
        stopgrad(L_ERM / (R_t + 1e-8))``, which keeps both terms on one scale (no gradient through the ratio).
    lam : float
        ``lambda_0`` (>= 0): the constant weight (``fixed``), the start of the dual variable (``dual``), or
        the scale of the ratio (``ratio``).
    eta : float
        Dual step size (>= 0).
    budget : float
        Gap budget ``epsilon`` (>= 0) of the dual ascent.

    Notes
    -----
    State (the dual variable and the EMA) is updated only in training mode (``objective.train()``), so
    evaluating the objective on a validation batch under ``objective.eval()`` changes nothing.
    ``logs`` holds ``lambda`` (the weight used in this step), ``R``, ``erm``, ``worst_domain`` (the arg-max
    domain, -1 when no domain is valid) and ``n_valid_domains`` every step (with ``ratio`` and ``R_t = 0``
    the logged weight is ``lam * L_ERM / 1e-8``, harmless as it multiplies 0).

    Implementation: ``R_t`` depends on the losses only through a few group means, so its value and its exact
    gradient w.r.t. each per-sample loss are computed in closed form on ``(domain, gender)`` tables (group
    statistics by ``torch.bincount``, table arithmetic in NumPy, no Python loop over groups or domains) and
    attached to ``batch.losses`` by a single dot product. The loss value and first-order gradient equal
    plain autograd's (``tests/test_minmaxgap.py`` checks every option against it); second-order gradients
    (``create_graph=True``) are not supported. This keeps a step within a few percent of ERM's cost, where
    a dozen autograd nodes on tiny tensors would cost more than a small head's whole step.
    """

    name = "minmaxgap"

    def __init__(
        self,
        *,
        n_domains: int,
        n_classes: int,
        gap: str = "abs",
        max: str = "hard",  # the option's name in METHODS.md §3
        tau: float = 0.1,
        estimate: str = "batch",
        beta: float = 0.9,
        weight: str = "dual",
        lam: float = 1.0,
        eta: float = 0.01,
        budget: float = 0.05,
    ) -> None:
        super().__init__(n_domains=n_domains, n_classes=n_classes)
        owner = self.name
        self.gap = check_choice(owner, "gap", gap, ("abs", "squared"))
        self.max = check_choice(owner, "max", max, ("hard", "smooth"))
        self.tau = check_range(owner, "tau", tau, low=0.0, low_open=True)
        self.estimate = check_choice(owner, "estimate", estimate, ("batch", "ema"))
        self.beta = check_range(owner, "beta", beta, low=0.0, high=1.0, high_open=True)
        self.weight = check_choice(owner, "weight", weight, ("fixed", "dual", "ratio"))
        self.lam = check_range(owner, "lam", lam, low=0.0)
        self.eta = check_range(owner, "eta", eta, low=0.0)
        self.budget = check_range(owner, "budget", budget, low=0.0)
        if self.n_domains < 1:
            raise ValueError(f"{owner}: n_domains={n_domains} must be >= 1")
        self.lam_t: Tensor
        self.ema: Tensor
        self.ema_seen: Tensor
        self.register_buffer("lam_t", torch.tensor(self.lam))
        self.register_buffer("ema", torch.zeros(self.n_groups))
        self.register_buffer("ema_seen", torch.zeros(self.n_groups, dtype=torch.bool))

    def group_statistics(self, batch: GroupBatch) -> GroupStats:
        """Batch mean loss of each (domain, gender) group, its count, the mean loss, and each sample's slot.

        Means and counts are ``(n_domains, 2)`` arrays (column 0 male, 1 female) holding the same values as
        ``group_mean_losses(losses, batch.group, ...)`` (0 for an absent group), from one ``torch.bincount``
        per statistic over the slot ``3 * domain + gender + 1`` (slot 0 of a domain holds its unknown-gender
        samples): a fraction of the cost of a dozen tiny ops, which matters next to a small head's step.
        """
        n_slots = 3 * self.n_domains
        slot = batch.gender + 1
        try:
            gender_ok = torch.bincount(slot).shape[0] <= 3  # a shape check: no sync
        except RuntimeError:  # a negative value
            gender_ok = False
        if not gender_ok:
            raise ValueError(
                f"minmaxgap: gender must be 0 (male), 1 (female) or -1 (unknown); got {batch.gender}"
            )
        slot.add_(batch.domain, alpha=3)
        losses = batch.losses.detach()
        if losses.element_size() < 4:  # half precision: sum in float32 (and keep counts exact)
            losses = losses.float()
        try:
            sums = torch.bincount(slot, weights=losses, minlength=n_slots)
            counts = torch.bincount(slot, minlength=n_slots)
        except RuntimeError as err:  # a negative slot
            raise ValueError(f"minmaxgap: domain ids must be >= 0; got {batch.domain}") from err
        if sums.shape[0] != n_slots:
            raise ValueError(
                f"minmaxgap: domain ids must be < n_domains={self.n_domains}; got {batch.domain}"
            )
        stats = torch.cat([sums, counts]).cpu().numpy().astype(np.float64).reshape(2, self.n_domains, 3)
        erm = float(stats[0].sum()) / slot.shape[0]
        counts_mf = stats[1, :, 1:]
        return GroupStats(stats[0, :, 1:] / np.maximum(counts_mf, 1.0), counts_mf, erm, slot, stats[0])

    def gap_penalty(self, *, means: np.ndarray, counts: np.ndarray) -> GapPenalty:
        """``R_t`` and ``dR_t / d mean_g`` from one batch's ``(n_domains, 2)`` group means and counts.

        Values only, no autograd. With the EMA estimate, ``est_g = a_g + b_g * mean_g`` where ``b_g`` is 1
        (first sight of ``g``), ``1 - beta`` (``g`` present and seen before) or 0 (``g`` absent: the stored
        EMA alone), and ``dR/d mean_g = b_g * dR/d est_g``.
        """
        present = counts > 0
        if self.estimate == "batch":
            est, slope, available = means, present, present
        else:
            # buffers are indexed by group id 2 * domain + gender: a (D, 2) view is (male, female) per domain
            ema = self.ema.view(self.n_domains, 2).cpu().numpy().astype(np.float64)
            seen = self.ema_seen.view(self.n_domains, 2).cpu().numpy()
            est = np.where(present, np.where(seen, self.beta * ema + (1.0 - self.beta) * means, means), ema)
            slope = np.where(present, np.where(seen, 1.0 - self.beta, 1.0), 0.0)
            available = present | seen
        diff = est[:, 0] - est[:, 1]
        valid = available.all(axis=1)
        gaps = np.abs(diff) if self.gap == "abs" else np.square(diff)
        z = np.where(valid, gaps, -np.inf)
        worst = int(z.argmax())
        d_r_d_mean = np.zeros_like(means)
        if z[worst] == -np.inf:  # no domain has both genders: R = 0
            return GapPenalty(0.0, -1, 0, d_r_d_mean, est, present)
        if self.max == "hard":  # only the arg-max domain gets gradient
            r = float(gaps[worst])
            d_gap = float(np.sign(diff[worst]) if self.gap == "abs" else 2.0 * diff[worst])  # sign(0) = 0
            d_r_d_mean[worst] = (d_gap, -d_gap)
        else:
            z = z / self.tau
            e = np.exp(z - z[worst])  # exp(-inf) = 0 for the invalid domains
            r = float(self.tau * (z[worst] + np.log(e.sum())))
            d_gap = np.sign(diff) if self.gap == "abs" else 2.0 * diff
            d_r_d_mean = np.outer(e / e.sum() * d_gap, (1.0, -1.0))  # softmax share of each domain
        return GapPenalty(r, worst, int(np.count_nonzero(valid)), d_r_d_mean * slope, est, present)

    def forward(self, batch: GroupBatch) -> ObjectiveOutput:
        losses = batch.losses
        if losses.shape[0] == 0:
            raise ValueError("minmaxgap: the batch is empty")
        stats = self.group_statistics(batch)
        erm, counts = stats.erm, stats.counts
        pen = self.gap_penalty(means=stats.means, counts=counts)
        if self.weight == "fixed":
            lam = self.lam
        elif self.weight == "dual":
            lam = float(self.lam_t)
        else:
            lam = self.lam * erm / (pen.r + _RATIO_EPS)  # a Python float: no gradient through the ratio

        # dL/dl_i = 1/N + lam * dR/d mean_g / n_g for sample i in group g (unknown gender: 1/N); the dot
        # product carries this exact gradient, and a constant shifts its value to the exact L
        table = np.full((self.n_domains, 3), 1.0 / losses.shape[0])
        table[:, 1:] += lam * pen.d_r_d_mean / np.maximum(counts, 1.0)
        weights = torch.from_numpy(table.reshape(-1)).to(losses).index_select(0, stats.slot)
        dot_value = float(np.dot(table.reshape(-1), stats.slot_sums.reshape(-1)))  # = sum_i w_i l_i
        loss = torch.dot(losses, weights) + (erm + lam * pen.r - dot_value)

        if self.training:
            with torch.no_grad():
                if self.weight == "dual":
                    self.lam_t.fill_(max(0.0, lam + self.eta * (pen.r - self.budget)))
                if self.estimate == "ema":
                    self.ema.copy_(torch.from_numpy(pen.estimates.reshape(-1)))
                    self.ema_seen.copy_(torch.from_numpy(pen.present.reshape(-1)) | self.ema_seen.cpu())

        logs = {
            "lambda": lam,
            "R": pen.r,
            "erm": erm,
            "worst_domain": float(pen.worst),
            "n_valid_domains": float(pen.n_valid),
        }
        return ObjectiveOutput(loss=loss, logs=logs)

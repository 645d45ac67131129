"""ERM-MinMaxGAP: ERM plus an adaptively weighted penalty on the largest male-female loss gap over domains.

Pang, Gao, Kawahara, Chen (2026), the seed paper of fairser. The paper's exact rule for the adaptive weight
is not public; the options below are the ones documented in METHODS.md §3 **(our choice)**.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from fairser.objectives._common import check_choice, check_range
from fairser.objectives.base import GroupBatch, Objective, ObjectiveOutput, register

__all__ = ["GapPenalty", "GroupStats", "MinMaxGap"]

_RATIO_EPS = 1e-8
_STATE_KEYS = ("lam_t", "ema", "ema_seen")


class GroupStats(NamedTuple):
    """One batch's group statistics, from :meth:`MinMaxGap.group_statistics` (Python floats).

    Groups are indexed by group id ``2 * domain + gender`` (as :func:`group_mean_losses`); slots by
    ``3 * domain + gender + 1`` (slot ``3 * domain`` holds the domain's unknown-gender samples).
    """

    means: list[float]  # (2 * n_domains,) mean loss of each group; 0.0 if absent
    counts: list[int]  # (2 * n_domains,) sample count of each group
    erm: float  # mean loss over the whole batch (unknown gender included)
    slot: np.ndarray  # (N,) each sample's slot
    slot_sums: list[float]  # (3 * n_domains,) loss sum per slot


class GapPenalty(NamedTuple):
    """One step's penalty ``R_t`` and what its gradient and state updates need (Python floats, no autograd).

    Lists are indexed by group id ``2 * domain + gender``.
    """

    r: float
    worst: int  # arg-max domain, -1 when no domain has both genders
    n_valid: int  # domains where both genders have a loss estimate
    d_r_d_mean: list[float]  # dR/d(batch mean loss of each group)
    estimates: list[float]  # group loss estimates (the EMA after this step)
    seen: list[bool]  # group has a loss estimate: present in the batch, or (EMA) seen in an earlier one


@dataclass
class _State:
    """The dual variable and the EMA as plain Python values: read and written every step without a tensor op
    (or ``nn.Module.__setattr__``). ``state_dict()`` holds them as the tensors ``lam_t``, ``ema`` (float64, so
    a resumed run continues bit for bit) and ``ema_seen``."""

    lam_t: float
    ema: list[float]
    ema_seen: list[bool]


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
        ``lambda_t`` is saved in ``state_dict`` (key ``lam_t``). ``ratio``: ``lambda_t = lam *
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
    gradient w.r.t. each per-sample loss are computed in closed form and attached to ``batch.losses`` by a
    single dot product with per-sample weights. All per-sample work is vectorised: group sums and counts by
    one ``np.bincount`` each over the batch's slots, the weights by one NumPy index of a per-slot table. The
    table itself (``3 * n_domains`` numbers: the penalty, its arg-max and the weight of each slot) is
    arithmetic on Python floats, because a NumPy or torch call on a 6-element array costs more than the
    arithmetic and a step of a small head has room for only a few dozen calls (``benchmarks/
    bench_objectives.py``). The loss value and first-order gradient equal plain autograd's
    (``tests/test_minmaxgap.py`` checks every option against it); second-order gradients
    (``create_graph=True``) are not supported.
    """

    name = "minmaxgap"

    def __init__(
        self,
        *,
        n_domains: int,
        n_classes: int,
        n_values: int = 2,
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
        super().__init__(n_domains=n_domains, n_classes=n_classes, n_values=n_values)
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
        # R_t = sum_g dR/d mean_g * mean_g exactly, so L is a fixed linear combination of the losses
        self.linear = self.gap == "abs" and self.max == "hard" and self.estimate == "batch"
        if self.n_domains < 1:
            raise ValueError(f"{owner}: n_domains={n_domains} must be >= 1")
        self._state = _State(self.lam, [0.0] * self.n_groups, [False] * self.n_groups)

    @property
    def lam_t(self) -> Tensor:
        """The dual variable ``lambda_t`` (a 0-d float64 tensor; a copy, set it with ``load_state_dict``)."""
        return torch.tensor(self._state.lam_t, dtype=torch.float64)

    @property
    def ema(self) -> Tensor:
        """EMA loss estimate of each group (by group id ``2 * domain + gender``; float64, a copy)."""
        return torch.tensor(self._state.ema, dtype=torch.float64)

    @property
    def ema_seen(self) -> Tensor:
        """Whether each group has been seen by the EMA (bool, a copy)."""
        return torch.tensor(self._state.ema_seen, dtype=torch.bool)

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        for key in _STATE_KEYS:
            destination[prefix + key] = getattr(self, key)

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        own = {prefix + key: key for key in _STATE_KEYS}
        for full, key in own.items():
            if full not in state_dict:
                missing_keys.append(full)
                continue
            value = state_dict[full].detach().cpu()
            expected = () if key == "lam_t" else (self.n_groups,)
            if tuple(value.shape) != expected:
                error_msgs.append(
                    f"size mismatch for {full}: copying a param with shape {tuple(value.shape)}, the shape in "
                    f"current model is {expected}"
                )
                continue
            if key == "lam_t":
                self._state.lam_t = float(value)
            elif key == "ema":
                self._state.ema = [float(v) for v in value.tolist()]
            else:
                self._state.ema_seen = [bool(v) for v in value.tolist()]
        rest = {k: v for k, v in state_dict.items() if k not in own}
        super()._load_from_state_dict(
            rest, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def group_statistics(self, batch: GroupBatch) -> GroupStats:
        """Batch mean loss and count of each (domain, gender) group, the mean loss, and each sample's slot.

        ``means`` and ``counts`` hold the same values as ``group_mean_losses(losses, batch.group, ...)``. They
        come from one ``np.bincount`` per statistic over the slots, on host copies of the batch's metadata
        and detached losses (zero-copy views for CPU tensors; sums in float64).
        """
        n_slots = 3 * self.n_domains
        losses = batch.losses
        if losses.dim() != 1 or batch.sensitive.shape != losses.shape or batch.domain.shape != losses.shape:
            raise ValueError(
                "minmaxgap: losses, domain and gender must be 1-D of one length; got shapes "
                f"{tuple(losses.shape)}, {tuple(batch.domain.shape)}, {tuple(batch.sensitive.shape)}"
            )
        if losses.dtype not in (torch.float32, torch.float64):  # half precision: NumPy has no bfloat16
            losses = losses.detach().float()
        try:  # host copies (views on CPU) as int64: no wrap-around of small integer dtypes
            gender_slot = np.add(batch.sensitive.numpy(force=True), 1, dtype=np.int64)
            gender_ok = np.bincount(gender_slot).shape[0] <= 3
        except (TypeError, ValueError):  # not integers, or a value below -1
            gender_ok = False
        if not gender_ok:
            raise ValueError(
                f"minmaxgap: gender must be integers 0 (male), 1 (female) or -1 (unknown); got {batch.sensitive}"
            )
        try:
            slot = np.multiply(batch.domain.numpy(force=True), 3, dtype=np.int64) + gender_slot
        except TypeError as err:
            raise ValueError(f"minmaxgap: domain ids must be integers; got {batch.domain}") from err
        try:
            sums = np.bincount(slot, weights=losses.numpy(force=True), minlength=n_slots).tolist()
            slot_counts = np.bincount(slot, minlength=n_slots).tolist()
        except ValueError as err:  # a negative slot
            raise ValueError(f"minmaxgap: domain ids must be >= 0; got {batch.domain}") from err
        if len(sums) != n_slots:
            raise ValueError(
                f"minmaxgap: domain ids must be < n_domains={self.n_domains}; got {batch.domain}"
            )
        group_sums, counts = sums[:], slot_counts
        del group_sums[::3], counts[::3]  # drop the unknown-gender slots: group id order remains
        means = [total / count if count else 0.0 for total, count in zip(group_sums, counts, strict=True)]
        return GroupStats(means, counts, sum(sums) / slot.shape[0], slot, sums)

    def gap_penalty(self, *, means: list[float], counts: list[int]) -> GapPenalty:
        """``R_t`` and ``dR_t / d mean_g`` from one batch's group means and counts (by group id).

        Values only, no autograd. With the EMA estimate, ``est_g = a_g + b_g * mean_g`` where ``b_g`` is 1
        (first sight of ``g``), ``1 - beta`` (``g`` present and seen before) or 0 (``g`` absent: the stored
        EMA alone), and ``dR/d mean_g = b_g * dR/d est_g``.
        """
        present = [count > 0 for count in counts]
        if self.estimate == "batch":  # a valid domain has both groups present: every slope is 1
            est, available, slope = means, present, None
        else:
            beta = self.beta
            ema, seen = self._state.ema, self._state.ema_seen
            est = [
                (beta * e + (1.0 - beta) * m if s else m) if p else e
                for m, p, e, s in zip(means, present, ema, seen, strict=True)
            ]
            slope = [((1.0 - beta) if s else 1.0) if p else 0.0 for p, s in zip(present, seen, strict=True)]
            available = [p or s for p, s in zip(present, seen, strict=True)]
        gaps = {}  # the gap of each valid domain (a pass over the table's domains, not over samples)
        squared = self.gap == "squared"
        for d in range(self.n_domains):
            if available[2 * d] and available[2 * d + 1]:
                x = est[2 * d] - est[2 * d + 1]  # male - female
                gaps[d] = x * x if squared else abs(x)
        d_r_d_mean = [0.0] * len(est)
        if not gaps:  # no domain has both genders: R = 0
            return GapPenalty(0.0, -1, 0, d_r_d_mean, est, available)
        worst = max(gaps, key=gaps.__getitem__)  # the first of tied maxima (domain order), as argmax
        if self.max == "hard":  # only the arg-max domain gets gradient
            r = gaps[worst]
            shares = [(worst, 1.0)]
        else:
            top = gaps[worst] / self.tau
            e = [(d, math.exp(gap / self.tau - top)) for d, gap in gaps.items()]
            total = sum(v for _, v in e)
            r = self.tau * (top + math.log(total))
            shares = [(d, v / total) for d, v in e]  # softmax share of each valid domain
        for d, share in shares:
            x = est[2 * d] - est[2 * d + 1]
            d_gap = share * (2.0 * x if squared else (x > 0) - (x < 0))  # sign(0) = 0
            d_r_d_mean[2 * d] = d_gap if slope is None else d_gap * slope[2 * d]
            d_r_d_mean[2 * d + 1] = -d_gap if slope is None else -d_gap * slope[2 * d + 1]
        return GapPenalty(r, worst, len(gaps), d_r_d_mean, est, available)

    def forward(self, batch: GroupBatch) -> ObjectiveOutput:
        losses = batch.losses
        if losses.shape[0] == 0:
            raise ValueError("minmaxgap: the batch is empty")
        stats = self.group_statistics(batch)
        erm = stats.erm
        pen = self.gap_penalty(means=stats.means, counts=stats.counts)
        if self.weight == "fixed":
            lam = self.lam
        elif self.weight == "dual":
            lam = self._state.lam_t
        else:
            lam = self.lam * erm / (pen.r + _RATIO_EPS)  # a Python float: no gradient through the ratio

        # dL/dl_i = 1/N + lam * dR/d mean_g / n_g for sample i in group g (unknown gender: 1/N); the dot
        # product carries this exact gradient, and a constant shifts its value to the exact L (none is
        # needed when L is linear in the batch's losses: |gap|, hard max, batch estimate)
        base = 1.0 / losses.shape[0]
        group_weight = [
            base + lam * g / n if n else base for g, n in zip(pen.d_r_d_mean, stats.counts, strict=True)
        ]
        table = [base] * (3 * self.n_domains)
        table[1::3], table[2::3] = group_weight[0::2], group_weight[1::2]
        dtype = np.float64 if losses.dtype == torch.float64 else np.float32
        weights = torch.from_numpy(np.array(table, dtype=dtype)[stats.slot]).to(losses)
        loss = torch.dot(losses, weights)
        if not self.linear:
            dot_value = sum(map(operator.mul, table, stats.slot_sums))  # = sum_i w_i l_i
            loss = loss + (erm + lam * pen.r - dot_value)

        if self.training:
            if self.weight == "dual":
                self._state.lam_t = max(0.0, lam + self.eta * (pen.r - self.budget))
            if self.estimate == "ema":
                self._state.ema, self._state.ema_seen = pen.estimates, pen.seen

        logs = {
            "lambda": lam,
            "R": pen.r,
            "erm": erm,
            "worst_domain": float(pen.worst),
            "n_valid_domains": float(pen.n_valid),
        }
        return ObjectiveOutput(loss=loss, logs=logs)

"""ERM-MinMaxGAP: ERM plus an adaptively weighted penalty on the largest loss gap between the values of the
sensitive attribute (male and female for gender) over domains.

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

from fairser.objectives._common import check_choice, check_range, require_field
from fairser.objectives.base import GroupBatch, Objective, ObjectiveOutput, register

__all__ = ["GapPenalty", "GroupStats", "MinMaxGap"]

_RATIO_EPS = 1e-8
_STATE_KEYS = ("lam_t", "ema", "ema_seen")


class GroupStats(NamedTuple):
    """One batch's group statistics, from :meth:`MinMaxGap.group_statistics` (Python floats).

    With ``k = n_values``, groups are indexed by group id ``k * domain + value`` (as
    :func:`group_mean_losses`); slots by ``(k + 1) * domain + value + 1`` (slot ``(k + 1) * domain`` holds
    the domain's unknown-valued samples).
    """

    means: list[float]  # (k * n_domains,) mean loss of each group; 0.0 if absent
    counts: list[int]  # (k * n_domains,) sample count of each group
    erm: float  # mean loss over the whole batch (unknown values included)
    slot: np.ndarray  # (N,) each sample's slot
    slot_sums: list[float]  # ((k + 1) * n_domains,) loss sum per slot


class GapPenalty(NamedTuple):
    """One step's penalty ``R_t`` and what its gradient and state updates need (Python floats, no autograd).

    Lists are indexed by group id ``k * domain + value``.
    """

    r: float
    worst: int  # arg-max domain, -1 when no domain has two values with a loss estimate
    n_valid: int  # domains where at least two values have a loss estimate
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


@dataclass
class _Extended:
    """State of the issue-13 options (plain Python values): the step counter of the permutation null, the
    epoch counter (the held-out fold rotates with it), the current epoch's ``R_t - R_null_t`` (the noise-aware
    dual update is made once per epoch), and the held-out rows' loss sums per cell, this epoch's and the last
    complete epoch's (with the permutation null's beside them)."""

    step: int
    epoch: int
    excess: list[float]
    heldout: dict[str, np.ndarray | None]

    @classmethod
    def start(cls, n_groups: int) -> _Extended:
        del n_groups
        return cls(
            0, 0, [], {"sums": None, "counts": None, "null_sums": None, "null_counts": None, "last": None}
        )


@register
class MinMaxGap(Objective):
    r"""ERM-MinMaxGAP (Pang, Gao, Kawahara, Chen 2026): ``L = L_ERM + lambda_t * R_t``.

    For a sensitive attribute with values ``v = 0 .. k-1`` (gender: male, female), the gap of domain ``d`` is
    ``gap_d = max_v Lbar(d, v) - min_v Lbar(d, v)`` over the values of ``d`` that have a loss estimate, and
    ``R_t = max_d gap_d`` over the domains where *at least two* values have one; a domain with fewer
    contributes nothing, and with no such domain ``R_t = 0`` (finite value, finite gradient). Unknown-valued
    samples count in ``L_ERM`` only. With two values ``gap_d = |Lbar(d, male) - Lbar(d, female)|``, the
    paper's binary gap.

    Gradient (a subgradient at ties): ``gap_d`` moves with its max-loss value ``hi_d`` (``+1``) and its
    min-loss value ``lo_d`` (``-1``), the first value in value order among tied maxima resp. minima; when all
    of a domain's estimated values tie (``gap_d = 0``) it moves with none. So each step up-weights the samples
    of the max-loss value of the arg-max domain (hard max; the smooth max does so in every valid domain by
    its softmax share) and down-weights those of its min-loss value; the other values' samples keep the
    ERM weight ``1/N``.

    Parameters
    ----------
    n_domains, n_classes : int
        Number of domains and emotion classes.
    n_values : int
        Number of values of the sensitive attribute (default 2, gender).
    gap : {"abs", "squared"}
        ``max_v Lbar - min_v Lbar`` (default; ``|Lbar_m - Lbar_f|`` for gender) or its square.
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
        two of its values have been seen, so small batches that rarely hold two values of a domain still
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
    domain, -1 when no domain is valid) and ``n_valid_domains`` every step; :meth:`run_summary` gives a run's
    final ``lambda`` and mean ``R`` over its last epoch (with ``ratio`` and ``R_t = 0``
    the logged weight is ``lam * L_ERM / 1e-8``, harmless as it multiplies 0).

    Implementation: ``R_t`` depends on the losses only through a few group means, so its value and its exact
    gradient w.r.t. each per-sample loss are computed in closed form and attached to ``batch.losses`` by a
    single dot product with per-sample weights. All per-sample work is vectorised: group sums and counts by
    one ``np.bincount`` each over the batch's slots, the weights by one NumPy index of a per-slot table. The
    table itself (``(k + 1) * n_domains`` numbers: the penalty, its arg-max and the weight of each slot) is
    arithmetic on Python floats, because a NumPy or torch call on a 6-element array costs more than the
    arithmetic and a step of a small head has room for only a few dozen calls (``benchmarks/
    bench_objectives.py``). The loss value and first-order gradient equal plain autograd's
    (``tests/test_minmaxgap.py`` checks every option against it); second-order gradients
    (``create_graph=True``) are not supported.
    """

    name = "minmaxgap"
    compares_values = True

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
        noise: str = "none",
        group_loss: str = "natural",
        side: str = "both",
        heldout_folds: int = 0,
        seed: int = 0,
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
        # the options of issue 13 (METHODS.md §3, "Seeing the gap"); the defaults are the paper form
        self.noise = check_choice(owner, "noise", noise, ("none", "permutation"))
        self.group_loss = check_choice(owner, "group_loss", group_loss, ("natural", "class_balanced"))
        self.side = check_choice(owner, "side", side, ("both", "worse_only"))
        if int(heldout_folds) != heldout_folds or heldout_folds == 1 or heldout_folds < 0:
            raise ValueError(f"{owner}: heldout_folds={heldout_folds!r} must be 0 (off) or an integer >= 2")
        self.heldout_folds = int(heldout_folds)
        if int(seed) != seed:
            raise ValueError(f"{owner}: seed={seed!r} must be an integer")
        self.seed = int(seed)
        if self.noise != "none" and self.estimate == "ema":
            raise ValueError(
                f"{owner}: noise={self.noise!r} compares the batch gap with its permutation null; it cannot be "
                "combined with estimate='ema' (set estimate: batch)"
            )
        if self.heldout_folds and self.estimate == "ema":
            raise ValueError(
                f"{owner}: heldout_folds={self.heldout_folds} estimates the gap on held-out rows; it cannot be "
                "combined with estimate='ema' (set estimate: batch)"
            )
        self.extended = (
            self.noise != "none"
            or self.group_loss != "natural"
            or self.side != "both"
            or self.heldout_folds > 0
        )
        # R_t = sum_g dR/d mean_g * mean_g exactly, so L is a fixed linear combination of the losses
        self.linear = self.gap == "abs" and self.max == "hard" and self.estimate == "batch"
        if self.n_domains < 1:
            raise ValueError(f"{owner}: n_domains={n_domains} must be >= 1")
        self._state = _State(self.lam, [0.0] * self.n_groups, [False] * self.n_groups)
        self._ext = _Extended.start(self.n_groups)
        self._row_fold: np.ndarray | None = None  # held-out fold of each training row (heldout_folds)

    @property
    def lam_t(self) -> Tensor:
        """The dual variable ``lambda_t`` (a 0-d float64 tensor; a copy, set it with ``load_state_dict``)."""
        return torch.tensor(self._state.lam_t, dtype=torch.float64)

    @property
    def ema(self) -> Tensor:
        """EMA loss estimate of each group (by group id ``n_values * domain + value``; float64, a copy)."""
        return torch.tensor(self._state.ema, dtype=torch.float64)

    @property
    def ema_seen(self) -> Tensor:
        """Whether each group has been seen by the EMA (bool, a copy)."""
        return torch.tensor(self._state.ema_seen, dtype=torch.bool)

    def _state_keys(self) -> tuple[str, ...]:
        # the issue-13 options add their counters (the paper form's state_dict is unchanged)
        return _STATE_KEYS + (("null_step", "epoch") if self.extended else ())

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        for key in _STATE_KEYS:
            destination[prefix + key] = getattr(self, key)
        if self.extended:
            destination[prefix + "null_step"] = torch.tensor(self._ext.step, dtype=torch.int64)
            destination[prefix + "epoch"] = torch.tensor(self._ext.epoch, dtype=torch.int64)

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        own = {prefix + key: key for key in self._state_keys()}
        for full, key in own.items():
            if full not in state_dict:
                missing_keys.append(full)
                continue
            value = state_dict[full].detach().cpu()
            expected = () if key in ("lam_t", "null_step", "epoch") else (self.n_groups,)
            if tuple(value.shape) != expected:
                error_msgs.append(
                    f"size mismatch for {full}: copying a param with shape {tuple(value.shape)}, the shape in "
                    f"current model is {expected}"
                )
                continue
            if key == "lam_t":
                self._state.lam_t = float(value)
            elif key == "null_step":
                self._ext.step = int(value)
            elif key == "epoch":
                self._ext.epoch = int(value)
            elif key == "ema":
                self._state.ema = [float(v) for v in value.tolist()]
            else:
                self._state.ema_seen = [bool(v) for v in value.tolist()]
        rest = {k: v for k, v in state_dict.items() if k not in own}
        super()._load_from_state_dict(
            rest, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def group_statistics(self, batch: GroupBatch) -> GroupStats:
        """Batch mean loss and count of each (domain, value) group, the mean loss, and each sample's slot.

        ``means`` and ``counts`` hold the same values as ``group_mean_losses(losses, batch.group, ...)``. They
        come from one ``np.bincount`` per statistic over the slots, on host copies of the batch's metadata
        and detached losses (zero-copy views for CPU tensors; sums in float64).
        """
        k = self.n_values
        n_slots = (k + 1) * self.n_domains
        losses = batch.losses
        if losses.dim() != 1 or batch.sensitive.shape != losses.shape or batch.domain.shape != losses.shape:
            raise ValueError(
                "minmaxgap: losses, domain and sensitive must be 1-D of one length; got shapes "
                f"{tuple(losses.shape)}, {tuple(batch.domain.shape)}, {tuple(batch.sensitive.shape)}"
            )
        if batch.n_values != k:
            raise ValueError(
                f"minmaxgap: built for n_values={k} sensitive values but the batch has n_values={batch.n_values}"
            )
        if losses.dtype not in (torch.float32, torch.float64):  # half precision: NumPy has no bfloat16
            losses = losses.detach().float()
        try:  # host copies (views on CPU) as int64: no wrap-around of small integer dtypes
            value_slot = np.add(batch.sensitive.numpy(force=True), 1, dtype=np.int64)
            values_ok = np.bincount(value_slot).shape[0] <= k + 1
        except (TypeError, ValueError):  # not integers, or a value below -1
            values_ok = False
        if not values_ok:
            raise ValueError(
                f"minmaxgap: sensitive values must be integers in [0, {k}) or -1 (unknown); got {batch.sensitive}"
            )
        try:
            slot = np.multiply(batch.domain.numpy(force=True), k + 1, dtype=np.int64) + value_slot
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
        del group_sums[:: k + 1], counts[:: k + 1]  # drop the unknown-value slots: group id order remains
        means = [total / count if count else 0.0 for total, count in zip(group_sums, counts, strict=True)]
        return GroupStats(means, counts, sum(sums) / slot.shape[0], slot, sums)

    def gap_penalty(
        self, *, means: list[float], counts: list[int], estimate: str | None = None
    ) -> GapPenalty:
        """``R_t`` and ``dR_t / d mean_g`` from one batch's group means and counts (by group id).

        Values only, no autograd. With the EMA estimate, ``est_g = a_g + b_g * mean_g`` where ``b_g`` is 1
        (first sight of ``g``), ``1 - beta`` (``g`` present and seen before) or 0 (``g`` absent: the stored
        EMA alone), and ``dR/d mean_g = b_g * dR/d est_g``.
        """
        present = [count > 0 for count in counts]
        if (estimate or self.estimate) == "batch":  # a valid domain has two values present: every slope is 1
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
        k = self.n_values
        gaps = {}  # the gap of each valid domain (a pass over the table's domains, not over samples)
        extremes = {}  # (max-loss group, min-loss group) of each valid domain; the first of ties
        squared = self.gap == "squared"
        for d in range(self.n_domains):
            hi = lo = -1
            n_estimated = 0
            for g in range(k * d, k * d + k):
                if available[g]:
                    n_estimated += 1
                    if hi < 0:
                        hi = lo = g
                    elif est[g] > est[hi]:  # strict: the first of tied maxima stays
                        hi = g
                    elif est[g] < est[lo]:  # strict: the first of tied minima stays
                        lo = g
            if n_estimated >= 2:
                x = est[hi] - est[lo]  # max - min >= 0 (gender: |male - female|, exactly)
                gaps[d] = x * x if squared else x
                extremes[d] = (hi, lo)
        d_r_d_mean = [0.0] * len(est)
        if not gaps:  # no domain has two values: R = 0
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
            hi, lo = extremes[d]
            if hi == lo:  # every estimated value of d ties: gap 0 moves with none of them
                continue
            d_gap = share * (2.0 * (est[hi] - est[lo]) if squared else 1.0)
            d_r_d_mean[hi] = d_gap if slope is None else d_gap * slope[hi]
            d_r_d_mean[lo] = -d_gap if slope is None else -d_gap * slope[lo]
        return GapPenalty(r, worst, len(gaps), d_r_d_mean, est, available)

    # -- the issue-13 options (noise, group_loss, side, heldout_folds) ------------------------------------------
    def set_train_speakers(self, *, speakers: np.ndarray) -> None:
        """Speaker id of each training row (row order of the training set); ``heldout_folds`` deals the
        speakers into folds from these at :meth:`setup`."""
        self._speakers = np.asarray(speakers)

    def setup(self, *, domain: Tensor, sensitive: Tensor, y: Tensor) -> None:
        """With ``heldout_folds = K``: deal the training speakers into ``K`` folds, stratified by each
        speaker's (domain, value) cell (its most frequent one) and seeded by ``seed``; the fold of every row
        is kept for :meth:`forward` (``batch.index`` rows). Without it: nothing."""
        if not self.heldout_folds:
            return
        speakers = getattr(self, "_speakers", None)
        if speakers is None or len(speakers) != len(domain):
            raise ValueError(
                f"minmaxgap: heldout_folds={self.heldout_folds} needs the speaker of each of the {len(domain)} "
                "training rows (set_train_speakers, which the run pipeline calls); "
                + ("none were given" if speakers is None else f"got {len(speakers)}")
            )
        import pandas as pd

        group = np.asarray(domain) * (self.n_values + 1) + np.asarray(sensitive) + 1
        table = pd.DataFrame({"speaker": speakers, "cell": group})
        cell = table.groupby("speaker", sort=True)["cell"].agg(lambda c: c.value_counts().index[0])
        rng = np.random.default_rng([self.seed, 13])
        fold_of = {}
        for _, members in cell.groupby(cell, sort=True):
            names = members.index.to_numpy()[rng.permutation(len(members))]
            offset = int(rng.integers(self.heldout_folds))  # small cells do not all land in fold 0
            for i, name in enumerate(names):
                fold_of[name] = (i + offset) % self.heldout_folds
        self._row_fold = table["speaker"].map(fold_of).to_numpy(dtype=np.int64)
        self._ext = _Extended.start(self.n_groups)

    def on_epoch_end(self, epoch: int) -> None:
        """Noise-aware dual update (``noise: permutation``, ``weight: dual``): ``lambda <- max(0, lambda +
        eta * T * (mean_t (R_t - R_null_t) - budget))`` over the epoch's ``T`` training steps; the held-out
        fold rotates (its loss sums become the estimate of the next epoch)."""
        if not self.extended or not self.training:
            return
        ext = self._ext
        if self.noise != "none" and self.weight == "dual" and ext.excess:
            mean_excess = sum(ext.excess) / len(ext.excess)
            step = self.eta * len(ext.excess) * (mean_excess - self.budget)
            self._state.lam_t = max(0.0, self._state.lam_t + step)
        ext.excess = []
        if self.heldout_folds:
            h = ext.heldout
            if h["sums"] is not None:
                h["last"] = (h["sums"], h["counts"], h["null_sums"], h["null_counts"])
            h["sums"] = h["counts"] = h["null_sums"] = h["null_counts"] = None
        ext.epoch += 1

    def _cells(self, gid: np.ndarray, cls: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """Cell id ``gid * C' + class`` (``C' = n_classes`` when class-balanced, else 1); -1 outside ``keep``."""
        width = self.n_classes if self.group_loss == "class_balanced" else 1
        return np.where(keep & (gid >= 0), gid * width + cls, -1)

    def _cell_sums(self, cell: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        width = self.n_classes if self.group_loss == "class_balanced" else 1
        n_cells = self.n_groups * width
        ok = cell >= 0
        sums = np.bincount(cell[ok], weights=loss[ok], minlength=n_cells)
        counts = np.bincount(cell[ok], minlength=n_cells)
        return sums, counts

    def _reduce(self, sums: np.ndarray, counts: np.ndarray) -> tuple[list[float], list[int], np.ndarray]:
        """Group losses from cell sums: ``natural`` the mean over the group's samples; ``class_balanced``
        the mean over the group's emotions present of each emotion's mean loss. Also ``d mean_g / d l_i`` of
        each cell's samples (``1 / n_g``; ``1 / (|C_g| n_gc)``; 0 for an empty cell)."""
        width = self.n_classes if self.group_loss == "class_balanced" else 1
        s = sums.reshape(self.n_groups, width)
        c = counts.reshape(self.n_groups, width)
        cell_mean = np.divide(s, c, out=np.zeros_like(s, dtype=np.float64), where=c > 0)
        n_classes_present = (c > 0).sum(1)
        means = np.divide(
            cell_mean.sum(1), n_classes_present, out=np.zeros(self.n_groups), where=n_classes_present > 0
        )
        factor = np.divide(
            1.0,
            c * n_classes_present[:, None],
            out=np.zeros_like(s, dtype=np.float64),
            where=c > 0,
        )
        return means.tolist(), c.sum(1).tolist(), factor.reshape(-1)

    def null_values(self, *, domain: np.ndarray, value: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """The sensitive values shuffled within each domain among the ``keep`` rows with a known value (the
        permutation null of ``noise: permutation``), from ``default_rng([seed, step])``; other rows keep
        their value. ``step`` counts the objective's training steps."""
        rng = np.random.default_rng([self.seed, self._ext.step])
        known = np.flatnonzero(keep & (value >= 0))
        dk = domain[known]
        a = known[np.argsort(dk, kind="stable")]
        b = known[np.lexsort((rng.random(len(known)), dk))]
        out = value.copy()
        out[a] = value[b]
        return out

    def _forward_extended(self, batch: GroupBatch) -> ObjectiveOutput:
        losses = batch.losses
        stats = self.group_statistics(batch)  # checks the batch; the slots
        k = self.n_values
        slot = stats.slot
        domain = slot // (k + 1)
        value = slot % (k + 1) - 1
        gid = np.where(value >= 0, k * domain + value, -1)
        loss_np = losses.detach().double().numpy(force=True)
        n = loss_np.shape[0]
        if self.group_loss == "class_balanced":
            y = require_field(batch, "y", self.name).numpy(force=True).astype(np.int64)
            if (y >= self.n_classes).any():
                raise ValueError(
                    f"minmaxgap: emotion labels must be < n_classes={self.n_classes}; got {y.max()}"
                )
            labelled = y >= 0  # unlabelled rows (y = -1) count in no group loss
            cls = np.where(labelled, y, 0)
        else:
            labelled, cls = np.ones(n, dtype=bool), np.zeros(n, dtype=np.int64)
        train = np.ones(n, dtype=bool)
        fold = -1
        if self.heldout_folds:
            if self._row_fold is None:
                raise ValueError(
                    "minmaxgap: heldout_folds needs setup() with the training set and set_train_speakers() "
                    "first (fairser.train.fit and the run pipeline call them)"
                )
            index = require_field(batch, "index", self.name).numpy(force=True)
            if (index < 0).any() or (index >= len(self._row_fold)).any():
                raise ValueError(f"minmaxgap: batch.index must lie in [0, {len(self._row_fold)})")
            fold = self._ext.epoch % self.heldout_folds
            train = self._row_fold[index] != fold
        held = ~train
        cell_t = self._cells(gid, cls, train & labelled)
        means_t, counts_t, factor_t = self._reduce(*self._cell_sums(cell_t, loss_np))

        r_null = None
        if (
            self.heldout_folds
        ):  # the gap of the held-out rows: the last complete fold, else this epoch's so far
            h = self._ext.heldout
            sums, counts = self._cell_sums(self._cells(gid, cls, held & labelled), loss_np)
            if self.training:
                h["sums"] = sums if h["sums"] is None else h["sums"] + sums
                h["counts"] = counts if h["counts"] is None else h["counts"] + counts
            source = h["last"] or (h["sums"], h["counts"], None, None)
            if source[0] is None:
                source = (sums, counts, None, None)
            means_e, counts_e, _ = self._reduce(source[0], source[1])
            pen = self.gap_penalty(means=means_e, counts=counts_e, estimate="batch")
            if self.noise != "none":
                null_value = self.null_values(domain=domain, value=value, keep=held & labelled)
                null_gid = np.where(null_value >= 0, k * domain + null_value, -1)
                ns, nc = self._cell_sums(self._cells(null_gid, cls, held & labelled), loss_np)
                if self.training:
                    h["null_sums"] = ns if h["null_sums"] is None else h["null_sums"] + ns
                    h["null_counts"] = nc if h["null_counts"] is None else h["null_counts"] + nc
                null_source = (
                    (source[2], source[3]) if source[2] is not None else (h["null_sums"], h["null_counts"])
                )
                if null_source[0] is None:
                    null_source = (ns, nc)
                null_means, null_counts, _ = self._reduce(*null_source)
                r_null = self.gap_penalty(means=null_means, counts=null_counts, estimate="batch").r
        else:
            pen = self.gap_penalty(means=means_t, counts=counts_t)
            if self.noise != "none":
                null_value = self.null_values(domain=domain, value=value, keep=train & labelled)
                null_gid = np.where(null_value >= 0, k * domain + null_value, -1)
                null_cell = self._cells(null_gid, cls, train & labelled)
                null_means, null_counts, _ = self._reduce(*self._cell_sums(null_cell, loss_np))
                r_null = self.gap_penalty(means=null_means, counts=null_counts, estimate="batch").r

        d_r = pen.d_r_d_mean
        if self.side == "worse_only":  # only the max-loss value's samples move: no weight below the ERM one
            d_r = [g if g > 0.0 else 0.0 for g in d_r]
        n_train = int(train.sum())
        erm = float(loss_np[train].mean()) if n_train else 0.0
        if self.weight == "fixed":
            lam = self.lam
        elif self.weight == "dual":
            lam = self._state.lam_t
        else:
            lam = self.lam * erm / (pen.r + _RATIO_EPS)
        width = self.n_classes if self.group_loss == "class_balanced" else 1
        cell_weight = lam * np.repeat(np.asarray(d_r), width) * factor_t
        w = np.where(train, 1.0 / max(n_train, 1), 0.0)
        w = w + np.where(cell_t >= 0, cell_weight[np.maximum(cell_t, 0)], 0.0)
        dtype = np.float64 if losses.dtype == torch.float64 else np.float32
        loss = torch.dot(losses, torch.from_numpy(w.astype(dtype)).to(losses))
        if not self.heldout_folds:  # shift the value to the exact L_ERM + lambda * R_t (the gradient stays)
            loss = loss + (erm + lam * pen.r - float(np.dot(w, loss_np)))

        if self.training:
            if self.weight == "dual":
                if r_null is None:
                    self._state.lam_t = max(0.0, lam + self.eta * (pen.r - self.budget))
                else:
                    self._ext.excess.append(pen.r - r_null)
            if self.estimate == "ema":
                self._state.ema, self._state.ema_seen = pen.estimates, pen.seen
            self._ext.step += 1

        logs = _step_logs(lam=lam, pen=pen, erm=erm)
        if r_null is not None:
            logs["R_null"] = r_null
            logs["R_excess"] = pen.r - r_null
        if self.heldout_folds:
            logs["heldout_fold"] = float(fold)
        return ObjectiveOutput(loss=loss, logs=logs)

    def run_summary(self, step_logs: list[dict]) -> dict:
        """``final_lambda``: the last logged ``lambda``; ``mean_R_last_epoch``: the mean logged ``R`` over the
        steps of the last logged step's epoch (each None without such logs)."""
        lam = [s["lambda"] for s in step_logs if "lambda" in s]
        last_epoch = step_logs[-1]["epoch"] if step_logs else None
        r_last = [s["R"] for s in step_logs if "R" in s and s["epoch"] == last_epoch]
        out = {
            "final_lambda": lam[-1] if lam else None,
            "mean_R_last_epoch": float(np.mean(r_last)) if r_last else None,
        }
        null_last = [s["R_null"] for s in step_logs if "R_null" in s and s["epoch"] == last_epoch]
        if null_last:  # noise: permutation (absent otherwise, so the paper form's rows are unchanged)
            out["mean_R_null_last_epoch"] = float(np.mean(null_last))
        return out

    def forward(self, batch: GroupBatch) -> ObjectiveOutput:
        losses = batch.losses
        if losses.shape[0] == 0:
            raise ValueError("minmaxgap: the batch is empty")
        if self.extended:
            return self._forward_extended(batch)
        stats = self.group_statistics(batch)
        erm = stats.erm
        pen = self.gap_penalty(means=stats.means, counts=stats.counts)
        if self.weight == "fixed":
            lam = self.lam
        elif self.weight == "dual":
            lam = self._state.lam_t
        else:
            lam = self.lam * erm / (pen.r + _RATIO_EPS)  # a Python float: no gradient through the ratio

        # dL/dl_i = 1/N + lam * dR/d mean_g / n_g for sample i in group g (unknown value: 1/N); the dot
        # product carries this exact gradient, and a constant shifts its value to the exact L (none is
        # needed when L is linear in the batch's losses: |gap|, hard max, batch estimate)
        base = 1.0 / losses.shape[0]
        group_weight = [
            base + lam * g / n if n else base for g, n in zip(pen.d_r_d_mean, stats.counts, strict=True)
        ]
        k = self.n_values
        table = [base] * ((k + 1) * self.n_domains)
        for v in range(k):  # slot (k + 1) * d + v + 1 holds group k * d + v
            table[v + 1 :: k + 1] = group_weight[v::k]
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

        logs = _step_logs(lam=lam, pen=pen, erm=erm)
        return ObjectiveOutput(loss=loss, logs=logs)


def _step_logs(*, lam: float, pen: GapPenalty, erm: float) -> dict[str, float]:
    """What every MinMaxGAP step logs: λ, the gap R, the ERM loss, the arg-max domain, the valid domains."""
    return {
        "lambda": lam,
        "R": pen.r,
        "erm": erm,
        "worst_domain": float(pen.worst),
        "n_valid_domains": float(pen.n_valid),
    }

"""Batch samplers that control the group make-up of each training batch (METHODS.md §3).

:class:`GroupStratifiedSampler` puts every (domain, sensitive value) cell in every batch, so a group objective
such as ERM-MinMaxGAP (Pang, Gao, Kawahara, Chen 2026) sees every value (both genders) of each domain at each
step. Benchmarks must say whether it was used, and use the same sampler for ERM and the method compared with
it. :class:`BalancedGroupSampler` is the *resampling* method of the zoo: the reweighing balance (the sensitive
attribute independent of the label within each domain) through sampling with replacement. Both work for any
number of values and domains.

Both samplers are torch *batch* samplers (``DataLoader(dataset, batch_sampler=sampler)``), deterministic for
a seed and an epoch (:meth:`set_epoch`), and resumable mid-epoch (:meth:`state_dict` /
:meth:`load_state_dict`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from fairser.grouping import group_index
from fairser.objectives.reweighting import reweighing_weights

__all__ = ["BalancedGroupSampler", "GroupStratifiedSampler", "group_ids"]


def group_ids(*, domain: np.ndarray, sensitive: np.ndarray, n_values: int = 2) -> np.ndarray:
    """Group id per sample, ``n_values * domain + sensitive`` and -1 where the value is unknown
    (:func:`fairser.grouping.group_index`, as ``GroupBatch.group``), with the inputs checked.

    Parameters
    ----------
    domain : int array (N,)
        Domain id, ``>= 0``.
    sensitive : int array (N,)
        Value id of the sensitive attribute in ``[0, n_values)`` (gender: 0 male, 1 female), or -1 (unknown).
    n_values : int
        Number of values of the sensitive attribute (>= 1).
    """
    domain = _int_array(domain, "domain")
    sensitive = _int_array(sensitive, "sensitive")
    if int(n_values) < 1:
        raise ValueError(f"group_ids: n_values={n_values} must be >= 1")
    if domain.shape != sensitive.shape:
        raise ValueError(
            f"group_ids: domain has shape {domain.shape} but sensitive has shape {sensitive.shape}"
        )
    if domain.size and domain.min() < 0:
        raise ValueError(f"group_ids: domain ids must be >= 0; found {domain.min()} at row {domain.argmin()}")
    bad = (sensitive < -1) | (sensitive >= n_values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"group_ids: sensitive values must lie in [0, {n_values}) or be -1 (unknown); found "
            f"{sensitive[row]} at row {row}"
        )
    return group_index(domain, sensitive, int(n_values))


def _int_array(values: Any, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a 1-D array; got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what} must hold integers; got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _fingerprint(*arrays: np.ndarray) -> str:
    digest = hashlib.sha1()
    for arr in arrays:
        digest.update(np.ascontiguousarray(arr).tobytes())
    return digest.hexdigest()


class _EpochBatchSampler(Sampler[list[int]]):
    """Shared epoch / resume logic: subclasses build one epoch's batches from ``(seed, epoch)``.

    Iterating to the end of an epoch advances to the next epoch, so a loop that never calls
    :meth:`set_epoch` still gets a new order each epoch; ``set_epoch(e)`` with the current epoch keeps the
    position (so it is safe to call after :meth:`load_state_dict`).
    """

    def __init__(self, *, seed: int, batch_size: int, drop_last: bool, fingerprint: str) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise ValueError(f"{type(self).__name__}: batch_size={batch_size!r} must be a positive integer")
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        self._position = 0
        self._fingerprint = fingerprint

    def _epoch_batches(self, rng: np.random.Generator) -> list[np.ndarray]:  # pragma: no cover - interface
        raise NotImplementedError

    def batches(self, epoch: int) -> list[np.ndarray]:
        """All batches of ``epoch`` (arrays of sample indices), without changing the sampler's position."""
        return self._epoch_batches(np.random.default_rng([self.seed, int(epoch)]))

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration yields (restarts it unless it is the current one)."""
        if int(epoch) != self.epoch:
            self.epoch = int(epoch)
            self._position = 0

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches(self.epoch)
        while self._position < len(batches):
            batch = batches[self._position]
            self._position += 1
            yield batch.tolist()
        self.epoch += 1
        self._position = 0

    def state_dict(self) -> dict[str, Any]:
        """Epoch and number of batches already yielded in it (plus what identifies the data and settings).

        With a multi-worker ``DataLoader`` the sampler runs ahead of training by the prefetched batches; a
        trainer that needs exact resumption should store its own step count and pass it as ``position``.
        """
        return {"epoch": self.epoch, "position": self._position, **self._identity()}

    def _identity(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "batch_size": self.batch_size,
            "drop_last": self.drop_last,
            "fingerprint": self._fingerprint,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at ``state["epoch"]``, batch ``state["position"]``; refuses state from other data/settings."""
        for key, value in self._identity().items():
            if key in state and state[key] != value:
                raise ValueError(
                    f"{type(self).__name__}.load_state_dict: saved {key}={state[key]!r} does not match this "
                    "sampler's; it was saved for other data or settings"
                )
        position = int(state["position"])
        if not 0 <= position <= len(self):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: position={position} not in [0, {len(self)}]"
            )
        self.epoch = int(state["epoch"])
        self._position = position


class GroupStratifiedSampler(_EpochBatchSampler):
    """Batch sampler that puts every (domain, sensitive value) cell in every batch, each sample about once per
    epoch.

    Scheme **(our choice)**. Every distinct value of ``groups`` is a cell (any number of them); cells with a
    non-negative id are *guaranteed* (at least one sample in every batch), cells with a negative id (unknown
    value, e.g. -1 from :func:`group_ids`) are sampled in proportion only. Each epoch:

    1. Each cell's members are shuffled. With ``M`` batches, a guaranteed cell fills one slot of every batch
       with ``M`` of its members; a cell smaller than ``M`` is recycled (its members repeat, each a near-equal
       number of times), which is the only way it can be in every batch.
    2. All remaining members (of every cell) fill the remaining slots in proportion to cell size: each cell's
       remaining members are spread evenly over the epoch by systematic sampling (keys ``(i + u) / r`` with a
       random offset ``u``), so a batch holds about ``batch_size * n_cell / N`` of each cell.
    3. ``M = ceil(T / batch_size)`` where ``T`` is ``N`` plus the recycled repeats; batch sizes differ by at
       most one and never exceed ``batch_size``. With ``drop_last`` every batch has exactly ``batch_size``
       samples, ``M = floor(T / batch_size)``, and the few left-over samples (a different few each epoch)
       wait for the next epoch. The order of batches and of samples inside a batch is shuffled.

    So every sample is drawn exactly once per epoch, except members of cells smaller than ``M`` (drawn more
    often) and, with ``drop_last``, fewer than ``batch_size`` left-over samples (drawn zero times).

    Parameters
    ----------
    groups : int array (N,)
        Cell id per training sample, e.g. :func:`group_ids` (``n_values * domain + value``, -1 if unknown).
    batch_size : int
        Maximum batch size; must exceed the number of guaranteed cells.
    seed : int
        Seed; the order of epoch ``e`` depends only on ``(seed, e)``.
    drop_last : bool
        Make every batch exactly ``batch_size`` long (see above).
    """

    def __init__(self, *, groups: np.ndarray, batch_size: int, seed: int, drop_last: bool = False) -> None:
        groups = _int_array(groups, "GroupStratifiedSampler: groups")
        if groups.size == 0:
            raise ValueError("GroupStratifiedSampler: groups is empty; there is nothing to sample")
        super().__init__(
            seed=seed, batch_size=batch_size, drop_last=drop_last, fingerprint=_fingerprint(groups)
        )
        cells, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
        order = np.argsort(inverse, kind="stable")
        self.cells = cells
        self._members = np.split(order, np.cumsum(counts)[:-1])
        self._guaranteed = cells >= 0
        n_guaranteed = int(self._guaranteed.sum())
        if n_guaranteed >= self.batch_size:
            raise ValueError(
                f"GroupStratifiedSampler: batch_size={self.batch_size} leaves no room beyond one sample of each "
                f"of the {n_guaranteed} (domain, sensitive value) cells; use batch_size > {n_guaranteed}"
            )
        self.n_samples = int(groups.size)
        self._n_batches = self._solve_n_batches(counts[self._guaranteed])

    def _solve_n_batches(self, guaranteed_counts: np.ndarray) -> int:
        """Fixed point of ``M = round(T(M) / B)``, ``T(M) = N + sum_k max(M - n_k, 0)`` (recycled repeats)."""
        rounding = np.floor if self.drop_last else np.ceil
        n_batches = int(rounding(self.n_samples / self.batch_size))
        while True:
            total = self.n_samples + int(np.maximum(n_batches - guaranteed_counts, 0).sum())
            new = int(rounding(total / self.batch_size))
            if new == n_batches:
                return n_batches
            n_batches = new  # increases to the least fixed point, <= ceil(N / (B - n_cells)) as n_cells < B

    def __len__(self) -> int:
        return self._n_batches

    def _epoch_batches(self, rng: np.random.Generator) -> list[np.ndarray]:
        n_batches = self._n_batches
        if n_batches == 0:
            return []
        floor_slots, filler = [], []
        for members, guaranteed in zip(self._members, self._guaranteed, strict=True):
            if not guaranteed:
                filler.append(rng.permutation(members))
                continue
            if members.size >= n_batches:
                perm = rng.permutation(members)
                floor_slots.append(perm[:n_batches])
                filler.append(perm[n_batches:])
            else:  # recycle: independent shuffles of the cell, concatenated
                reps = -(-n_batches // members.size)
                floor_slots.append(rng.permuted(np.tile(members, (reps, 1)), axis=1).ravel()[:n_batches])
        floor = np.stack(floor_slots, axis=1) if floor_slots else np.empty((n_batches, 0), dtype=np.int64)

        # systematic spreading of the remaining members: keys evenly spaced per cell, random offset per cell
        keys = [(np.arange(f.size) + rng.random()) / max(f.size, 1) for f in filler]
        filler_all = np.concatenate(filler) if filler else np.empty(0, dtype=np.int64)
        key_all = np.concatenate(keys) if keys else np.empty(0)
        filler_all = filler_all[np.lexsort((rng.random(key_all.size), key_all))]

        if self.drop_last:
            sizes = np.full(n_batches, self.batch_size)
        else:
            total = floor.size + filler_all.size
            sizes = np.full(n_batches, total // n_batches) + (np.arange(n_batches) < total % n_batches)
        fill_counts = sizes - floor.shape[1]
        chunks = np.split(filler_all[: fill_counts.sum()], np.cumsum(fill_counts)[:-1])
        return [rng.permutation(np.concatenate([floor[j], chunks[j]])) for j in rng.permutation(n_batches)]


class BalancedGroupSampler(_EpochBatchSampler):
    """Resampling (Kamiran & Calders 2012): batches drawn with replacement, sample ``i`` with probability
    proportional to its reweighing weight ``P(d,s) P(d,y) / (P(d) P(d,s,y))``
    (:func:`fairser.objectives.reweighting.reweighing_weights`).

    The expected make-up of the drawn samples is ``P(d) P(s | d) P(y | d)``: the sensitive attribute ``s``
    (any number of values) independent of the label within each domain, with domain and attribute (and
    label) marginals kept, provided every (value, label) combination occurs in each domain. Used with plain
    ERM.

    Parameters
    ----------
    domain, sensitive, y : array (N,)
        Domain, sensitive-attribute value (unknown = -1 is one more value) and label of each training sample.
    batch_size : int
        Batch size.
    seed : int
        Seed; the draws of epoch ``e`` depend only on ``(seed, e)``.
    num_samples : int, optional
        Draws per epoch (default ``N``).
    drop_last : bool
        Drop the last, shorter batch.
    """

    def __init__(
        self,
        *,
        domain: np.ndarray,
        sensitive: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        seed: int,
        num_samples: int | None = None,
        drop_last: bool = False,
    ) -> None:
        weights = reweighing_weights(domain=domain, sensitive=sensitive, y=y)
        if weights.size == 0:
            raise ValueError("BalancedGroupSampler: no samples to draw from")
        super().__init__(
            seed=seed, batch_size=batch_size, drop_last=drop_last, fingerprint=_fingerprint(weights)
        )
        self.probabilities = weights / weights.sum()
        self.num_samples = weights.size if num_samples is None else int(num_samples)
        if self.num_samples < 1:
            raise ValueError(f"BalancedGroupSampler: num_samples={num_samples} must be >= 1")

    def __len__(self) -> int:
        full, rest = divmod(self.num_samples, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def _epoch_batches(self, rng: np.random.Generator) -> list[np.ndarray]:
        draws = rng.choice(self.probabilities.size, size=self.num_samples, replace=True, p=self.probabilities)
        batches = [draws[i : i + self.batch_size] for i in range(0, self.num_samples, self.batch_size)]
        return batches[: len(self)]

"""Length-bucketed batches that keep the group-stratified make-up, and the split of a batch over processes.

Padding is what a batch of raw audio wastes: every clip is padded to the longest one (for Qwen2-Audio the
language model's sequence grows by 25 audio tokens per second). Bucketing, as in ESPnet's and fairseq's
length-sorted batching, puts clips of similar duration together. Here it must not undo the
:class:`fairser.sampler.GroupStratifiedSampler` guarantee that every (domain, gender) cell is in every
batch, which the group objectives rely on (METHODS.md §3). How the two combine **(our choice)**:

1. The base sampler draws an epoch's *global* micro-batches (``per_device_batch_size x num_processes``
   samples each), stratified as usual.
2. :class:`LengthBucketedSampler` takes ``window`` consecutive batches at a time and re-cuts them: one
   member of each cell present in *every* batch of the window is set aside per batch, each cell's set-aside
   members are sorted by duration and dealt out so new batch ``k`` gets the ``k``-th shortest of each cell;
   all other members are sorted by duration and cut into consecutive chunks, new batch ``k`` taking chunk
   ``k``. Every new batch still holds every guaranteed cell, the window holds the same samples (so an epoch
   covers the same samples as the base sampler's), batch sizes are kept, and the new batches' order is
   shuffled (seeded) so training does not go from short to long clips.
3. :func:`shard_batch` sorts one global micro-batch by duration and gives each process a contiguous slice,
   so each process pads only over clips of similar length. A process's slice need not hold every cell: the
   group losses are computed on the gathered global batch (:func:`fairser.scale.distributed.gather_group_batch`).

All three steps are deterministic functions of ``(seed, epoch)``, so a resumed run sees the same batches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np

__all__ = ["LengthBucketedSampler", "RandomBatches", "eval_batches", "padding_fraction", "shard_batch"]


class _EpochBatches(Protocol):
    def __len__(self) -> int: ...

    def batches(self, epoch: int) -> list[np.ndarray]: ...

    def state_dict(self) -> dict[str, Any]: ...


def _fingerprint(arr: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(arr).tobytes()).hexdigest()


class RandomBatches:
    """Plain shuffling: each epoch a seeded permutation cut into ``ceil(N / batch_size)`` near-equal batches.

    The ``random`` sampler of :class:`fairser.config.TrainConfig` for the backbone loop (batch sizes differ by
    at most one, so no process is left with a tiny shard of a short last batch).
    """

    def __init__(self, *, n: int, batch_size: int, seed: int) -> None:
        if n < 1:
            raise ValueError(f"RandomBatches: n={n}; there is nothing to sample")
        if batch_size < 1:
            raise ValueError(f"RandomBatches: batch_size={batch_size} must be >= 1")
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def batches(self, epoch: int) -> list[np.ndarray]:
        perm = np.random.default_rng([self.seed, int(epoch)]).permutation(self.n)
        return np.array_split(perm, len(self))

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "random", "n": self.n, "batch_size": self.batch_size, "seed": self.seed}


class LengthBucketedSampler:
    """Re-cut a base batch sampler's batches by duration within windows, keeping its guaranteed cells.

    Parameters
    ----------
    base : GroupStratifiedSampler, BalancedGroupSampler or RandomBatches
        Anything with ``len()``, ``batches(epoch)`` and ``state_dict()``.
    lengths : float array (N,)
        Duration (or any length) of each sample.
    groups : int array (N,), optional
        Cell id per sample (``fairser.sampler.group_ids``); cells with id >= 0 present in every batch of a
        window stay in every re-cut batch. ``None``: sort the window freely.
    window : int
        Batches per bucketing window (1: batches are kept as drawn; :func:`shard_batch` still sorts inside).
    seed : int
        Seed of the shuffle of the re-cut batches' order.

    Iteration yields lists of indices and is resumable like the base samplers (:meth:`state_dict` holds the
    epoch and the number of batches already yielded in it).
    """

    def __init__(
        self,
        base: _EpochBatches,
        *,
        lengths: np.ndarray,
        groups: np.ndarray | None = None,
        window: int = 8,
        seed: int = 0,
    ) -> None:
        if int(window) < 1:
            raise ValueError(f"LengthBucketedSampler: window={window} must be >= 1")
        self.base = base
        self.lengths = np.asarray(lengths, dtype=np.float64)
        if self.lengths.ndim != 1 or not np.isfinite(self.lengths).all():
            raise ValueError("LengthBucketedSampler: lengths must be a 1-D array of finite numbers")
        self.groups = None if groups is None else np.asarray(groups, dtype=np.int64)
        if self.groups is not None and self.groups.shape != self.lengths.shape:
            raise ValueError(
                f"LengthBucketedSampler: groups has shape {self.groups.shape}, lengths {self.lengths.shape}"
            )
        self.window = int(window)
        self.seed = int(seed)
        self.epoch = 0
        self._position = 0

    def __len__(self) -> int:
        return len(self.base)

    def batches(self, epoch: int) -> list[np.ndarray]:
        """All global micro-batches of ``epoch`` (arrays of sample indices); does not move the position."""
        drawn = [np.asarray(b, dtype=np.int64) for b in self.base.batches(int(epoch))]
        if self.window == 1:
            return drawn
        rng = np.random.default_rng([self.seed, int(epoch), 7])
        out: list[np.ndarray] = []
        for s in range(0, len(drawn), self.window):
            out.extend(self._recut(drawn[s : s + self.window], rng))
        return out

    def _recut(self, window: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        k = len(window)
        common: list[int] = []
        if self.groups is not None and k > 1:
            sets = [set(self.groups[b][self.groups[b] >= 0].tolist()) for b in window]
            common = sorted(set.intersection(*sets))
        reps: dict[int, list[int]] = {c: [] for c in common}
        filler: list[int] = []
        for b in window:
            taken: set[int] = set()
            for i in b.tolist():
                g = int(self.groups[i]) if self.groups is not None else -1
                if g in reps and g not in taken:
                    reps[g].append(i)
                    taken.add(g)
                else:
                    filler.append(i)

        def by_length(items: list[int]) -> np.ndarray:
            arr = np.asarray(items, dtype=np.int64)
            return arr[np.lexsort((arr, self.lengths[arr]))] if arr.size else arr

        # larger batches go to shorter clips (less memory per sample there)
        sizes = sorted((len(b) for b in window), reverse=True)
        ranked = {c: by_length(reps[c]) for c in common}
        filler_sorted = by_length(filler)
        new, start = [], 0
        for j in range(k):
            n_fill = sizes[j] - len(common)
            part = [ranked[c][j : j + 1] for c in common] + [filler_sorted[start : start + n_fill]]
            start += n_fill
            new.append(np.concatenate(part))
        return [new[j] for j in rng.permutation(k)]

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch the next iteration yields (restarts it unless it is the current one)."""
        if int(epoch) != self.epoch:
            self.epoch = int(epoch)
            self._position = 0

    @property
    def position(self) -> int:
        """Batches of the current epoch already yielded (or consumed, see :meth:`set_position`)."""
        return self._position

    def set_position(self, position: int) -> None:
        """Mark the first ``position`` batches of the current epoch as consumed (a loop that indexes
        :meth:`batches` itself records its progress here, so :meth:`state_dict` resumes after them)."""
        if not 0 <= int(position) <= len(self):
            raise ValueError(f"LengthBucketedSampler.set_position: {position} not in [0, {len(self)}]")
        self._position = int(position)

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches(self.epoch)
        while self._position < len(batches):
            batch = batches[self._position]
            self._position += 1
            yield batch.tolist()
        self.epoch += 1
        self._position = 0

    def _identity(self) -> dict[str, Any]:
        base = {k: v for k, v in self.base.state_dict().items() if k not in ("epoch", "position")}
        return {
            "window": self.window,
            "seed": self.seed,
            "lengths": _fingerprint(self.lengths),
            "base": base,
        }

    def state_dict(self) -> dict[str, Any]:
        """Epoch, position, and what identifies the data and settings (JSON-serialisable)."""
        return {"epoch": self.epoch, "position": self._position, **self._identity()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at ``state["epoch"]``, batch ``state["position"]``; refuses state of other data or settings."""
        for key, value in self._identity().items():
            if key in state and state[key] != value:
                raise ValueError(
                    f"LengthBucketedSampler.load_state_dict: saved {key}={state[key]!r} does not match this "
                    f"sampler's {value!r}; the checkpoint was saved for other data or settings"
                )
        position = int(state["position"])
        if not 0 <= position <= len(self):
            raise ValueError(
                f"LengthBucketedSampler.load_state_dict: position={position} not in [0, {len(self)}]"
            )
        self.epoch = int(state["epoch"])
        self._position = position


def shard_batch(batch: np.ndarray, *, lengths: np.ndarray, num_shards: int) -> list[np.ndarray]:
    """Sort one global micro-batch by duration and split it into ``num_shards`` contiguous near-equal slices.

    Concatenating the slices in process order gives the sorted batch, whatever ``num_shards`` is, so one
    process and several see the same global batch in the same order.
    """
    batch = np.asarray(batch, dtype=np.int64)
    if len(batch) < num_shards:
        raise ValueError(
            f"a global batch of {len(batch)} sample(s) cannot feed {num_shards} processes; "
            "raise per_device_batch_size or use fewer processes"
        )
    order = batch[np.lexsort((batch, np.asarray(lengths)[batch]))]
    return np.array_split(order, num_shards)


def eval_batches(lengths: np.ndarray, *, batch_size: int, num_shards: int = 1) -> list[list[np.ndarray]]:
    """Evaluation batches sorted by duration: a list of global batches, each split into ``num_shards`` slices.

    A slice may be empty for the last, short global batch (the caller keeps every process in step).
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    order = np.lexsort((np.arange(lengths.size), lengths))
    step = batch_size * num_shards
    return [np.array_split(order[s : s + step], num_shards) for s in range(0, order.size, step)]


def padding_fraction(batches: list[np.ndarray], *, lengths: np.ndarray) -> float:
    """Share of padded positions when each batch is padded to its longest sample: 1 - sum(len) / sum(max len x n)."""
    lengths = np.asarray(lengths, dtype=np.float64)
    padded = sum(float(lengths[b].max()) * len(b) for b in batches if len(b))
    real = sum(float(lengths[b].sum()) for b in batches if len(b))
    return 0.0 if padded == 0 else 1.0 - real / padded

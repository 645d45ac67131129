"""The objective interface shared by every training objective (METHODS.md §3; DomainBed-style registry).

An objective turns one batch of *per-sample* losses plus the batch's group metadata into a scalar loss.
Because it never sees the backbone, the same objective works for an eGeMAPS head, an SSL encoder or a
LoRA-tuned Qwen2-Audio. Group losses are means over the samples of that group in the batch; groups absent
from a batch contribute nothing and never produce a NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from fairser.grouping import group_index

__all__ = [
    "GroupBatch",
    "Objective",
    "ObjectiveOutput",
    "OBJECTIVES",
    "build_objective",
    "group_mean_losses",
    "register",
]


@dataclass
class GroupBatch:
    """What an objective sees of one batch.

    Attributes
    ----------
    losses : Tensor (N,)
        Per-sample losses (cross-entropy unless an objective asks for otherwise), carrying gradient.
    domain : LongTensor (N,)
        Domain id in ``[0, n_domains)`` (by default a language x modality cell).
    sensitive : LongTensor (N,)
        Value id of the sensitive attribute in ``[0, n_values)`` (gender: 0 male, 1 female; see
        :mod:`fairser.grouping`), or -1 for unknown; unknown-valued samples count in ERM terms but in no
        group term.
    logits : Tensor (N, C), optional
        Class scores, for objectives that need probabilities (soft parity penalties).
    y : LongTensor (N,), optional
        Emotion labels.
    index : LongTensor (N,), optional
        Row index of each sample in the training set (for per-sample state: JTT, LfF).
    embedding : Tensor (N, D), optional
        Shared embedding (for adversarial and contrastive objectives).
    n_values : int
        Number of values of the sensitive attribute (2 for gender).
    """

    losses: Tensor
    domain: Tensor
    sensitive: Tensor
    logits: Tensor | None = None
    y: Tensor | None = None
    index: Tensor | None = None
    embedding: Tensor | None = None
    n_values: int = 2

    @property
    def group(self) -> Tensor:
        """Group id ``n_values * domain + sensitive`` (-1 where the value is unknown)."""
        return group_index(self.domain, self.sensitive, self.n_values)


@dataclass
class ObjectiveOutput:
    """The scalar loss to minimise plus scalars to log (e.g. ``lambda``, ``R``) for this step."""

    loss: Tensor
    logs: dict[str, float] = field(default_factory=dict)


def group_mean_losses(losses: Tensor, group: Tensor, n_groups: int) -> tuple[Tensor, Tensor]:
    """Mean loss and sample count per group, vectorised (no Python loop over groups).

    Samples with ``group < 0`` are ignored. Returns ``(means, counts)``, both of shape ``(n_groups,)``; the
    mean of an absent group is 0 (and its count 0) so it can be masked without producing NaN or NaN
    gradients.
    """
    valid = group >= 0
    idx = torch.where(valid, group, torch.zeros_like(group))
    w = valid.to(losses.dtype)
    sums = torch.zeros(n_groups, dtype=losses.dtype, device=losses.device).scatter_add(0, idx, losses * w)
    counts = torch.zeros(n_groups, dtype=losses.dtype, device=losses.device).scatter_add(0, idx, w)
    means = sums / counts.clamp_min(1.0)
    return means, counts


class Objective(nn.Module):
    """Base class: subclasses set ``name`` and implement :meth:`forward`.

    Subclasses take keyword-only hyperparameters after ``n_domains``, ``n_classes`` and ``n_values`` (the
    number of values of the sensitive attribute; groups are its values within each domain). An objective
    may own parameters or modules (e.g. an adversary); the trainer optimises them with the model.
    ``on_epoch_end`` lets stateful objectives (JTT, LfF) update per-sample state between epochs.

    ``requires`` names the constructor arguments a run must supply because only the run knows them (today
    only ``"embed_dim"``, the width of the model's shared embedding); every other hyperparameter has a
    default or comes from the config.

    ``compares_values``: the objective compares the values of the sensitive attribute within a domain (gap,
    worst group, adversary, parity, variance); with one value in a training domain its group term is void
    and it silently trains as ERM there, so the run pipeline refuses such a training split before training.
    """

    name: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    compares_values: ClassVar[bool] = False

    def __init__(self, *, n_domains: int, n_classes: int, n_values: int = 2) -> None:
        super().__init__()
        self.n_domains = int(n_domains)
        self.n_classes = int(n_classes)
        self.n_values = int(n_values)
        if self.n_values < 1:
            raise ValueError(f"{type(self).__name__}: n_values={n_values} must be >= 1")

    @property
    def n_groups(self) -> int:
        """Number of (domain, value) groups, ``n_values * n_domains``."""
        return self.n_values * self.n_domains

    def batch_groups(self, batch: GroupBatch) -> Tensor:
        """Group id of each sample (``batch.group``; -1 unknown), after checking that the batch numbers its
        values as this objective does (``batch.n_values == self.n_values``)."""
        if batch.n_values != self.n_values:
            raise ValueError(
                f"objective {self.name!r} was built for n_values={self.n_values} sensitive values but the batch "
                f"has n_values={batch.n_values}; build the GroupBatch with the run's n_values"
            )
        return batch.group

    def forward(self, batch: GroupBatch) -> ObjectiveOutput:  # pragma: no cover - interface
        raise NotImplementedError

    def setup(self, *, domain: Tensor, sensitive: Tensor, y: Tensor) -> None:
        """Hook called once by the trainer with the whole training set's metadata before training.

        Objectives that need training-set statistics (reweighting's cell weights, Group DRO's group sizes)
        compute them here; the default does nothing.
        """

    def on_epoch_end(self, epoch: int) -> None:
        """Hook called by the trainer after each epoch (default: nothing)."""

    def set_train_speakers(self, *, speakers: np.ndarray) -> None:
        """Hook called by the run pipeline before training with the speaker id of each training row (row
        order of the training set, before any :meth:`~fairser.objectives.stages.StagedObjective.augment`),
        for objectives that split the training speakers (ERM-MinMaxGAP's ``heldout_folds``); default: nothing.
        """

    def run_summary(self, step_logs: list[dict]) -> dict:
        """Fields this objective adds to a run's results row, from the run's per-step logs (default: none)."""
        return {}


OBJECTIVES: dict[str, type[Objective]] = {}


def register(cls: type[Objective]) -> type[Objective]:
    """Class decorator adding an objective to :data:`OBJECTIVES` under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in OBJECTIVES:
        raise ValueError(f"objective {cls.name!r} registered twice")
    OBJECTIVES[cls.name] = cls
    return cls


def build_objective(name: str, *, n_domains: int, n_classes: int, n_values: int = 2, **hparams) -> Objective:
    """Instantiate a registered objective by name with its hyperparameters."""
    try:
        cls: Callable[..., Objective] = OBJECTIVES[name]
    except KeyError:
        raise KeyError(f"unknown objective {name!r}; registered: {sorted(OBJECTIVES)}") from None
    return cls(n_domains=n_domains, n_classes=n_classes, n_values=n_values, **hparams)

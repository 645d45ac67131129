"""Hooks for the multi-stage methods of the zoo (JTT, LfF, CO-VADA, CFA) and the GCE loss they share.

Most objectives turn one batch of per-sample losses into a loss (:class:`~fairser.objectives.base.Objective`).
Some methods also need a stage *before* the main training, so a :class:`StagedObjective` may implement two
hooks, each called once per run:

``augment(data=RunData)``
    Called by the benchmark runner before training, with what only the runner knows (manifest rows, audio
    paths, the feature cache, the other splits). Returns the training set to use: CO-VADA appends
    voice-converted copies of selected utterances, CFA appends the target corpus's rows without their
    emotion labels (``y = UNLABELED``).
``prepare(context=StageContext)``
    Called by :func:`fairser.train.fit` before the main loop, with the training inputs and a way to train
    other models with the same loop: JTT trains its identification model, LfF attaches its biased network
    (a second network of the same kind, fed by ``batch.index``), CFA pre-trains the emotion classifier on
    the source.

Used outside ``fit`` and the runner (e.g. on a speech LLM's per-sample losses) the objectives still work
on a bare :class:`~fairser.objectives.base.GroupBatch`; each documents what it does then.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from fairser.objectives._common import check_range, require_field
from fairser.objectives.base import GroupBatch, Objective, ObjectiveOutput

if TYPE_CHECKING:  # imported for annotations only: fairser.train imports this package
    import pandas as pd

    from fairser.config import BenchmarkConfig, TrainConfig
    from fairser.train import ArrayDataset, TrainResult

__all__ = [
    "UNLABELED",
    "GeneralizedCrossEntropy",
    "RunData",
    "StageContext",
    "StagedObjective",
    "gce_loss",
]

#: Emotion label of a training row whose label must not be used (CFA's target corpus); its cross-entropy
#: is 0 in :func:`fairser.train.fit` (``ignore_index``).
UNLABELED = -1


def gce_loss(logits: Tensor, y: Tensor, *, q: float = 0.7) -> Tensor:
    """Per-sample generalized cross-entropy ``(1 - p_y^q) / q`` (Zhang & Sabuncu 2018, NeurIPS).

    Its gradient is ``p_y^q`` times that of the cross-entropy, so confidently-right ("easy") samples weigh
    more: trained with it, a classifier latches on to the easiest cues, which is how LfF and CO-VADA build
    their bias-capturing models. Rows with ``y < 0`` (unlabelled) get 0.
    """
    q = check_range("gce_loss", "q", q, low=0.0, high=1.0, low_open=True)
    labelled = y >= 0
    log_p = torch.log_softmax(logits, dim=1).gather(1, y.clamp_min(0)[:, None])[:, 0]
    loss = (1.0 - torch.exp(q * log_p)) / q
    return torch.where(labelled, loss, torch.zeros_like(loss))


class GeneralizedCrossEntropy(Objective):
    """Train with the mean GCE loss of ``batch.logits`` (the bias-capturing classifier of LfF / CO-VADA).

    Not registered: it is a building block of those methods, not a debiasing method of its own.
    """

    name = "gce"

    def __init__(self, *, n_domains: int, n_classes: int, q: float = 0.7) -> None:
        super().__init__(n_domains=n_domains, n_classes=n_classes)
        self.q = check_range(self.name, "q", q, low=0.0, high=1.0, low_open=True)

    def forward(self, batch: GroupBatch) -> ObjectiveOutput:
        logits = require_field(batch, "logits", self.name)
        y = require_field(batch, "y", self.name)
        per_sample = gce_loss(logits, y, q=self.q)
        labelled = (y >= 0).to(per_sample.dtype)
        loss = per_sample.sum() / labelled.sum().clamp_min(1.0)
        return ObjectiveOutput(loss=loss, logs={"gce": float(loss.detach())})


@dataclass
class StageContext:
    """What :func:`fairser.train.fit` gives :meth:`StagedObjective.prepare`.

    Attributes
    ----------
    model : nn.Module
        The model the main stage trains (a pre-stage may train it in place, e.g. CFA's source pre-training).
    train, valid : ArrayDataset
        The main stage's training and validation sets.
    config : TrainConfig
        The main stage's loop settings (see :meth:`stage_config` for a pre-stage's).
    seed : int
        The run's seed.
    fit : callable
        :func:`fairser.train.fit` without the hooks (``fit(model=, objective=, train=, valid=, config=,
        seed=, keep=)``), to train a pre-stage model with the same loop.
    predict_proba : callable
        :func:`fairser.train.predict_proba`.
    stages : list of dict
        Summaries of the pre-stages (appended by the objective; returned in ``TrainResult.stages``).
    """

    model: nn.Module
    train: ArrayDataset
    valid: ArrayDataset
    config: TrainConfig
    seed: int
    fit: Callable[..., TrainResult]
    predict_proba: Callable[..., np.ndarray]
    stages: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._initial = copy.deepcopy(self.model)

    def new_model(self) -> nn.Module:
        """An untrained copy of the model (same architecture and initial weights as the main model)."""
        return copy.deepcopy(self._initial)

    def stage_config(self, **update: Any) -> TrainConfig:
        """The main config with some fields changed (e.g. ``epochs``), validated."""
        return type(self.config).model_validate({**self.config.model_dump(), **update})


@dataclass
class RunData:
    """What the benchmark runner gives :meth:`StagedObjective.augment` (one run of the grid).

    Attributes
    ----------
    train : ArrayDataset
        The training set (features normalised with the training statistics).
    train_meta : DataFrame
        Its manifest rows, aligned with ``train``; column ``row`` indexes ``audio_paths``.
    views : dict
        The other splits, ``name -> (ArrayDataset, meta)``: ``valid``, ``test`` and, with
        ``corpus.cross.adapt_fraction``, ``adapt`` (target-corpus speakers held out of the test set).
    audio_paths : sequence of Path
        Resolved audio file of every manifest row.
    featurize : callable
        ``featurize(paths, rows=...) -> (features, ok)``: audio features of new files through the run's
        encoder and feature cache, each normalised like the manifest row (``rows``) it derives from; ``ok``
        is False where extraction failed.
    cache_dir : Path
        The feature cache folder (CO-VADA writes its converted audio next to it).
    config : BenchmarkConfig
        The whole benchmark config.
    seed : int
        The run's seed.
    new_model : callable
        A fresh, untrained model of the run's kind.
    fit, predict_proba : callable
        As in :class:`StageContext`.
    progress : bool
        Whether long loops may show progress bars.
    """

    train: ArrayDataset
    train_meta: pd.DataFrame
    views: dict[str, tuple[ArrayDataset, pd.DataFrame]]
    audio_paths: Sequence[Path]
    featurize: Callable[..., tuple[np.ndarray, np.ndarray]]
    cache_dir: Path
    config: BenchmarkConfig
    seed: int
    new_model: Callable[[], nn.Module]
    fit: Callable[..., TrainResult]
    predict_proba: Callable[..., np.ndarray]
    progress: bool = False


class StagedObjective(Objective):
    """An objective with optional pre-training stages (see the module docstring). The defaults do nothing."""

    def augment(self, *, data: RunData) -> ArrayDataset:
        """Return the training set of the main stage (default: ``data.train`` unchanged)."""
        return data.train

    def prepare(self, *, context: StageContext) -> None:
        """Run the pre-stages before :func:`fairser.train.fit`'s main loop (default: nothing)."""

    def summary(self) -> dict[str, Any]:
        """Scalars describing the stages of the last run (stored in the benchmark's results row)."""
        return {}

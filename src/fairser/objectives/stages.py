"""Hooks for the multi-stage methods of the zoo (JTT, LfF, CO-VADA, CFA) and the GCE loss they share.

Most objectives turn one batch of per-sample losses into a loss (:class:`~fairser.objectives.base.Objective`).
Some methods also need a stage *before* the main training, so a :class:`StagedObjective` may implement two
hooks, each called once per run:

``augment(data=RunData)``
    Called by the run pipeline (:func:`fairser.run.execute_run`) before training, with what only the run
    knows (manifest rows, audio paths, the feature cache, the other splits). Returns the training set to use:
    CO-VADA appends voice-converted copies of selected utterances, CFA appends the target corpus's rows
    without their emotion labels (``y = UNLABELED``).
``prepare(context=StageContext)``
    Called by the run pipeline before the main training, with the training inputs and the run's
    :class:`Trainer` (new models of the run's kind, the same loop, predictions): JTT trains its
    identification model, LfF attaches its biased network (a second network of the same kind, fed by
    ``batch.index``), CFA pre-trains the emotion classifier on the source. ``fairser.train.fit`` knows
    nothing about these stages.

Used outside ``fit`` and the runner (e.g. on a speech LLM's per-sample losses) the objectives still work
on a bare :class:`~fairser.objectives.base.GroupBatch`; each documents what it does then.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from fairser.objectives._common import check_range, require_field
from fairser.objectives.base import GroupBatch, Objective, ObjectiveOutput

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "UNLABELED",
    "GeneralizedCrossEntropy",
    "RunData",
    "StageContext",
    "StagedObjective",
    "Trainer",
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


class Trainer(Protocol):
    """How a run trains models of its kind: one implementation per backend (cached-feature heads in
    :mod:`fairser.run.backends`, raw-audio backbones in :mod:`fairser.run.backbone`).

    ``new_model()`` builds a fresh model with the run's seed (the main model's initial weights);
    ``fit(model=, objective=, train=, valid=, epochs=None, keep="best", main=False)`` trains it with the run's
    loop (``epochs`` overrides the run's number of epochs; ``main`` marks the run's main training, which a
    backbone checkpoints and resumes) and returns a result with ``model``, ``best_epoch``, ``best_score``,
    ``history`` and ``step_logs``; ``predict_proba(model, data)`` gives class probabilities
    (N, C); ``release()`` frees what dropped models still hold (accelerator references, GPU cache).
    """

    def new_model(self) -> nn.Module: ...

    def fit(
        self,
        *,
        model: nn.Module,
        objective: Objective,
        train: Any,
        valid: Any,
        epochs: int | None = None,
        keep: str = "best",
        main: bool = False,
    ) -> Any: ...

    def predict_proba(self, model: nn.Module, data: Any) -> np.ndarray: ...

    def release(self) -> None: ...


class StageContext:
    """What the run pipeline gives :meth:`StagedObjective.prepare`, before the main training.

    Attributes
    ----------
    trainer : Trainer
        Trains, builds and applies models of the run's kind (a pre-stage trains its models with it).
    train, valid : dataset
        The main stage's training set (after :meth:`StagedObjective.augment`) and validation set.
    seed : int
        The run's seed.
    stage_dir : Path or None
        A folder kept until the run finishes (a resumed run finds what its stages saved there), or None.
    stages : list of dict
        Summaries of the pre-stages (appended by the objective; stored in the results row).
    """

    def __init__(
        self,
        *,
        trainer: Trainer,
        train: Any,
        valid: Any,
        seed: int,
        stage_dir: Path | None = None,
        write_files: bool = True,
    ) -> None:
        self.trainer, self.train, self.valid, self.seed = trainer, train, valid, seed
        self.stage_dir = None if stage_dir is None else Path(stage_dir)
        self.write_files = write_files
        self.stages: list[dict[str, Any]] = []
        self._model: nn.Module | None = None

    @property
    def model(self) -> nn.Module:
        """The model the main stage trains, built on first use (a pre-stage may train it in place, e.g.
        CFA's source pre-training; JTT never touches it, so with a backbone only one is in memory)."""
        if self._model is None:
            self._model = self.trainer.new_model()
        return self._model

    @property
    def has_model(self) -> bool:
        return self._model is not None

    def stage_file(self, name: str) -> Path | None:
        """``stage_dir / name`` (None without a stage folder)."""
        return None if self.stage_dir is None else self.stage_dir / name

    def save_array(self, name: str, array: np.ndarray) -> None:
        """Keep ``array`` as ``stage_dir / name`` (.npy) for a resumed run (nothing without a stage folder,
        or on a distributed run's other processes)."""
        path = self.stage_file(name)
        if path is not None and self.write_files:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, array)


@dataclass
class RunData:
    """What the run pipeline gives :meth:`StagedObjective.augment` (one run of the grid, cached features).

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
    cross_corpus : bool
        Whether the benchmark runs a cross-corpus protocol (``corpus.cross``).
    sensitive_values : tuple of str
        The sensitive attribute's values in id order (the run's Grouper).
    trainer : Trainer
        As in :class:`StageContext`.
    seed : int
        The run's seed.
    progress : bool
        Whether long loops may show progress bars.
    """

    train: Any  # fairser.train.ArrayDataset (the objectives sit below the training loop)
    train_meta: pd.DataFrame
    views: dict[str, tuple[Any, pd.DataFrame]]
    audio_paths: Sequence[Path]
    featurize: Callable[..., tuple[np.ndarray, np.ndarray]]
    cache_dir: Path
    cross_corpus: bool
    sensitive_values: tuple[str, ...]
    trainer: Trainer
    seed: int
    progress: bool = False


class StagedObjective(Objective):
    """An objective with optional pre-training stages (see the module docstring). The defaults do nothing."""

    def augment(self, *, data: RunData) -> Any:
        """Return the training set of the main stage (default: ``data.train`` unchanged)."""
        return data.train

    def prepare(self, *, context: StageContext) -> None:
        """Run the pre-stages before the main training (default: nothing)."""

    def summary(self) -> dict[str, Any]:
        """Scalars describing the stages of the last run (stored in the benchmark's results row)."""
        return {}

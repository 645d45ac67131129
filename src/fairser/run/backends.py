"""The run's backends: what differs between a head on cached features and a raw-audio backbone.

A backend gives the run pipeline (:func:`fairser.run.execute_run`) the datasets of a split (from the rows
:func:`fairser.run.views.split_views` builds), a :class:`~fairser.objectives.stages.Trainer` (new models
with the run's seed, its training loop, predictions), the model's embedding, and its part of the results
row. :class:`FeatureBackend` (here) trains heads on cached embeddings; :class:`fairser.run.backbone.BackboneBackend`
trains Qwen2-Audio / SSL backbones on the waveforms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn

from fairser.config import BenchmarkConfig, TrainConfig
from fairser.objectives import Objective
from fairser.run.prepare import PreparedData, normaliser
from fairser.train import ArrayDataset, TrainResult, fit, predict_embedding, predict_proba

__all__ = ["Backend", "FeatureBackend", "HeadTrainer", "head_settings"]

#: The head settings every results row states (issue 13: the same for every objective of a comparison).
HEAD_SETTINGS = (
    "head",
    "hidden",
    "dropout",
    "weight_decay",
    "lr",
    "batch_size",
    "epochs",
    "patience",
    "select_metric",
    "epoch_selection",
    "sampler",
)


def head_settings(config: TrainConfig) -> dict[str, Any]:
    """The training settings of a head that decide how much it can memorise, for the results row."""
    return {name: getattr(config, name) for name in HEAD_SETTINGS}


class Backend(Protocol):
    """What :func:`fairser.run.execute_run` asks of a backend (one instance per run)."""

    #: False on the other processes of a distributed run (they train and predict, but write nothing).
    is_main_process: bool

    def check(self, spec: Any) -> None:
        """Refuse, by name, what this backend does not implement for the run ``spec``."""

    def dataset(
        self, meta: pd.DataFrame, *, y: np.ndarray, domain: np.ndarray, sensitive: np.ndarray, n_values: int
    ) -> Any:
        """The dataset of one split's rows ``meta`` (see :func:`fairser.run.views.split_views`)."""

    def trainer(self, *, spec: Any, train: Any) -> Any:
        """The run's :class:`~fairser.objectives.stages.Trainer`."""

    def embed_dim(self, model: nn.Module, data: Any) -> int:
        """Width of ``model``'s shared embedding (the ``embed_dim`` objectives require)."""

    def embedding(self, model: nn.Module, data: Any) -> np.ndarray | None:
        """``model``'s shared embedding of every row of ``data`` (None: not available)."""

    def stage_dir(self, spec: Any) -> Path | None:
        """Where pre-stages keep files a resumed run reuses (None: nowhere)."""

    def degrade_train(self, *, spec: Any, train: Any, meta: pd.DataFrame, progress: bool = False) -> dict:
        """``degrade_augment``: degrade a fraction of the training utterances in place; the record for the row."""

    def finish(self, *, spec: Any, result: Any) -> dict[str, Any]:
        """After prediction: save what the run keeps, and return this backend's fields of the results row."""


class HeadTrainer:
    """Heads on cached features (:func:`fairser.models.build_head`) trained by :func:`fairser.train.fit`."""

    def __init__(
        self,
        *,
        config: TrainConfig,
        seed: int,
        use_text: bool,
        audio_dim: int,
        text_dim: int,
        n_classes: int,
    ) -> None:
        self.config, self.seed = config, seed
        self.shape = {
            "use_text": use_text,
            "audio_dim": audio_dim,
            "text_dim": text_dim,
            "n_classes": n_classes,
        }

    def new_model(self) -> nn.Module:
        """A fresh head seeded with the run's seed (the same initial weights every time)."""
        from fairser.models import build_head

        torch.manual_seed(self.seed)
        return build_head(
            **self.shape, hidden=self.config.hidden, dropout=self.config.dropout, kind=self.config.head
        )

    def fit(
        self,
        *,
        model: nn.Module,
        objective: Objective,
        train: ArrayDataset,
        valid: ArrayDataset,
        epochs: int | None = None,
        keep: Literal["best", "last"] = "best",
        main: bool = False,
    ) -> TrainResult:
        config = self.config
        if epochs is not None:
            config = TrainConfig.model_validate({**config.model_dump(), "epochs": epochs})
        if main and config.epoch_selection == "last":  # train.epoch_selection (the pre-stages keep theirs)
            keep = "last"
        return fit(
            model=model,
            objective=objective,
            train=train,
            valid=valid,
            config=config,
            seed=self.seed,
            keep=keep,
        )

    def predict_proba(self, model: nn.Module, data: ArrayDataset) -> np.ndarray:
        return predict_proba(model, data)

    def release(self) -> None:
        """Nothing to free: heads are small."""


class FeatureBackend:
    """A head on the cached embeddings of :func:`fairser.run.prepare.prepare_data` (normalised as
    ``train.normalise`` says)."""

    is_main_process = True

    def __init__(self, prepared: PreparedData, config: BenchmarkConfig) -> None:
        self.prepared, self.config = prepared, config
        self._normalise = normaliser(prepared, config)

    def check(self, spec: Any) -> None:
        """Every objective runs on cached features."""

    def dataset(
        self, meta: pd.DataFrame, *, y: np.ndarray, domain: np.ndarray, sensitive: np.ndarray, n_values: int
    ) -> ArrayDataset:
        rows = meta["row"].to_numpy()
        text_mask = (meta["modality"] == "audio+text").to_numpy()
        use_text = "audio+text" in set(meta["modality"])
        return ArrayDataset(
            audio=self._normalise(self.prepared.audio[rows], rows),
            text=self.prepared.text[rows] if use_text else None,
            text_mask=text_mask if use_text else None,
            y=y,
            domain=domain,
            sensitive=sensitive,
            n_values=n_values,
        )

    def trainer(self, *, spec: Any, train: ArrayDataset) -> HeadTrainer:
        config = self.trainer_config(spec)
        self._trainer = HeadTrainer(
            config=config,
            seed=spec.seed,
            use_text=train.text is not None,
            audio_dim=train.audio.shape[1],
            text_dim=0 if train.text is None else train.text.shape[1],
            n_classes=len(self.prepared.labels),
        )
        return self._trainer

    def embed_dim(self, model: nn.Module, data: ArrayDataset) -> int:
        with torch.no_grad():
            b = data.tensors(slice(0, 1))
            dim = int(model.eval()(b["audio"], b["text"], b["text_mask"]).embedding.shape[1])
        model.train()
        return dim

    def embedding(self, model: nn.Module, data: ArrayDataset) -> np.ndarray:
        return predict_embedding(model, data)

    def stage_dir(self, spec: Any) -> Path | None:
        return None  # a head's stages are cheap: a resumed run trains them again

    def degrade_train(
        self, *, spec: Any, train: ArrayDataset, meta: pd.DataFrame, progress: bool = False
    ) -> dict:
        """``degrade_augment``: degrade a seeded fraction of the training utterances (in place)."""
        from fairser.run.degraded import augment_train

        return augment_train(
            self.prepared, self.config, train=train, meta=meta, run_seed=spec.seed, progress=progress
        )

    def finish(self, *, spec: Any, result: TrainResult) -> dict[str, Any]:
        """The row's ``head_settings``; with ``train.save_model`` also save the head
        (:func:`fairser.run.saved.save_head`) to
        ``<output_dir>/runs/<run_id>/model`` and name that folder in the row (``saved_model``)."""
        row = {"head_settings": head_settings(self.trainer_config(spec))}
        if not self.config.train.save_model:
            return row
        from fairser.run.saved import MODEL_DIR, save_head

        trainer = self._trainer
        path = save_head(
            Path(self.config.output_dir) / "runs" / spec.run_id / MODEL_DIR,
            spec=spec,
            config=self.config,
            result=result,
            labels=tuple(self.prepared.labels),
            shape=dict(trainer.shape),
            head={
                "kind": trainer.config.head,
                "hidden": trainer.config.hidden,
                "dropout": trainer.config.dropout,
            },
            normaliser=self._normalise,
        )
        return {**row, "saved_model": str(path)}

    def trainer_config(self, spec: Any) -> TrainConfig:
        """``train`` with the objective's own ``sampler`` / ``head`` (the settings the run trained with)."""
        config = self.config.train
        if spec.objective.sampler is not None:
            config = config.model_copy(update={"sampler": spec.objective.sampler})
        if spec.objective.head is not None:
            config = config.model_copy(update={"head": spec.objective.head})
        return config

"""Benchmark configuration as validated data (YAML -> pydantic), defaults in one place.

A config file opens with a comment on how to run it; every field below has a default, so a config only
states what it changes. Unknown keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fairser.data.labels import MELD_EMOTIONS

__all__ = [
    "BenchmarkConfig",
    "CorpusConfig",
    "CorpusSource",
    "CrossProtocol",
    "EvalConfig",
    "FeatureConfig",
    "ObjectiveSpec",
    "TrainConfig",
    "load_config",
]

MODALITIES = ("audio", "audio+text")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CorpusSource(_Strict):
    """One corpus read as its authors distribute it (``fairser data import``)."""

    name: str
    path: Path
    options: dict[str, Any] = Field(default_factory=dict)


class CrossProtocol(_Strict):
    """Cross-corpus / cross-lingual protocol (METHODS.md §5): train + select on A, test on B."""

    by: Literal["corpus", "language"] = "corpus"
    train: tuple[str, ...]
    test: tuple[str, ...]
    valid_fraction: float = Field(0.2, gt=0, lt=1)


class CorpusConfig(_Strict):
    """Where the utterances come from: the built-in synthetic corpus, a manifest CSV, or imported corpora."""

    kind: Literal["synthetic", "manifest", "import"] = "synthetic"
    #: Output folder of the synthetic corpus, or the manifest CSV for ``kind: manifest``.
    path: Path = Path("data/synthetic")
    #: Overrides of the synthetic corpus settings (``fairser.data.synth.SynthConfig``).
    synth: dict[str, Any] = Field(default_factory=dict)
    #: ``kind: import``: the corpora to read and merge (each split speaker-independently unless official).
    sources: tuple[CorpusSource, ...] = ()
    #: ``kind: import``: target label set the corpora's own labels are mapped onto (unmapped: dropped).
    target: Literal["meld7", "core4"] = "meld7"
    #: ``kind: import``: ``auto`` keeps official splits where a corpus has them, else speaker-independent.
    split: Literal["auto", "official", "speaker"] = "auto"
    split_seed: int = 0
    #: Optional cross-corpus / cross-lingual protocol applied after import (replaces the splits).
    cross: CrossProtocol | None = None
    #: Target label set; rows with other labels are an error (for ``kind: import`` it follows ``target``).
    labels: tuple[str, ...] = MELD_EMOTIONS

    @model_validator(mode="after")
    def _check(self) -> CorpusConfig:
        if self.kind == "import":
            if not self.sources:
                raise ValueError("corpus.kind 'import' needs at least one entry in corpus.sources")
            from fairser.data.label_maps import target_labels

            object.__setattr__(self, "labels", tuple(target_labels(self.target)))
        elif self.sources:
            raise ValueError("corpus.sources is only used with corpus.kind 'import'")
        return self


class FeatureConfig(_Strict):
    """Frozen encoders whose pooled embeddings are cached and fed to a trainable head."""

    audio: str = "egemaps"
    audio_options: dict[str, Any] = Field(default_factory=dict)
    text: str = "e5"
    text_options: dict[str, Any] = Field(default_factory=dict)
    cache_dir: Path = Path("cache/features")
    n_jobs: int = Field(2, ge=1)
    on_error: Literal["skip", "raise"] = "skip"


class ObjectiveSpec(_Strict):
    """One objective of the grid: a registered name, its hyperparameters, and a label for tables."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None

    @property
    def display(self) -> str:
        return self.label or self.name

    @field_validator("name")
    @classmethod
    def _registered(cls, v: str) -> str:
        from fairser.objectives import OBJECTIVES

        if v not in OBJECTIVES:
            raise ValueError(f"unknown objective {v!r}; registered: {sorted(OBJECTIVES)}")
        return v


class TrainConfig(_Strict):
    """The training loop shared by every objective (same sampler, seeds and head for all)."""

    epochs: int = Field(40, ge=1)
    batch_size: int = Field(128, ge=2)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    hidden: int = Field(128, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    #: ``stratified``: every (domain, gender) cell in every batch (METHODS.md §3); ``random``: plain shuffling.
    sampler: Literal["stratified", "random"] = "stratified"
    #: Model selection on the validation split only (METHODS.md §5).
    select_metric: Literal["weighted_f1", "uar", "accuracy", "macro_f1"] = "weighted_f1"
    patience: int = Field(10, ge=1)
    #: Audio feature normalisation, fitted on training rows only (a per-test-speaker fit leaks labels).
    normalise: Literal["standard", "none"] = "standard"


class EvalConfig(_Strict):
    """Metrics, gaps and uncertainty (METHODS.md §2)."""

    n_boot: int = Field(1000, ge=0)
    n_perm: int = Field(1000, ge=0)
    ci: float = Field(0.95, gt=0, lt=1)
    min_samples: int = Field(10, ge=1)
    resample: Literal["speaker", "utterance"] = "speaker"


class BenchmarkConfig(_Strict):
    """The ERM-MinMaxGAP benchmark grid: corpus x language x modality x objective x seed."""

    name: str = "default"
    output_dir: Path = Path("results/default")
    corpus: CorpusConfig = CorpusConfig()
    features: FeatureConfig = FeatureConfig()
    languages: tuple[str, ...] = ("en", "de", "ja")
    modalities: tuple[Literal["audio", "audio+text"], ...] = MODALITIES
    #: One model over both modality settings (domains = language x modality, transcript masked for
    #: audio-only samples) instead of one model per setting (domains = languages, as in the paper).
    joint_modalities: bool = False
    objectives: tuple[ObjectiveSpec, ...] = (
        ObjectiveSpec(name="erm", label="ERM"),
        ObjectiveSpec(name="minmaxgap", label="ERM-MinMaxGAP"),
    )
    seeds: tuple[int, ...] = (0, 1, 2)
    train: TrainConfig = TrainConfig()
    evaluation: EvalConfig = EvalConfig()
    #: Parallel training runs (processes); each run uses one torch thread.
    n_jobs: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _check(self) -> BenchmarkConfig:
        if not self.languages or not self.modalities or not self.objectives or not self.seeds:
            raise ValueError("languages, modalities, objectives and seeds must each be non-empty")
        labels = [o.display for o in self.objectives]
        if len(set(labels)) != len(labels):
            raise ValueError(
                f"objective labels must be unique, got {labels}; set `label:` to tell them apart"
            )
        return self


def load_config(path: str | Path | None = None, **overrides: Any) -> BenchmarkConfig:
    """Load a YAML config (or the defaults when ``path`` is None) and apply top-level overrides.

    Relative paths in the file are relative to the current working directory.
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config not found: {path}")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a config must be a mapping of fields, got {type(data).__name__}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return BenchmarkConfig.model_validate(data)

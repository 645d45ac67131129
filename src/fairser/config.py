"""Benchmark configuration as validated data (YAML -> pydantic), defaults in one place.

A config file opens with a comment on how to run it; every field below has a default, so a config only
states what it changes. Unknown keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fairser.data.labels import MELD_EMOTIONS
from fairser.errors import UserError

__all__ = [
    "BackboneConfig",
    "BenchmarkConfig",
    "ConditionSpec",
    "CorpusConfig",
    "CorpusSource",
    "CrossProtocol",
    "DegradeAugment",
    "EvalConfig",
    "FeatureConfig",
    "GroupsConfig",
    "LoraOptions",
    "ObjectiveSpec",
    "RobustnessConfig",
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
    #: Passed to :func:`fairser.data.corpora.import_corpus`, the same keys as ``fairser data import`` flags:
    #: ``columns`` ({manifest column: file column or constant}, generic), ``corpus`` (name, generic),
    #: ``label_map`` ({corpus label: target label or null}; extends the built-in synonyms), ``strict``
    #: (false: drop and count rows without audio), ``allow_drop`` / ``max_drop`` (accept losing more than
    #: ``max_drop``, default 0.2, of the utterances), plus a loader's own (``audio_root``, ``sep``, ``pairs``,
    #: ``demographics``, ``vocal_channels``). An unknown key is refused with the list of known ones.
    options: dict[str, Any] = Field(default_factory=dict)


class CrossProtocol(_Strict):
    """Cross-corpus / cross-lingual protocol (METHODS.md §5): train + select on A, test on B."""

    by: Literal["corpus", "language"] = "corpus"
    train: tuple[str, ...]
    test: tuple[str, ...]
    valid_fraction: float = Field(0.2, gt=0, lt=1)
    #: Fraction of the test side's speakers (gender-stratified) moved out of ``test`` into an ``adapt`` split:
    #: unlabelled target data for adaptation methods (CFA), never evaluated on, never trained on by others.
    adapt_fraction: float = Field(0.0, ge=0, lt=1)


class CorpusConfig(_Strict):
    """Where the utterances come from: the built-in synthetic corpus, a manifest CSV, or imported corpora."""

    kind: Literal["synthetic", "manifest", "import"] = "synthetic"
    #: Output folder of the synthetic corpus, or the manifest CSV for ``kind: manifest``.
    path: Path = Path("data/synthetic")
    #: Overrides of the synthetic corpus settings (``fairser.data.synth.SynthConfig``).
    synth: dict[str, Any] = Field(default_factory=dict)
    #: ``kind: import``: the corpora to read and merge (each split speaker-independently unless official).
    sources: tuple[CorpusSource, ...] = ()
    #: ``kind: import``: target label set the corpora's own labels are mapped onto (unmapped: dropped);
    #: ``original`` keeps each corpus's own labels (e.g. EmoDB's 7 classes, as in the published baselines).
    target: Literal["meld7", "core4", "original"] = "meld7"
    #: ``kind: import``: ``auto`` keeps official splits where a corpus has them, else speaker-independent.
    split: Literal["auto", "official", "speaker"] = "auto"
    #: Seed of the speaker split (``kind: import``) and of the cross-validation folds (``protocol``).
    split_seed: int = 0
    #: ``kind: import``: train/valid/test fractions of each corpus's speakers for speaker-independent splits.
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    #: Optional cross-corpus / cross-lingual protocol applied after import (replaces the splits).
    cross: CrossProtocol | None = None
    #: Target label set; rows with other labels are an error (for ``kind: import`` it follows ``target``).
    labels: tuple[str, ...] = MELD_EMOTIONS

    @model_validator(mode="after")
    def _check(self) -> CorpusConfig:
        if self.kind == "import":
            if not self.sources:
                raise ValueError("corpus.kind 'import' needs at least one entry in corpus.sources")
            from fairser.data.label_maps import CORPUS_LABELS, target_labels

            labels = target_labels(self.target)
            if labels is None:  # original: the sources' own vocabularies, in order
                unknown = sorted({s.name for s in self.sources} - set(CORPUS_LABELS))
                if unknown:
                    raise ValueError(
                        f"target 'original' needs each corpus's label vocabulary; {unknown} has none: "
                        "use target meld7 or core4, or corpus.kind manifest with its labels"
                    )
                labels = tuple(dict.fromkeys(lab for s in self.sources for lab in CORPUS_LABELS[s.name]))
            object.__setattr__(self, "labels", tuple(labels))
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


class GroupsConfig(_Strict):
    """Where the training groups' gender comes from (IDI, implicit demography inference; Lin, Chou, Lee 2025).

    ``source: true`` (default) trains on the corpus's gender labels. ``inferred`` replaces every training
    row's gender by an inferred one, as if the corpus had none (group objectives, reweighting and the
    stratified sampler then use it); ``fill`` infers only where the label is ``unknown``. Evaluation always
    uses the true gender where it is known; the run records the agreement (accuracy, Cohen's kappa).
    See :mod:`fairser.methods.idi` for the methods.
    """

    source: Literal["true", "inferred", "fill"] = "true"
    method: Literal["f0", "kmeans", "classifier"] = "f0"
    #: ``f0``: a speaker whose median F0 exceeds this (Hz) is inferred female.
    f0_threshold: float = Field(165.0, gt=0)
    #: ``kmeans``: cluster speakers separately within each corpus / language, or all together.
    kmeans_within: Literal["corpus", "language", "all"] = "corpus"
    #: ``classifier``: rows of each corpus / language / speaker fold are labelled by a classifier trained
    #: on the others' labels.
    classifier_by: Literal["corpus", "language", "speaker"] = "corpus"

    @field_validator("source", mode="before")
    @classmethod
    def _yaml_true(cls, v: Any) -> Any:
        return "true" if v is True else v  # YAML reads `source: true` as a boolean

    @property
    def inferred(self) -> bool:
        return self.source != "true"

    def key(self) -> str:
        """Identifies one inference (the same for ``inferred`` and ``fill``, which differ only in use)."""
        return f"{self.method}|{self.f0_threshold:g}|{self.kmeans_within}|{self.classifier_by}"


class ObjectiveSpec(_Strict):
    """One objective of the grid: a registered name, its hyperparameters, and a label for tables.

    ``groups`` overrides the benchmark's ``groups`` for this objective (e.g. an IDI variant); ``sampler``
    overrides ``train.sampler`` (only for the resampling method, ``sampler: balanced``: every other
    objective of a comparison must share one sampler).
    """

    #: A registered objective (checked where the grid is planned, :func:`fairser.run.plan.check_objectives`:
    #: the config layer sits below the objectives and does not import their registry).
    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None
    groups: GroupsConfig | None = None
    sampler: Literal["stratified", "random", "balanced"] | None = None
    #: Overrides ``train.head`` for this objective (e.g. ERM with a linear head beside ERM with the MLP).
    head: Literal["mlp", "linear"] | None = None

    @property
    def display(self) -> str:
        return self.label or self.name


class TrainConfig(_Strict):
    """The training loop shared by every objective (same sampler, seeds and head for all)."""

    epochs: int = Field(40, ge=1)
    batch_size: int = Field(128, ge=2)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    #: ``mlp``: two hidden layers (``hidden``, ``dropout``); ``linear``: one linear layer on the features,
    #: i.e. multinomial logistic regression (``weight_decay`` is its L2 penalty; ``hidden``/``dropout`` unused).
    head: Literal["mlp", "linear"] = "mlp"
    hidden: int = Field(128, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    #: ``stratified``: every (domain, gender) cell in every batch (METHODS.md §3); ``random``: plain shuffling;
    #: ``balanced``: resampling (Kamiran & Calders), draws weighted so gender is independent of the label.
    sampler: Literal["stratified", "random", "balanced"] = "stratified"
    #: Model selection on the validation split only (METHODS.md §5).
    select_metric: Literal["weighted_f1", "uar", "accuracy", "macro_f1"] = "weighted_f1"
    patience: int = Field(10, ge=1)
    #: Head settings against memorising the training speakers (issue 13; ``weight_decay``, ``dropout`` above):
    #: ``best``: the epoch with the best validation score (early stopping after ``patience``); ``last``: the
    #: last of ``epochs`` epochs, no early stopping. Every results row states them (``head_settings``).
    epoch_selection: Literal["best", "last"] = "best"
    #: Audio feature normalisation, fitted on training rows only (a per-test-speaker fit leaks labels).
    #: ``per_corpus`` (cross-corpus work): each corpus standardised with its own training rows, or, for a
    #: corpus with none, its unlabelled ``adapt`` rows, else all its rows (features only; noted in the results).
    #: ``per_speaker``: each speaker standardised with its own mean and std over all its utterances, the test
    #: speakers' included: transductive on features (never labels), a common SER practice (noted in the results).
    normalise: Literal["standard", "per_corpus", "per_speaker", "none"] = "standard"
    #: Keep every run's trained model in ``<output_dir>/runs/<run_id>/model`` (safetensors weights and a JSON of
    #: what rebuilds it: encoders, labels, normalisation statistics, objective), for ``fairser predict``. Heads
    #: keep their weights, backbones their trainable parameters (LoRA, head). Off by default (a grid's many
    #: models); it does not change run ids (the models are the same with or without it).
    save_model: bool = False


class EvalConfig(_Strict):
    """Metrics, gaps and uncertainty (METHODS.md §2)."""

    n_boot: int = Field(1000, ge=0)
    n_perm: int = Field(1000, ge=0)
    ci: float = Field(0.95, gt=0, lt=1)
    min_samples: int = Field(10, ge=1)
    resample: Literal["speaker", "utterance"] = "speaker"
    #: Also fit a linear gender probe (speaker-independent CV) on each run's learned test embedding.
    gender_probe: bool = False


class LoraOptions(_Strict):
    """LoRA hyper-parameters of a backbone (Hu et al. 2022); ``target_modules: null`` takes the backbone's
    default (Qwen2-Audio: the language model's q/k/v/o/gate/up/down projections; SSL: q/k/v/out_proj)."""

    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: tuple[str, ...] | None = None


_QWEN_ONLY = (  # options of the audio LLMs (qwen2_audio, desta25)
    "mode",
    "prompt_style",
    "label_words",
    "instruction",
    "attn_implementation",
    "train_audio_encoder",
    "train_projector",
    "adapter",
    "zero_shot",
    "prompt_language",
    "instructions",
    "calibration",
)
_DESTA_ONLY = ("whisper_transcript",)
_SSL_ONLY = ("finetune", "top_k", "mlp_hidden", "dropout", "normalize_layers")


class BackboneConfig(_Strict):
    """A raw-audio backbone trained end to end in place of a head on cached features (``fairser.scale``).

    With a ``backbone:`` section, ``fairser benchmark`` skips feature extraction and trains this model on
    the waveforms (Qwen2-Audio + LoRA as in Pang et al. 2026, or a wav2vec2 / HuBERT / WavLM / Whisper
    encoder); ``train.sampler``, ``train.select_metric`` and ``train.patience`` still apply, the other
    ``train`` fields are the feature heads' and are replaced by the loop fields below. Weights are read
    from the local folder ``path`` only. See docs/reproduce_paper.md.
    """

    name: Literal["qwen2_audio", "desta25", "ssl"]
    path: Path
    #: qwen2_audio: classify by the label words' first-token scores, or by a head on pooled hidden states.
    mode: Literal["label_tokens", "head"] = "label_tokens"
    prompt_style: Literal["chat", "plain"] = "chat"
    label_words: tuple[str, ...] | None = None
    instruction: str | None = None
    attn_implementation: str | None = None
    train_audio_encoder: bool = False
    train_projector: bool = False
    #: qwen2_audio: start from a saved adapter folder (``Qwen2AudioClassifier.save_adapter``).
    adapter: Path | None = None
    #: ssl: keep the encoder frozen, unfreeze its top ``top_k`` layers, or add LoRA adapters.
    finetune: Literal["frozen", "top_k", "lora"] = "top_k"
    top_k: int = Field(2, ge=0)
    mlp_hidden: int = Field(256, ge=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    normalize_layers: bool = False
    #: LoRA adapters (qwen2_audio; ssl with ``finetune: lora``); ``null``: none.
    lora: LoraOptions | None = LoraOptions()
    #: dtype of the loaded (frozen) weights; ``auto`` keeps the checkpoint's.
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    #: autocast of the forward pass (Accelerator); ``null`` takes ``accelerate launch``'s setting, else ``no``.
    mixed_precision: Literal["no", "bf16", "fp16"] | None = None
    gradient_checkpointing: bool = False
    #: samples per process per micro-step; the stratified sampler draws ``per_device x processes`` at once.
    per_device_batch_size: int = Field(4, ge=1)
    grad_accum_steps: int = Field(1, ge=1)
    eval_batch_size: int = Field(8, ge=1)
    epochs: int = Field(3, ge=1)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    lr_schedule: Literal["constant", "linear", "cosine"] = "linear"
    max_grad_norm: float | None = Field(1.0, gt=0)
    #: global micro-batches re-cut together by duration (1: only the split over processes is sorted).
    bucket_window: int = Field(8, ge=1)
    #: also checkpoint every this many optimizer steps (0: at each epoch end only); exact resume.
    checkpoint_every: int = Field(0, ge=0)
    keep_checkpoints: int = Field(1, ge=1)
    #: keep decoded waveforms in memory (small corpora).
    cache_audio: bool = False

    # ---- zero-shot label scoring of an audio LLM (qwen2_audio, desta25; METHODS.md §6) ----
    #: Evaluate the model as it is, without a training step: the label words' first-token scores at the
    #: answer position classify the test split (no LoRA is added; ``adapter`` evaluates a saved one). The grid
    #: then holds one objective named ``zero_shot`` and one seed.
    zero_shot: bool = False
    #: ``english``: one instruction (``instruction`` or the default) for every utterance; ``utterance``: the
    #: instruction in each utterance's language (built-in for en, de, ja, zh, fr, es; ``instructions`` adds or
    #: overrides languages). Recorded in the results row.
    prompt_language: Literal["english", "utterance"] = "english"
    #: Per-language instructions (``prompt_language: utterance``), each with a ``{labels}`` placeholder.
    instructions: dict[str, str] | None = None
    #: ``contextual``: subtract the label-word log-probabilities of a content-free input (1 s of silence,
    #: transcript "N/A") under the same prompt (Zhao et al. 2021); zero-shot runs only.
    calibration: Literal["none", "contextual"] = "none"
    #: desta25: audio-only rows get the transcript Whisper decodes from the audio (the released model's
    #: input); ``false`` leaves the transcript slot empty. ``audio+text`` rows use the corpus transcript.
    whisper_transcript: bool = True

    @model_validator(mode="after")
    def _check(self) -> BackboneConfig:
        if self.name == "ssl":
            other = _QWEN_ONLY + _DESTA_ONLY
        else:
            other = _SSL_ONLY + (_DESTA_ONLY if self.name == "qwen2_audio" else ())
        # options of the other backbone kind must keep their defaults (a full dump, e.g. the config.yaml a
        # benchmark writes, lists them all)
        fields = type(self).model_fields
        given = sorted(k for k in other if getattr(self, k) != fields[k].default)
        if given:
            raise ValueError(f"backbone {self.name!r} does not take option(s) {given}")
        if self.zero_shot and self.mode != "label_tokens":
            raise ValueError("backbone.zero_shot scores the label words: it needs mode: label_tokens")
        if self.zero_shot and "lora" in self.model_fields_set and self.lora is not None:
            raise ValueError(
                "backbone.zero_shot trains nothing, so it adds no LoRA: drop backbone.lora (or set it to null)"
            )
        if self.calibration != "none" and not self.zero_shot:
            raise ValueError(
                "backbone.calibration applies to zero-shot scoring: set backbone.zero_shot: true "
                "(fine-tuning learns the label priors itself)"
            )
        if self.instructions is not None and self.prompt_language != "utterance":
            raise ValueError("backbone.instructions (per language) need backbone.prompt_language: utterance")
        if self.instructions is not None:
            bad = sorted(k for k, v in self.instructions.items() if "{labels}" not in v)
            if bad:
                raise ValueError(f"backbone.instructions for {bad} must contain the '{{labels}}' placeholder")
        return self


# -- robustness (issue 15): degradation conditions, training-time degradation ------------------------------
class ConditionSpec(_Strict):
    """One degradation condition (``fairser.degrade``): a registered family ``name`` (mp3, opus, aac, amr_nb,
    vorbis, gsm, telephone, bandlimit, resample, noise, neural_codec), its ``params`` (e.g. ``bitrate_kbps: 16``)
    and an optional ``label`` for tables. Names and parameters are checked when the conditions are built
    (:func:`fairser.degrade.build_conditions`; the config layer sits below the degradations)."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None


class RobustnessConfig(_Strict):
    """``fairser robustness``: the conditions the finished runs are tested under, the seed of their noise and
    babble, and the size of the babble pool (training-split utterances)."""

    conditions: tuple[ConditionSpec, ...] = ()
    seed: int = 0
    babble_pool: int = Field(64, ge=1)


class DegradeAugment(_Strict):
    """Training-time degradation: a seeded ``fraction`` of the training utterances is replaced by its copy
    degraded with one of ``conditions`` (drawn uniformly per utterance), for any objective (heads on cached
    features; backbones refuse it)."""

    fraction: float = Field(0.5, gt=0, le=1)
    conditions: tuple[ConditionSpec, ...]
    seed: int = 0
    babble_pool: int = Field(64, ge=1)

    @model_validator(mode="after")
    def _check(self) -> DegradeAugment:
        if not self.conditions:
            raise ValueError("degrade_augment.conditions must list at least one condition")
        return self


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
    #: Evaluation protocol (METHODS.md §5). ``holdout``: the corpus's train/valid/test split. ``kfold``:
    #: ``folds`` speaker-grouped folds, gender-stratified within corpus and language; ``loso``: leave one
    #: speaker out. Both test every speaker exactly once, select the model on ``valid_speakers`` speakers per
    #: stratum drawn from each fold's training speakers (seed ``corpus.split_seed``), and pool the out-of-fold
    #: predictions for the gaps, CIs and permutation tests (the corpus's own split is not used).
    protocol: Literal["holdout", "kfold", "loso"] = "holdout"
    folds: int = Field(5, ge=2)
    valid_speakers: int = Field(1, ge=1)
    #: The sensitive attribute: one manifest column, or several (their intersection, e.g. gender x age_band).
    #: Its values (any number) form the groups of the objectives, the sampler and the evaluation's gaps.
    sensitive: tuple[str, ...] = ("gender",)
    #: Gender source of the training groups for every objective (IDI); an objective's ``groups`` overrides it.
    groups: GroupsConfig = GroupsConfig()
    train: TrainConfig = TrainConfig()
    evaluation: EvalConfig = EvalConfig()
    #: Train a raw-audio backbone (Qwen2-Audio, SSL) instead of a head on cached features.
    backbone: BackboneConfig | None = None
    #: Parallel training runs (processes); each run uses one torch thread.
    n_jobs: int = Field(2, ge=1)
    #: ``fairser robustness``: the degradation conditions finished runs are tested under (issue 15).
    robustness: RobustnessConfig = RobustnessConfig()
    #: Training-time degradation of a fraction of the training utterances (issue 15); ``null``: none.
    degrade_augment: DegradeAugment | None = None

    @field_validator("sensitive", mode="before")
    @classmethod
    def _one_column(cls, v: Any) -> Any:
        return (v,) if isinstance(v, str) else v  # `sensitive: age_band` means [age_band]

    @field_validator("languages", mode="before")
    @classmethod
    def _language_tags(cls, v: Any) -> Any:
        """Language tags as the manifests hold them: lower-case BCP-47 (``UR`` -> ``ur``, ``en_US`` -> ``en-us``)."""
        v = (v,) if isinstance(v, str) else v
        return (
            tuple(str(x).strip().lower().replace("_", "-") for x in v) if isinstance(v, list | tuple) else v
        )

    @model_validator(mode="after")
    def _check(self) -> BenchmarkConfig:
        if not self.languages or not self.modalities or not self.objectives or not self.seeds:
            raise ValueError("languages, modalities, objectives and seeds must each be non-empty")
        labels = [o.display for o in self.objectives]
        if len(set(labels)) != len(labels):
            raise ValueError(
                f"objective labels must be unique, got {labels}; set `label:` to tell them apart"
            )
        if not self.sensitive or len(set(self.sensitive)) != len(self.sensitive):
            raise ValueError(
                f"sensitive must name one column or several distinct ones (an intersection), got {list(self.sensitive)}"
            )
        domain_cols = sorted({"language", "modality"} & set(self.sensitive))
        if domain_cols:
            raise ValueError(
                f"sensitive {list(self.sensitive)} names the domain column(s) {domain_cols}: gaps are measured "
                "between the values of the sensitive attribute within each language x modality domain, so it "
                "must be another column (gender, age_band, ...)"
            )
        if self.protocol != "holdout":
            if self.corpus.cross is not None:
                raise ValueError(
                    f"protocol {self.protocol!r} folds the speakers of one corpus; corpus.cross fixes its own "
                    "train and test sides: use protocol: holdout with corpus.cross"
                )
            if self.backbone is not None:
                raise ValueError(
                    f"protocol {self.protocol!r} runs heads on cached features only; a backbone uses protocol: holdout"
                )
        if self.backbone is not None and self.degrade_augment is not None:
            raise ValueError(
                "degrade_augment replaces cached features of training utterances; a backbone reads waveforms: "
                "remove degrade_augment or the backbone section"
            )
        if self.backbone is not None and "linear" in {self.train.head, *(o.head for o in self.objectives)}:
            raise ValueError("head: linear is a head on cached features; a backbone has its own classifier")
        zero_shot = self.backbone is not None and self.backbone.zero_shot
        names = [o.name for o in self.objectives]
        if zero_shot and (names != ["zero_shot"] or len(self.seeds) != 1):
            raise ValueError(
                f"backbone.zero_shot runs no training, so the grid holds one objective named zero_shot and one "
                f"seed (scores are deterministic); got objectives {names} and seeds {list(self.seeds)}: set "
                "objectives: [{name: zero_shot, label: Zero-shot}] and seeds: [0]"
            )
        if not zero_shot and "zero_shot" in names:
            raise ValueError("objective zero_shot needs an audio LLM backbone with backbone.zero_shot: true")
        if self.sensitive != ("gender",):
            covada = [o.display for o in self.objectives if o.name == "covada"]
            if covada:
                raise ValueError(
                    f"CO-VADA (objectives {covada}) converts voices across gender, so it needs sensitive: "
                    f"[gender]; this config has sensitive {list(self.sensitive)}"
                )
            inferred = [o.display for o in self.objectives if (o.groups or self.groups).inferred]
            if inferred:
                raise ValueError(
                    f"groups source inferred/fill (IDI, objectives {inferred}) infers gender only; it cannot "
                    f"stand in for sensitive {list(self.sensitive)}: use sensitive: [gender] or groups source: true"
                )
            if self.evaluation.gender_probe:
                raise ValueError(
                    f"evaluation.gender_probe probes gender only; with sensitive {list(self.sensitive)} set it to false"
                )
        return self


def load_config(path: str | Path | None = None, **overrides: Any) -> BenchmarkConfig:
    """Load a YAML config (or the defaults when ``path`` is None) and apply top-level overrides.

    Relative paths in the file are relative to the current working directory. Every mistake is a
    :class:`~fairser.errors.UserError` naming the file, line and key: a missing file, an empty file (a config
    states at least one field; run without ``--config`` for the defaults), a YAML syntax error, a key given
    twice in one mapping (YAML would silently keep the last) and every validation error (unknown key, bad
    value), one line each as ``key (file:line): what — fix``.
    """
    data: dict[str, Any] = {}
    root = None
    if path is not None:
        path = Path(path)
        if path.is_dir():
            raise UserError(
                "is a folder, not a config file", where=str(path), fix="give a YAML file (see configs/)"
            )
        if not path.is_file():
            raise UserError(
                "config not found", where=str(path), fix="check the path (shipped configs are in configs/)"
            )
        data, root = _read_yaml(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return BenchmarkConfig.model_validate(data)
    except ValidationError as e:
        raise _config_error(e, path=path, root=root) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, str | int | float | bool) and key in seen:
                raise UserError(
                    f"key {key!r} is given twice (lines {seen[key]} and {line}); YAML would keep only the last",
                    where=f"{key_node.start_mark.name}:{line}",
                    fix=f"keep one {key!r} (merge their contents)",
                )
            seen.setdefault(key, line)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> tuple[dict[str, Any], Any]:
    """The config file as a mapping, and its YAML node tree (for line numbers of keys)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(
            f"not UTF-8 text ({e.reason} at byte {e.start})", where=str(path), fix="save the config as UTF-8"
        ) from None
    try:
        loader = _UniqueKeyLoader(text)
        loader.name = str(path)
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise UserError(
            f"not valid YAML: {e.problem or e}", where=where, fix="correct the YAML syntax at that line"
        ) from None
    except yaml.YAMLError as e:
        raise UserError(f"not valid YAML: {e}", where=str(path), fix="correct the YAML syntax") from None
    if data is None:
        raise UserError(
            "the config file is empty (it states no field)",
            where=str(path),
            fix="state the fields you change (see configs/*.yaml), or run without --config for the defaults",
        )
    if not isinstance(data, dict):
        raise UserError(
            f"a config must be a mapping of fields (key: value), got a {type(data).__name__}",
            where=str(path),
            fix="write one `key: value` per line (see configs/*.yaml)",
        )
    return data, root


def _key_line(root: Any, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the deepest key of ``loc`` found in the YAML node tree ``root``."""
    node, line = root, None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == str(part)), None)
            if match is None:
                key = next((k for k, _ in node.value if k.value == str(part)), None)
                return line if key is None else key.start_mark.line + 1
            key = next(k for k, _ in node.value if k.value == str(part))
            node, line = match, key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The field names of the model holding the last key of ``loc`` (for a misspelt key's fix)."""
    import typing

    model: Any = BenchmarkConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return []
        ann = model.model_fields[part].annotation
        while typing.get_origin(ann) is not None:  # X | None, tuple[X, ...], list[X]
            args = [a for a in typing.get_args(ann) if a is not type(None) and a is not Ellipsis]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            ann = models[0] if models else (args[0] if args else None)
        model = ann
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _config_error(error: ValidationError, *, path: Path | None, root: Any) -> UserError:
    """One :class:`UserError` listing every validation error as ``key (file:line): what — fix``."""
    import difflib

    lines = []
    for err in error.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc) or "(the config as a whole)"
        line = _key_line(root, loc) if root is not None else None
        place = f" ({path}:{line})" if path is not None and line else ""
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            fix = (
                f"did you mean {close[0]!r}?"
                if close
                else "remove it" + (f" (allowed here: {', '.join(allowed)})" if allowed else "")
            )
            msg = "unknown key"
        elif err["type"] == "missing":
            fix = "add it"
        elif "input" in err and err["type"] not in ("value_error", "assertion_error"):
            fix = f"got {err['input']!r}; give a valid value"
        else:
            fix = "change the value"
        lines.append(f"  {key}{place}: {msg} — {fix}")
    return UserError(
        f"invalid config ({len(lines)} error(s)):\n" + "\n".join(lines),
        where=str(path) if path is not None else "config",
        fix="correct the key(s) above (every field and its default: src/fairser/config.py, configs/*.yaml)",
    )

"""``fairser predict``: apply a saved run (:mod:`fairser.run.saved`) to an audio file, a folder or a manifest.

The output is the predictions table of a benchmark run (:func:`fairser.results.rows.predictions_table`,
the table ``fairser audit`` reads): the same columns, with each input row's own ``split`` (empty for audio
without a manifest) and its truth where the manifest has one. A file that cannot be read is left out of the
table, counted and listed (:attr:`Prediction.failures`); the batch goes on.

The seam for other models is :class:`Predictor`: anything with ``labels``, ``modalities``, ``identity`` and
``predict_proba(meta, ...)`` can be applied by :func:`predict` (a saved head, a saved backbone, or a zero-shot
audio LLM scored by its label words).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import numpy as np
import pandas as pd

from fairser.errors import UserError
from fairser.run.saved import SavedModel, load_saved_model, load_state_strict, tensors_stats

__all__ = [
    "AUDIO_SUFFIXES",
    "PREDICTORS",
    "BackbonePredictor",
    "HeadPredictor",
    "PredictInput",
    "Prediction",
    "Predictor",
    "Scores",
    "ZeroShotPredictor",
    "load_predictor",
    "load_zero_shot_predictor",
    "predict",
    "read_input",
]

#: Audio files a folder is searched for (what libsndfile decodes).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")
#: Columns of the predictions table taken from the input (empty where the input has none).
_META_COLUMNS = ("id", "emotion", "gender", "language", "speaker", "corpus", "split", "transcript")
_LISTED = 10


@dataclass
class PredictInput:
    """The utterances to predict: one row each (``id``, absolute ``audio_path`` and the manifest's other
    columns, empty where unknown), what the input was, and which columns it really had."""

    rows: pd.DataFrame
    kind: str  # "file", "folder" or "manifest"
    source: str
    columns: frozenset[str] = frozenset()

    @property
    def has_transcripts(self) -> bool:
        return "transcript" in self.columns

    @property
    def has_speakers(self) -> bool:
        return {"corpus", "speaker"} <= self.columns


@dataclass
class Scores:
    """A predictor's answer for the rows of ``meta``: probabilities (N, C) (rows not ``ok`` are NaN), which rows
    it could score, and the unreadable files with their reasons."""

    proba: np.ndarray
    ok: np.ndarray
    failures: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Predictor(Protocol):
    """What :func:`predict` applies: a saved run (:func:`load_predictor`) or any other scorer, e.g. a zero-shot
    audio LLM.

    ``labels``: the label set in its order (the ``prob_<label>`` columns); ``modalities``: the modality rows it
    predicts each utterance for (``audio``, ``audio+text``); ``identity``: the run columns of the table
    (``objective``, ``seed``, ``setting``, ``run_id``); ``sensitive``: the sensitive columns the table carries
    (gender always; others from the input, empty where it has none).
    """

    labels: tuple[str, ...]
    modalities: tuple[str, ...]
    identity: dict[str, Any]
    sensitive: tuple[str, ...]

    def predict_proba(
        self, meta: pd.DataFrame, *, inputs: PredictInput, batch_size: int | None, progress: bool
    ) -> Scores:
        """Class probabilities of every row of ``meta``: the input's rows once per modality, with columns
        ``modality`` and ``row`` (the row of ``inputs.rows``); unreadable audio gives ``ok == False``.
        ``batch_size`` None: the predictor's own (a head: 4096 rows; a backbone: its ``eval_batch_size``)."""


@dataclass
class Prediction:
    """The predictions table, the unreadable files (path, reason) and notes on what was done."""

    table: pd.DataFrame
    failures: list[tuple[str, str]]
    notes: list[str]


# -- inputs ------------------------------------------------------------------------------------------------
def read_input(
    path: str | Path, *, labels: tuple[str, ...] | None = None, split: str | None = None
) -> PredictInput:
    """The utterances of an audio file, a folder (searched recursively for :data:`AUDIO_SUFFIXES`) or a
    manifest CSV (columns ``id`` and ``audio_path``; ``transcript``, ``emotion``, ``gender``, ``language``,
    ``speaker``, ``corpus``, ``split`` and any sensitive column are used where present; relative audio paths
    are relative to the manifest's folder). ``split`` keeps the manifest rows of that split; ``labels``: an
    ``emotion`` outside them is refused (it could not be audited)."""
    path = Path(path)
    if not path.exists():
        raise UserError(
            "no such file or folder", where=str(path), fix="give an audio file, a folder or a manifest CSV"
        )
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise UserError(
                f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in this folder or below it", where=str(path)
            )
        rows = pd.DataFrame(
            {
                "id": [p.relative_to(path).as_posix() for p in files],
                "audio_path": [str(p.resolve()) for p in files],
            }
        )
        kind, columns = "folder", frozenset()
    elif path.suffix.lower() == ".csv":
        rows, columns = _read_manifest(path, labels=labels)
        kind = "manifest"
    else:
        rows = pd.DataFrame({"id": [path.name], "audio_path": [str(path.resolve())]})
        kind, columns = "file", frozenset()
    if split is not None:
        if "split" not in columns:
            raise UserError(f"--split {split} needs a manifest with a split column", where=str(path))
        rows = rows[rows["split"] == split].reset_index(drop=True)
        if rows.empty:
            raise UserError(f"no row of split {split!r}", where=str(path), fix="choose another --split")
    for col in _META_COLUMNS:
        if col not in rows.columns:
            rows[col] = ""
    return PredictInput(rows=rows, kind=kind, source=str(path), columns=columns)


def _read_manifest(path: Path, *, labels: tuple[str, ...] | None) -> tuple[pd.DataFrame, frozenset[str]]:
    from fairser.data.manifest import MANIFEST_COLUMNS, read_table_file, validate_manifest

    df = read_table_file(path)  # empty, non-UTF-8 or malformed: one ManifestError naming the file
    missing = [c for c in ("id", "audio_path") if c not in df.columns]
    if missing:
        raise UserError(
            f"the manifest lacks column(s) {missing} (it has {list(df.columns)})",
            where=str(path),
            fix="a manifest for predict needs id and audio_path; transcript, emotion, gender, language, speaker, "
            "corpus and split are used where present",
        )
    if set(MANIFEST_COLUMNS) <= set(df.columns):  # a full manifest: the usual checks and spellings
        df = validate_manifest(df, root=path.parent, check_files=False, source=str(path))
    df = df.astype({c: "string" for c in df.columns}).fillna("").astype(object).reset_index(drop=True)
    empty = df["id"].str.strip() == ""
    dup = df["id"].duplicated(keep=False)
    for bad, what in ((empty, "empty id"), (dup, "duplicate id")):
        if bad.any():
            lines = [str(i + 2) for i in np.flatnonzero(bad.to_numpy())[:_LISTED]]
            raise UserError(f"{what} in {int(bad.sum())} row(s)", where=f"{path}:{','.join(lines)}")
    root = path.parent.resolve()
    df["audio_path"] = [str(p if Path(p).is_absolute() else root / p) for p in df["audio_path"]]
    if labels is not None and "emotion" in df.columns:
        bad = (df["emotion"] != "") & ~df["emotion"].isin(labels)
        if bad.any():
            lines = [str(i + 2) for i in np.flatnonzero(bad.to_numpy())[:_LISTED]]
            raise UserError(
                f"emotion label(s) {sorted(set(df.loc[bad, 'emotion']))} are not among the model's labels "
                f"{list(labels)}",
                where=f"{path}:{','.join(lines)}",
                fix="map them onto the model's label set, or drop the emotion column to predict without truth",
            )
    return df, frozenset(df.columns)


# -- the saved head ------------------------------------------------------------------------------------------
def _check_encoder(record: dict[str, Any], encoder: Any, *, what: str, where: str) -> None:
    """The rebuilt encoder must be the one the model was trained on (same config, hence same fingerprint)."""
    if encoder.fingerprint() == record["fingerprint"]:
        return
    now = encoder.config()
    saved = record.get("config", {})
    diff = sorted(k for k in set(now) | set(saved) if now.get(k) != saved.get(k))
    shown = ", ".join(f"{k}: saved {saved.get(k)!r}, now {now.get(k)!r}" for k in diff[:5])
    raise UserError(
        f"the {what} encoder differs from the one the model was trained on ({shown or 'fingerprint differs'})",
        where=where,
        fix="install the library versions the model was trained with (the record lists them), or retrain",
    )


class HeadPredictor:
    """A saved head on cached features: extracts (or reads from the cache) the run's audio and transcript
    features, standardises them as the run did, and applies the head."""

    def __init__(self, saved: SavedModel, *, cache_dir: str | Path | None = None, n_jobs: int = 1) -> None:
        from fairser.models import build_head

        self.saved, self.meta = saved, saved.meta
        self.labels = saved.labels
        self.modalities = tuple(self.meta["modalities"])
        self.identity = _identity(self.meta)
        self.sensitive = tuple(self.meta["sensitive"])
        self.cache_dir = Path(cache_dir if cache_dir is not None else self.meta["features"]["cache_dir"])
        self.n_jobs = n_jobs
        m = self.meta["model"]
        try:
            self.model = build_head(
                use_text=bool(m["use_text"]),
                audio_dim=int(m["audio_dim"]),
                text_dim=int(m["text_dim"]),
                n_classes=int(m["n_classes"]),
                hidden=int(m["hidden"]),
                dropout=float(m["dropout"]),
                kind=str(m["kind"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise UserError(
                f"the model record's model section is invalid: {err!r}", where=str(saved.path)
            ) from None
        if int(m["n_classes"]) != len(self.labels):
            raise UserError(
                f"the model has {m['n_classes']} classes but {len(self.labels)} labels", where=str(saved.path)
            )
        load_state_strict(self.model, saved.prefixed("head"), what="head", where=str(saved.path))
        self.model.eval()
        # the encoders must be the ones the model was trained on (refused here, before any extraction)
        from fairser.features import build_audio_encoder, build_text_encoder

        feats = self.meta["features"]
        self.audio_encoder = build_audio_encoder(feats["audio"]["name"], **feats["audio"]["options"])
        _check_encoder(feats["audio"], self.audio_encoder, what="audio", where=str(saved.path))
        self.text_encoder = None
        if feats.get("text") is not None:
            self.text_encoder = build_text_encoder(feats["text"]["name"], **feats["text"]["options"])
            _check_encoder(feats["text"], self.text_encoder, what="text", where=str(saved.path))
        norm = self.meta["normalise"]
        self.normalise_mode = norm["mode"]
        self.stats = (
            {} if norm["mode"] in ("none", "per_speaker") else tensors_stats(saved, list(norm["units"]))
        )

    def predict_dataset(self, data: Any) -> np.ndarray:
        """Class probabilities (N, C) of a run's own dataset of normalised features (an
        :class:`~fairser.train.ArrayDataset`, e.g. a benchmark run's test view), as the run predicted them."""
        from fairser.train import predict_proba as head_proba

        return head_proba(self.model, data)

    def _check_inputs(self, inputs: PredictInput) -> None:
        mode = self.normalise_mode
        if mode == "per_speaker" and not inputs.has_speakers:
            raise UserError(
                "this model standardises features per speaker (train.normalise: per_speaker), so it needs to "
                f"know who speaks: a {inputs.kind} does not say",
                where=inputs.source,
                fix="give a manifest with corpus and speaker columns (each speaker's statistics are computed over "
                "all its utterances in the manifest, as in training)",
            )
        if mode == "per_corpus":
            if "corpus" not in inputs.columns:
                raise UserError(
                    "this model standardises features per corpus (train.normalise: per_corpus); the input names "
                    "no corpus",
                    where=inputs.source,
                    fix=f"give a manifest with a corpus column naming one of {list(self.stats)}",
                )
            unknown = sorted(set(inputs.rows["corpus"]) - set(self.stats))
            if unknown:
                raise UserError(
                    f"corpus(es) {unknown} have no normalisation statistics in this model (it knows "
                    f"{list(self.stats)})",
                    where=inputs.source,
                    fix="predict only rows of those corpora, or retrain with the corpus in the data",
                )

    def predict_proba(
        self,
        meta: pd.DataFrame,
        *,
        inputs: PredictInput,
        batch_size: int | None = None,
        progress: bool = True,
    ) -> Scores:
        from fairser.features import FeatureCache, extract_audio_features, extract_text_features
        from fairser.run.prepare import Normaliser, speaker_units, unit_stats
        from fairser.train import ArrayDataset
        from fairser.train import predict_proba as head_proba

        self._check_inputs(inputs)
        audio_enc = self.audio_encoder
        cache = FeatureCache(self.cache_dir)
        rows = inputs.rows
        res = extract_audio_features(
            paths=list(rows["audio_path"]),
            encoder=audio_enc,
            cache=cache,
            n_jobs=self.n_jobs,
            on_error="skip",
            progress=progress,
        )
        ok = np.asarray(res.ok, dtype=bool)
        audio = np.asarray(res.features, dtype=np.float32)
        units, notes = None, []
        if self.normalise_mode == "per_speaker":
            units = speaker_units(rows)
            stats = unit_stats(audio[ok], units[ok])
            notes.append(
                f"normalise per_speaker: each of the input's {len(stats)} speakers is standardised with its own "
                "mean and std over its readable utterances in the input (as in training: features only)"
            )
        else:
            stats = self.stats
            if self.normalise_mode == "per_corpus":
                units = rows["corpus"].astype(str).to_numpy()
        norm = Normaliser(mode=self.normalise_mode, stats=stats)
        audio_n = np.zeros_like(audio)
        audio_n[ok] = norm.apply(audio[ok], units=None if units is None else units[ok])
        use_text = bool(self.meta["model"]["use_text"]) and (meta["modality"] == "audio+text").any()
        text = None
        if use_text:
            text = extract_text_features(
                texts=list(rows["transcript"]), encoder=self.text_encoder, cache=cache, progress=progress
            )
        idx = meta["row"].to_numpy()
        n = len(meta)
        data = ArrayDataset(
            audio=audio_n[idx],
            text=None if text is None else text[idx],
            text_mask=(meta["modality"] == "audio+text").to_numpy() if use_text else None,
            y=np.zeros(n, dtype=np.int64),
            domain=np.zeros(n, dtype=np.int64),
            sensitive=np.zeros(n, dtype=np.int64),
        )
        proba = np.full((n, len(self.labels)), np.nan, dtype=np.float32)
        row_ok = ok[idx]
        keep = np.flatnonzero(row_ok)
        batch_size = batch_size or 4096
        from fairser.progress import progress_bar

        with progress_bar(enabled=progress) as bar:
            task = bar.add_task("predicting", total=len(keep))
            for start in range(0, len(keep), batch_size):
                part = keep[start : start + batch_size]
                proba[part] = head_proba(self.model, data.subset(part), batch_size=batch_size)
                bar.advance(task, len(part))
        return Scores(proba=proba, ok=row_ok, failures=[(str(p), r) for p, r in res.failures], notes=notes)


class BackbonePredictor:
    """A saved backbone run (:mod:`fairser.run.saved`): the base model rebuilt from its local folder with the
    run's settings and seed, its trainable tensors loaded, applied to the waveforms as in the run's test
    prediction (:func:`fairser.scale.loop.predict_backbone`, batches sorted by duration)."""

    def __init__(self, saved, *, base_path: str | Path | None = None) -> None:
        from fairser.config import BackboneConfig
        from fairser.run.backbone import base_model_identity, build_backbone

        self.saved, self.meta = saved, saved.meta
        self.labels = saved.labels
        self.modalities = tuple(self.meta["modalities"])
        self.sensitive = tuple(self.meta["sensitive"])
        run = self.meta["run"]
        self.identity = {
            "objective": run["objective_label"],
            "seed": run["seed"],
            "setting": run["setting"],
            "run_id": run["run_id"],
        }
        where = str(saved.path)
        settings = dict(self.meta["backbone"])
        if base_path is not None:
            settings["path"] = str(base_path)
        try:
            self.config = BackboneConfig.model_validate(settings)
        except ValueError as err:
            raise UserError(f"the model record's backbone settings are invalid: {err}", where=where) from None
        now = base_model_identity(self.config.path)
        saved_id = self.meta.get("base_model", {})
        if now["config_sha256"] is None:
            raise UserError(
                "the base model folder has no config.json",
                where=str(self.config.path),
                fix="pass the folder of the base model the run was trained from (--backbone-path)",
            )
        if now["config_sha256"] != saved_id.get("config_sha256") or now["weight_files"] != saved_id.get(
            "weight_files"
        ):
            raise UserError(
                "the base model folder is not the one the run was trained from (its config.json or weight "
                "files differ from those recorded in the model record's base_model)",
                where=str(self.config.path),
                fix="pass the base model the run was trained from (--backbone-path)",
            )
        import torch

        torch.manual_seed(int(run["seed"]))
        self.model = build_backbone(self.config, labels=self.labels)
        state = saved.prefixed("backbone")
        trainable = {n for n, p in self.model.named_parameters() if p.requires_grad}
        own = self.model.state_dict()
        unknown = sorted(set(state) - trainable)
        missing = sorted(trainable - set(state))
        shape = sorted(k for k in set(state) & trainable if tuple(state[k].shape) != tuple(own[k].shape))
        if unknown or missing or shape:
            raise UserError(
                "the saved trainable tensors do not fit the rebuilt backbone ("
                + "; ".join(
                    f"{what} {names[:3]}"
                    for what, names in (("missing", missing), ("unexpected", unknown), ("other shape", shape))
                    if names
                )
                + ")",
                where=where,
                fix="the model folder was edited or the backbone settings changed: train and save the run again",
            )
        self.model.load_state_dict(state, strict=False)
        # as in the run: on accelerate's device, with the configured autocast (mixed precision)
        from fairser.scale.loop import make_accelerator

        self.accelerator = make_accelerator(mixed_precision=self.config.mixed_precision)
        self.model = self.accelerator.prepare_model(self.model, evaluation_mode=True)
        self.model.eval()

    def predict_dataset(self, data: Any, *, progress: bool = False) -> np.ndarray:
        """Class probabilities (N, C) of a run's own :class:`~fairser.scale.data.AudioDataset` (e.g. a benchmark
        run's test view, or its degraded waveforms), batched as the run predicted."""
        from fairser.scale.loop import predict_backbone

        return predict_backbone(
            self.model,
            data,
            batch_size=self.config.eval_batch_size,
            accelerator=self.accelerator,
            progress=progress,
        )

    def predict_proba(
        self, meta: pd.DataFrame, *, inputs: Any, batch_size: int | None = None, progress: bool = True
    ):
        from fairser.features.audio import AudioError, load_audio
        from fairser.scale.data import AudioDataset
        from fairser.scale.loop import predict_backbone

        rows = inputs.rows
        readable, failures = np.ones(len(rows), dtype=bool), []
        for i, path in enumerate(rows["audio_path"]):
            try:
                load_audio(path)
            except AudioError as err:
                readable[i] = False
                failures.append((str(path), err.reason))
        ok = readable[meta["row"].to_numpy()]
        text = meta["modality"] == "audio+text"
        empty = (text & (meta["transcript"].astype(str).str.strip() == "")).to_numpy()
        if empty.any():
            ids = list(meta.loc[empty, "id"][:10])
            raise UserError(
                f"{int(empty.sum())} row(s) have no transcript for the audio+text model: ids {ids}",
                where=inputs.source,
            )
        kept = meta[ok]
        durations = None
        if "duration" in inputs.columns:
            durations = pd.to_numeric(kept["duration"], errors="coerce").to_numpy(dtype=float)
            if np.isnan(durations).any():
                durations = None
        n = len(kept)
        data = AudioDataset(
            audio=[str(p) for p in kept["audio_path"]],
            y=np.zeros(n, dtype=np.int64),
            domain=np.zeros(n, dtype=np.int64),
            sensitive=np.zeros(n, dtype=np.int64),
            texts=[str(t) for t in kept["transcript"]],
            modalities=list(kept["modality"]),
            durations=durations,
        )
        proba = np.full((len(meta), len(self.labels)), np.nan, dtype=np.float32)
        if n:
            proba[ok] = predict_backbone(
                self.model,
                data,
                batch_size=batch_size or self.config.eval_batch_size,
                accelerator=self.accelerator,
                progress=progress,
            )
        return Scores(proba=proba, ok=ok, failures=failures)


class ZeroShotPredictor:
    """An instruction-tuned audio LLM scored as it is (``backbone.zero_shot: true`` in a benchmark config):
    the same label scoring as a zero-shot benchmark run (:func:`fairser.models.audio_llm.load_audio_llm`:
    a C-way softmax over the label words' first tokens, with the config's prompts and calibration). Labels,
    modalities and the sensitive attribute are the config's; the identity is the zero-shot run's."""

    def __init__(self, config: Any, *, base_path: str | Path | None = None) -> None:
        from fairser.models.audio_llm import load_audio_llm

        backbone = config.backbone
        if backbone is None or not backbone.zero_shot:
            raise UserError(
                "this config does not describe a zero-shot audio LLM",
                where="config key backbone.zero_shot",
                fix="set backbone.zero_shot: true (see configs/tiny_qwen2_audio_zero_shot.yaml), or give a saved run",
            )
        if base_path is not None:
            backbone = backbone.model_copy(update={"path": Path(base_path)})
        self.config = backbone
        self.labels = tuple(config.corpus.labels)
        self.modalities = tuple(config.modalities)
        self.sensitive = tuple(config.sensitive)
        objective = config.objectives[0]
        self.identity = {
            "objective": objective.display,
            "seed": config.seeds[0],
            "setting": "shared",
            "run_id": f"zero_shot-{backbone.name}",
        }
        import torch

        torch.manual_seed(int(config.seeds[0]))
        self.model = load_audio_llm(config=backbone, labels=self.labels)

    def predict_proba(
        self, meta: pd.DataFrame, *, inputs: Any, batch_size: int | None = None, progress: bool = True
    ) -> Scores:
        from fairser.features.audio import AudioError, load_audio

        rows = inputs.rows
        waves: dict[int, np.ndarray] = {}
        failures = []
        for i, path in enumerate(rows["audio_path"]):
            try:
                waves[i] = load_audio(path)
            except AudioError as err:
                failures.append((str(path), err.reason))
        ok = np.array([r in waves for r in meta["row"]], dtype=bool)
        kept = meta[ok]
        proba = np.full((len(meta), len(self.labels)), np.nan, dtype=np.float32)
        if len(kept):
            text = (kept["modality"] == "audio+text").to_numpy()
            pred = self.model.predict(
                audios=[waves[r] for r in kept["row"]],
                texts=[str(t) if t_on else None for t, t_on in zip(kept["transcript"], text, strict=True)],
                modalities=list(kept["modality"]),
                languages=[str(x) or None for x in kept["language"]],
                batch_size=batch_size or self.config.eval_batch_size,
                progress=progress,
            )
            proba[ok] = pred.proba
        note = f"zero-shot scoring: {self.model.scoring_settings()}"
        return Scores(proba=proba, ok=ok, failures=failures, notes=[note])


def load_zero_shot_predictor(
    config_path: str | Path, *, backbone_path: str | Path | None = None
) -> Predictor:
    """The :class:`ZeroShotPredictor` of a benchmark config with ``backbone.zero_shot: true``."""
    from fairser.config import load_config

    return ZeroShotPredictor(load_config(config_path), base_path=backbone_path)


def _identity(meta: dict[str, Any]) -> dict[str, Any]:
    run = meta["run"]
    return {
        "objective": run["objective_label"],
        "seed": run["seed"],
        "setting": run["setting"],
        "run_id": run["run_id"],
    }


def load_predictor(
    path: str | Path,
    *,
    cache_dir: str | Path | None = None,
    n_jobs: int = 1,
    backbone_path: str | Path | None = None,
) -> Predictor:
    """The :class:`Predictor` of a saved run (a run folder or its ``model/`` folder). ``cache_dir``: the feature
    cache of a head (default: the run's); ``backbone_path``: the base model folder of a backbone (default: the
    recorded one; either way it must be the model the run was trained from)."""
    saved = load_saved_model(path)
    options = {"cache_dir": cache_dir, "n_jobs": n_jobs, "backbone_path": backbone_path}
    return PREDICTORS[saved.kind](saved, **options)


def _head(saved: SavedModel, *, cache_dir=None, n_jobs: int = 1, **_: Any) -> Predictor:
    return HeadPredictor(saved, cache_dir=cache_dir, n_jobs=n_jobs)


def _backbone(saved: SavedModel, *, backbone_path=None, **_: Any) -> Predictor:
    return BackbonePredictor(saved, base_path=backbone_path)


#: The predictor of each kind of saved model (:data:`fairser.run.saved.KIND_KEYS`):
#: ``build(saved, *, cache_dir, n_jobs, backbone_path) -> Predictor``.
PREDICTORS: dict[str, Callable[..., Predictor]] = {"head": _head, "backbone": _backbone}


# -- the table ------------------------------------------------------------------------------------------------
def predict(
    predictor: Predictor, inputs: PredictInput, *, batch_size: int | None = None, progress: bool = True
) -> Prediction:
    """Apply ``predictor`` to ``inputs``: every utterance once per modality of the predictor (the transcript
    modality only where the input has transcripts), in input order per modality, as in a run's test table.

    Returns the predictions table (the format of a benchmark run's ``predictions.csv``), the unreadable files
    and notes. Raises :class:`UserError` when a modality needs transcripts the input lacks, or when no file
    could be read.
    """
    notes: list[str] = []
    modalities = list(predictor.modalities)
    if "audio+text" in modalities and not inputs.has_transcripts:
        if modalities == ["audio+text"]:
            raise UserError(
                "this model reads the transcript with the audio (setting audio+text); a "
                f"{inputs.kind} has no transcripts",
                where=inputs.source,
                fix="give a manifest with a transcript column",
            )
        modalities = [m for m in modalities if m != "audio+text"]
        notes.append("the input has no transcripts: audio-only predictions of the joint model")
    parts = []
    for modality in modalities:
        part = inputs.rows.copy()
        part["modality"] = modality
        part["row"] = np.arange(len(inputs.rows))
        parts.append(part)
    meta = pd.concat(parts, ignore_index=True)
    scores = predictor.predict_proba(meta, inputs=inputs, batch_size=batch_size, progress=progress)
    ok = np.asarray(scores.ok, dtype=bool)
    if not ok.any():
        shown = "; ".join(f"{p}: {r}" for p, r in scores.failures[:_LISTED])
        raise UserError(
            f"no audio file could be read ({len(scores.failures)} failed): {shown}", where=inputs.source
        )
    from fairser.results.rows import predictions_table

    spec = SimpleNamespace(
        objective=SimpleNamespace(display=predictor.identity["objective"]),
        seed=predictor.identity["seed"],
        setting=predictor.identity["setting"],
        run_id=predictor.identity["run_id"],
    )
    kept = meta[ok].reset_index(drop=True)
    sensitive = list(predictor.sensitive)
    for col in sensitive:
        if col not in kept.columns:
            kept[col] = ""
    table = predictions_table(
        meta=kept, proba=np.asarray(scores.proba)[ok], labels=predictor.labels, spec=spec, sensitive=sensitive
    )
    table["split"] = kept["split"].to_numpy()
    notes.extend(scores.notes)
    if scores.failures:
        notes.append(f"{len(scores.failures)} unreadable audio file(s) left out of the table")
    return Prediction(table=table, failures=list(scores.failures), notes=notes)

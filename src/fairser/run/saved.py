"""Saved models: a run's trained parameters as safetensors and a JSON of everything that rebuilds the model.

``train.save_model: true`` makes every run keep ``<output_dir>/runs/<run_id>/model/``:

* ``model.safetensors``: the trained tensors (never a pickle). A head on cached features keeps its whole
  state (``head.*``) and the train-only normalisation statistics (``normalise.<unit>.mean`` / ``.std``); a
  raw-audio backbone keeps its trainable parameters only (``backbone.*``: LoRA weights, classifier head, any
  unfrozen layers), the frozen base model stays in its local folder.
* ``model.json``: the schema and fairser version, the run (id, objective and its hyper-parameters, seed,
  setting), the label set in its order, the sensitive attribute, the modalities, the feature encoders (name,
  options, their full config and fingerprint) or the backbone settings (and the base model's identity), the
  normalisation, the model's shape, and the sha256 of the weights file.

:func:`load_saved_model` refuses, with one clear message, a folder whose JSON lacks a key, whose schema
version is another, or whose weights file does not match the sha256 recorded beside it (edited or swapped).
Rebuilding checks every tensor name and shape against the rebuilt model (:func:`load_state_strict`).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fairser.errors import UserError

__all__ = [
    "KIND_KEYS",
    "MODEL_DIR",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SavedModel",
    "load_saved_model",
    "load_state_strict",
    "model_dir",
    "save_model",
]

#: The folder of a run's saved model, inside its run folder.
MODEL_DIR = "model"
SCHEMA = "fairser.saved_model"
#: Bumped whenever the layout or the meaning of a key changes; loading refuses any other version.
SCHEMA_VERSION = 1
_JSON = "model.json"
_WEIGHTS = "model.safetensors"
#: Keys every model.json has (``kind``-specific ones are checked where the model is rebuilt).
REQUIRED_KEYS = (
    "schema",
    "schema_version",
    "fairser_version",
    "kind",
    "run",
    "labels",
    "sensitive",
    "modalities",
    "weights",
)
#: The keys each kind of saved model adds to :data:`REQUIRED_KEYS`. A new kind (e.g. a zero-shot audio LLM with
#: its prompt and content-free calibration scores) registers its keys here and its predictor in
#: :data:`fairser.run.predict.PREDICTORS`.
KIND_KEYS: dict[str, tuple[str, ...]] = {
    "head": ("features", "normalise", "model"),
    "backbone": ("backbone", "base_model"),
}


@dataclass
class SavedModel:
    """A loaded model folder: its JSON record and its tensors (CPU)."""

    path: Path
    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    @property
    def kind(self) -> str:
        return self.meta["kind"]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.meta["labels"])

    def prefixed(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors under ``prefix.`` with the prefix removed."""
        n = len(prefix) + 1
        return {k[n:]: v for k, v in self.tensors.items() if k.startswith(prefix + ".")}


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def save_model(path: str | Path, *, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Path:
    """Write ``model.safetensors`` (``tensors``, contiguous CPU copies) and ``model.json`` (``meta`` plus the
    schema, the fairser version, the time and the weights' sha256 and tensor shapes) into ``path``."""
    from safetensors.torch import save_file

    import fairser

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / _WEIGHTS
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, weights)
    record = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "fairser_version": fairser.__version__,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **meta,
        "weights": {
            "file": _WEIGHTS,
            "sha256": _sha256(weights),
            "tensors": {k: list(v.shape) for k, v in sorted(tensors.items())},
        },
    }
    (out / _JSON).write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    return out


def model_dir(path: str | Path) -> Path:
    """The model folder of ``path``: a run folder (``runs/<run_id>``, holding ``model/``) or the model folder."""
    path = Path(path)
    if (path / _JSON).is_file():
        return path
    if (path / MODEL_DIR / _JSON).is_file():
        return path / MODEL_DIR
    if not path.exists():
        raise UserError(
            "no such run or model folder",
            where=str(path),
            fix="pass a benchmark's runs/<run_id> folder (or its model/ folder)",
        )
    raise UserError(
        f"no saved model here (no {_JSON} in it or in {MODEL_DIR}/)",
        where=str(path),
        fix="set `train.save_model: true` in the config and train the run again (a finished run is not "
        "retrained: use a fresh output_dir or remove its row from results.jsonl)",
    )


def load_saved_model(path: str | Path) -> SavedModel:
    """Read and check a saved model (a run folder or its ``model/`` folder); raises :class:`UserError` for
    a missing or unreadable JSON, another schema or schema version, a missing key, or weights that differ
    from the recorded sha256."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    root = model_dir(path)
    where = str(root / _JSON)
    try:
        meta = json.loads((root / _JSON).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"unreadable model record: {err}", where=where, fix="save the run again") from None
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        raise UserError(
            f"not a fairser saved model (schema {meta.get('schema') if isinstance(meta, dict) else None!r}, "
            f"expected {SCHEMA!r})",
            where=where,
        )
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise UserError(
            f"saved with model schema version {meta.get('schema_version')!r} (fairser "
            f"{meta.get('fairser_version', '?')}); this fairser reads version {SCHEMA_VERSION} only",
            where=where,
            fix=f"use fairser {meta.get('fairser_version', '?')} to predict with it, or train the run again",
        )
    missing = [k for k in (*REQUIRED_KEYS, *KIND_KEYS.get(meta.get("kind"), ())) if k not in meta]
    if missing:
        raise UserError(f"the model record lacks key(s) {missing}", where=where, fix="save the run again")
    if meta["kind"] not in KIND_KEYS:
        raise UserError(f"unknown model kind {meta['kind']!r} (known: {sorted(KIND_KEYS)})", where=where)
    weights = root / str(meta["weights"].get("file", _WEIGHTS))
    if not weights.is_file():
        raise UserError("the weights file is missing", where=str(weights), fix="save the run again")
    digest = _sha256(weights)
    if digest != meta["weights"].get("sha256"):
        raise UserError(
            f"the weights file does not match the sha256 recorded in {_JSON} ({digest[:12]}… vs "
            f"{str(meta['weights'].get('sha256'))[:12]}…): it was changed or replaced after saving",
            where=str(weights),
            fix="restore the run's own model folder, or train and save the run again",
        )
    try:
        tensors = load_file(weights, device="cpu")
    except (SafetensorError, OSError) as err:
        raise UserError(f"unreadable weights: {err}", where=str(weights)) from None
    shapes = {k: list(v.shape) for k, v in tensors.items()}
    if shapes != meta["weights"].get("tensors"):
        raise UserError("the weights file holds other tensors than its record lists", where=str(weights))
    return SavedModel(path=root, meta=meta, tensors=tensors)


def load_state_strict(
    module: torch.nn.Module, state: dict[str, torch.Tensor], *, what: str, where: str
) -> None:
    """Load ``state`` into ``module``'s parameters of the same names; every name of ``state`` must exist with
    its shape, and (``module.load_state_dict(strict)``) every tensor of ``module`` must be given."""
    own = module.state_dict()
    unknown = sorted(set(state) - set(own))
    missing = sorted(set(own) - set(state))
    shape = sorted(k for k in set(state) & set(own) if tuple(state[k].shape) != tuple(own[k].shape))
    if unknown or missing or shape:
        parts = []
        if missing:
            parts.append(f"missing tensor(s) {missing[:5]}{' …' if len(missing) > 5 else ''}")
        if unknown:
            parts.append(f"unexpected tensor(s) {unknown[:5]}{' …' if len(unknown) > 5 else ''}")
        if shape:
            parts.append(
                "other shape(s): "
                + ", ".join(f"{k} {list(state[k].shape)} vs {list(own[k].shape)}" for k in shape[:5])
            )
        raise UserError(
            f"the saved {what} does not fit the model its record describes: " + "; ".join(parts),
            where=where,
            fix="the model folder was edited or comes from another fairser version: train and save the run again",
        )
    module.load_state_dict(state, strict=True)


def stats_tensors(stats: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Normalisation statistics as tensors ``normalise.<i>.mean`` / ``.std`` (unit names in the JSON, in
    the same order: a unit name may hold any character)."""
    out = {}
    for i, (mean, std) in enumerate(stats.values()):
        out[f"normalise.{i}.mean"] = torch.from_numpy(np.ascontiguousarray(mean))
        out[f"normalise.{i}.std"] = torch.from_numpy(np.ascontiguousarray(std))
    return out


def tensors_stats(saved: SavedModel, units: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The statistics :func:`stats_tensors` saved, by unit name (dtypes as saved)."""
    out = {}
    for i, name in enumerate(units):
        mean, std = saved.tensors.get(f"normalise.{i}.mean"), saved.tensors.get(f"normalise.{i}.std")
        if mean is None or std is None:
            raise UserError(
                f"normalisation statistics of {name!r} are missing from the weights",
                where=str(saved.path / _WEIGHTS),
                fix="train and save the run again",
            )
        out[name] = (mean.numpy(), std.numpy())
    return out


def run_record(*, spec: Any, config: Any, result: Any, labels: tuple[str, ...]) -> dict[str, Any]:
    """What every saved model records of its run: identity, objective, labels, attribute, modalities."""
    from fairser.run.views import setting_modalities

    return {
        "run": {
            "run_id": spec.run_id,
            "objective": spec.objective.name,
            "objective_label": spec.objective.display,
            "params": dict(spec.objective.params),
            "seed": spec.seed,
            "setting": spec.setting,
            "fold": spec.fold,
            "best_epoch": result.best_epoch,
            "valid_score": result.best_score,
        },
        "labels": list(labels),
        "sensitive": list(config.sensitive),
        "languages": list(config.languages),
        "modalities": setting_modalities(spec.setting, config),
        "train": config.train.model_dump(mode="json"),
    }


def encoder_record(encoder: Any, *, name: str, options: dict[str, Any]) -> dict[str, Any]:
    """A feature encoder as a saved model records it: how to build it and what it was (config, fingerprint)."""
    return {
        "name": name,
        "options": dict(options),
        "config": encoder.config(),
        "fingerprint": encoder.fingerprint(),
    }


def save_head(
    path: str | Path,
    *,
    spec: Any,
    config: Any,
    result: Any,
    labels: tuple[str, ...],
    shape: dict[str, Any],
    head: dict[str, Any],
    normaliser: Any,
) -> Path:
    """Save a head on cached features: its state, its shape, the encoders and the normalisation statistics.

    ``shape`` holds ``use_text, audio_dim, text_dim, n_classes``; ``head`` the ``kind, hidden, dropout`` it was
    built with; ``normaliser`` the run's :class:`~fairser.run.prepare.Normaliser`. Per-speaker statistics are
    not kept: they belong to the speakers of the data (``fairser predict`` computes them from its input).
    """
    from fairser.features import build_audio_encoder, build_text_encoder

    feats = config.features
    features = {
        "audio": encoder_record(
            build_audio_encoder(feats.audio, **feats.audio_options),
            name=feats.audio,
            options=feats.audio_options,
        ),
        "text": None,
        "cache_dir": str(feats.cache_dir),
    }
    if shape["use_text"]:
        features["text"] = encoder_record(
            build_text_encoder(feats.text, **feats.text_options), name=feats.text, options=feats.text_options
        )
    mode = normaliser.mode
    units = [] if mode == "per_speaker" else list(normaliser.stats)
    normalise = {"mode": mode, "units": units}
    if mode == "per_speaker":
        normalise["note"] = (
            "statistics are per speaker (corpus/speaker) over all the speaker's utterances; fairser predict "
            "computes them from its input's speakers (a manifest with corpus and speaker columns)"
        )
    tensors = {f"head.{k}": v for k, v in result.model.state_dict().items()}
    if mode != "per_speaker":
        tensors.update(stats_tensors({u: normaliser.stats[u] for u in units}))
    meta = {
        "kind": "head",
        **run_record(spec=spec, config=config, result=result, labels=labels),
        "features": features,
        "normalise": normalise,
        "model": {**shape, **head},
    }
    return save_model(path, meta=meta, tensors=tensors)

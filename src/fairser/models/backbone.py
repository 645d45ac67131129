"""Types shared by the trainable backbones (Qwen2-Audio, SSL and Whisper encoders).

Every backbone returns a :class:`BackboneOutput` whose per-sample ``losses`` (N,), ``logits`` (N, C) and
``embedding`` (N, D) feed :class:`fairser.objectives.GroupBatch` unchanged (METHODS.md §3-4).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "QWEN2_LORA_TARGETS",
    "BackboneOutput",
    "LoraSpec",
    "Prediction",
    "check_local_dir",
    "check_audios",
    "featurise_in_float32",
]

#: The language model's attention and MLP projections in Qwen2 decoder layers (Hu et al. 2022, LoRA).
QWEN2_LORA_TARGETS: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)


@contextmanager
def featurise_in_float32() -> Iterator[None]:
    """Run a backbone's input featurisation (log-mels, waveform normalisation) outside CPU autocast.

    Mixed-precision training (accelerate's bf16/fp16) wraps the model's whole forward in autocast. The Whisper
    feature extractor (used by Qwen2-Audio's processor and the Whisper encoder) computes log-mels with torch
    on the CPU and returns NumPy, which fails on bf16 and would lose precision anyway; featurisation runs in
    float32 and the model's layers still run under autocast.
    """
    with torch.autocast(device_type="cpu", enabled=False):
        yield


@dataclass
class BackboneOutput:
    """What a backbone returns for one batch.

    Attributes
    ----------
    logits : Tensor (N, C)
        Class scores.
    losses : Tensor (N,) or None
        Per-sample cross-entropy (``reduction="none"``); ``None`` when no labels were given.
    embedding : Tensor (N, D)
        The pooled representation the class scores are computed from.
    """

    logits: Tensor
    losses: Tensor | None
    embedding: Tensor


@dataclass
class Prediction:
    """Predicted class indices (N,) and class probabilities (N, C) as numpy arrays, plus the label names."""

    y_pred: np.ndarray
    proba: np.ndarray
    labels: tuple[str, ...]


@dataclass(frozen=True)
class LoraSpec:
    """LoRA hyper-parameters (Hu et al. 2022; PEFT ``LoraConfig``).

    ``target_modules`` are module-name suffixes; a backbone restricts them to its own sub-model (e.g. the
    Qwen2-Audio language model, never the audio encoder, whose attention also has ``q_proj``).
    """

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = field(default=QWEN2_LORA_TARGETS)

    def __post_init__(self) -> None:
        if int(self.r) < 1:
            raise ValueError(f"LoraSpec.r must be >= 1, got {self.r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"LoraSpec.dropout must be in [0, 1), got {self.dropout}")
        if isinstance(self.target_modules, str) or not self.target_modules:
            raise ValueError(
                f"LoraSpec.target_modules must be a non-empty list of names, got {self.target_modules!r}"
            )
        object.__setattr__(self, "target_modules", tuple(self.target_modules))

    @classmethod
    def coerce(cls, value: LoraSpec | Mapping | None, *, default_targets: Sequence[str]) -> LoraSpec | None:
        """Accept a :class:`LoraSpec`, a mapping of its fields (as read from YAML) or ``None`` (no LoRA)."""
        if value is None or isinstance(value, LoraSpec):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - {"r", "alpha", "dropout", "target_modules"}
            if unknown:
                raise ValueError(
                    f"unknown LoRA option(s) {sorted(unknown)}; expected r, alpha, dropout, target_modules"
                )
            kwargs = dict(value)
            kwargs.setdefault("target_modules", tuple(default_targets))
            return cls(**kwargs)
        raise TypeError(f"lora must be a LoraSpec, a mapping or None, got {type(value).__name__}")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["target_modules"] = list(self.target_modules)
        return out


def check_local_dir(path: str | Path, *, what: str, required: Sequence[str] = ("config.json",)) -> Path:
    """Resolve a local model directory or raise :class:`FileNotFoundError` naming what is missing.

    Loading never falls back to a hub download: a path that is not a directory holding ``required`` files is
    an error, whatever its spelling (a hub id such as ``Qwen/Qwen2-Audio-7B-Instruct`` included).
    """
    p = Path(path).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(
            f"{what}: model directory {str(p)!r} does not exist (weights are loaded from local directories only; "
            "download them beforehand and pass that folder)"
        )
    missing = [name for name in required if not (p / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{what}: {str(p)!r} lacks {missing}; is it a saved transformers model directory?"
        )
    return p


def check_audios(audios: Sequence[np.ndarray], *, where: str) -> list[np.ndarray]:
    """Validate a batch of mono waveforms: a non-empty list of non-empty 1-D finite float arrays."""
    if isinstance(audios, np.ndarray) or not isinstance(audios, Sequence) or len(audios) == 0:
        raise ValueError(
            f"{where}: audios must be a non-empty list of 1-D arrays, got {type(audios).__name__}"
        )
    out = []
    for i, a in enumerate(audios):
        arr = np.asarray(a, dtype=np.float32)
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(
                f"{where}: audio {i} must be a non-empty mono 1-D waveform, got shape {arr.shape}"
            )
        if not np.isfinite(arr).all():
            raise ValueError(f"{where}: audio {i} contains NaN or infinite samples")
        out.append(arr)
    return out

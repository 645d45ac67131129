"""Neural audio codecs: resynthesis through any ``transformers`` audio-codec model (EnCodec, DAC, Mimi, ...)
read from a local folder, never a hub (Défossez et al. 2023, "High Fidelity Neural Audio Compression";
Kumar et al. 2023, "High-Fidelity Audio Compression with Improved RVQGAN").

The model's forward pass encodes to discrete codes and decodes them (``audio_values``); the bitrate is
measured from the codes it produced: ``#codes x log2(codebook_size) / duration``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fairser.degrade.base import align, resample
from fairser.features.cache import sha256_file

__all__ = ["NeuralCodec"]

_MODELS: dict[str, Any] = {}  # one loaded model per process


def _weights_digest(path: Path) -> str:
    import hashlib

    files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".json") and p.is_file())
    if not any(p.suffix in (".safetensors", ".bin") for p in files):
        raise ValueError(f"neural_codec: {path} holds no model weights (*.safetensors or *.bin)")
    return hashlib.sha256("".join(f"{p.name}:{sha256_file(p)}\n" for p in files).encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class NeuralCodec:
    """Resynthesis through the ``transformers`` codec model saved in the local folder ``path``.

    ``bandwidth_kbps`` is passed to models that take a target bandwidth (EnCodec); others ignore it.
    """

    path: str
    bandwidth_kbps: float | None = None
    digest: str = field(default="", repr=False)
    name: ClassVar[str] = "neural_codec"

    def __post_init__(self) -> None:
        folder = Path(self.path)
        if not (folder / "config.json").is_file():
            raise ValueError(
                f"neural_codec: {folder} is not a saved transformers model folder (no config.json)"
            )
        if not self.digest:
            object.__setattr__(self, "digest", _weights_digest(folder))

    def config(self) -> dict[str, Any]:
        import json

        import transformers

        model_config = json.loads((Path(self.path) / "config.json").read_text())
        return {
            "name": self.name,
            "model_type": model_config.get("model_type"),
            "weights_sha256": self.digest,
            "bandwidth_kbps": self.bandwidth_kbps,
            "transformers": transformers.__version__,
        }

    def label(self) -> str:
        kind = self.config()["model_type"] or "codec"
        return f"{kind}" + (f" {self.bandwidth_kbps:g}k" if self.bandwidth_kbps else "")

    def model(self):
        """The codec model (loaded once per process, offline, in eval mode)."""
        key = f"{os.path.abspath(self.path)}:{self.digest}"
        if key not in _MODELS:
            from transformers import AutoModel

            _MODELS.clear()
            _MODELS[key] = AutoModel.from_pretrained(self.path, local_files_only=True).eval()
        return _MODELS[key]

    def apply(
        self, signal: np.ndarray, *, sample_rate: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, dict[str, float]]:
        import torch

        model = self.model()
        rate = int(model.config.sampling_rate)
        x = torch.from_numpy(resample(signal, sample_rate, rate)).reshape(1, 1, -1)
        kwargs = {"bandwidth": self.bandwidth_kbps} if self.bandwidth_kbps is not None else {}
        with torch.no_grad():
            out = model(input_values=x, **kwargs)
        y = out.audio_values.reshape(-1).float().numpy()
        codes = getattr(out, "audio_codes", None)
        measures: dict[str, float] = {}
        codebook = getattr(model.config, "codebook_size", None)
        if codes is not None and codebook:
            bits = codes.numel() * math.log2(int(codebook))
            measures["bitrate_kbps"] = bits / (signal.size / sample_rate) / 1000.0
        y, _ = align(resample(y, rate, sample_rate), signal, max_lag=0)
        return y, measures

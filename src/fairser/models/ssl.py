"""Self-supervised speech encoders (wav2vec2, HuBERT, WavLM) and the Whisper encoder as SER backbones.

METHODS.md §4: an encoder loaded from a local directory gives one mean-pooled embedding per layer (the CNN /
embedding output plus every transformer layer: L+1 vectors per clip), and a head learns a softmax-weighted
sum of the layers, as in SUPERB (Yang et al. 2021, "SUPERB: Speech processing Universal PERformance
Benchmark"; the weighted-sum featurizer of s3prl). Two ways to train:

* frozen: :func:`extract_layer_embeddings` computes the (N, L+1, H) array once (cache it as numpy), then a
  :class:`LayerWeightedHead` is trained on it: CPU-friendly;
* fine-tuning: :class:`SSLClassifier` runs the encoder in the loop with its top-k layers unfrozen or LoRA
  adapters (Hu et al. 2022) on the attention projections.

Every model returns per-sample losses (N,), logits (N, C) and an embedding (N, H) (:class:`BackboneOutput`).
Nothing is downloaded: directories are read with ``local_files_only=True``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

try:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoFeatureExtractor, AutoModel
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "fairser.models.ssl needs transformers and peft: pip install 'transformers>=5' peft"
    ) from err

from fairser.models.backbone import (
    BackboneOutput,
    LoraSpec,
    Prediction,
    check_audios,
    check_local_dir,
    featurise_in_float32,
)
from fairser.models.qwen2_audio import resolve_dtype

__all__ = [
    "SSL_ATTENTION_TARGETS",
    "SSL_MODEL_TYPES",
    "LayerWeightedHead",
    "SSLClassifier",
    "SSLEncoder",
    "extract_layer_embeddings",
]

#: ``model_type`` values (config.json) this module loads.
SSL_MODEL_TYPES: tuple[str, ...] = ("wav2vec2", "hubert", "wavlm", "whisper")
#: Attention projections of these encoders (LoRA targets in fine-tuning mode).
SSL_ATTENTION_TARGETS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj")


class SSLEncoder(nn.Module):
    """A speech encoder returning per-layer mean-pooled embeddings (N, L+1, H).

    Padding never enters a pooled mean: the valid frame count of each clip comes from its raw length
    (wav2vec2 family: the CNN's output-length formula; Whisper: half the valid mel frames, the stride of
    its second convolution). wav2vec2-family models get an attention mask when their feature extractor
    asks for one (``return_attention_mask``). Models whose first CNN layer normalises over time
    (``feat_extract_norm="group"``: wav2vec2-base, HuBERT-base, WavLM-base) would see the padding, so their
    clips are encoded one at a time (``pad_sensitive``): an embedding never depends on its batch-mates, which
    a per-utterance cache requires. Whisper always sees its fixed window (30 s in the released models);
    longer clips are truncated to it.
    """

    def __init__(self, *, model: nn.Module, feature_extractor, model_type: str) -> None:
        super().__init__()
        if model_type not in SSL_MODEL_TYPES:
            raise ValueError(f"model_type must be one of {SSL_MODEL_TYPES}, got {model_type!r}")
        self.model = model
        self.feature_extractor = feature_extractor
        self.model_type = model_type
        cfg = model.config
        n = cfg.encoder_layers if model_type == "whisper" else cfg.num_hidden_layers
        self.n_layers = int(n) + 1
        self.hidden_size = int(cfg.d_model if model_type == "whisper" else cfg.hidden_size)
        # GroupNorm over time in the first CNN layer (wav2vec2-base, HuBERT-base, WavLM-base) sees padding:
        # such clips are encoded one at a time, so an embedding never depends on its batch-mates
        self.pad_sensitive = model_type != "whisper" and getattr(cfg, "feat_extract_norm", "layer") == "group"
        self._peft = False
        # LayerDrop (Fan et al. 2020) skips random layers in training, which would shift the layer index of the
        # hidden states the head weights: it is switched off for every layer-weighted use
        for attr in ("layerdrop", "encoder_layerdrop"):
            if hasattr(cfg, attr):
                setattr(cfg, attr, 0.0)
        if hasattr(model, "layerdrop"):
            model.layerdrop = 0.0

    @classmethod
    def from_pretrained(cls, path: str | Path, *, precision: str | torch.dtype | None = "auto") -> SSLEncoder:
        """Load an encoder and its feature extractor from a local directory (Whisper: the encoder only)."""
        root = check_local_dir(
            path, what="SSLEncoder.from_pretrained", required=("config.json", "preprocessor_config.json")
        )
        model_type = json.loads((root / "config.json").read_text(encoding="utf-8")).get("model_type")
        if model_type not in SSL_MODEL_TYPES:
            raise ValueError(f"{str(root)!r} holds a {model_type!r} model; supported: {SSL_MODEL_TYPES}")
        model, info = AutoModel.from_pretrained(
            root,
            local_files_only=True,
            trust_remote_code=False,
            dtype=resolve_dtype(precision),
            output_loading_info=True,
        )
        # a weight missing from the checkpoint would be silently random: refuse (the decoder is not used)
        missing = [
            k
            for k in info.get("missing_keys", ())
            if not k.startswith("decoder.") and "masked_spec_embed" not in k
        ]
        if missing:
            raise ValueError(f"{str(root)!r}: checkpoint lacks encoder weights {sorted(missing)[:5]} ...")
        if model_type == "whisper":
            model = model.get_encoder()
        features = AutoFeatureExtractor.from_pretrained(root, local_files_only=True, trust_remote_code=False)
        return cls(model=model, feature_extractor=features, model_type=model_type)

    @property
    def sampling_rate(self) -> int:
        return int(self.feature_extractor.sampling_rate)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def layers(self) -> nn.ModuleList:
        """The transformer layers, bottom to top."""
        base = self.model.get_base_model() if self._peft else self.model
        return base.layers if self.model_type == "whisper" else base.encoder.layers

    # ------------------------------------------------------------------ training modes
    def freeze(self) -> SSLEncoder:
        """Freeze every weight (frozen-feature mode)."""
        self.model.requires_grad_(False)
        return self

    def unfreeze_top_k(self, k: int) -> SSLEncoder:
        """Freeze everything, then unfreeze the top ``k`` transformer layers (norms outside them stay frozen)."""
        if not 0 <= int(k) <= len(self.layers):
            raise ValueError(f"top_k must be in [0, {len(self.layers)}] for this encoder, got {k}")
        self.freeze()
        for layer in list(self.layers)[len(self.layers) - int(k) :]:
            layer.requires_grad_(True)
        return self

    def add_lora(self, spec: LoraSpec | Mapping) -> SSLEncoder:
        """Freeze the encoder and add LoRA adapters on its attention projections."""
        spec = LoraSpec.coerce(spec, default_targets=SSL_ATTENTION_TARGETS)
        if self._peft:
            raise RuntimeError("this encoder already has LoRA adapters")
        self.freeze()
        names = "|".join(sorted(set(spec.target_modules)))
        config = LoraConfig(
            r=int(spec.r),
            lora_alpha=int(spec.alpha),
            lora_dropout=float(spec.dropout),
            target_modules=rf"^(.*\.)?layers\.\d+\..*\.({names})$",
            bias="none",
        )
        self.model = get_peft_model(self.model, config)
        self._peft = True
        return self

    # ------------------------------------------------------------------ forward
    def _inputs(self, waves: list[np.ndarray]) -> tuple[dict, Tensor]:
        """Model inputs on the device and the number of valid output frames per clip."""
        with featurise_in_float32():
            return self._featurise(waves)

    def _featurise(self, waves: list[np.ndarray]) -> tuple[dict, Tensor]:
        fe = self.feature_extractor
        if self.model_type == "whisper":
            batch = fe(
                waves, sampling_rate=self.sampling_rate, return_tensors="pt", return_attention_mask=True
            )
            mel_valid = batch["attention_mask"].sum(-1)
            frames = (mel_valid + 1) // 2  # conv2 has stride 2
            inputs = {"input_features": batch["input_features"]}
        else:
            batch = fe(waves, sampling_rate=self.sampling_rate, return_tensors="pt", padding=True)
            base = self.model.get_base_model() if self._peft else self.model
            lengths = torch.tensor([w.size for w in waves])
            frames = base._get_feat_extract_output_lengths(lengths)
            inputs = {"input_values": batch["input_values"]}
            if getattr(fe, "return_attention_mask", False) and "attention_mask" in batch:
                inputs["attention_mask"] = batch["attention_mask"]
        dtype = next(self.model.parameters()).dtype
        inputs = {
            k: (v.to(self.device, dtype) if v.is_floating_point() else v.to(self.device))
            for k, v in inputs.items()
        }
        return inputs, frames.to(self.device).clamp_min(1)

    def forward(self, *, audios: Sequence[np.ndarray], sampling_rate: int | None = None) -> Tensor:
        """Per-layer masked mean over frames: a float32 tensor (N, L+1, H)."""
        if sampling_rate is not None and int(sampling_rate) != self.sampling_rate:
            raise ValueError(
                f"audio is at {sampling_rate} Hz; this encoder needs {self.sampling_rate} Hz (resample first)"
            )
        waves = check_audios(audios, where=f"SSLEncoder({self.model_type})")
        if self.pad_sensitive and len(waves) > 1:
            return torch.cat([self._pooled([w]) for w in waves])
        return self._pooled(waves)

    def _pooled(self, waves: list[np.ndarray]) -> Tensor:
        inputs, frames = self._inputs(waves)
        out = self.model(**inputs, output_hidden_states=True)
        states = out.hidden_states
        if len(states) != self.n_layers:
            raise RuntimeError(f"expected {self.n_layers} hidden states, got {len(states)}")
        t = states[0].shape[1]
        mask = (
            (torch.arange(t, device=frames.device)[None, :] < frames[:, None]).to(torch.float32).unsqueeze(-1)
        )
        denom = mask.sum(1)
        return torch.stack([(h.float() * mask).sum(1) / denom for h in states], dim=1)


@torch.inference_mode()
def extract_layer_embeddings(
    encoder: SSLEncoder,
    *,
    audios: Sequence[np.ndarray],
    sampling_rate: int | None = None,
    batch_size: int = 8,
    progress: bool = False,
) -> np.ndarray:
    """Frozen per-layer mean-pooled embeddings of every clip, as a float32 array (N, L+1, H) to cache.

    Clips are sorted by length before batching (less padding), and the rows returned in input order.
    """
    from rich.progress import track

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    waves = check_audios(audios, where="extract_layer_embeddings")
    order = np.argsort([w.size for w in waves], kind="stable")
    out = np.zeros((len(waves), encoder.n_layers, encoder.hidden_size), dtype=np.float32)
    was_training = encoder.training
    encoder.eval()
    try:
        starts = range(0, len(waves), batch_size)
        for s in track(starts, description=f"{encoder.model_type} embeddings", disable=not progress):
            idx = order[s : s + batch_size]
            pooled = encoder(audios=[waves[i] for i in idx], sampling_rate=sampling_rate)
            out[idx] = pooled.cpu().numpy()
    finally:
        encoder.train(was_training)
    return out


class LayerWeightedHead(nn.Module):
    """Softmax-weighted sum of per-layer embeddings, then an MLP (SUPERB's weighted-sum featurizer).

    Parameters
    ----------
    n_layers, hidden_size : int
        Shape of one clip's features (L+1, H).
    n_classes : int
        Number of emotion classes.
    mlp_hidden : int
        Width of the hidden layer; 0 gives a linear classifier on the weighted sum.
    dropout : float
        Dropout before each linear layer.
    normalize_layers : bool
        Layer-normalise each layer's vector (no affine) before weighting, so layers of different scale
        compete fairly (s3prl's ``normalize`` option).
    """

    def __init__(
        self,
        *,
        n_layers: int,
        hidden_size: int,
        n_classes: int,
        mlp_hidden: int = 256,
        dropout: float = 0.1,
        normalize_layers: bool = False,
    ) -> None:
        super().__init__()
        if n_layers < 1 or hidden_size < 1 or n_classes < 2:
            raise ValueError(
                f"need n_layers>=1, hidden_size>=1, n_classes>=2; got {n_layers}, {hidden_size}, {n_classes}"
            )
        self.n_layers, self.hidden_size, self.n_classes = int(n_layers), int(hidden_size), int(n_classes)
        self.normalize_layers = bool(normalize_layers)
        self.layer_logits = nn.Parameter(torch.zeros(self.n_layers))  # uniform weights at start
        if mlp_hidden > 0:
            self.encoder: nn.Module = nn.Sequential(
                nn.Dropout(dropout), nn.Linear(hidden_size, mlp_hidden), nn.GELU()
            )
            width = mlp_hidden
        else:
            self.encoder = nn.Identity()
            width = hidden_size
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, n_classes))

    @property
    def layer_weights(self) -> Tensor:
        """The softmax layer weights (L+1,)."""
        return self.layer_logits.softmax(0)

    def forward(self, features: Tensor, *, labels: Tensor | None = None) -> BackboneOutput:
        """``features`` (N, L+1, H) -> logits (N, C), per-sample CE losses (N,), embedding (N, mlp_hidden or H)."""
        if features.ndim != 3 or tuple(features.shape[1:]) != (self.n_layers, self.hidden_size):
            raise ValueError(
                f"features must have shape (N, {self.n_layers}, {self.hidden_size}), got {tuple(features.shape)}"
            )
        x = features.to(self.layer_logits.dtype)
        if self.normalize_layers:
            x = F.layer_norm(x, (self.hidden_size,))
        pooled = torch.einsum("l,nlh->nh", self.layer_weights, x)
        embedding = self.encoder(pooled)
        logits = self.classifier(embedding)
        losses = None
        if labels is not None:
            y = torch.as_tensor(labels, device=logits.device).long()
            if y.shape != (logits.shape[0],):
                raise ValueError(f"labels must have shape ({logits.shape[0]},), got {tuple(y.shape)}")
            losses = F.cross_entropy(logits, y, reduction="none")
        return BackboneOutput(logits=logits, losses=losses, embedding=embedding)


class SSLClassifier(nn.Module):
    """An :class:`SSLEncoder` trained end to end with a :class:`LayerWeightedHead`.

    ``labels`` optionally names the classes (for :meth:`predict`). ``finetune``: ``"top_k"`` unfreezes the top ``top_k`` layers; ``"lora"`` adds LoRA adapters (``lora``) on
    the attention projections; ``"frozen"`` keeps the encoder frozen and in eval mode (prefer
    :func:`extract_layer_embeddings` + :class:`LayerWeightedHead` then: the encoder runs once, not every
    epoch). Only the frozen layers run without gradient bookkeeping, by autograd's own rules.
    """

    def __init__(
        self,
        *,
        encoder: SSLEncoder,
        n_classes: int,
        finetune: Literal["frozen", "top_k", "lora"] = "top_k",
        top_k: int = 2,
        lora: LoraSpec | Mapping | None = None,
        mlp_hidden: int = 256,
        dropout: float = 0.1,
        normalize_layers: bool = False,
        labels: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if labels is not None and len(labels) != n_classes:
            raise ValueError(f"labels has {len(labels)} names for n_classes={n_classes}")
        self.labels = (
            tuple(str(x) for x in labels) if labels is not None else tuple(str(i) for i in range(n_classes))
        )
        if finetune == "frozen":
            encoder.freeze()
        elif finetune == "top_k":
            encoder.unfreeze_top_k(top_k)
        elif finetune == "lora":
            encoder.add_lora(lora if lora is not None else LoraSpec(target_modules=SSL_ATTENTION_TARGETS))
        else:
            raise ValueError(f"finetune must be 'frozen', 'top_k' or 'lora', got {finetune!r}")
        self.finetune = finetune
        self.encoder = encoder
        self.head = LayerWeightedHead(
            n_layers=encoder.n_layers,
            hidden_size=encoder.hidden_size,
            n_classes=n_classes,
            mlp_hidden=mlp_hidden,
            dropout=dropout,
            normalize_layers=normalize_layers,
        ).to(encoder.device)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, n_classes: int, precision: str | torch.dtype | None = "auto", **kwargs
    ):
        """Load the encoder from a local directory (see :meth:`SSLEncoder.from_pretrained`) and build the model."""
        return cls(
            encoder=SSLEncoder.from_pretrained(path, precision=precision), n_classes=n_classes, **kwargs
        )

    def train(self, mode: bool = True) -> SSLClassifier:
        super().train(mode)
        if self.finetune == "frozen":
            self.encoder.eval()  # no dropout / SpecAugment in a frozen feature extractor
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def forward(
        self, *, audios: Sequence[np.ndarray], labels: Tensor | None = None, sampling_rate: int | None = None
    ) -> BackboneOutput:
        """Logits (N, C), per-sample CE losses (N,) (``None`` without labels) and embedding."""
        features = self.encoder(audios=audios, sampling_rate=sampling_rate)
        return self.head(features, labels=labels)

    @torch.inference_mode()
    def predict(
        self, *, audios: Sequence[np.ndarray], batch_size: int = 8, progress: bool = False
    ) -> Prediction:
        """Predicted class indices and probabilities (eval mode, ``batch_size`` clips at a time)."""
        from rich.progress import track

        was_training = self.training
        self.eval()
        probs = []
        try:
            for s in track(
                range(0, len(audios), batch_size), description="SSL predict", disable=not progress
            ):
                probs.append(self(audios=audios[s : s + batch_size]).logits.softmax(-1).cpu().numpy())
        finally:
            self.train(was_training)
        proba = np.concatenate(probs) if probs else np.zeros((0, self.head.n_classes), dtype=np.float32)
        return Prediction(y_pred=proba.argmax(-1), proba=proba, labels=self.labels)

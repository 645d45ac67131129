"""GPU memory planner for LoRA fine-tuning of Qwen2-Audio (``fairser plan``).

Parameter counts are computed from the config dimensions, layer by layer, exactly as transformers builds
``Qwen2AudioForConditionalGeneration`` (a test checks the count against ``sum(p.numel())`` of a real model).
The ``qwen2-audio-7b`` preset holds the dimensions of the released Qwen2-Audio-7B / -7B-Instruct
``config.json`` (Chu et al. 2024, arXiv:2407.10759): a Whisper-large-v3-style audio encoder (32 layers,
d_model 1280, FFN 5120, 128 mel bins, 1500 positions; ~0.64 B parameters) and a Qwen-7B language model
(32 layers, hidden 4096, intermediate 11008, 32 heads without grouped KV, vocabulary 156032, untied output
embedding; ~7.7 B) joined by a linear projector (1280 -> 4096): 8.40 B parameters in all.

Memory model (bytes; every assumption is a parameter or stated here):

* weights: frozen parameters at the compute precision (2 bytes in bf16/fp16, 4 in fp32); trainable
  parameters (LoRA, head, unfrozen parts) in fp32, as PEFT keeps adapters (``autocast_adapter_dtype``).
* gradients: 4 bytes per trainable parameter. Optimizer: AdamW keeps two fp32 moments (8 bytes per
  trainable parameter; Loshchilov & Hutter 2019); SGD with momentum keeps one (4 bytes). Together with the
  fp32 weight these are the 16 bytes per trainable parameter of mixed-precision Adam (Rajbhandari et al.
  2020, ZeRO, §3.1).
* activations of the language model, per token and decoder layer, in elements of the compute precision:
  ``12 h + 2 kv d + 5 I`` — the RMSNorm inputs/outputs, q, k, v, the attention output and the o-proj input
  (``4 h + 2 kv d``), the SwiGLU MLP's gate, up, activation and product (``4 I`` + ``2 h`` norms), and the
  dropped-out inputs PEFT keeps for each LoRA branch (``6 h + I``); this follows the accounting of
  Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models", §4.1) for a
  SwiGLU / grouped-KV layer. Attention is assumed to run in a fused kernel (SDPA / FlashAttention, no
  s x s score matrix kept); ``flash_attention=False`` adds the ``2 a s`` elements per token of eager
  attention scores and probabilities. Gradient checkpointing keeps only each layer's input (``h`` per token
  per layer) plus one layer's full activations during recomputation. No (batch, seq, vocab) logits tensor
  is ever built: both classification modes read C scores only.
* the frozen audio encoder runs without autograd state: only one layer's transient activations count
  (Qwen2-Audio pads every clip to its 30-s window, 1500 positions). ``train_audio_encoder=True`` keeps
  ``8 D + 2 F`` elements per position and layer (Korthikanti et al.'s accounting for a GELU MLP).
* sequence length: 25 audio tokens per second of audio (100 mel frames/s, a stride-2 convolution and a
  stride-2 average pool, as the Qwen2-Audio processor counts them), capped at 30 s, plus the prompt and
  transcript tokens (``text_tokens``).
* ``overhead_gib`` (default 1 GiB) covers the CUDA context and allocator fragmentation.

All sizes are reported in GiB (2**30 bytes); a "24 GB" card is taken as 24 GiB.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fairser.models.backbone import QWEN2_LORA_TARGETS

__all__ = [
    "AUDIO_TOKENS_PER_SECOND",
    "PRESETS",
    "DeSTA25Dims",
    "Plan",
    "Qwen2AudioDims",
    "audio_token_count",
    "count_parameters",
    "format_plan_table",
    "lora_parameter_count",
    "plan_memory",
]

_GIB = 2**30
_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
_OPTIMIZER_BYTES = {"adamw": 8, "sgd": 4}
#: Audio tokens per second of audio in Qwen2-Audio (see the module docstring).
AUDIO_TOKENS_PER_SECOND = 25


@dataclass(frozen=True)
class Qwen2AudioDims:
    """The config dimensions that determine parameter counts and activation sizes."""

    # audio encoder (Qwen2AudioEncoderConfig)
    mel_bins: int
    audio_layers: int
    audio_d: int
    audio_ffn: int
    audio_positions: int
    # language model (Qwen2Config)
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    tie_embeddings: bool = False

    @classmethod
    def from_config(cls, config) -> Qwen2AudioDims:
        """From a ``Qwen2AudioConfig``, its ``to_dict()``/``config.json`` mapping, or a path to either."""
        if isinstance(config, (str, Path)):
            p = Path(config)
            p = p / "config.json" if p.is_dir() else p
            if not p.is_file():
                raise FileNotFoundError(f"no Qwen2-Audio config at {str(p)!r}")
            config = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(config, Mapping):
            config = config.to_dict()
        if config.get("model_type", "qwen2_audio") != "qwen2_audio":
            raise ValueError(f"expected a qwen2_audio config, got model_type {config.get('model_type')!r}")
        a = dict(config.get("audio_config") or {})
        t = dict(config.get("text_config") or {})
        heads = int(t.get("num_attention_heads", 32))
        hidden = int(t.get("hidden_size", 4096))
        head_dim = t.get("head_dim") or hidden // heads
        return cls(
            mel_bins=int(a.get("num_mel_bins", 128)),
            audio_layers=int(a.get("encoder_layers", 32)),
            audio_d=int(a.get("d_model", 1280)),
            audio_ffn=int(a.get("encoder_ffn_dim", 5120)),
            audio_positions=int(a.get("max_source_positions", 1500)),
            vocab=int(t.get("vocab_size", 151936)),
            hidden=hidden,
            intermediate=int(t.get("intermediate_size", 22016)),
            layers=int(t.get("num_hidden_layers", 32)),
            heads=heads,
            kv_heads=int(t.get("num_key_value_heads") or heads),
            head_dim=int(head_dim),
            tie_embeddings=bool(t.get("tie_word_embeddings", False)),
        )


#: Qwen2-Audio-7B and -7B-Instruct (same architecture; dimensions from their config.json).
PRESETS: dict[str, Qwen2AudioDims | DeSTA25Dims] = {
    "qwen2-audio-7b": Qwen2AudioDims(
        mel_bins=128,
        audio_layers=32,
        audio_d=1280,
        audio_ffn=5120,
        audio_positions=1500,
        vocab=156032,
        hidden=4096,
        intermediate=11008,
        layers=32,
        heads=32,
        kv_heads=32,
        head_dim=128,
    )
}
PRESETS["qwen2-audio-7b-instruct"] = PRESETS["qwen2-audio-7b"]


@dataclass(frozen=True)
class DeSTA25Dims:
    """DeSTA2.5-Audio's dimensions: Whisper (encoder + decoder), the Q-Former adapter and the Llama LLM.

    The LLM fields carry the names of :class:`Qwen2AudioDims`' language-model fields, so LoRA counts and the
    activation formulas apply unchanged (a Llama layer has the Qwen2 layer's projections, without q/k/v bias).
    """

    mel_bins: int
    audio_layers: int
    audio_d: int
    audio_ffn: int
    audio_positions: int
    audio_heads: int
    decoder_layers: int
    decoder_ffn: int
    whisper_vocab: int
    decoder_positions: int
    qformer_layers: int
    qformer_intermediate: int
    prompt_size: int
    taps: int
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    tie_embeddings: bool = False

    @classmethod
    def from_folder(cls, path: str | Path) -> DeSTA25Dims:
        """From a DeSTA2.5 folder in the released layout (``config.json``, ``llm/`` and ``whisper/``)."""
        root = Path(path)
        cfg = json.loads((root / "config.json").read_text(encoding="utf-8"))
        if cfg.get("model_type") != "desta25":
            raise ValueError(f"expected a desta25 config in {str(root)!r}, got {cfg.get('model_type')!r}")
        w = json.loads((root / "whisper" / "config.json").read_text(encoding="utf-8"))
        t = json.loads((root / "llm" / "config.json").read_text(encoding="utf-8"))
        heads = int(t.get("num_attention_heads", 32))
        hidden = int(t["hidden_size"])
        return cls(
            mel_bins=int(w.get("num_mel_bins", 80)),
            audio_layers=int(w["encoder_layers"]),
            audio_d=int(w["d_model"]),
            audio_ffn=int(w["encoder_ffn_dim"]),
            audio_positions=int(w.get("max_source_positions", 1500)),
            audio_heads=int(w["encoder_attention_heads"]),
            decoder_layers=int(w["decoder_layers"]),
            decoder_ffn=int(w["decoder_ffn_dim"]),
            whisper_vocab=int(w["vocab_size"]),
            decoder_positions=int(w.get("max_target_positions", 448)),
            qformer_layers=int(cfg.get("qformer_num_hidden_layers", 2)),
            qformer_intermediate=3072,  # BertConfig's default, which the release keeps
            prompt_size=int(cfg.get("prompt_size", 64)),
            taps=4,
            vocab=int(t["vocab_size"]),
            hidden=hidden,
            intermediate=int(t["intermediate_size"]),
            layers=int(t["num_hidden_layers"]),
            heads=heads,
            kv_heads=int(t.get("num_key_value_heads") or heads),
            head_dim=int(t.get("head_dim") or hidden // heads),
            tie_embeddings=bool(t.get("tie_word_embeddings", False)),
        )


#: DeSTA2.5-Audio-Llama-3.1-8B (Lu et al. 2025): whisper-large-v3 (32 + 32 layers, d 1280, vocabulary 51866),
#: a 6-layer Q-Former with 64 queries per tapped layer (the released training config
#: ``desta25_llama31-8B_Qformer6L.yaml``), Llama-3.1-8B-Instruct (32 layers, hidden 4096, intermediate 14336,
#: 32 heads / 8 KV heads, vocabulary 128256, untied output embedding).
PRESETS["desta2.5-audio"] = DeSTA25Dims(
    mel_bins=128,
    audio_layers=32,
    audio_d=1280,
    audio_ffn=5120,
    audio_positions=1500,
    audio_heads=20,
    decoder_layers=32,
    decoder_ffn=5120,
    whisper_vocab=51866,
    decoder_positions=448,
    qformer_layers=6,
    qformer_intermediate=3072,
    prompt_size=64,
    taps=4,
    vocab=128256,
    hidden=4096,
    intermediate=14336,
    layers=32,
    heads=32,
    kv_heads=8,
    head_dim=128,
)


def _desta_parameters(dims: DeSTA25Dims) -> dict[str, int]:
    d, f = dims.audio_d, dims.audio_ffn
    attn = 4 * d * d + 3 * d  # q, v, out with bias, k without
    encoder = (
        (dims.mel_bins * d * 3 + d)
        + (d * d * 3 + d)
        + dims.audio_positions * d
        + dims.audio_layers * (attn + 2 * d + (d * f + f) + (f * d + d) + 2 * d)
        + 2 * d
    )
    fd = dims.decoder_ffn
    decoder = (
        dims.whisper_vocab * d  # token embedding, tied with the output projection
        + dims.decoder_positions * d
        + dims.decoder_layers * (2 * (attn + 2 * d) + (d * fd + fd) + (fd * d + d) + 2 * d)
        + 2 * d
    )
    qi = dims.qformer_intermediate
    bert_attention = 4 * (d * d + d) + 2 * d  # q, k, v, output dense with bias, LayerNorm
    q_layer = 2 * bert_attention + (d * qi + qi) + (qi * d + d) + 2 * d  # self + cross attention, FFN
    adapter = (
        dims.taps * dims.prompt_size * d
        + dims.prompt_size * dims.taps
        + dims.qformer_layers * q_layer
        + 2 * d
        + d * dims.hidden
        + dims.hidden
    )
    h, i = dims.hidden, dims.intermediate
    q_out, kv_out = dims.heads * dims.head_dim, dims.kv_heads * dims.head_dim
    lm_layer = h * q_out + 2 * h * kv_out + q_out * h + 3 * h * i + 2 * h
    language_model = dims.vocab * h + dims.layers * lm_layer + h
    lm_head = 0 if dims.tie_embeddings else dims.vocab * h
    return {
        "audio_encoder": encoder,
        "whisper_decoder": decoder,
        "projector": adapter,
        "language_model": language_model,
        "lm_head": lm_head,
        "total": encoder + decoder + adapter + language_model + lm_head,
    }


def count_parameters(dims: Qwen2AudioDims | DeSTA25Dims) -> dict[str, int]:
    """Parameters of ``Qwen2AudioForConditionalGeneration`` by part, from the config dimensions.

    For :class:`DeSTA25Dims`: Whisper's encoder and decoder (its output projection tied to the token
    embedding), the Q-Former adapter (``projector``: queries, layer weights, BERT layers with
    cross-attention, LayerNorm and the projection to the LLM width) and the Llama LLM (no q/k/v bias).

    Audio encoder: two 3-wide convolutions, a 1500 x D position table, per layer q/v/out projections with
    bias and k without, two LayerNorms and a GELU MLP, then a final LayerNorm. Projector: D -> h with bias.
    Qwen2 decoder layer: q/k/v with bias, o without, SwiGLU gate/up/down without bias, two RMSNorms.
    """
    if isinstance(dims, DeSTA25Dims):
        return _desta_parameters(dims)
    d, f = dims.audio_d, dims.audio_ffn
    audio_layer = 4 * d * d + 3 * d + 4 * d + (d * f + f) + (f * d + d)
    audio = (
        (dims.mel_bins * d * 3 + d)
        + (d * d * 3 + d)
        + dims.audio_positions * d
        + dims.audio_layers * audio_layer
        + 2 * d
    )
    projector = d * dims.hidden + dims.hidden
    h, i = dims.hidden, dims.intermediate
    q_out, kv_out = dims.heads * dims.head_dim, dims.kv_heads * dims.head_dim
    attention = (h * q_out + q_out) + 2 * (h * kv_out + kv_out) + q_out * h
    lm_layer = attention + 3 * h * i + 2 * h
    embeddings = dims.vocab * h
    language_model = embeddings + dims.layers * lm_layer + h
    lm_head = 0 if dims.tie_embeddings else dims.vocab * h
    total = audio + projector + language_model + lm_head
    return {
        "audio_encoder": audio,
        "projector": projector,
        "language_model": language_model,
        "lm_head": lm_head,
        "total": total,
    }


def lora_parameter_count(dims: Qwen2AudioDims, *, r: int, targets: Sequence[str] = QWEN2_LORA_TARGETS) -> int:
    """LoRA parameters ``r (d_in + d_out)`` per adapted projection, summed over the decoder layers."""
    h, i = dims.hidden, dims.intermediate
    q_out, kv_out = dims.heads * dims.head_dim, dims.kv_heads * dims.head_dim
    shapes = {
        "q_proj": (h, q_out),
        "k_proj": (h, kv_out),
        "v_proj": (h, kv_out),
        "o_proj": (q_out, h),
        "gate_proj": (h, i),
        "up_proj": (h, i),
        "down_proj": (i, h),
    }
    unknown = set(targets) - set(shapes)
    if unknown:
        raise ValueError(f"unknown LoRA target(s) {sorted(unknown)}; known: {sorted(shapes)}")
    return dims.layers * sum(r * (shapes[t][0] + shapes[t][1]) for t in set(targets))


def audio_token_count(seconds: float) -> int:
    """Audio tokens the Qwen2-Audio processor emits for a clip of ``seconds`` (capped at the 30-s window)."""
    frames = max(1, int(round(min(float(seconds), 30.0) * 100)))
    return ((frames - 1) // 2 + 1 - 2) // 2 + 1


@dataclass
class Plan:
    """A memory estimate for one training configuration (bytes; see the module docstring)."""

    backbone: str
    batch: int
    seq_len: int
    precision: str
    mode: str
    lora_r: int
    gradient_checkpointing: bool
    optimizer: str
    params_total: int
    params_trainable: int
    weights: int
    gradients: int
    optimizer_states: int
    activations: int
    overhead: int
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer_states + self.activations + self.overhead

    def gib(self, name: str = "total") -> float:
        """A component (``weights``, ``activations``, ..., ``total``) in GiB."""
        return float(getattr(self, name)) / _GIB

    def fits(self, gpu_gb: float) -> bool:
        """Whether the estimated peak fits in one GPU of ``gpu_gb`` GiB."""
        return self.total <= float(gpu_gb) * _GIB


def _dims(backbone) -> tuple[str, Qwen2AudioDims | DeSTA25Dims]:
    if isinstance(backbone, Qwen2AudioDims | DeSTA25Dims):
        return "custom", backbone
    if isinstance(backbone, str) and backbone.lower() in PRESETS:
        return backbone.lower(), PRESETS[backbone.lower()]
    if isinstance(backbone, str) and not Path(backbone).exists():
        raise ValueError(
            f"unknown backbone preset {backbone!r}; presets: {sorted(PRESETS)} (or pass a config/path)"
        )
    name = str(backbone) if isinstance(backbone, (str, Path)) else type(backbone).__name__
    if isinstance(backbone, (str, Path)) and (Path(backbone) / "llm").is_dir():
        return name, DeSTA25Dims.from_folder(backbone)
    return name, Qwen2AudioDims.from_config(backbone)


def plan_memory(
    *,
    backbone="qwen2-audio-7b",
    batch: int = 1,
    audio_seconds: float = 30.0,
    text_tokens: int = 64,
    seq_len: int | None = None,
    precision: str = "bf16",
    mode: str = "label_tokens",
    n_classes: int = 7,
    lora_r: int = 8,
    lora_targets: Sequence[str] = QWEN2_LORA_TARGETS,
    gradient_checkpointing: bool = False,
    optimizer: str = "adamw",
    train_audio_encoder: bool = False,
    train_projector: bool = False,
    flash_attention: bool = True,
    overhead_gib: float = 1.0,
) -> Plan:
    """Estimate peak training memory of a LoRA-tuned Qwen2-Audio classifier on one GPU.

    ``backbone`` is a preset name (``"qwen2-audio-7b"``), a ``Qwen2AudioConfig``, its dict, a model
    directory or config.json path, or :class:`Qwen2AudioDims`. ``seq_len`` (tokens per sample) overrides
    ``audio_seconds`` x 25 + ``text_tokens``. ``lora_r=0`` means no adapters; ``mode="head"`` adds the
    linear head. Under data parallelism (``accelerate launch``) every GPU holds one such plan for its own
    per-device ``batch``. ``train_audio_encoder`` / ``train_projector`` mirror the classifier's options.
    """
    name, dims = _dims(backbone)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if precision not in _BYTES:
        raise ValueError(f"precision must be one of {sorted(_BYTES)}, got {precision!r}")
    if optimizer not in _OPTIMIZER_BYTES:
        raise ValueError(f"optimizer must be one of {sorted(_OPTIMIZER_BYTES)}, got {optimizer!r}")
    if mode not in ("label_tokens", "head"):
        raise ValueError(f"mode must be 'label_tokens' or 'head', got {mode!r}")
    if lora_r < 0:
        raise ValueError(f"lora_r must be >= 0, got {lora_r}")
    desta = isinstance(dims, DeSTA25Dims)
    # DeSTA2.5: the Q-Former's prompt_size vectors stand for the clip whatever its length (the transcript
    # tokens are part of text_tokens); Qwen2-Audio: 25 tokens per second
    audio_tokens = dims.prompt_size if desta else audio_token_count(audio_seconds)
    s = int(seq_len) if seq_len is not None else audio_tokens + int(text_tokens)
    if s < 1:
        raise ValueError(f"seq_len must be >= 1, got {s}")

    parts = count_parameters(dims)
    lora = lora_parameter_count(dims, r=lora_r, targets=lora_targets) if lora_r > 0 else 0
    head = (dims.hidden + 1) * n_classes if mode == "head" else 0
    trainable = lora + head
    if train_audio_encoder:  # all but the fixed position table
        trainable += parts["audio_encoder"] - dims.audio_positions * dims.audio_d
    if train_projector:
        trainable += parts["projector"]
    total = parts["total"] + lora + head
    frozen = total - trainable
    bp = _BYTES[precision]

    weights = frozen * bp + trainable * 4
    gradients = trainable * 4
    optimizer_states = trainable * _OPTIMIZER_BYTES[optimizer]

    h, kv_d, i = dims.hidden, dims.kv_heads * dims.head_dim, dims.intermediate
    per_token_layer = 12 * h + 2 * kv_d + 5 * i
    if not flash_attention:
        per_token_layer += 2 * dims.heads * s
    tokens = batch * s
    if gradient_checkpointing:
        lm_act = tokens * (dims.layers * h + per_token_layer) * bp
    else:
        lm_act = tokens * dims.layers * per_token_layer * bp
    lm_act += tokens * h * 4 * 2  # final norm output and pooled/answer states in fp32 (head, scores)
    positions = dims.audio_positions
    audio_layer_elems = 8 * dims.audio_d + 2 * dims.audio_ffn
    if train_audio_encoder:
        audio_act = batch * positions * dims.audio_layers * audio_layer_elems * bp
    else:
        audio_act = batch * positions * audio_layer_elems * bp  # one layer at a time, no autograd state
    notes = []
    if audio_seconds > 30:
        notes.append("audio beyond 30 s is truncated by the Whisper feature extractor")
    if desta:
        notes.append("Whisper's transcript of audio-only clips is decoded without gradients (not counted)")
    return Plan(
        backbone=name,
        batch=int(batch),
        seq_len=s,
        precision=precision,
        mode=mode,
        lora_r=int(lora_r),
        gradient_checkpointing=bool(gradient_checkpointing),
        optimizer=optimizer,
        params_total=int(total),
        params_trainable=int(trainable),
        weights=int(weights),
        gradients=int(gradients),
        optimizer_states=int(optimizer_states),
        activations=int(lm_act + audio_act),
        overhead=int(overhead_gib * _GIB),
        notes=notes,
    )


def format_plan_table(plans: Plan | Sequence[Plan], *, gpus: Sequence[float] = (24, 40, 80)) -> str:
    """A plain-text table (one row per plan): parameters, memory parts in GiB, and fit per GPU size."""
    rows = [plans] if isinstance(plans, Plan) else list(plans)
    if not rows:
        raise ValueError("format_plan_table needs at least one Plan")
    header = [
        "backbone",
        "batch",
        "seq",
        "prec",
        "ckpt",
        "params",
        "trainable",
        "weights",
        "grads",
        "optim",
        "activ",
        "total GiB",
    ] + [f"{g:g}GB" for g in gpus]
    table = [header]
    for p in rows:
        table.append(
            [
                p.backbone,
                str(p.batch),
                str(p.seq_len),
                p.precision,
                "yes" if p.gradient_checkpointing else "no",
                _human(p.params_total),
                _human(p.params_trainable),
                f"{p.gib('weights'):.2f}",
                f"{p.gib('gradients'):.2f}",
                f"{p.gib('optimizer_states'):.2f}",
                f"{p.gib('activations'):.2f}",
                f"{p.gib('total'):.2f}",
            ]
            + ["fits" if p.fits(g) else "OOM" for g in gpus]
        )
    widths = [max(len(r[c]) for r in table) for c in range(len(header))]
    lines = [
        "  ".join(
            cell.rjust(w) if c else cell.ljust(w) for c, (cell, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _human(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e3:
        return f"{n / 1e3:.1f}K"
    return str(n)

"""DeSTA2.5-Audio as an emotion classifier, built from ``transformers`` components (no remote code).

DeSTA2.5-Audio (Lu et al. 2025, "DeSTA2.5-Audio: Toward General-Purpose Large Audio Language Model with
Self-Generated Cross-Modal Alignment", arXiv:2507.02768) joins three parts:

* a frozen **Whisper** (large-v3 in the release): its encoder's hidden states after four evenly spaced layers
  (``target_layer_ids``; layers 7, 15, 23, 31 of 32) feed the adapter, and its decoder transcribes the audio;
* a **Q-Former** adapter: for each tapped layer, ``prompt_size`` (64) learned queries attend to that layer's
  states through a BERT encoder run as a decoder (self-attention over the queries, cross-attention to the
  audio; ``transformers``' ``BertEncoder``); the per-layer outputs are mixed with softmax weights learned per
  query position, layer-normalised and projected to the LLM width;
* a frozen **Llama-3.1-8B-Instruct** reading, in place of the audio locator of its chat prompt, the 64 audio
  vectors followed by the embedded transcript (Whisper's own, or the corpus transcript in the ``audio+text``
  setting).

Here the LLM classifies through :mod:`fairser.models.label_scoring` (the label words' first-token scores at
the answer position; ``mode="head"``: a linear head on mean-pooled hidden states), for zero-shot evaluation
and for LoRA fine-tuning with any objective (per-sample losses).

**Released checkpoint layout.** The released folder holds ``config.json`` (``model_type: desta25``,
``llm_model_id``, ``encoder_model_id``, ``connector_mode: qformer_1``, ``qformer_num_hidden_layers``,
``prompt_size``, ...) and ``model.safetensors`` with the trained adapter only (names under
``perception.connector.``); the LLM and Whisper are separate checkpoints. :meth:`DeSTA25Classifier.from_pretrained`
reads them from local folders only: ``<folder>/llm`` and ``<folder>/whisper`` if present, else
``llm_model_id`` / ``encoder_model_id`` when they name local directories (absolute, or relative to the
folder). :func:`released_to_fairser` maps the adapter's weight names; a missing, unexpected or mis-shaped
weight is refused with an error naming the keys.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

try:
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from peft.utils import load_peft_weights
    from safetensors.torch import load_file, save_file
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        BertConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )
    from transformers.models.bert.modeling_bert import BertEncoder
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "fairser.models.desta25 needs transformers, peft and safetensors: "
        "pip install 'transformers>=5' peft safetensors accelerate"
    ) from err

from fairser.models.backbone import (
    QWEN2_LORA_TARGETS,
    LoraSpec,
    check_audios,
    check_local_dir,
    featurise_in_float32,
)
from fairser.models.label_scoring import (
    DEFAULT_INSTRUCTION,
    LabelScoringClassifier,
    label_first_tokens,
    label_logits,
    resolve_instructions,
)
from fairser.models.qwen2_audio import resolve_dtype

__all__ = [
    "DESTA_SYSTEM",
    "DeSTA25Classifier",
    "DeSTA25Connector",
    "fairser_to_released",
    "released_to_fairser",
    "target_layers",
]

#: The system turn of the released inference example.
DESTA_SYSTEM = "Focus on the audio clips and instructions."
_RELEASED_PREFIX = "perception.connector."
#: released name (after the prefix) -> our name, for the parts whose names differ
_RENAMES = {"proj.0.": "norm.", "proj.1.": "proj.", "layer_prompts.": "queries."}
_META = "fairser_classifier.json"
_HEAD_FILE = "fairser_cls_head.safetensors"
_CONNECTOR_FILE = "connector.safetensors"
_ADAPTER_DIR = "lora_adapter"
_CORE_SETTINGS = ("labels", "label_words", "mode", "prompt_style", "instruction", "lora", "train_projector")
_UNSET = object()
_DEFAULT_LORA = LoraSpec()


def target_layers(n_layers: int) -> list[int]:
    """The four tapped Whisper encoder layers: the last of each quarter (large-v3: 7, 15, 23, 31)."""
    if n_layers < 4:
        raise ValueError(f"DeSTA2.5's adapter taps 4 Whisper encoder layers; this encoder has {n_layers}")
    return [(k + 1) * n_layers // 4 - 1 for k in range(4)]


class DeSTA25Connector(nn.Module):
    """The Q-Former adapter: per tapped layer, learned queries cross-attend to the Whisper states.

    ``d_model`` and ``heads`` are the Whisper encoder's; the BERT layers keep ``BertConfig``'s other defaults
    (intermediate 3072, dropout 0.1), as the release does; attention is eager (bidirectional over the queries).
    """

    def __init__(
        self, *, d_model: int, heads: int, llm_hidden: int, n_layers: int, prompt_size: int, taps: int
    ) -> None:
        super().__init__()
        self.prompt_size = int(prompt_size)
        self.queries = nn.ParameterList(
            [nn.Parameter(torch.randn(1, prompt_size, d_model)) for _ in range(taps)]
        )
        self.layer_weights = nn.Parameter(torch.zeros(prompt_size, taps))
        config = BertConfig(
            hidden_size=d_model,
            num_attention_heads=heads,
            num_hidden_layers=n_layers,
            is_decoder=True,
            add_cross_attention=True,
        )
        config._attn_implementation = "eager"  # no causal mask over the queries (sdpa would add one)
        self.qformer = BertEncoder(config)
        self.norm = nn.LayerNorm(d_model)
        self.proj = nn.Linear(d_model, llm_hidden)

    def forward(self, layer_states: Sequence[Tensor]) -> Tensor:
        """(N, prompt_size, llm_hidden) from the tapped layers' states, each (N, T, d_model)."""
        outs = []
        for queries, states in zip(self.queries, layer_states, strict=True):
            q = queries.expand(states.shape[0], -1, -1).to(states.dtype)
            outs.append(self.qformer(hidden_states=q, encoder_hidden_states=states).last_hidden_state)
        stacked = torch.stack(outs, dim=2)  # (N, prompt_size, taps, d)
        weights = self.layer_weights.softmax(-1).unsqueeze(-1).to(stacked.dtype)  # (prompt_size, taps, 1)
        return self.proj(self.norm((stacked * weights).sum(2)))


def released_to_fairser(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Map the released ``model.safetensors`` names (``perception.connector.*``) to :class:`DeSTA25Connector`'s.

    Keys outside ``perception.connector.`` are refused (they name weights this loader does not place).
    """
    out, foreign = {}, []
    for key, value in state.items():
        if not key.startswith(_RELEASED_PREFIX):
            foreign.append(key)
            continue
        name = key[len(_RELEASED_PREFIX) :]
        for old, new in _RENAMES.items():
            if name.startswith(old):
                name = new + name[len(old) :]
                break
        out[name] = value
    if foreign:
        raise ValueError(
            f"DeSTA2.5 checkpoint has {len(foreign)} weight(s) outside {_RELEASED_PREFIX!r}, e.g. "
            f"{sorted(foreign)[:5]}; the released model.safetensors holds the adapter only (the LLM and Whisper "
            "are loaded from their own folders)"
        )
    return out


def fairser_to_released(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The inverse of :func:`released_to_fairser`: connector weights under their released names."""
    back = {new: old for old, new in _RENAMES.items()}
    out = {}
    for name, value in state.items():
        for new, old in back.items():
            if name.startswith(new):
                name = old + name[len(new) :]
                break
        out[_RELEASED_PREFIX + name] = value
    return out


def _resolve_part(root: Path, sub: str, given: str | None, *, what: str) -> Path:
    """A local folder for the LLM or Whisper: ``root/sub``, else ``given`` as a local path."""
    if (root / sub).is_dir():
        return root / sub
    for cand in [Path(given).expanduser(), root / given] if given else []:
        if cand.is_dir():
            return cand
    raise FileNotFoundError(
        f"DeSTA2.5 folder {str(root)!r}: no local {what} (looked for {str(root / sub)!r}"
        + (f" and {given!r}" if given else "")
        + f"). Weights are loaded from local directories only: put the {what} checkpoint in {str(root / sub)!r}"
    )


class DeSTA25Classifier(LabelScoringClassifier, nn.Module):
    """DeSTA2.5-Audio (Whisper + Q-Former + Llama-3.1) emotion classifier returning per-sample losses.

    Parameters mirror :class:`~fairser.models.qwen2_audio.Qwen2AudioClassifier` (``labels``, ``mode``,
    ``lora``, ``label_words``, ``instruction``, ``prompt_style``, ``prompt_language``, ``instructions``,
    ``calibration``, ``gradient_checkpointing``); ``train_projector`` unfreezes the Q-Former adapter,
    ``train_audio_encoder`` the Whisper encoder. ``whisper_transcript``: audio-only samples get Whisper's
    greedy transcript of the clip (the released model's input; cached per clip), else an empty transcript.
    """

    def __init__(
        self,
        *,
        whisper: WhisperForConditionalGeneration,
        llm: nn.Module,
        connector: DeSTA25Connector,
        feature_extractor: WhisperFeatureExtractor,
        tokenizer,
        whisper_tokenizer,
        labels: Sequence[str],
        mode: Literal["label_tokens", "head"] = "label_tokens",
        lora: LoraSpec | Mapping | None = _DEFAULT_LORA,
        label_words: Sequence[str] | None = None,
        instruction: str = DEFAULT_INSTRUCTION,
        prompt_style: Literal["chat", "plain"] = "chat",
        prompt_language: Literal["english", "utterance"] = "english",
        instructions: Mapping[str, str] | None = None,
        calibration: Literal["none", "contextual"] = "none",
        train_audio_encoder: bool = False,
        train_projector: bool = False,
        gradient_checkpointing: bool = False,
        whisper_transcript: bool = True,
        taps: Sequence[int] | None = None,
        max_transcript_tokens: int = 128,
    ) -> None:
        super().__init__()
        labels = tuple(str(x) for x in labels)
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ValueError(f"labels must hold at least two distinct names, got {list(labels)}")
        if mode not in ("label_tokens", "head"):
            raise ValueError(f"mode must be one of ('label_tokens', 'head'), got {mode!r}")
        if prompt_style not in ("chat", "plain"):
            raise ValueError(f"prompt_style must be one of ('chat', 'plain'), got {prompt_style!r}")
        words = tuple(str(w) for w in (label_words if label_words is not None else labels))
        if len(words) != len(labels):
            raise ValueError(f"label_words has {len(words)} entries for {len(labels)} labels")
        self.labels, self.label_words, self.mode = labels, words, mode
        self.prompt_style, self.instruction, self.prompt_language = prompt_style, instruction, prompt_language
        self.instructions = resolve_instructions(
            instruction=instruction, prompt_language=prompt_language, instructions=instructions
        )
        self._init_calibration(calibration)
        self.tokenizer, self.whisper_tokenizer, self.feature_extractor = (
            tokenizer,
            whisper_tokenizer,
            feature_extractor,
        )
        if prompt_style == "chat" and not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "the LLM tokenizer has no chat template; use prompt_style='plain' for a base model"
            )
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token  # as the release does (Llama has no pad token)
        self.whisper_transcript, self.max_transcript_tokens = (
            bool(whisper_transcript),
            int(max_transcript_tokens),
        )
        self.train_audio_encoder, self.train_projector = bool(train_audio_encoder), bool(train_projector)
        n_enc = int(whisper.config.encoder_layers)
        self.taps = list(taps) if taps is not None else target_layers(n_enc)
        if len(self.taps) != len(connector.queries) or not all(0 <= t < n_enc for t in self.taps):
            raise ValueError(
                f"taps {self.taps} do not fit {len(connector.queries)} queries / {n_enc} encoder layers"
            )
        self.lora = LoraSpec.coerce(lora, default_targets=QWEN2_LORA_TARGETS)
        self._transcripts: dict[str, str] = {}

        whisper.requires_grad_(False)
        llm.requires_grad_(False)
        connector.requires_grad_(bool(train_projector))
        if train_audio_encoder:
            for name, p in whisper.model.encoder.named_parameters():
                p.requires_grad_(not name.startswith("embed_positions"))
        if gradient_checkpointing:
            llm.config.use_cache = False
            llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if self.lora is not None:
            names = "|".join(sorted(set(self.lora.target_modules)))
            config = LoraConfig(
                r=int(self.lora.r),
                lora_alpha=int(self.lora.alpha),
                lora_dropout=float(self.lora.dropout),
                target_modules=rf"^(.*\.)?layers\.\d+\..*\.({names})$",
                bias="none",
            )
            self.backbone: nn.Module = get_peft_model(llm, config)
        else:
            self.backbone = llm
        self.llm, self.whisper, self.connector = llm, whisper, connector
        self.label_token_ids = (
            label_first_tokens(tokenizer, words, prefix="" if prompt_style == "chat" else " ")
            if mode == "label_tokens"
            else None
        )
        hidden = int(llm.config.hidden_size)
        self.fairser_cls_head = nn.Linear(hidden, len(labels)) if mode == "head" else None
        if self.fairser_cls_head is not None:
            self.fairser_cls_head.to(device=self.device, dtype=torch.float32)
        self.train(self.training)  # frozen parts to eval mode (no dropout in a frozen Q-Former / Whisper)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        labels: Sequence[str],
        mode: Literal["label_tokens", "head"] | None = None,
        lora: LoraSpec | Mapping | None | object = _UNSET,
        precision: str | torch.dtype | None = "auto",
        attn_implementation: str | None = None,
        adapter: str | Path | None = None,
        **kwargs,
    ) -> DeSTA25Classifier:
        """Load a DeSTA2.5-Audio folder in the released layout (see the module docstring); nothing is downloaded.

        ``adapter`` is a folder written by :meth:`save_adapter` (LoRA, head, a trained Q-Former); its saved
        settings fill what is not passed here.
        """
        root = check_local_dir(
            path, what="DeSTA25Classifier.from_pretrained", required=("config.json", "model.safetensors")
        )
        cfg = json.loads((root / "config.json").read_text(encoding="utf-8"))
        if cfg.get("model_type") != "desta25":
            raise ValueError(f"{str(root)!r} holds a {cfg.get('model_type')!r} model, not desta25")
        if cfg.get("connector_mode", "qformer_1") != "qformer_1":
            raise ValueError(
                f"{str(root)!r}: connector_mode {cfg.get('connector_mode')!r} is not implemented (qformer_1)"
            )
        if adapter is not None:
            meta = _read_meta(adapter)
            lora = meta["lora"] if lora is _UNSET else lora
            mode = meta["mode"] if mode is None else mode
            for key in ("label_words", "instruction", "prompt_style", "train_projector"):
                kwargs.setdefault(key, meta[key])
        mode = "label_tokens" if mode is None else mode
        lora = _DEFAULT_LORA if lora is _UNSET else lora
        dtype = resolve_dtype(precision)
        llm_dir = _resolve_part(root, "llm", cfg.get("llm_model_id"), what="LLM (Llama-3.1-8B-Instruct)")
        whisper_dir = _resolve_part(
            root, "whisper", cfg.get("encoder_model_id"), what="Whisper (whisper-large-v3)"
        )
        load = {"local_files_only": True, "trust_remote_code": False, "dtype": dtype}
        llm_load = dict(load, **({"attn_implementation": attn_implementation} if attn_implementation else {}))
        llm = AutoModelForCausalLM.from_pretrained(llm_dir, **llm_load)
        whisper = WhisperForConditionalGeneration.from_pretrained(whisper_dir, **load)
        tokenizer = AutoTokenizer.from_pretrained(llm_dir, local_files_only=True, trust_remote_code=False)
        whisper_tokenizer = AutoTokenizer.from_pretrained(
            whisper_dir, local_files_only=True, trust_remote_code=False
        )
        features = WhisperFeatureExtractor.from_pretrained(whisper_dir, local_files_only=True)
        wc = whisper.config
        taps = cfg.get("target_layer_ids") or target_layers(int(wc.encoder_layers))
        connector = DeSTA25Connector(
            d_model=int(wc.d_model),
            heads=int(wc.encoder_attention_heads),
            llm_hidden=int(llm.config.hidden_size),
            n_layers=int(cfg.get("qformer_num_hidden_layers", 2)),
            prompt_size=int(cfg.get("prompt_size", 64)),
            taps=len(taps),
        )
        load_connector(
            connector, load_file(root / "model.safetensors"), where=str(root / "model.safetensors")
        )
        connector.to(device=llm.device, dtype=next(llm.parameters()).dtype)
        out = cls(
            whisper=whisper,
            llm=llm,
            connector=connector,
            feature_extractor=features,
            tokenizer=tokenizer,
            whisper_tokenizer=whisper_tokenizer,
            labels=labels,
            mode=mode,
            lora=lora,
            taps=taps,
            **kwargs,
        )
        if adapter is not None:
            out.load_adapter(adapter)
        return out

    # ------------------------------------------------------------------ inputs
    @property
    def device(self) -> torch.device:
        return self.llm.get_input_embeddings().weight.device

    @property
    def sampling_rate(self) -> int:
        return int(self.feature_extractor.sampling_rate)

    def train(self, mode: bool = True) -> DeSTA25Classifier:
        """Frozen parts stay in eval mode (no dropout in a frozen Q-Former or Whisper)."""
        super().train(mode)
        if not self.train_projector:
            self.connector.eval()
        if not self.train_audio_encoder:
            self.whisper.eval()
        return self

    def transcribe(self, waves: Sequence[np.ndarray], features: Tensor) -> list[str]:
        """Whisper's greedy transcript of each clip (cached by the clip's content)."""
        keys = [hashlib.sha1(np.ascontiguousarray(w).tobytes()).hexdigest() for w in waves]
        todo = [i for i, k in enumerate(keys) if k not in self._transcripts]
        if todo:
            with torch.no_grad():
                cap = int(self.whisper.config.max_target_positions) // 2  # room for the start/language tokens
                ids = self.whisper.generate(
                    input_features=features[todo],
                    max_new_tokens=min(self.max_transcript_tokens, cap),
                    do_sample=False,
                )
            texts = self.whisper_tokenizer.batch_decode(ids, skip_special_tokens=True)
            for i, text in zip(todo, texts, strict=True):
                self._transcripts[keys[i]] = " ".join(str(text).split())
        return [self._transcripts[k] for k in keys]

    def prompt_parts(self, *, language: str | None) -> tuple[str, str]:
        """The prompt text before and after the audio slot (the answer follows the second part)."""
        instruction = self.instruction_for(language)
        locator = "<|AUDIO|>"
        if self.prompt_style == "chat":
            messages = [
                {"role": "system", "content": DESTA_SYSTEM},
                {"role": "user", "content": f"{locator}\n{instruction}"},
            ]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = f"{self.tokenizer.bos_token or ''}{locator}\n{instruction}\nAnswer:"
        before, after = text.split(locator)
        # the release marks the audio slot with these plain-text tags
        return before + "<start_audio>", "<end_audio>" + after

    def _audio_embeddings(self, features: Tensor) -> Tensor:
        """(N, prompt_size, llm_hidden): the Q-Former over the tapped Whisper encoder layers."""
        captured: dict[int, Tensor] = {}
        hooks = [
            self.whisper.model.encoder.layers[t].register_forward_hook(
                lambda _m, _i, out, t=t: captured.__setitem__(t, out[0] if isinstance(out, tuple) else out)
            )
            for t in self.taps
        ]
        try:
            grad = self.train_audio_encoder and torch.is_grad_enabled()
            with torch.set_grad_enabled(grad):
                self.whisper.model.encoder(input_features=features)
        finally:
            for h in hooks:
                h.remove()
        return self.connector([captured[t] for t in self.taps])

    def _scores(
        self,
        *,
        audios: Sequence[np.ndarray],
        texts: Sequence[str | None] | None,
        modalities: Sequence[str] | None,
        languages: Sequence[str | None] | None,
    ) -> tuple[Tensor, Tensor]:
        waves = check_audios(audios, where="DeSTA25Classifier")
        n = len(waves)
        mods = self.modalities_of(n=n, texts=texts, modalities=modalities)
        with featurise_in_float32():
            feats = self.feature_extractor(waves, sampling_rate=self.sampling_rate, return_tensors="pt")
        dtype = next(self.whisper.parameters()).dtype
        features = feats["input_features"].to(self.device, dtype=dtype)
        transcripts: list[str] = []
        asr = [i for i, m in enumerate(mods) if m == "audio"]
        asr_text = (
            self.transcribe([waves[i] for i in asr], features[asr]) if asr and self.whisper_transcript else []
        )
        spoken = dict(zip(asr, asr_text, strict=False))
        for i, m in enumerate(mods):
            if m not in ("audio", "audio+text"):
                raise ValueError(f"sample {i}: modality must be one of ('audio', 'audio+text'), got {m!r}")
            if m == "audio+text":
                text = None if texts is None else texts[i]
                if not (isinstance(text, str) and text.strip()):
                    raise ValueError(f"sample {i}: modality 'audio+text' but no transcript was given")
                transcripts.append(" ".join(text.split()))
            else:
                transcripts.append(spoken.get(i, ""))
        audio = self._audio_embeddings(features)  # (N, P, H)
        embed = self.llm.get_input_embeddings()
        rows, lengths = [], []
        for i in range(n):
            before, after = self.prompt_parts(language=None if languages is None else languages[i])
            ids = [
                self.tokenizer(part, add_special_tokens=False, return_tensors="pt")["input_ids"][0].to(
                    self.device
                )
                for part in (before, transcripts[i], after)
            ]
            seq = torch.cat([embed(ids[0]), audio[i].to(embed.weight.dtype), embed(ids[1]), embed(ids[2])])
            rows.append(seq)
            lengths.append(seq.shape[0])
        width = max(lengths)
        hidden_size = rows[0].shape[1]
        inputs = rows[0].new_zeros((n, width, hidden_size))
        attention = torch.zeros((n, width), dtype=torch.long, device=self.device)
        for i, seq in enumerate(rows):  # right padding; positions count real tokens only
            inputs[i, : seq.shape[0]] = seq
            attention[i, : seq.shape[0]] = 1
        position_ids = (attention.cumsum(-1) - 1).clamp_min(0)
        base = self.llm.model if hasattr(self.llm, "model") else self.llm
        hidden = base(
            inputs_embeds=inputs, attention_mask=attention, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        if self.mode == "label_tokens":
            last = torch.as_tensor(lengths, device=hidden.device) - 1
            embedding = hidden[torch.arange(n, device=hidden.device), last]
            logits = label_logits(
                embedding, output_embeddings=self.llm.get_output_embeddings(), token_ids=self.label_token_ids
            )
            return logits, embedding.float()
        mask = attention.unsqueeze(-1).to(torch.float32)
        embedding = (hidden.float() * mask).sum(1) / mask.sum(1)
        return self.fairser_cls_head(embedding), embedding

    # ------------------------------------------------------------------ parameters and saving
    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters with ``requires_grad`` (LoRA, head, and the Q-Former / encoder when unfrozen)."""
        return [p for p in self.parameters() if p.requires_grad]

    def count_parameters(self) -> dict[str, int]:
        """Total and trainable parameter counts (Whisper, Q-Former, LLM, LoRA and head)."""
        return {
            "total": sum(p.numel() for p in self.parameters()),
            "trainable": sum(p.numel() for p in self.trainable_parameters()),
        }

    def _settings(self) -> dict:
        return {
            "labels": list(self.labels),
            "label_words": list(self.label_words),
            "mode": self.mode,
            "prompt_style": self.prompt_style,
            "instruction": self.instruction,
            "lora": None if self.lora is None else self.lora.to_dict(),
            "train_projector": self.train_projector,
            "prompt_language": self.prompt_language,
            "instructions": dict(self.instructions),
            "calibration": self.calibration,
            "backbone": "desta25",
        }

    def save_adapter(self, path: str | Path) -> Path:
        """Write the trained parts (LoRA, head, the Q-Former if trained) and the settings to rebuild them."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        if self.lora is not None:
            self.backbone.save_pretrained(out / _ADAPTER_DIR)
        if self.fairser_cls_head is not None:
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in self.fairser_cls_head.state_dict().items()},
                out / _HEAD_FILE,
            )
        if self.train_projector:  # in the released layout, so the folder can stand in for model.safetensors
            state = fairser_to_released(self.connector.state_dict())
            save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, out / _CONNECTOR_FILE)
        (out / _META).write_text(json.dumps(self._settings(), indent=2), encoding="utf-8")
        return out

    def load_adapter(self, path: str | Path) -> None:
        """Load what :meth:`save_adapter` wrote (its core settings must match this classifier's)."""
        meta = _read_meta(path)
        mine = self._settings()
        diff = [k for k in _CORE_SETTINGS if meta.get(k) != mine[k]]
        if diff:
            raise ValueError(
                f"adapter {str(path)!r} was saved with different {diff}: { ({k: meta.get(k) for k in diff}) }"
            )
        root = Path(path)
        if self.lora is not None:
            weights = load_peft_weights(str(root / _ADAPTER_DIR), device=str(self.device))
            result = set_peft_model_state_dict(self.backbone, weights)
            if getattr(result, "unexpected_keys", None):
                raise ValueError(f"adapter {str(root)!r} has unexpected keys {result.unexpected_keys[:5]}")
        if self.fairser_cls_head is not None:
            self.fairser_cls_head.load_state_dict(load_file(root / _HEAD_FILE, device=str(self.device)))
        if self.train_projector:
            load_connector(
                self.connector, load_file(root / _CONNECTOR_FILE), where=str(root / _CONNECTOR_FILE)
            )
        self.reset_calibration()


def load_connector(connector: DeSTA25Connector, released: Mapping[str, Tensor], *, where: str) -> None:
    """Load released-layout adapter weights into ``connector``; refuse missing, unexpected or mis-shaped keys."""
    state = released_to_fairser(released)
    own = connector.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{_RELEASED_PREFIX}{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if tuple(state[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {[fairser_to_released({k: None}).popitem()[0] for k in missing][:8]}")
        if unexpected:
            parts.append(
                f"unexpected {[fairser_to_released({k: None}).popitem()[0] for k in unexpected][:8]}"
            )
        if shapes:
            parts.append(f"shape mismatch {shapes[:8]}")
        raise ValueError(
            f"{where}: the DeSTA2.5 adapter weights do not fit this model ({'; '.join(parts)}). Check that "
            "config.json (prompt_size, qformer_num_hidden_layers) and the Whisper / LLM folders are the ones "
            "the checkpoint was trained with"
        )
    connector.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def _read_meta(path: str | Path) -> dict:
    meta_file = Path(path) / _META
    if not meta_file.is_file():
        raise FileNotFoundError(
            f"adapter directory {str(path)!r} has no {_META} (write it with save_adapter)"
        )
    return json.loads(meta_file.read_text(encoding="utf-8"))

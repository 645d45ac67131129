"""Qwen2-Audio with LoRA adapters as an emotion classifier (the ERM-MinMaxGAP paper's backbone).

Pang, Gao, Kawahara, Chen (2026) fine-tune Qwen2-Audio-7B-Instruct (Chu et al. 2024, arXiv:2407.10759) with
LoRA (Hu et al. 2022) on MELD-ST. METHODS.md §4: the prompt is the audio placeholder, an instruction listing
the label set and, in the ``audio+text`` setting, the transcript; a sample is classified either

* ``mode="label_tokens"``: by the language model's scores of the *first token* of each label word at the
  answer position (a C-way softmax over those C vocabulary logits), or
* ``mode="head"``: by a linear head (``fairser_cls_head``) on the last hidden states mean-pooled over every
  non-padding position (audio and text).

Both give per-sample cross-entropy losses (N,) and logits (N, C), so every registered objective trains this
backbone unchanged. Weights are read from a local directory only (``local_files_only=True``,
``trust_remote_code=False``): nothing is ever downloaded.
"""

from __future__ import annotations

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
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "fairser.models.qwen2_audio needs transformers, peft and safetensors: "
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

__all__ = [
    "AUDIO_PLACEHOLDER",
    "DEFAULT_LORA",
    "DEFAULT_INSTRUCTION",
    "Qwen2AudioClassifier",
    "resolve_dtype",
]

#: Qwen2-Audio's audio placeholder; the processor expands ``<|AUDIO|>`` to one token per audio frame.
AUDIO_PLACEHOLDER = "<|audio_bos|><|AUDIO|><|audio_eos|>"
#: LoRA r=8, alpha=16, dropout=0.05 on q/k/v/o and gate/up/down **(our choice; the paper's values are not public)**.
DEFAULT_LORA = LoraSpec()
_SYSTEM = "You are a helpful assistant."
_MODALITIES = ("audio", "audio+text")
_MODES = ("label_tokens", "head")
_STYLES = ("chat", "plain")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
#: Clips shorter than this are zero-padded: Qwen2-Audio needs >= 2 audio tokens (10 mel frames) per clip.
_MIN_SAMPLES = 1600
_META = "fairser_classifier.json"
_UNSET = object()  # "not given": from_pretrained then takes the adapter's saved LoRA spec, or the default
_HEAD_FILE = "fairser_cls_head.safetensors"
_ADAPTER_DIR = "lora_adapter"
_CORE_SETTINGS = ("labels", "label_words", "mode", "prompt_style", "instruction", "lora")


def resolve_dtype(precision: str | torch.dtype | None) -> torch.dtype | str:
    """``"bf16"``, ``"fp16"``, ``"fp32"`` or a torch dtype; ``"auto"``/``None`` keeps the checkpoint's dtype."""
    if precision is None or precision == "auto":
        return "auto"
    if isinstance(precision, torch.dtype):
        return precision
    try:
        return _DTYPES[str(precision)]
    except KeyError:
        raise ValueError(f"precision must be one of {sorted(_DTYPES)} or 'auto', got {precision!r}") from None


class Qwen2AudioClassifier(LabelScoringClassifier, nn.Module):
    """Qwen2-Audio + LoRA (PEFT) emotion classifier returning per-sample losses.

    Parameters
    ----------
    model : Qwen2AudioForConditionalGeneration
        The base model (its weights are frozen here; only LoRA adapters, the optional head and whatever
        ``train_audio_encoder`` / ``train_projector`` unfreeze are trained).
    processor : Qwen2AudioProcessor
        Tokenizer + Whisper feature extractor of the same checkpoint.
    labels : sequence of str
        Class names; their order defines the class indices of ``logits`` and ``y``.
    mode : {"label_tokens", "head"}
        Classification by label-word first-token scores, or by a linear head on mean-pooled hidden states.
    lora : LoraSpec, mapping or None
        LoRA on the language model's ``q/k/v/o`` and ``gate/up/down`` projections only (default r=8,
        alpha=16, dropout=0.05); ``None`` trains no adapter (a frozen-LM probe in ``head`` mode, zero-shot
        scoring in ``label_tokens`` mode).
    label_words : sequence of str, optional
        Words naming the classes in the prompt and scored in ``label_tokens`` mode (default: ``labels``).
        Their first tokens must be distinct.
    instruction : str
        Instruction text; ``{labels}`` is replaced by the label words.
    prompt_style : {"chat", "plain"}
        ``chat`` wraps the prompt in the ChatML turns of the Instruct checkpoint (the answer starts the
        assistant turn); ``plain`` is for the base checkpoint (prompt ends ``Answer:``, label words are
        scored with a leading space).
    train_audio_encoder, train_projector : bool
        Unfreeze the Whisper audio encoder / the audio-to-text projector (both frozen by default).
    gradient_checkpointing : bool
        Recompute decoder activations in the backward pass (less memory, ~30 % more compute).
    prompt_language : {"english", "utterance"}
        One instruction (``instruction``) for every utterance, or the instruction in each utterance's
        language (``instructions`` over :data:`~fairser.models.label_scoring.DEFAULT_INSTRUCTIONS`).
    instructions : mapping of language code to str, optional
        Per-language instructions (``prompt_language="utterance"`` only).
    calibration : {"none", "contextual"}
        Contextual calibration of the label-word scores (Zhao et al. 2021;
        :mod:`fairser.models.label_scoring`).
    """

    def __init__(
        self,
        *,
        model: Qwen2AudioForConditionalGeneration,
        processor: Qwen2AudioProcessor,
        labels: Sequence[str],
        mode: Literal["label_tokens", "head"] = "label_tokens",
        lora: LoraSpec | Mapping | None = DEFAULT_LORA,
        label_words: Sequence[str] | None = None,
        instruction: str = DEFAULT_INSTRUCTION,
        prompt_style: Literal["chat", "plain"] = "chat",
        train_audio_encoder: bool = False,
        train_projector: bool = False,
        gradient_checkpointing: bool = False,
        prompt_language: Literal["english", "utterance"] = "english",
        instructions: Mapping[str, str] | None = None,
        calibration: Literal["none", "contextual"] = "none",
    ) -> None:
        super().__init__()
        if not isinstance(model, Qwen2AudioForConditionalGeneration):
            raise TypeError(f"model must be a Qwen2AudioForConditionalGeneration, got {type(model).__name__}")
        labels = tuple(str(x) for x in labels)
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ValueError(f"labels must hold at least two distinct names, got {list(labels)}")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if prompt_style not in _STYLES:
            raise ValueError(f"prompt_style must be one of {_STYLES}, got {prompt_style!r}")
        words = tuple(str(w) for w in (label_words if label_words is not None else labels))
        if len(words) != len(labels):
            raise ValueError(f"label_words has {len(words)} entries for {len(labels)} labels")
        if "{labels}" not in instruction:
            raise ValueError("instruction must contain the '{labels}' placeholder")
        self.labels = labels
        self.label_words = words
        self.mode = mode
        self.prompt_style = prompt_style
        self.instruction = instruction
        self.prompt_language = prompt_language
        self.instructions = resolve_instructions(
            instruction=instruction, prompt_language=prompt_language, instructions=instructions
        )
        self._init_calibration(calibration)
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "right"
        self._check_audio_token(model)
        self.lora = LoraSpec.coerce(lora, default_targets=QWEN2_LORA_TARGETS)
        self._special = [t for t in self.tokenizer.all_special_tokens if t] + ["<|AUDIO|>", "<|audio_bos|>"]

        model.requires_grad_(False)
        if gradient_checkpointing:
            model.config.use_cache = False
            if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5 name
                model.activation_checkpointing_enable(
                    activation_checkpointing_kwargs={"use_reentrant": False}
                )
            else:  # pragma: no cover - older transformers
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if self.lora is not None:
            names = "|".join(sorted(set(self.lora.target_modules)))
            config = LoraConfig(
                r=int(self.lora.r),
                lora_alpha=int(self.lora.alpha),
                lora_dropout=float(self.lora.dropout),
                # full-match regex: the language model's projections only, never the Whisper encoder's q/k/v
                target_modules=rf"^(.*\.)?language_model\..*\.({names})$",
                bias="none",
            )
            self.backbone: nn.Module = get_peft_model(model, config)
        else:
            self.backbone = model
        self.model = model  # the same module; LoRA layers are injected in place
        if train_audio_encoder:
            for name, p in model.model.audio_tower.named_parameters():
                p.requires_grad_(not name.startswith("embed_positions"))  # fixed sinusoidal table
        if train_projector:
            model.model.multi_modal_projector.requires_grad_(True)

        self.label_token_ids = self._label_first_tokens() if mode == "label_tokens" else None
        hidden = int(model.config.text_config.hidden_size)
        self.fairser_cls_head = nn.Linear(hidden, len(labels)) if mode == "head" else None
        if self.fairser_cls_head is not None:
            self.fairser_cls_head.to(device=model.device, dtype=torch.float32)

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
    ) -> Qwen2AudioClassifier:
        """Load the model and processor from a local directory (never from a hub).

        ``path`` is a saved ``Qwen2AudioForConditionalGeneration`` directory (e.g. a local copy of
        Qwen2-Audio-7B-Instruct); ``precision`` is ``"bf16"``, ``"fp16"``, ``"fp32"`` or ``"auto"`` (the
        checkpoint's dtype). ``lora`` defaults to :data:`DEFAULT_LORA` (``None``: no adapters).
        ``adapter`` is a directory written by :meth:`save_adapter`: its LoRA weights and
        head are loaded, and its saved settings (mode, LoRA spec, label words, instruction, prompt style) fill
        whatever is not passed here (what is passed must match them). ``mode`` defaults to
        ``"label_tokens"``. Other keyword arguments go to the constructor. Raises
        :class:`FileNotFoundError` naming the path when it is missing.
        """
        root = check_local_dir(path, what="Qwen2AudioClassifier.from_pretrained")
        config_type = json.loads((root / "config.json").read_text(encoding="utf-8")).get("model_type")
        if config_type != "qwen2_audio":
            raise ValueError(f"{str(root)!r} holds a {config_type!r} model, not qwen2_audio")
        if adapter is not None:
            meta = _read_adapter_meta(adapter)
            lora = meta["lora"] if lora is _UNSET else lora
            mode = meta["mode"] if mode is None else mode
            for key in ("label_words", "instruction", "prompt_style"):
                kwargs.setdefault(key, meta[key])
        mode = "label_tokens" if mode is None else mode
        lora = DEFAULT_LORA if lora is _UNSET else lora
        load_kwargs = {
            "local_files_only": True,
            "trust_remote_code": False,
            "dtype": resolve_dtype(precision),
        }
        if attn_implementation is not None:
            load_kwargs["attn_implementation"] = attn_implementation
        model = Qwen2AudioForConditionalGeneration.from_pretrained(root, **load_kwargs)
        processor = AutoProcessor.from_pretrained(root, local_files_only=True, trust_remote_code=False)
        if not isinstance(processor, Qwen2AudioProcessor):
            raise ValueError(
                f"{str(root)!r}: expected a Qwen2AudioProcessor, found {type(processor).__name__}"
            )
        out = cls(model=model, processor=processor, labels=labels, mode=mode, lora=lora, **kwargs)
        if adapter is not None:
            out.load_adapter(adapter)
        return out

    def _check_audio_token(self, model: Qwen2AudioForConditionalGeneration) -> None:
        audio_id = self.tokenizer.convert_tokens_to_ids("<|AUDIO|>")
        if audio_id is None or audio_id == self.tokenizer.unk_token_id:
            raise ValueError("the tokenizer has no '<|AUDIO|>' token; is this a Qwen2-Audio processor?")
        if audio_id != model.config.audio_token_id:
            raise ValueError(
                f"tokenizer's '<|AUDIO|>' id {audio_id} != model config audio_token_id {model.config.audio_token_id}"
            )

    def _label_first_tokens(self) -> Tensor:
        return label_first_tokens(
            self.tokenizer, self.label_words, prefix="" if self.prompt_style == "chat" else " "
        )

    # ------------------------------------------------------------------ prompts and inputs
    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def sampling_rate(self) -> int:
        return int(self.processor.feature_extractor.sampling_rate)

    def build_prompts(
        self,
        *,
        n: int,
        texts: Sequence[str | None] | None = None,
        modalities: Sequence[str] | None = None,
        languages: Sequence[str | None] | None = None,
    ) -> list[str]:
        """One prompt per sample; a transcript is included only for ``audio+text`` samples.

        Without ``modalities`` a sample is ``audio+text`` when its text is a non-empty string, else ``audio``;
        ``languages`` picks each sample's instruction under ``prompt_language="utterance"``.
        """
        mods = self.modalities_of(n=n, texts=texts, modalities=modalities)
        if languages is not None and len(languages) != n:
            raise ValueError(f"languages has {len(languages)} entries for {n} audios")
        prompts = []
        for i in range(n):
            text = None if texts is None else texts[i]
            has_text = isinstance(text, str) and text.strip() != ""
            modality = mods[i]
            if modality not in _MODALITIES:
                raise ValueError(f"sample {i}: modality must be one of {_MODALITIES}, got {modality!r}")
            instruction = self.instruction_for(None if languages is None else languages[i])
            body = instruction
            if modality == "audio+text":
                if not has_text:
                    raise ValueError(f"sample {i}: modality 'audio+text' but no transcript was given")
                clean = " ".join(str(text).split())
                bad = [t for t in self._special if t in clean]
                if bad:
                    raise ValueError(f"sample {i}: transcript contains special token(s) {bad}")
                body = f'{instruction}\nTranscript: "{clean}"'
            if self.prompt_style == "chat":
                prompts.append(
                    f"<|im_start|>system\n{_SYSTEM}<|im_end|>\n<|im_start|>user\nAudio 1: {AUDIO_PLACEHOLDER}\n"
                    f"{body}<|im_end|>\n<|im_start|>assistant\n"
                )
            else:
                prompts.append(f"{AUDIO_PLACEHOLDER}{body}\nAnswer:")
        return prompts

    def encode(
        self,
        *,
        audios: Sequence[np.ndarray],
        texts: Sequence[str | None] | None = None,
        modalities: Sequence[str] | None = None,
        languages: Sequence[str | None] | None = None,
        sampling_rate: int | None = None,
    ):
        """Prompts + log-mel features for a batch (a ``BatchFeature`` of tensors on the model's device).

        Audio must be mono at the feature extractor's rate (16 kHz); clips longer than its window (30 s for
        Qwen2-Audio) are truncated by the processor, clips shorter than 0.1 s are zero-padded.
        """
        if sampling_rate is not None and int(sampling_rate) != self.sampling_rate:
            raise ValueError(
                f"audio is at {sampling_rate} Hz; Qwen2-Audio needs {self.sampling_rate} Hz (resample first)"
            )
        waves = check_audios(audios, where="Qwen2AudioClassifier")
        waves = [np.pad(w, (0, _MIN_SAMPLES - w.size)) if w.size < _MIN_SAMPLES else w for w in waves]
        prompts = self.build_prompts(n=len(waves), texts=texts, modalities=modalities, languages=languages)
        with featurise_in_float32():
            batch = self.processor(
                text=prompts, audio=waves, sampling_rate=self.sampling_rate, return_tensors="pt", padding=True
            )
        return batch.to(self.device)

    # ------------------------------------------------------------------ forward
    def _scores(
        self,
        *,
        audios: Sequence[np.ndarray],
        texts: Sequence[str | None] | None,
        modalities: Sequence[str] | None,
        languages: Sequence[str | None] | None,
    ) -> tuple[Tensor, Tensor]:
        """Raw class logits (N, C) and embedding (N, H) (calibration and losses: :meth:`forward`).

        The embedding is the hidden state at the answer position (``label_tokens``) or the masked mean of the
        last hidden states (``head``).
        """
        batch = self.encode(audios=audios, texts=texts, modalities=modalities, languages=languages)
        attention = batch["attention_mask"]
        # positions count real tokens only, so a padded sample is scored exactly as it would be alone
        position_ids = (attention.cumsum(-1) - 1).clamp_min(0)
        out = self.model.model(
            input_ids=batch["input_ids"],
            input_features=batch["input_features"],
            attention_mask=attention,
            feature_attention_mask=batch["feature_attention_mask"],
            position_ids=position_ids,
            use_cache=False,
        )
        hidden = out.last_hidden_state
        if self.mode == "label_tokens":
            last = attention.shape[1] - 1 - attention.flip(-1).argmax(-1)  # last real token = answer position
            embedding = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
            logits = label_logits(
                embedding,
                output_embeddings=self.model.get_output_embeddings(),
                token_ids=self.label_token_ids,
            )
            embedding = embedding.float()
        else:
            mask = attention.unsqueeze(-1).to(torch.float32)
            embedding = (hidden.float() * mask).sum(1) / mask.sum(1).clamp_min(1.0)
            logits = self.fairser_cls_head(embedding)
        return logits, embedding

    # ------------------------------------------------------------------ parameters and saving
    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters with ``requires_grad`` (LoRA, head, and any unfrozen encoder/projector)."""
        return [p for p in self.parameters() if p.requires_grad]

    def count_parameters(self) -> dict[str, int]:
        """Total and trainable parameter counts (of the whole classifier, LoRA and head included)."""
        return {
            "total": sum(p.numel() for p in self.parameters()),
            "trainable": sum(p.numel() for p in self.trainable_parameters()),
        }

    def save_adapter(self, path: str | Path) -> Path:
        """Write the trained parts (LoRA weights, head) and the settings needed to rebuild the classifier.

        The base model is not copied; reload with ``from_pretrained(base_dir, ..., adapter=path)``.
        """
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        if self.lora is not None:
            self.backbone.save_pretrained(out / _ADAPTER_DIR)
        if self.fairser_cls_head is not None:
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in self.fairser_cls_head.state_dict().items()},
                out / _HEAD_FILE,
            )
        meta = self._adapter_settings()
        (out / _META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        return out

    def _adapter_settings(self) -> dict:
        """What an adapter folder records of this classifier, and what loading one must match."""
        return {
            "labels": list(self.labels),
            "label_words": list(self.label_words),
            "mode": self.mode,
            "prompt_style": self.prompt_style,
            "instruction": self.instruction,
            "lora": None if self.lora is None else self.lora.to_dict(),
            "prompt_language": self.prompt_language,
            "instructions": dict(self.instructions),
            "calibration": self.calibration,
        }

    def load_adapter(self, path: str | Path) -> None:
        """Load LoRA weights and head written by :meth:`save_adapter` (settings must match this classifier)."""
        meta = _read_adapter_meta(path)
        mine = self._adapter_settings()
        # the prompt language, instructions and calibration are recorded, not enforced: evaluating an adapter
        # under other prompts is a legitimate experiment
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


def _read_adapter_meta(path: str | Path) -> dict:
    root = Path(path)
    meta_file = root / _META
    if not meta_file.is_file():
        raise FileNotFoundError(
            f"adapter directory {str(root)!r} has no {_META} (write it with save_adapter)"
        )
    return json.loads(meta_file.read_text(encoding="utf-8"))

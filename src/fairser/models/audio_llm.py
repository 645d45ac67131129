"""Load a configured audio LLM (Qwen2-Audio, DeSTA2.5-Audio) as a label-scoring classifier.

:func:`load_audio_llm` is the one way from a ``backbone:`` config section to a classifier, for training
(``fairser benchmark``), zero-shot evaluation and prediction on new audio. The classifier's keyword-only
``predict(audios=, texts=, modalities=, languages=, batch_size=, progress=)`` returns a
:class:`~fairser.models.backbone.Prediction`; ``scoring_settings()`` is what a results row records of the
prompts and calibration (:mod:`fairser.models.label_scoring`). Weights come from local folders only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fairser.config import BackboneConfig

__all__ = ["AUDIO_LLMS", "load_audio_llm"]

#: The ``backbone.name`` values this module loads.
AUDIO_LLMS = ("qwen2_audio", "desta25")


def load_audio_llm(*, config: BackboneConfig, labels: Sequence[str]):
    """The configured audio LLM classifier, from its local folder (nothing is downloaded).

    Zero-shot (``config.zero_shot``) adds no LoRA (an ``adapter`` folder, if given, is still loaded) and
    applies ``config.calibration``; otherwise LoRA follows ``config.lora``. Returns a
    :class:`~fairser.models.qwen2_audio.Qwen2AudioClassifier` or :class:`~fairser.models.desta25.DeSTA25Classifier`.
    """
    if config.name not in AUDIO_LLMS:
        raise ValueError(f"backbone {config.name!r} is not an audio LLM; expected one of {AUDIO_LLMS}")
    lora = None
    if config.lora is not None and not config.zero_shot:
        lora = {k: v for k, v in config.lora.model_dump().items() if v is not None}
    kwargs: dict[str, Any] = {
        "labels": tuple(labels),
        "mode": config.mode,
        "precision": config.precision,
        "attn_implementation": config.attn_implementation,
        "prompt_style": config.prompt_style,
        "train_audio_encoder": config.train_audio_encoder,
        "train_projector": config.train_projector,
        "gradient_checkpointing": config.gradient_checkpointing,
        "prompt_language": config.prompt_language,
        "instructions": config.instructions,
        "calibration": config.calibration,
    }
    if config.instruction is not None:
        kwargs["instruction"] = config.instruction
    if config.label_words is not None:
        kwargs["label_words"] = tuple(config.label_words)
    if config.adapter is not None:
        kwargs["adapter"] = config.adapter
    if config.adapter is None or not config.zero_shot:  # zero-shot with an adapter: the adapter's LoRA spec
        kwargs["lora"] = lora
    if config.name == "qwen2_audio":
        from fairser.models.qwen2_audio import Qwen2AudioClassifier

        return Qwen2AudioClassifier.from_pretrained(config.path, **kwargs)
    from fairser.models.desta25 import DeSTA25Classifier

    return DeSTA25Classifier.from_pretrained(
        config.path, whisper_transcript=config.whisper_transcript, **kwargs
    )

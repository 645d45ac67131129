"""Label scoring for instruction-tuned audio LLMs: prompts per language, label-word scores, calibration.

Shared by :class:`~fairser.models.qwen2_audio.Qwen2AudioClassifier` and
:class:`~fairser.models.desta25.DeSTA25Classifier` (METHODS.md §4 and §6): a sample is classified by the
language model's logits of the *first token* of each label word at the answer position, a C-way softmax over
those C vocabulary entries. The same scores train the model (fine-tuning) and classify it zero-shot; nothing
is generated and no free text is parsed.

* **Prompts per language.** ``prompt_language="english"`` uses one instruction for every utterance;
  ``"utterance"`` uses the instruction in the utterance's own language (:data:`DEFAULT_INSTRUCTIONS`, our
  own translations, or the ``instructions`` a user passes). The label words stay as configured.
* **Contextual calibration** (Zhao, Wallace, Feng, Klein, Singh 2021, "Calibrate Before Use", ICML): the
  label-word log-probabilities of a *content-free* input — here 1 s of silence, with the transcript
  ``"N/A"`` in the audio+text setting — under the same prompt (language and modality) are subtracted from
  each sample's label-word log-probabilities. ``softmax(log p - log p_cf)`` is Zhao et al.'s
  ``softmax(W p)`` with ``W = diag(p_cf)^-1`` up to normalisation, so it removes the prior a prompt puts on
  each label word (which differs by language).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from fairser.models.backbone import BackboneOutput, Prediction

__all__ = [
    "CONTENT_FREE_SECONDS",
    "CONTENT_FREE_TEXT",
    "DEFAULT_INSTRUCTION",
    "DEFAULT_INSTRUCTIONS",
    "LabelScoringClassifier",
    "label_first_tokens",
    "label_logits",
    "resolve_instructions",
]

#: The English instruction; ``{labels}`` is replaced by the comma-separated label words **(our choice)**.
DEFAULT_INSTRUCTION = "What is the emotion of the speaker? Answer with one word from this list: {labels}."
#: The same instruction in the languages of the built-in corpora and MELD-ST **(our own translations)**.
DEFAULT_INSTRUCTIONS: dict[str, str] = {
    "en": DEFAULT_INSTRUCTION,
    "de": "Welche Emotion drückt die sprechende Person aus? Antworte mit einem Wort aus dieser Liste: {labels}.",
    "ja": "話者の感情は何ですか？次のリストから一語で答えてください: {labels}。",
    "zh": "说话人的情绪是什么？请从以下列表中选一个词回答：{labels}。",
    "fr": "Quelle est l'émotion du locuteur ? Réponds par un seul mot de cette liste : {labels}.",
    "es": "¿Cuál es la emoción del hablante? Responde con una palabra de esta lista: {labels}.",
}
#: Contextual calibration's content-free input: this much silence, and this transcript (audio+text).
CONTENT_FREE_SECONDS = 1.0
CONTENT_FREE_TEXT = "N/A"
_PROMPT_LANGUAGES = ("english", "utterance")
_CALIBRATIONS = ("none", "contextual")


def resolve_instructions(
    *, instruction: str, prompt_language: str, instructions: Mapping[str, str] | None
) -> dict[str, str]:
    """The per-language instructions a classifier uses (``"*"``: every language under ``english``).

    Every instruction must contain ``{labels}``. Under ``utterance`` the user's ``instructions`` override
    :data:`DEFAULT_INSTRUCTIONS` and ``instruction`` is the English one.
    """
    if prompt_language not in _PROMPT_LANGUAGES:
        raise ValueError(f"prompt_language must be one of {_PROMPT_LANGUAGES}, got {prompt_language!r}")
    if prompt_language == "english":
        if instructions:
            raise ValueError(
                "instructions (per language) are used with prompt_language='utterance' only; "
                "set prompt_language: utterance or drop them"
            )
        out = {"*": instruction}
    else:
        out = {**DEFAULT_INSTRUCTIONS, "en": instruction, **dict(instructions or {})}
    bad = sorted(k for k, v in out.items() if "{labels}" not in str(v))
    if bad:
        raise ValueError(f"instruction(s) for {bad} must contain the '{{labels}}' placeholder")
    return out


def label_first_tokens(tokenizer, words: Sequence[str], *, prefix: str = "") -> Tensor:
    """The first token id of each label word (``prefix + word``); refuses words sharing a first token."""
    first = []
    for word in words:
        ids = tokenizer(prefix + word, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"label word {word!r} tokenizes to nothing")
        first.append(int(ids[0]))
    seen: dict[int, str] = {}
    clashes = []
    for word, tok in zip(words, first, strict=True):
        if tok in seen:
            piece = tokenizer.convert_ids_to_tokens(tok)
            clashes.append(f"{seen[tok]!r} and {word!r} both start with token {piece!r} (id {tok})")
        seen.setdefault(tok, word)
    if clashes:
        raise ValueError(
            "label_tokens mode needs distinct first tokens per label word: "
            + "; ".join(clashes)
            + ". Pass label_words= with distinct words, or use mode='head'."
        )
    return torch.tensor(first, dtype=torch.long)


def label_logits(answer_state: Tensor, *, output_embeddings: torch.nn.Module, token_ids: Tensor) -> Tensor:
    """The language-model logits of ``token_ids`` only, from the hidden state at the answer position.

    Equal to ``lm_head(answer_state)[:, token_ids]`` without building the (N, vocabulary) logits.
    """
    ids = token_ids.to(answer_state.device)
    bias = None if output_embeddings.bias is None else output_embeddings.bias[ids]
    return F.linear(answer_state, output_embeddings.weight[ids], bias).float()


class LabelScoringClassifier:
    """What an audio-LLM classifier shares: per-sample losses, calibration and batched prediction.

    A subclass (an ``nn.Module``) sets ``labels``, ``label_words``, ``mode``, ``calibration``,
    ``sampling_rate`` and implements ``_scores(audios=, texts=, modalities=, languages=)`` returning the
    raw class logits (N, C) and the embedding (N, D).
    """

    labels: tuple[str, ...]
    calibration: Literal["none", "contextual"]

    def _init_calibration(self, calibration: str) -> None:
        if calibration not in _CALIBRATIONS:
            raise ValueError(f"calibration must be one of {_CALIBRATIONS}, got {calibration!r}")
        if calibration != "none" and getattr(self, "mode", "label_tokens") != "label_tokens":
            raise ValueError("calibration applies to label-word scores: it needs mode='label_tokens'")
        self.calibration = calibration
        self._content_free: dict[tuple[str, str], Tensor] = {}

    def content_free_log_probs(self, *, language: str | None, modality: str) -> Tensor:
        """Label-word log-probabilities (C,) of the content-free input under the prompt of (language, modality).

        Computed once per (language, modality) with the current weights, without gradients, and cached
        (:meth:`reset_calibration` drops the cache, e.g. after the weights changed).
        """
        key = (str(language), modality)
        if key not in self._content_free:
            silence = np.zeros(int(CONTENT_FREE_SECONDS * self.sampling_rate), dtype=np.float32)
            text = CONTENT_FREE_TEXT if modality == "audio+text" else None
            was = self.training
            self.eval()
            try:
                with torch.no_grad():
                    logits, _ = self._scores(
                        audios=[silence], texts=[text], modalities=[modality], languages=[language]
                    )
            finally:
                self.train(was)
            self._content_free[key] = logits[0].float().log_softmax(-1).detach()
        return self._content_free[key]

    def reset_calibration(self) -> None:
        """Forget the cached content-free scores."""
        self._content_free.clear()

    def calibrate(
        self, logits: Tensor, *, languages: Sequence[str | None] | None, modalities: Sequence[str]
    ) -> Tensor:
        """``log_softmax(logits) - log p_cf`` per sample (contextual calibration), or ``logits`` unchanged."""
        if self.calibration == "none":
            return logits
        n = logits.shape[0]
        langs = list(languages) if languages is not None else [None] * n
        offsets = torch.stack(
            [
                self.content_free_log_probs(language=lang, modality=m)
                for lang, m in zip(langs, modalities, strict=True)
            ]
        ).to(logits.device)
        return logits.float().log_softmax(-1) - offsets

    def forward(
        self,
        *,
        audios: Sequence[np.ndarray],
        texts: Sequence[str | None] | None = None,
        labels: Tensor | None = None,
        modalities: Sequence[str] | None = None,
        languages: Sequence[str | None] | None = None,
        sampling_rate: int | None = None,
    ) -> BackboneOutput:
        """Class logits (N, C) (calibrated when ``calibration='contextual'``), per-sample CE losses (N,)
        (``None`` without ``labels``) and the embedding (N, D).

        Without ``modalities`` a sample is ``audio+text`` when its text is a non-empty string. ``languages``
        (one code per sample) chooses each prompt's instruction under ``prompt_language='utterance'``.
        """
        if sampling_rate is not None and int(sampling_rate) != self.sampling_rate:
            raise ValueError(
                f"audio is at {sampling_rate} Hz; {type(self).__name__} needs {self.sampling_rate} Hz (resample first)"
            )
        n = len(audios)
        if languages is not None and len(languages) != n:
            raise ValueError(f"languages has {len(languages)} entries for {n} audios")
        mods = self.modalities_of(n=n, texts=texts, modalities=modalities)
        logits, embedding = self._scores(audios=audios, texts=texts, modalities=mods, languages=languages)
        logits = self.calibrate(logits, languages=languages, modalities=mods)
        losses = None
        if labels is not None:
            y = torch.as_tensor(labels, device=logits.device).long()
            if y.shape != (logits.shape[0],):
                raise ValueError(f"labels must have shape ({logits.shape[0]},), got {tuple(y.shape)}")
            if y.numel() and (y.min() < 0 or y.max() >= len(self.labels)):
                raise ValueError(
                    f"labels must lie in [0, {len(self.labels)}), got range [{int(y.min())}, {int(y.max())}]"
                )
            losses = F.cross_entropy(logits, y, reduction="none")
        return BackboneOutput(logits=logits, losses=losses, embedding=embedding)

    @staticmethod
    def modalities_of(
        *, n: int, texts: Sequence[str | None] | None, modalities: Sequence[str] | None
    ) -> list[str]:
        """One modality per sample: as given, else ``audio+text`` where a non-empty transcript is given."""
        if texts is not None and len(texts) != n:
            raise ValueError(f"texts has {len(texts)} entries for {n} audios")
        if modalities is not None:
            if len(modalities) != n:
                raise ValueError(f"modalities has {len(modalities)} entries for {n} audios")
            return list(modalities)
        out = []
        for i in range(n):
            text = None if texts is None else texts[i]
            out.append("audio+text" if isinstance(text, str) and text.strip() else "audio")
        return out

    @torch.inference_mode()
    def predict(
        self,
        *,
        audios: Sequence[np.ndarray],
        texts: Sequence[str | None] | None = None,
        modalities: Sequence[str] | None = None,
        languages: Sequence[str | None] | None = None,
        batch_size: int = 8,
        progress: bool = False,
    ) -> Prediction:
        """Predicted class indices and probabilities, in eval mode, ``batch_size`` clips at a time."""
        from rich.progress import track

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(audios)
        was_training = self.training
        self.eval()
        probs = []
        try:
            starts = range(0, n, batch_size)
            for s in track(starts, description=f"{type(self).__name__} predict", disable=not progress):
                sl = slice(s, s + batch_size)
                out = self(
                    audios=audios[sl],
                    texts=None if texts is None else texts[sl],
                    modalities=None if modalities is None else modalities[sl],
                    languages=None if languages is None else languages[sl],
                )
                probs.append(out.logits.softmax(-1).cpu().numpy())
        finally:
            self.train(was_training)
        proba = np.concatenate(probs) if probs else np.zeros((0, len(self.labels)), dtype=np.float32)
        return Prediction(y_pred=proba.argmax(-1), proba=proba, labels=self.labels)

    def scoring_settings(self) -> dict:
        """What the results row records of the label scoring (prompt language, instructions, calibration)."""
        return {
            "label_words": list(self.label_words),
            "prompt_language": self.prompt_language,
            "instructions": dict(self.instructions),
            "calibration": self.calibration,
            "content_free": (
                {"audio_seconds": CONTENT_FREE_SECONDS, "transcript": CONTENT_FREE_TEXT}
                if self.calibration == "contextual"
                else None
            ),
        }

    def instruction_for(self, language: str | None) -> str:
        """The instruction (label words filled in) of an utterance in ``language``."""
        table = self.instructions
        if "*" in table:
            template = table["*"]
        elif language in table:
            template = table[str(language)]
        else:
            raise ValueError(
                f"no instruction for language {language!r} (prompt_language: utterance); known: "
                f"{sorted(table)}. Add it under backbone.instructions, or use prompt_language: english"
            )
        return template.format(labels=", ".join(self.label_words))

"""Trainable heads on frozen, cached embeddings (METHODS.md §4, "Frozen encoder + trainable head").

``AudioHead`` classifies from audio features alone (the unimodal setting); ``FusionHead`` fuses audio and
transcript embeddings (the multimodal setting of the ERM-MinMaxGAP paper). For audio-only samples in a joint
model the transcript is masked: its branch output is replaced by a learned "no text" vector, so the model
never sees a zero embedding it could mistake for a real one. ``LinearHead`` is the classic baseline beside
them: multinomial logistic regression, one linear layer on the features, trained by the same loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["AudioHead", "FusionHead", "HeadOutput", "LinearHead", "build_head"]


@dataclass
class HeadOutput:
    """Class logits (N, C) and the shared embedding (N, H) the objectives may use."""

    logits: Tensor
    embedding: Tensor


def _mlp(in_dim: int, hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout))


class AudioHead(nn.Module):
    """Two-layer MLP on pooled audio features (e.g. the 88 eGeMAPSv02 functionals)."""

    def __init__(self, *, audio_dim: int, n_classes: int, hidden: int = 128, dropout: float = 0.2) -> None:
        super().__init__()
        self.encoder = nn.Sequential(_mlp(audio_dim, hidden, dropout), _mlp(hidden, hidden, dropout))
        self.classifier = nn.Linear(hidden, n_classes)

    def forward(
        self, audio: Tensor, text: Tensor | None = None, text_mask: Tensor | None = None
    ) -> HeadOutput:
        z = self.encoder(audio)
        return HeadOutput(logits=self.classifier(z), embedding=z)


class FusionHead(nn.Module):
    """Late fusion of an audio branch and a transcript branch (concatenation, then an MLP).

    ``text_mask`` (N,) is True where a transcript is available to the model; elsewhere the text branch is
    replaced by a learned vector (audio-only samples of a joint audio / audio+text model).
    """

    def __init__(
        self, *, audio_dim: int, text_dim: int, n_classes: int, hidden: int = 128, dropout: float = 0.2
    ) -> None:
        super().__init__()
        self.audio_branch = _mlp(audio_dim, hidden, dropout)
        self.text_branch = _mlp(text_dim, hidden, dropout)
        self.no_text = nn.Parameter(torch.zeros(hidden))
        self.fusion = _mlp(2 * hidden, hidden, dropout)
        self.classifier = nn.Linear(hidden, n_classes)

    def forward(
        self, audio: Tensor, text: Tensor | None = None, text_mask: Tensor | None = None
    ) -> HeadOutput:
        a = self.audio_branch(audio)
        if text is None:
            t = self.no_text.expand_as(a)
        else:
            t = self.text_branch(text)
            if text_mask is not None:
                t = torch.where(text_mask[:, None], t, self.no_text.expand_as(t))
        z = self.fusion(torch.cat([a, t], dim=1))
        return HeadOutput(logits=self.classifier(z), embedding=z)


class LinearHead(nn.Module):
    """Multinomial logistic regression: one linear layer on the features (softmax in the cross-entropy).

    With transcripts, the audio and transcript embeddings are concatenated; a masked transcript is replaced by
    a learned vector (as in :class:`FusionHead`). The ``embedding`` the objectives see is this input: a linear
    model learns no representation, so objectives acting on the embedding (adversarial, CFA) act only through
    their effect on the classifier's loss.
    """

    def __init__(self, *, audio_dim: int, n_classes: int, text_dim: int = 0) -> None:
        super().__init__()
        self.text_dim = text_dim
        self.no_text = nn.Parameter(torch.zeros(text_dim)) if text_dim else None
        self.classifier = nn.Linear(audio_dim + text_dim, n_classes)

    def forward(
        self, audio: Tensor, text: Tensor | None = None, text_mask: Tensor | None = None
    ) -> HeadOutput:
        z = audio
        if self.no_text is not None:
            no_text = self.no_text.expand(len(audio), -1)
            if text is None:
                t = no_text
            else:
                t = text if text_mask is None else torch.where(text_mask[:, None], text, no_text)
            z = torch.cat([audio, t], dim=1)
        return HeadOutput(logits=self.classifier(z), embedding=z)


def build_head(
    *,
    use_text: bool,
    audio_dim: int,
    text_dim: int,
    n_classes: int,
    hidden: int = 128,
    dropout: float = 0.2,
    kind: str = "mlp",
) -> nn.Module:
    """``kind="mlp"``: an :class:`AudioHead`, or a :class:`FusionHead` when any sample sees its transcript;
    ``kind="linear"``: a :class:`LinearHead` (on the audio features, plus the transcript's with ``use_text``)."""
    if kind == "linear":
        return LinearHead(audio_dim=audio_dim, n_classes=n_classes, text_dim=text_dim if use_text else 0)
    if kind != "mlp":
        raise ValueError(f"head must be 'mlp' or 'linear', got {kind!r}")
    if use_text:
        return FusionHead(
            audio_dim=audio_dim, text_dim=text_dim, n_classes=n_classes, hidden=hidden, dropout=dropout
        )
    return AudioHead(audio_dim=audio_dim, n_classes=n_classes, hidden=hidden, dropout=dropout)

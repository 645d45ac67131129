"""The built-in synthetic multilingual emotional speech corpus (``fairser data synth``).

eSpeak NG voices (en / de / ja) speak parallel dialogue lines with emotion conveyed by prosody, a
transcript that carries the emotion with a set reliability, speaker-disjoint splits, and a configurable
set of documented bias mechanisms per language (label skew and under-representation in training,
weaker emotion cues for one gender). See ``docs/synthetic.md``.
"""

from fairser.data.synth.config import (
    BaseProsody,
    EmotionProsody,
    Jitter,
    SkewRule,
    SpeakerSpread,
    SplitSizes,
    SynthConfig,
    UnderRepresentation,
    WeakCues,
    config_hash,
)
from fairser.data.synth.espeak import ProsodySettings, espeak_version, synthesize
from fairser.data.synth.generate import (
    CORPUS_INFO,
    CORPUS_NAME,
    apply_skew,
    apply_under_representation,
    generate_corpus,
    is_synthetic,
    plan_corpus,
    read_corpus_info,
)
from fairser.data.synth.lines import DialogueLine, is_kana, load_lines

__all__ = [
    "CORPUS_INFO",
    "CORPUS_NAME",
    "BaseProsody",
    "DialogueLine",
    "EmotionProsody",
    "Jitter",
    "ProsodySettings",
    "SkewRule",
    "SpeakerSpread",
    "SplitSizes",
    "SynthConfig",
    "UnderRepresentation",
    "WeakCues",
    "apply_skew",
    "apply_under_representation",
    "config_hash",
    "espeak_version",
    "generate_corpus",
    "is_kana",
    "is_synthetic",
    "load_lines",
    "plan_corpus",
    "read_corpus_info",
    "synthesize",
]

"""Configuration of the synthetic corpus: every setting and its default, validated in one place.

The defaults are the calibrated settings documented in ``docs/synthetic.md`` (measured with
``scripts/calibrate_synth.py``); start there before changing them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, field_validator, model_validator

from fairser.data.labels import MELD_EMOTIONS

__all__ = [
    "AGE_BANDS",
    "GENERATOR_VERSION",
    "SYNTH_GENDERS",
    "SYNTH_LANGUAGES",
    "BaseProsody",
    "EmotionProsody",
    "Jitter",
    "SkewRule",
    "SpeakerSpread",
    "SplitSizes",
    "UnderRepresentation",
    "WeakCues",
    "SynthConfig",
    "config_hash",
]

#: Bumped whenever the generator's output for a given config changes (invalidates cached corpora).
# 2: manifest gains `age_band`; 3: issue 12's plan (sizes, under-representation, weak cues, `cue_scale`)
GENERATOR_VERSION = 4
SYNTH_LANGUAGES: tuple[str, ...] = ("en", "de", "ja")
SYNTH_GENDERS: tuple[str, ...] = ("female", "male")
#: Age bands of the synthetic speakers: a label only (it changes nothing in the voice), so a model's age-band
#: gaps on this corpus are chance; use it to try a three-valued or intersectional sensitive attribute.
AGE_BANDS: tuple[str, ...] = ("18-34", "35-59", "60+")

Language = Literal["en", "de", "ja"]
Gender = Literal["female", "male"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmotionProsody(_Model):
    """How one emotion moves the voice: offsets on eSpeak's 0-100 pitch/range scale, multipliers of rate and loudness."""

    pitch: float = Field(ge=-50, le=50)
    range: float = Field(ge=-50, le=50)
    rate: float = Field(gt=0.2, le=3.0)
    volume: float = Field(gt=0.05, le=5.0)


class Jitter(_Model):
    """Per-utterance Gaussian noise on the prosody (standard deviations).

    ``pitch`` and ``range`` in eSpeak units, ``rate`` and ``volume`` relative (0.1 = 10 %).
    """

    pitch: float = Field(default=5.0, ge=0, le=30)
    range: float = Field(default=8.0, ge=0, le=40)
    rate: float = Field(default=0.08, ge=0, le=0.5)
    volume: float = Field(default=0.10, ge=0, le=0.5)


class SpeakerSpread(_Model):
    """Half-widths of the uniform per-speaker offsets that make speakers of one voice variant differ."""

    pitch: float = Field(default=12.0, ge=0, le=30)
    range: float = Field(default=10.0, ge=0, le=30)
    rate: float = Field(default=0.10, ge=0, lt=0.5, description="rate factor drawn from 1 ± rate")
    gain_db: float = Field(default=4.0, ge=0, le=12)


class BaseProsody(_Model):
    """Neutral voice before speaker and emotion offsets."""

    pitch: float = Field(default=45.0, ge=0, le=100, description="eSpeak pitch (0-100)")
    range: float = Field(default=50.0, ge=0, le=100, description="eSpeak pitch range (0-100)")
    rate: float = Field(default=170.0, ge=80, le=450, description="words per minute")
    level_dbfs: float = Field(
        default=-28.0, ge=-50, le=-10, description="active-speech RMS level of a neutral utterance"
    )
    espeak_volume: int = Field(
        default=50, ge=10, le=100, description="eSpeak's own volume, fixed (loudness is set digitally)"
    )


class SplitSizes(_Model):
    """Speakers per gender and language in each split (speaker-disjoint)."""

    train: int = Field(default=12, ge=1)
    valid: int = Field(default=4, ge=1)
    test: int = Field(default=36, ge=1)


class SkewRule(_Model):
    """Drop ``drop_fraction`` of the TRAIN utterances of ``gender`` for each of ``emotions`` (one language)."""

    gender: Gender
    emotions: list[str] = Field(min_length=1)
    drop_fraction: float = Field(ge=0, le=1)

    @field_validator("emotions")
    @classmethod
    def _known_emotions(cls, value: list[str]) -> list[str]:
        unknown = [e for e in value if e not in MELD_EMOTIONS]
        if unknown:
            raise ValueError(f"unknown emotion(s) {unknown}; allowed {list(MELD_EMOTIONS)}")
        if len(set(value)) != len(value):
            raise ValueError(f"duplicate emotion(s) in {value}")
        return value


class UnderRepresentation(_Model):
    """Bias mechanism (b): keep only ``keep_fraction`` of ``gender``'s TRAIN speakers in one language.

    Exactly ``max(1, floor(keep_fraction * n + 0.5))`` of the ``n`` training speakers are kept (chosen at random,
    seeded per language and gender); every utterance of the others is dropped. Validation and test untouched.
    """

    gender: Gender
    keep_fraction: float = Field(gt=0, le=1)


class WeakCues(_Model):
    """Bias mechanism (c): ``gender``'s emotion prosody in one language, scaled toward neutral by ``scale``.

    The emotion's pitch and range offsets are multiplied by ``scale``, its rate and loudness factors raised to
    the power ``scale`` (loudness in dB and log-rate scale linearly); jitter and speaker offsets are unchanged.
    Applies to every split (it is how that gender speaks in that language).
    """

    gender: Gender
    scale: float = Field(ge=0, le=1)


DEFAULT_PROSODY: dict[str, EmotionProsody] = {
    "neutral": EmotionProsody(pitch=0, range=0, rate=1.00, volume=1.00),
    "joy": EmotionProsody(pitch=14, range=40, rate=1.06, volume=1.20),
    "sadness": EmotionProsody(pitch=-12, range=-30, rate=0.78, volume=0.65),
    "anger": EmotionProsody(pitch=10, range=15, rate=1.18, volume=1.60),
    "surprise": EmotionProsody(pitch=30, range=30, rate=0.90, volume=1.10),
    "fear": EmotionProsody(pitch=24, range=-10, rate=1.35, volume=0.90),
    "disgust": EmotionProsody(pitch=-16, range=12, rate=0.70, volume=0.85),
}

DEFAULT_VOICES: dict[str, list[str]] = {
    "female": ["f1", "f2", "f3", "f4", "f5"],
    "male": ["m1", "m3", "m5", "m6", "m7"],
}

# The default biases (docs/synthetic.md, "Injected bias"): de is the bias-free control; en carries the
# training-data mechanisms (a) and (b) against women; ja the expression mechanism (c) against men.
# (a) one-sided label skew: the female high-arousal emotions anger, joy, surprise rare in en training (no cell
# emptied: reweighting stays defined). Surprise added after the first calibration (docs/synthetic.md).
DEFAULT_SKEW: dict[str, list[SkewRule]] = {
    "en": [SkewRule(gender="female", emotions=["anger", "joy", "surprise"], drop_fraction=0.9)],
}
# (b) under-representation: a quarter of the female training speakers in en
DEFAULT_UNDER_REPRESENTATION: dict[str, UnderRepresentation] = {
    "en": UnderRepresentation(gender="female", keep_fraction=0.25),
}
# (c) weaker emotion cues: male emotion prosody at half strength in ja
DEFAULT_WEAK_CUES: dict[str, WeakCues] = {
    "ja": WeakCues(gender="male", scale=0.5),
}

# The test plan, not a bias: extra test-only speakers per gender where the power analysis of version 3 (36 test
# speakers per gender) gave a minimum detectable W-F1 gap above 8 points (ja 9.1, en audio+text 8.1); sized by
# MDG ~ 1/sqrt(n) to ~7.6 (docs/synthetic.md, "Power and bias"). Every speaker of the base plan is unchanged.
DEFAULT_EXTRA_TEST_SPEAKERS: dict[str, int] = {"en": 4, "ja": 16}


class SynthConfig(_Model):
    """Settings of the built-in synthetic multilingual emotional speech corpus (``fairser data synth``).

    Every random choice derives from ``seed``; the same config gives byte-identical audio and manifest.
    """

    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    languages: list[Language] = Field(default_factory=lambda: list(SYNTH_LANGUAGES), min_length=1)
    speakers_per_gender: int = Field(default=52, ge=3, le=200, description="per language")
    split_speakers: SplitSizes = Field(default_factory=SplitSizes)
    utterances_per_emotion: int = Field(default=3, ge=1, le=200, description="per speaker and emotion")
    text_reliability: float = Field(
        default=0.6,
        ge=0,
        le=1,
        description="probability that an utterance's words are worded for its emotion",
    )
    mismatch_neutral_share: float = Field(
        default=0.5, ge=0, le=1, description="share of the mismatched transcripts that use neutral wording"
    )
    voice_variants: dict[Gender, list[str]] = Field(
        default_factory=lambda: {g: list(v) for g, v in DEFAULT_VOICES.items()}
    )
    base: BaseProsody = Field(default_factory=BaseProsody)
    male_pitch_offset: float = Field(
        default=10.0, ge=-30, le=30, description="added to the base pitch of male speakers"
    )
    speaker_spread: SpeakerSpread = Field(default_factory=SpeakerSpread)
    prosody: dict[str, EmotionProsody] = Field(default_factory=lambda: dict(DEFAULT_PROSODY))
    jitter: Jitter = Field(default_factory=Jitter)
    skew: dict[Language, list[SkewRule]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_SKEW.items()}
    )
    under_representation: dict[Language, UnderRepresentation] = Field(
        default_factory=lambda: dict(DEFAULT_UNDER_REPRESENTATION)
    )
    weak_cues: dict[Language, WeakCues] = Field(default_factory=lambda: dict(DEFAULT_WEAK_CUES))
    extra_test_speakers: dict[Language, NonNegativeInt] = Field(
        default_factory=lambda: dict(DEFAULT_EXTRA_TEST_SPEAKERS),
        description=(
            "test-only speakers per gender added to a language after the base plan (speakers_per_gender, "
            "split_speakers), drawn from their own random streams: every base speaker, script, split and "
            "training utterance stays identical; a larger test split for power"
        ),
    )
    sample_rate: int = Field(default=16000, ge=8000, le=48000)

    @field_validator("languages")
    @classmethod
    def _unique_languages(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"duplicate language(s) in {value}")
        return value

    @field_validator("skew", mode="before")
    @classmethod
    def _rules_as_lists(cls, value):
        # a language may hold one rule (a mapping) or a list of rules
        if isinstance(value, dict):
            return {
                lang: [rules] if isinstance(rules, dict | SkewRule) else rules
                for lang, rules in value.items()
            }
        return value

    @field_validator("prosody")
    @classmethod
    def _all_emotions(cls, value: dict[str, EmotionProsody]) -> dict[str, EmotionProsody]:
        unknown = sorted(set(value) - set(MELD_EMOTIONS))
        missing = [e for e in MELD_EMOTIONS if e not in value]
        if unknown or missing:
            raise ValueError(
                f"prosody must give every MELD emotion {list(MELD_EMOTIONS)}; unknown {unknown}, missing {missing}"
            )
        return {e: value[e] for e in MELD_EMOTIONS}

    @field_validator("voice_variants")
    @classmethod
    def _known_variants(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        from fairser.data.synth.espeak import list_variants

        known = set(list_variants())
        for gender in SYNTH_GENDERS:
            variants = value.get(gender)
            if not variants:
                raise ValueError(f"voice_variants[{gender!r}] must list at least one eSpeak NG variant")
            unknown = [v for v in variants if v not in known]
            if unknown:
                raise ValueError(
                    f"voice_variants[{gender!r}]: unknown eSpeak NG variant(s) {unknown}; known: {sorted(known)}"
                )
            if len(set(variants)) != len(variants):
                raise ValueError(f"voice_variants[{gender!r}]: duplicate variant(s) in {variants}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SynthConfig:
        s = self.split_speakers
        if s.train + s.valid + s.test != self.speakers_per_gender:
            raise ValueError(
                f"split_speakers train+valid+test = {s.train}+{s.valid}+{s.test} = {s.train + s.valid + s.test} "
                f"must equal speakers_per_gender = {self.speakers_per_gender}"
            )
        for knob in ("skew", "under_representation", "weak_cues", "extra_test_speakers"):
            value = getattr(self, knob)
            absent = [lang for lang in value if lang not in self.languages]
            if absent:
                if knob in self.model_fields_set:
                    raise ValueError(
                        f"{knob} names language(s) {absent} that are not generated (languages = {self.languages})"
                    )
                # a default bias only applies to the languages actually generated
                object.__setattr__(self, knob, {k: v for k, v in value.items() if k in self.languages})
        for lang, rules in self.skew.items():
            cells = [(r.gender, e) for r in rules for e in r.emotions]
            if len(set(cells)) != len(cells):
                raise ValueError(f"skew[{lang!r}]: a (gender, emotion) cell appears in more than one rule")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> SynthConfig:
        """Read a config from YAML (keys as the fields; omitted keys take their defaults)."""
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping of SynthConfig fields, got {type(raw).__name__}")
        return cls.model_validate(raw)


def config_hash(config: SynthConfig) -> str:
    """Content hash of a config and the generator version (identifies a generated corpus)."""
    payload = json.dumps(
        {"generator_version": GENERATOR_VERSION, "config": config.model_dump(mode="json")}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]

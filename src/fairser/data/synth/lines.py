"""Parallel dialogue lines (en / de / ja-kana) for the synthetic corpus, grouped by the emotion of their wording."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

from fairser.data.labels import MELD_EMOTIONS

__all__ = ["LINE_LANGUAGES", "DialogueLine", "is_kana", "load_lines"]

#: Languages every line is written in (MELD-ST's en/de/ja).
LINE_LANGUAGES: tuple[str, ...] = ("en", "de", "ja")

# Hiragana, katakana (incl. the long-vowel mark), CJK/full-width punctuation and spaces; no kanji.
_KANA = re.compile(r"[\u3040-\u309F\u30A0-\u30FF\u3000-\u303F\uFF01\uFF1F\uFF0C\uFF0E\s!?,.]+")


def is_kana(text: str) -> bool:
    """True if ``text`` is written in kana and punctuation only (what eSpeak NG's Japanese voice can read)."""
    return bool(text) and _KANA.fullmatch(text) is not None


@dataclass(frozen=True)
class DialogueLine:
    """One dialogue line in every language; ``wording`` is the emotion its words carry."""

    line_id: str
    wording: str
    texts: dict[str, str]


def load_lines(path: str | Path | None = None) -> dict[str, list[DialogueLine]]:
    """Load the parallel lines, grouped by the emotion of their wording.

    Parameters
    ----------
    path : path, optional
        A YAML file ``{emotion: [{en: ..., de: ..., ja: ...}, ...]}``; default: the packaged ``lines.yaml``.

    Raises
    ------
    ValueError
        A wording emotion outside the 7 MELD emotions or missing, a line missing a language or empty,
        or a Japanese line that is not kana; the message names the file, emotion and line.
    """
    if path is None:
        return {k: list(v) for k, v in _packaged_lines().items()}
    return _parse(yaml.safe_load(Path(path).read_text(encoding="utf-8")), source=str(path))


@cache
def _packaged_lines() -> dict[str, tuple[DialogueLine, ...]]:
    text = resources.files("fairser.data.synth").joinpath("lines.yaml").read_text(encoding="utf-8")
    return {
        k: tuple(v) for k, v in _parse(yaml.safe_load(text), source="fairser/data/synth/lines.yaml").items()
    }


def _parse(raw, *, source: str) -> dict[str, list[DialogueLine]]:
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: expected a mapping emotion -> list of lines, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(MELD_EMOTIONS))
    missing = [e for e in MELD_EMOTIONS if e not in raw]
    if unknown or missing:
        raise ValueError(
            f"{source}: wording emotions must be exactly {list(MELD_EMOTIONS)}; unknown {unknown}, missing {missing}"
        )
    out: dict[str, list[DialogueLine]] = {}
    for emotion in MELD_EMOTIONS:
        entries = raw[emotion]
        if not isinstance(entries, list) or not entries:
            raise ValueError(f"{source}: emotion {emotion!r} needs a non-empty list of lines")
        lines = []
        for k, entry in enumerate(entries):
            where = f"{source}: {emotion} line {k}"
            if not isinstance(entry, dict):
                raise ValueError(f"{where}: expected a mapping language -> text")
            absent = [lang for lang in LINE_LANGUAGES if not str(entry.get(lang, "")).strip()]
            if absent:
                raise ValueError(f"{where}: missing or empty text for language(s) {absent}")
            texts = {lang: str(entry[lang]).strip() for lang in LINE_LANGUAGES}
            if not is_kana(texts["ja"]):
                raise ValueError(
                    f"{where}: Japanese text must be kana only (eSpeak NG cannot read kanji): {texts['ja']!r}"
                )
            lines.append(DialogueLine(line_id=f"{emotion}_{k:02d}", wording=emotion, texts=texts))
        out[emotion] = lines
    return out

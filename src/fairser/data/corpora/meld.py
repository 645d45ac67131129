"""MELD, the Multimodal EmotionLines Dataset (Poria et al., ACL 2019), text view.

Read as the authors distribute it: ``train_sent_emo.csv``, ``dev_sent_emo.csv``, ``test_sent_emo.csv`` with
the columns ``Sr No., Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID, Season, Episode,
StartTime, EndTime``. This loader builds the *text-only* view: ``audio_path`` is empty and the extra column
``modality`` is ``text``, so validate such a manifest with ``check_files=False``. The audio view of these
dialogues is MELD-ST (:mod:`fairser.data.corpora.meld_st`).

Gender is not part of MELD. It is taken from the speaker name: the six main characters from the shipped
table ``fairser/data/meld_main_cast_gender.csv`` (Rachel, Monica, Phoebe female; Ross, Chandler, Joey male),
plus an optional user table; every other speaker stays ``unknown``.

Encoding quirks: older copies of the MELD CSVs hold Windows-1252 punctuation as C1 control characters
(``\\x92`` for ``’``; fixed upstream in declare-lab/MELD PR #28) or as double-encoded UTF-8 (``â€™``); some
are not UTF-8 at all. :func:`read_meld_csv` decodes UTF-8 or falls back to Windows-1252, and
:func:`fix_text` repairs both kinds of mojibake.
"""

from __future__ import annotations

import io
import re
from importlib import resources
from pathlib import Path

import pandas as pd

from fairser.data.corpora._common import GenderTable, ImportResult, finish, read_gender_table
from fairser.data.manifest import ManifestError

__all__ = [
    "MELD_COLUMNS",
    "MELD_FILES",
    "fix_text",
    "load_meld",
    "main_cast_gender",
    "meld_gender_lookup",
    "read_meld_csv",
]

CORPUS = "meld"
MELD_COLUMNS: tuple[str, ...] = (
    "Sr No.",
    "Utterance",
    "Speaker",
    "Emotion",
    "Sentiment",
    "Dialogue_ID",
    "Utterance_ID",
    "Season",
    "Episode",
    "StartTime",
    "EndTime",
)
#: CSV file -> manifest split (MELD's ``dev`` is the manifest's ``valid``).
MELD_FILES: dict[str, str] = {
    "train_sent_emo.csv": "train",
    "dev_sent_emo.csv": "valid",
    "test_sent_emo.csv": "test",
}
EXTRAS = (
    "modality",
    "character",
    "sentiment",
    "dialogue_id",
    "utterance_id",
    "season",
    "episode",
    "start_time",
    "end_time",
)
_C1 = re.compile("[\x80-\x9f]")
_DOUBLE_ENCODED = re.compile("[ÂÃâ][\x80-\xbf\u0152-\u2122]")


def _c1_to_cp1252(match: re.Match[str]) -> str:
    try:
        return match.group().encode("latin-1").decode("cp1252")
    except UnicodeDecodeError:  # 0x81, 0x8d, 0x8f, 0x90, 0x9d are undefined in cp1252
        return ""


def fix_text(text: str) -> str:
    """Repair the mojibake found in MELD-family CSVs; clean text is returned unchanged.

    C1 control characters are read as the Windows-1252 punctuation they stood for, double-encoded UTF-8
    (``â€™``) is decoded once more, and no-break spaces become plain spaces.
    """
    if _DOUBLE_ENCODED.search(text):
        try:
            text = text.encode("cp1252").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    if _C1.search(text):
        text = _C1.sub(_c1_to_cp1252, text)
    return text.replace("\xa0", " ")


def read_meld_csv(path: str | Path, *, required: tuple[str, ...] = MELD_COLUMNS) -> pd.DataFrame:
    """Read a MELD-family CSV as strings (UTF-8, else Windows-1252), checking its columns.

    Raises
    ------
    ManifestError
        When the file is missing or lacks a required column (both named).
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"file not found: {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ManifestError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
    return df


def main_cast_gender() -> dict[str, str]:
    """The shipped gender table of the six main characters of *Friends* (speaker name -> gender)."""
    with resources.files("fairser.data").joinpath("meld_main_cast_gender.csv").open(encoding="utf-8") as fh:
        return read_gender_table(pd.read_csv(fh, dtype=str, keep_default_na=False))


def meld_gender_lookup(gender_table: GenderTable | None = None) -> dict[str, str]:
    """Case-insensitive speaker-name -> gender lookup: the main cast, extended or overridden by ``gender_table``."""
    table = main_cast_gender()
    if gender_table is not None:
        table.update(read_gender_table(gender_table))
    return {name.strip().casefold(): g for name, g in table.items()}


def genders_for(names: pd.Series, lookup: dict[str, str]) -> pd.Series:
    """Gender of each speaker name (``unknown`` when the name is not in ``lookup``)."""
    return names.str.strip().str.casefold().map(lookup).fillna("unknown").astype("string")


def load_meld(path: str | Path, *, gender_table: GenderTable | None = None) -> ImportResult:
    """Read MELD's three CSVs into a text-only manifest with the official train/dev/test split.

    Parameters
    ----------
    path : path
        Folder holding ``train_sent_emo.csv``, ``dev_sent_emo.csv`` and ``test_sent_emo.csv``.
    gender_table : path, DataFrame or mapping, optional
        Extra ``speaker,gender`` rows (speaker = MELD's ``Speaker`` name, matched case-insensitively) that
        extend or override the shipped main-cast table.

    Returns
    -------
    ImportResult
        Emotions in MELD's names; ``audio_path`` empty, ``modality`` ``text``; speaker ids are
        ``meld_<Speaker>``; extras ``character``, ``sentiment``, ``dialogue_id``, ``utterance_id``, ``season``,
        ``episode``, ``start_time``, ``end_time``.
    """
    root = Path(path)
    lookup = meld_gender_lookup(gender_table)
    parts = []
    for fname, split in MELD_FILES.items():
        df = read_meld_csv(root / fname)
        character = df["Speaker"].map(fix_text).str.strip()
        dia, utt = df["Dialogue_ID"].str.strip(), df["Utterance_ID"].str.strip()
        parts.append(
            pd.DataFrame(
                {
                    "id": CORPUS + "_" + split + "_dia" + dia + "_utt" + utt,
                    "audio_path": "",
                    "transcript": df["Utterance"].map(fix_text).str.strip(),
                    "emotion": df["Emotion"].str.strip().str.lower(),
                    "gender": genders_for(character, lookup),
                    "language": "en",
                    "speaker": CORPUS + "_" + character,
                    "corpus": CORPUS,
                    "split": split,
                    "modality": "text",
                    "character": character,
                    "sentiment": df["Sentiment"].str.strip().str.lower(),
                    "dialogue_id": dia,
                    "utterance_id": utt,
                    "season": df["Season"].str.strip(),
                    "episode": df["Episode"].str.strip(),
                    "start_time": df["StartTime"].str.strip(),
                    "end_time": df["EndTime"].str.strip(),
                }
            )
        )
    df = finish(
        pd.concat(parts, ignore_index=True), extras=EXTRAS, source=f"{CORPUS} ({root})", check_files=False
    )
    return ImportResult(
        manifest=df,
        corpus=CORPUS,
        official_split=True,
        notes=[
            "MELD text view: no audio (audio_path empty); validate with check_files=False",
            "official MELD splits (dev -> valid); main characters appear in every split (not speaker-independent)",
        ],
    )

"""MELD-ST, the emotion-aware speech translation corpus (Chen et al., Findings of ACL 2024), gated.

Layout as the authors distribute it (Hugging Face ``ku-nlp/MELD-ST``; the audio folders sit inside each pair
folder, as in the layout documented by the nkululeko MELD-ST recipe)::

    MELD-ST/
      ENG_DEU/  deu_train.csv deu_valid.csv deu_test.csv
                ENG/{train,dev,test}/<split>_<id>.wav   DEU/{train,dev,test}/<split>_<id>.wav
      ENG_JPN/  jpn_train.csv jpn_valid.csv jpn_test.csv
                ENG/{train,dev,test}/<split>_<id>.wav   JPN/{train,dev,test}/<split>_<id>.wav

CSV columns: ``id, dia_id, utt_id, emotion, sentiment, English, German|Japanese, season, episode, speaker,
English_begin_time, English_end_time, German|Japanese_begin_time, German|Japanese_end_time``. The CSV split
``valid`` is the audio folder ``dev`` (and the manifest split ``valid``); ``<split>`` in a file name is the
audio folder's name (``dev_12.wav``). Audio is 16 kHz mono PCM.

Accepted variants: ``path`` may be the MELD-ST root or a single pair folder; the ``ENG``/``DEU``/``JPN``
folders are looked for inside the pair folder first, then beside it (in the pair folder's parent);
``.flac`` is accepted where ``.wav`` is absent.

Every CSV row yields two utterances: the English original and its dubbed version (``de`` or ``ja``), each
with its own transcript. Speaker ids are per language (``meld_st_en_Chandler``, ``meld_st_de_Chandler``):
the dubbing actor is a different person from the original actor. Gender comes from the character, as for
MELD (shipped main-cast table plus an optional user table; anyone else stays ``unknown``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from fairser.data.corpora._common import DropLog, GenderTable, ImportResult, finish
from fairser.data.corpora.meld import fix_text, genders_for, meld_gender_lookup, read_meld_csv
from fairser.data.manifest import ManifestError

__all__ = ["AUDIO_SPLIT_FOLDERS", "PAIRS", "load_meld_st"]

CORPUS = "meld_st"
#: Pair folder -> (CSV prefix, audio folder, text column, ISO 639-1 code) of the dubbed language.
PAIRS: dict[str, tuple[str, str, str, str]] = {
    "ENG_DEU": ("deu", "DEU", "German", "de"),
    "ENG_JPN": ("jpn", "JPN", "Japanese", "ja"),
}
#: CSV split name -> audio folder name (and file-name prefix).
AUDIO_SPLIT_FOLDERS: dict[str, str] = {"train": "train", "valid": "dev", "test": "test"}
_REQUIRED = ("id", "dia_id", "utt_id", "emotion", "speaker", "English")
_OPTIONAL = ("sentiment", "season", "episode")
EXTRAS = (
    "pair",
    "pair_row_id",
    "counterpart_id",
    "character",
    "sentiment",
    "dialogue_id",
    "utterance_id",
    "season",
    "episode",
    "begin_time",
    "end_time",
    "text_en",
)


def _pair_dirs(root: Path, pairs: Iterable[str] | None) -> dict[str, Path]:
    if not root.is_dir():
        raise ManifestError(f"{CORPUS}: folder not found: {root}")
    found = {p: root / p for p in PAIRS if (root / p).is_dir()}
    if not found:  # ``root`` may be one pair folder
        for pair, (prefix, *_rest) in PAIRS.items():
            if (root / f"{prefix}_train.csv").is_file() or root.name.upper() == pair:
                found[pair] = root
    if not found:
        raise ManifestError(
            f"{CORPUS}: {root} holds neither ENG_DEU/ nor ENG_JPN/ nor a pair's deu_*.csv/jpn_*.csv files"
        )
    if pairs is None:
        return found
    wanted = list(pairs)
    unknown = [p for p in wanted if p not in PAIRS]
    if unknown:
        raise ValueError(f"unknown MELD-ST pair(s) {unknown}; choose from {list(PAIRS)}")
    missing = [p for p in wanted if p not in found]
    if missing:
        raise ManifestError(f"{CORPUS}: pair folder(s) {missing} not found in {root}")
    return {p: found[p] for p in wanted}


def _audio_dir(pair_dir: Path, lang_folder: str, split_folder: str) -> Path:
    candidates = [pair_dir / lang_folder / split_folder, pair_dir.parent / lang_folder / split_folder]
    for c in candidates:
        if c.is_dir():
            return c
    return candidates[0]


def _audio_paths(folder: Path, prefix: str, ids: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Expected audio path of each id and whether it exists (``.wav`` preferred, ``.flac`` accepted)."""
    present = set(os.listdir(folder)) if folder.is_dir() else set()
    paths, exists = [], []
    base = folder.absolute()
    for i in ids:
        wav, flac = f"{prefix}_{i}.wav", f"{prefix}_{i}.flac"
        name = wav if wav in present or flac not in present else flac
        paths.append(str(base / name))
        exists.append(name in present)
    return pd.Series(paths, index=ids.index, dtype="string"), pd.Series(exists, index=ids.index)


def load_meld_st(
    path: str | Path,
    *,
    strict: bool = True,
    pairs: Iterable[str] | None = None,
    gender_table: GenderTable | None = None,
) -> ImportResult:
    """Read MELD-ST (both language pairs, or those in ``pairs``) with its official splits.

    Parameters
    ----------
    path : path
        The MELD-ST root (holding ``ENG_DEU/`` and/or ``ENG_JPN/``) or one pair folder.
    strict : bool
        If true, a CSV row whose audio file is missing is an error naming the files; if false the missing
        utterance is dropped and counted (its counterpart in the other language is kept).
    pairs : iterable of {"ENG_DEU", "ENG_JPN"}, optional
        Restrict to these pairs (default: every pair folder found).
    gender_table : path, DataFrame or mapping, optional
        Extra ``speaker,gender`` rows keyed by character name, extending the shipped main-cast table.

    Returns
    -------
    ImportResult
        Two utterances per CSV row (``en`` + ``de``/``ja``), emotions in MELD's names, official splits;
        extras ``pair``, ``pair_row_id`` (the CSV ``id``), ``counterpart_id`` (the other language's utterance),
        ``character``, ``sentiment``, ``dialogue_id``, ``utterance_id``, ``season``, ``episode``,
        ``begin_time``, ``end_time`` (of this language's subtitle) and ``text_en``.
    """
    root = Path(path)
    lookup = meld_gender_lookup(gender_table)
    drops = DropLog(corpus=CORPUS, strict=strict)
    parts = []
    audio_dirs: list[str] = []
    for pair, pair_dir in _pair_dirs(root, pairs).items():
        prefix, lang_folder, text_col, lang = PAIRS[pair]
        for csv_split, audio_split in AUDIO_SPLIT_FOLDERS.items():
            csv_path = pair_dir / f"{prefix}_{csv_split}.csv"
            df = read_meld_csv(csv_path, required=(*_REQUIRED, text_col))
            row_id = df["id"].str.strip()
            dup = row_id.duplicated(keep=False)
            if dup.any():
                raise ManifestError(f"{csv_path}: duplicate id(s) {sorted(set(row_id[dup]))[:10]}")
            character = df["speaker"].map(fix_text).str.strip()
            gender = genders_for(character, lookup)
            for side_lang, folder, text_column, other_lang in (
                ("en", "ENG", "English", lang),
                (lang, lang_folder, text_col, "en"),
            ):
                adir = _audio_dir(pair_dir, folder, audio_split)
                audio_dirs.append(str(adir))
                audio, exists = _audio_paths(adir, audio_split, row_id)
                time_prefix = "English" if side_lang == "en" else text_col
                uid = f"{CORPUS}_{pair.lower()}_{side_lang}_{csv_split}_" + row_id
                other_uid = f"{CORPUS}_{pair.lower()}_{other_lang}_{csv_split}_" + row_id
                side = pd.DataFrame(
                    {
                        "id": uid,
                        "audio_path": audio,
                        "transcript": df[text_column].map(fix_text).str.strip(),
                        "emotion": df["emotion"].str.strip().str.lower(),
                        "gender": gender,
                        "language": side_lang,
                        "speaker": f"{CORPUS}_{side_lang}_" + character,
                        "corpus": CORPUS,
                        "split": csv_split,
                        "pair": pair,
                        "pair_row_id": row_id,
                        "counterpart_id": other_uid,
                        "character": character,
                        "dialogue_id": df["dia_id"].str.strip(),
                        "utterance_id": df["utt_id"].str.strip(),
                        "begin_time": df.get(f"{time_prefix}_begin_time", pd.Series("", index=df.index)),
                        "end_time": df.get(f"{time_prefix}_end_time", pd.Series("", index=df.index)),
                        "text_en": df["English"].map(fix_text).str.strip(),
                    }
                )
                for col in _OPTIONAL:
                    side[col] = df[col].str.strip().str.lower() if col in df.columns else ""
                for p, i in zip(audio[~exists], row_id[~exists], strict=True):
                    drops.add(p, "audio file missing", f"{csv_path.name} id {i}")
                parts.append(side.loc[exists.to_numpy()])
    drops.check(hint="pass strict=False to drop utterances without audio and count them")
    df = finish(pd.concat(parts, ignore_index=True), extras=EXTRAS, source=f"{CORPUS} ({root})")
    if df.empty:
        raise ManifestError(
            f"{CORPUS}: no utterance with an audio file under {root} (looked in {audio_dirs[:4]} ...)"
        )
    return ImportResult(
        manifest=df,
        dropped=drops.counts(),
        dropped_rows=drops.frame(),
        corpus=CORPUS,
        official_split=True,
        notes=[
            "official MELD-ST splits (CSV valid = audio folder dev); two utterances per CSV row",
            "genders from the character name (main cast + user table); other characters unknown",
        ],
    )

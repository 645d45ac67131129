"""Speaker-independent, gender-stratified splits (METHODS.md §5).

Official splits are used where a corpus has them (MELD-ST, MELD: set by the loaders). Otherwise the splits
are *speaker-independent* (no speaker in two splits) and *stratified*: speakers are allocated separately
within each stratum — by default each (corpus, language, gender) — so that every split holds both genders of
each language whenever the stratum has enough speakers (EmoDB, 5 speakers per gender: 3/1/1 each).
Fractions are fractions of *speakers* (acted corpora have about equal utterances per speaker).

A speaker is identified by ``(corpus, speaker)``; its gender and stratum are its most frequent values.
Every function takes a seed; the same manifest and seed give the same split.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fairser.data.manifest import SPLITS

__all__ = [
    "SpeakerFold",
    "assert_speaker_independent",
    "cross_corpus_split",
    "fill_language_splits",
    "language_split_notes",
    "leave_one_speaker_out",
    "speaker_folds",
    "speaker_kfold",
    "speaker_split",
    "split_summary",
]

_KEY = ("corpus", "speaker")
_DEFAULT_WITHIN = ("corpus", "language")


@dataclass(frozen=True)
class SpeakerFold:
    """One fold of a speaker k-fold or leave-one-speaker-out scheme.

    ``split`` holds, for every row of the manifest the fold was built from, its split in this fold
    (``train``, ``valid`` or ``test``); speakers are ``corpus/speaker`` strings.
    """

    index: int
    split: np.ndarray
    test_speakers: tuple[str, ...]
    valid_speakers: tuple[str, ...]

    def apply(self, manifest: pd.DataFrame) -> pd.DataFrame:
        """A copy of ``manifest`` (the one the fold was built from) with ``split`` set for this fold."""
        if len(manifest) != len(self.split):
            raise ValueError(f"fold {self.index} has {len(self.split)} rows, the manifest {len(manifest)}")
        return manifest.assign(split=pd.array(self.split, dtype="string"))


def _mode(s: pd.Series) -> str:
    counts = s.value_counts()
    return str(sorted(counts[counts == counts.max()].index)[0])


def _speakers(manifest: pd.DataFrame, *, stratify: str | None, within: Sequence[str]) -> pd.DataFrame:
    """One row per speaker: ``key`` ("corpus/speaker"), ``n`` utterances, ``gender`` and ``stratum``."""
    if stratify not in (None, "gender"):
        raise ValueError(f"stratify must be 'gender' or None, got {stratify!r}")
    cols = list(dict.fromkeys([*_KEY, *within, "gender"]))
    missing = [c for c in cols if c not in manifest.columns]
    if missing:
        raise ValueError(f"manifest lacks column(s) {missing} needed for a speaker split")
    if manifest.empty:
        raise ValueError("cannot split an empty manifest")
    df = manifest[cols].astype(str).copy()
    df["key"] = df["corpus"] + "/" + df["speaker"]
    grouped = df.groupby("key", sort=True)
    spk = pd.DataFrame({"n": grouped.size()})
    spk["gender"] = grouped["gender"].agg(_mode)
    strat_cols = [*within, "gender"] if stratify == "gender" else list(within)
    parts = [grouped[c].agg(_mode) if c != "gender" else spk["gender"] for c in strat_cols]
    spk["stratum"] = pd.concat(parts, axis=1).astype(str).agg("|".join, axis=1) if parts else ""
    return spk.reset_index()


def _allocate(n: int, fractions: np.ndarray, tie_break: np.ndarray) -> list[int]:
    """Speakers per split: largest remainder, at least one per split with a positive fraction when possible.

    ``tie_break`` orders splits with equal remainders; one order per call of :func:`speaker_split` gives
    strata of equal size (e.g. both genders of a balanced corpus) the same counts.
    """
    positive = [i for i, f in enumerate(fractions) if f > 0]
    counts = [0] * len(fractions)
    if n < len(positive):  # too few speakers: train first, then test, then valid
        order = [i for i in (0, 2, 1) if i in positive]
        for i in order[:n]:
            counts[i] = 1
        return counts
    exact = fractions * n
    counts = [int(np.floor(x)) for x in exact]
    remainder = exact - np.floor(exact)
    order = sorted(range(len(fractions)), key=lambda i: (-remainder[i], tie_break[i]))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    for i in positive:
        while counts[i] == 0:
            donor = max(positive, key=lambda j: counts[j])
            counts[donor] -= 1
            counts[i] += 1
    return counts


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or (f < 0).any() or f.sum() <= 0 or f[0] <= 0:
        raise ValueError(
            f"fractions must be three non-negative numbers (train, valid, test) with train > 0, got {fractions}"
        )
    return f / f.sum()


def speaker_split(
    manifest: pd.DataFrame,
    *,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    stratify: str | None = "gender",
    within: Sequence[str] = _DEFAULT_WITHIN,
) -> pd.DataFrame:
    """Assign ``train``/``valid``/``test`` by speaker, stratified by gender within each corpus and language.

    Parameters
    ----------
    manifest : DataFrame
        A manifest (needs ``corpus``, ``speaker``, ``gender`` and the ``within`` columns).
    fractions : (train, valid, test)
        Fractions of speakers per split (normalised to sum to 1; a zero fraction leaves that split empty).
    seed : int
        Seed of the speaker shuffle.
    stratify : {"gender", None}
        Allocate each gender's speakers separately (``unknown`` is its own stratum).
    within : sequence of str
        Columns whose values are split separately (default ``corpus`` and ``language``).

    Returns
    -------
    DataFrame
        A copy of ``manifest`` with ``split`` overwritten. A stratum with fewer speakers than splits fills
        ``train``, then ``test``, then ``valid``.
    """
    f = _check_fractions(fractions)
    spk = _speakers(manifest, stratify=stratify, within=within)
    rng = np.random.default_rng(seed)
    tie_break = rng.permutation(len(f))
    assignment: dict[str, str] = {}
    for _, group in spk.groupby("stratum", sort=True):
        keys = list(group["key"])
        rng.shuffle(keys)
        counts = _allocate(len(keys), f, tie_break)
        start = 0
        for split, c in zip(SPLITS, counts, strict=True):
            for key in keys[start : start + c]:
                assignment[key] = split
            start += c
    out = manifest.copy()
    keys = out["corpus"].astype(str) + "/" + out["speaker"].astype(str)
    out["split"] = keys.map(assignment).astype("string")
    return out


def fill_language_splits(
    manifest: pd.DataFrame,
    *,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    within: Sequence[str] = _DEFAULT_WITHIN,
) -> tuple[pd.DataFrame, list[str]]:
    """After :func:`speaker_split`: split by utterance each language whose speakers cannot fill train and test.

    A language (within a corpus) with too few speakers (e.g. one speaker, or one per gender) has every speaker
    in ``train`` under a speaker split, so it would vanish from the results without a word. Such a language is
    split by *utterance* instead, stratified by gender and emotion, with the same fractions and seed: it is
    then tested, but speaker-dependently (the test voices were heard in training), so its scores are
    optimistic; the column ``split_unit`` says ``utterance`` for its rows (``speaker`` for the others) and the
    returned notes say it. A language whose test split lacks one gender's speakers is noted too (its gender
    gaps are undefined).

    Returns
    -------
    (DataFrame, list of str)
        The manifest with ``split`` and ``split_unit`` set, and one note per decision.
    """
    f = _check_fractions(fractions)
    out = manifest.copy()
    out["split"] = out["split"].astype(object)
    out["split_unit"] = "speaker"
    notes: list[str] = []
    rng = np.random.default_rng(seed)
    tie_break = rng.permutation(len(f))
    need = [s for s, fr in zip(SPLITS, f, strict=True) if fr > 0 and s in ("train", "test")]
    for values, idx in out.groupby(list(within), sort=True).groups.items():
        values = values if isinstance(values, tuple) else (values,)
        where = ", ".join(f"{c} {v!r}" for c, v in zip(within, values, strict=True))
        rows = out.loc[idx]
        present = set(rows["split"])
        n_spk = rows["speaker"].nunique()
        if all(s in present for s in need):
            test = rows[rows["split"] == "test"]
            for gender in sorted(set(rows["gender"]) - {"unknown"}):
                if "test" in need and not (test["gender"] == gender).any():
                    n_g = rows.loc[rows["gender"] == gender, "speaker"].nunique()
                    notes.append(
                        f"{where}: no {gender} speaker in the test split ({n_g} {gender} speaker(s), all in "
                        f"train/valid): its gender gaps are undefined"
                    )
            continue
        for _, group in rows.groupby(["gender", "emotion"], sort=True):
            keys = list(group.index)
            rng.shuffle(keys)
            counts = _allocate(len(keys), f, tie_break)
            start = 0
            for split, c in zip(SPLITS, counts, strict=True):
                out.loc[keys[start : start + c], "split"] = split
                start += c
        out.loc[idx, "split_unit"] = "utterance"
        got = out.loc[idx, "split"].value_counts().to_dict()
        notes.append(
            f"{where}: its {n_spk} speaker(s) cannot fill train and test speaker-independently, so it is split by "
            f"utterance (train {got.get('train', 0)}, valid {got.get('valid', 0)}, test {got.get('test', 0)}): "
            "speaker-dependent, the test voices are heard in training, so its scores are optimistic and not "
            "comparable with speaker-independent ones"
        )
    out["split"] = out["split"].astype("string")
    out["split_unit"] = out["split_unit"].astype("string")
    return out, notes


def language_split_notes(manifest: pd.DataFrame) -> list[str]:
    """What a holdout split means for each language, said where it departs from speaker-independent testing.

    A language split by utterance (``split_unit == "utterance"``, :func:`fill_language_splits`) is tested
    speaker-dependently; a language with no test rows is absent from the results. One note per such language.
    """
    notes = []
    for lang, rows in manifest.groupby("language", sort=True):
        n_spk = rows[["corpus", "speaker"]].drop_duplicates().shape[0]
        if "split_unit" in rows.columns and (rows["split_unit"] == "utterance").any():
            n_test = int((rows["split"] == "test").sum())
            notes.append(
                f"language {lang!r}: its {n_spk} speaker(s) cannot fill train and test speaker-independently, so it "
                f"is split by utterance ({n_test} test utterances): its results are speaker-dependent (the test "
                "voices are heard in training) and optimistic, not comparable with speaker-independent ones"
            )
        elif not (rows["split"] == "test").any():
            notes.append(
                f"language {lang!r} has no test utterances (its {n_spk} speaker(s) are all in train/valid), so it "
                "has no results; re-import it with `fairser data import` (split auto/speaker splits a language "
                "that small by utterance) or add speakers"
            )
    return notes


def speaker_folds(
    manifest: pd.DataFrame,
    *,
    protocol: str = "kfold",
    k: int = 5,
    n_valid: int = 1,
    seed: int = 0,
    stratify: str | None = "gender",
    within: Sequence[str] = _DEFAULT_WITHIN,
) -> list[SpeakerFold]:
    """Speaker-grouped cross-validation folds; every speaker is tested in exactly one fold (METHODS.md §5).

    ``protocol="kfold"``: the speakers are dealt into ``k`` test folds stratified by gender within each corpus
    and language (:class:`sklearn.model_selection.StratifiedKFold` on one row per speaker, labelled by its
    stratum, shuffled with ``seed``): each stratum's speakers spread over the folds as evenly as possible
    (counts per fold differ by at most one), and so do the folds' sizes. ``protocol="loso"``: one fold per
    speaker (leave one speaker out), in speaker order.

    The validation speakers of a fold are drawn (with ``seed`` and the fold index) from that fold's training
    speakers only, never from its test speakers: ``n_valid`` of each stratum (gender within corpus and
    language), always leaving at least one speaker of the stratum to train. ``n_valid=0``: no validation split.
    """
    if protocol not in ("kfold", "loso"):
        raise ValueError(f"protocol must be 'kfold' or 'loso', got {protocol!r}")
    if n_valid < 0:
        raise ValueError(f"n_valid must be >= 0, got {n_valid}")
    spk = _speakers(manifest, stratify=stratify, within=within)
    keys = spk["key"].to_numpy()
    if protocol == "loso":
        test_fold = np.arange(len(spk))
    else:
        if k < 2:
            raise ValueError(f"k-fold needs k >= 2 folds, got {k}")
        if len(spk) < k:
            raise ValueError(f"{len(spk)} speakers cannot fill {k} folds; lower k")
        counts = spk["stratum"].value_counts()
        if (counts < k).all():
            raise ValueError(
                f"every stratum (gender within corpus and language) has fewer than {k} speakers "
                f"({counts.to_dict()}): lower k, or use leave-one-speaker-out"
            )
        from sklearn.model_selection import StratifiedKFold

        test_fold = np.empty(len(spk), dtype=int)
        with warnings.catch_warnings():  # a stratum smaller than k is simply missing from some folds
            warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
            cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
            for i, (_, test) in enumerate(cv.split(np.zeros(len(spk)), spk["stratum"].to_numpy())):
                test_fold[test] = i
    valid_strata = spk["stratum"] if stratify == "gender" else spk["stratum"] + "|" + spk["gender"]
    row_keys = (manifest["corpus"].astype(str) + "/" + manifest["speaker"].astype(str)).to_numpy()
    folds = []
    for i in range(int(test_fold.max()) + 1):
        rng = np.random.default_rng([seed, i])
        test_keys = set(keys[test_fold == i])
        valid_keys: list[str] = []
        training = spk[test_fold != i]
        for _, group in training.groupby(valid_strata[test_fold != i], sort=True):
            cands = sorted(group["key"])
            take = min(n_valid, len(cands) - 1)
            if take > 0:
                valid_keys += [str(x) for x in rng.choice(cands, size=take, replace=False)]
        split = np.where(
            np.isin(row_keys, list(test_keys)),
            "test",
            np.where(np.isin(row_keys, valid_keys), "valid", "train"),
        )
        folds.append(
            SpeakerFold(
                index=i,
                split=split.astype(object),
                test_speakers=tuple(sorted(test_keys)),
                valid_speakers=tuple(sorted(valid_keys)),
            )
        )
    return folds


def speaker_kfold(
    manifest: pd.DataFrame,
    *,
    k: int = 5,
    seed: int = 0,
    n_valid: int = 1,
    stratify: str | None = "gender",
    within: Sequence[str] = _DEFAULT_WITHIN,
) -> list[SpeakerFold]:
    """Speaker k-fold cross-validation, gender-stratified within each corpus and language
    (:func:`speaker_folds` with ``protocol="kfold"``)."""
    return speaker_folds(
        manifest, protocol="kfold", k=k, n_valid=n_valid, seed=seed, stratify=stratify, within=within
    )


def leave_one_speaker_out(
    manifest: pd.DataFrame,
    *,
    seed: int = 0,
    n_valid: int = 1,
    within: Sequence[str] = _DEFAULT_WITHIN,
) -> list[SpeakerFold]:
    """Leave-one-speaker-out folds (:func:`speaker_folds` with ``protocol="loso"``): each speaker is the test
    set once; ``n_valid`` speakers of each gender (within the corpus and language) validate."""
    return speaker_folds(manifest, protocol="loso", n_valid=n_valid, seed=seed, within=within)


def _as_list(value: str | Iterable[str], name: str) -> list[str]:
    values = [value] if isinstance(value, str) else list(value)
    if not values:
        raise ValueError(f"{name} must name at least one value")
    return [str(v) for v in values]


def cross_corpus_split(
    manifest: pd.DataFrame,
    *,
    train: str | Iterable[str],
    test: str | Iterable[str],
    by: str = "corpus",
    valid_fraction: float = 0.2,
    seed: int = 0,
    stratify: str | None = "gender",
    shared_speakers: str = "error",
) -> pd.DataFrame:
    """Train on some corpora (or languages), test on others.

    Rows whose ``by`` value is in ``train`` become ``train``/``valid`` (a speaker-independent,
    gender-stratified validation split of ``valid_fraction`` of their speakers); rows whose value is in
    ``test`` all become ``test``; other rows are left out.

    Parameters
    ----------
    by : str
        ``corpus`` (cross-corpus) or ``language`` (cross-lingual), or any other manifest column.
    shared_speakers : {"error", "drop_from_train"}
        What to do with a speaker found on both sides (possible with ``by="language"``): raise, or keep
        them on the test side only.
    """
    if by not in manifest.columns:
        raise ValueError(f"manifest has no column {by!r} to split by")
    a, b = _as_list(train, "train"), _as_list(test, "test")
    overlap = sorted(set(a) & set(b))
    if overlap:
        raise ValueError(f"{overlap} are on both the train and the test side")
    present = set(manifest[by].astype(str))
    absent = sorted((set(a) | set(b)) - present)
    if absent:
        raise ValueError(f"{by} value(s) {absent} not in the manifest (present: {sorted(present)})")
    if not 0 <= valid_fraction < 1:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    if shared_speakers not in ("error", "drop_from_train"):
        raise ValueError(f"shared_speakers must be 'error' or 'drop_from_train', got {shared_speakers!r}")
    values = manifest[by].astype(str)
    keys = manifest["corpus"].astype(str) + "/" + manifest["speaker"].astype(str)
    side_a, side_b = values.isin(a), values.isin(b)
    shared = sorted(set(keys[side_a]) & set(keys[side_b]))
    if shared:
        if shared_speakers == "error":
            raise ValueError(
                f"{len(shared)} speaker(s) on both sides, e.g. {shared[:5]}; pass shared_speakers='drop_from_train'"
            )
        side_a &= ~keys.isin(shared)
    train_part = speaker_split(
        manifest.loc[side_a],
        fractions=(1 - valid_fraction, valid_fraction, 0.0),
        seed=seed,
        stratify=stratify,
    )
    test_part = manifest.loc[side_b].copy()
    test_part["split"] = "test"
    out = pd.concat([train_part, test_part]).sort_index()
    out["split"] = out["split"].astype("string")
    return out.reset_index(drop=True)


def assert_speaker_independent(manifest: pd.DataFrame) -> None:
    """Raise ``ValueError`` naming every speaker found in more than one split."""
    keys = manifest["corpus"].astype(str) + "/" + manifest["speaker"].astype(str)
    n_splits = manifest.groupby(keys)["split"].nunique()
    leaked = n_splits[n_splits > 1]
    if len(leaked):
        detail = ", ".join(
            f"{k} in {sorted(set(manifest.loc[keys == k, 'split']))}" for k in list(leaked.index)[:10]
        )
        raise ValueError(f"{len(leaked)} speaker(s) in more than one split: {detail}")


def split_summary(manifest: pd.DataFrame) -> pd.DataFrame:
    """Speakers and utterances per ``split`` x ``language`` x ``gender``."""
    df = manifest.assign(_key=manifest["corpus"].astype(str) + "/" + manifest["speaker"].astype(str))
    g = df.groupby(["split", "language", "gender"], sort=True)
    return pd.DataFrame({"speakers": g["_key"].nunique(), "utterances": g.size()})

"""Speaker-independent, gender-stratified splits (issue 3, METHODS.md §5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairser.data.splits import (
    assert_speaker_independent,
    cross_corpus_split,
    leave_one_speaker_out,
    speaker_folds,
    speaker_kfold,
    speaker_split,
    split_summary,
)

try:
    from hypothesis import assume, given, settings
    from hypothesis import strategies as st
except ImportError:  # property tests are skipped (with their reason), the others still run
    given = None
needs_hypothesis = pytest.mark.skipif(given is None, reason="hypothesis is not installed")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def make_manifest(layout: dict[tuple[str, str, str], list[int]]) -> pd.DataFrame:
    """layout: (corpus, language, gender) -> utterances per speaker."""
    rows = []
    for (corpus, lang, gender), sizes in layout.items():
        for s, n in enumerate(sizes):
            spk = f"{lang}_{gender[0]}{s}"
            for u in range(n):
                rows.append(
                    {
                        "id": f"{corpus}_{spk}_{u}",
                        "audio_path": "",
                        "transcript": "",
                        "emotion": "neutral",
                        "gender": gender,
                        "language": lang,
                        "speaker": spk,
                        "corpus": corpus,
                        "split": "train",
                    }
                )
    return pd.DataFrame(rows)


def speakers_per(df: pd.DataFrame) -> pd.Series:
    return df.groupby(["split", "language", "gender"])["speaker"].nunique()


def test_emodb_like_corpus_gets_3_1_1_speakers_per_gender():
    df = make_manifest({("emodb", "de", "male"): [50] * 5, ("emodb", "de", "female"): [55] * 5})
    out = speaker_split(df, seed=0)
    assert_speaker_independent(out)
    counts = speakers_per(out)
    for gender in ("male", "female"):
        assert [counts[(s, "de", gender)] for s in ("train", "valid", "test")] == [3, 1, 1]
    assert len(out) == len(df) and (out["id"] == df["id"]).all()


def test_split_is_seeded_and_changes_with_the_seed():
    df = make_manifest({("c", "en", "male"): [3] * 8, ("c", "en", "female"): [3] * 8})
    a = speaker_split(df, seed=5)
    assert a["split"].tolist() == speaker_split(df, seed=5)["split"].tolist()
    assert len({tuple(speaker_split(df, seed=s)["split"]) for s in range(6)}) > 1


def test_zero_fraction_leaves_a_split_empty_and_bad_fractions_fail():
    df = make_manifest({("c", "en", "male"): [2] * 5, ("c", "en", "female"): [2] * 5})
    out = speaker_split(df, fractions=(0.8, 0.2, 0.0))
    assert set(out["split"]) == {"train", "valid"}
    with pytest.raises(ValueError, match="fractions"):
        speaker_split(df, fractions=(0.0, 0.5, 0.5))
    with pytest.raises(ValueError, match="stratify"):
        speaker_split(df, stratify="age")


def test_tiny_strata_fill_train_then_test():
    df = make_manifest({("c", "en", "male"): [2, 2], ("c", "en", "female"): [2]})
    out = speaker_split(df)
    counts = speakers_per(out)
    assert counts[("train", "en", "male")] == 1 and counts[("test", "en", "male")] == 1
    assert counts[("train", "en", "female")] == 1
    assert "valid" not in set(out["split"])


if given is not None:

    @settings(max_examples=60, deadline=None)
    @given(
        layout=st.dictionaries(
            keys=st.tuples(
                st.sampled_from(["c1", "c2"]),
                st.sampled_from(["en", "de", "ja"]),
                st.sampled_from(["male", "female", "unknown"]),
            ),
            values=st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=9),
            min_size=1,
            max_size=8,
        ),
        seed=st.integers(min_value=0, max_value=2**16),
        train=st.floats(min_value=0.3, max_value=0.9),
    )
    def test_property_no_speaker_in_two_splits_and_both_genders_everywhere(layout, seed, train):
        df = make_manifest(layout)
        rest = (1 - train) / 2
        out = speaker_split(df, fractions=(train, rest, rest), seed=seed)
        assert_speaker_independent(out)
        assert len(out) == len(df) and set(out["split"]) <= {"train", "valid", "test"}
        counts = out.groupby(["split", "corpus", "language", "gender"])["speaker"].nunique()
        for (corpus, lang, gender), sizes in layout.items():
            if len(sizes) >= 3:  # enough speakers: the stratum reaches every split
                for split in ("train", "valid", "test"):
                    assert counts.get((split, corpus, lang, gender), 0) >= 1

    @settings(max_examples=30, deadline=None)
    @given(
        n_male=st.integers(min_value=3, max_value=9),
        n_female=st.integers(min_value=3, max_value=9),
        k=st.integers(min_value=2, max_value=5),
        n_valid=st.integers(min_value=0, max_value=2),
        seed=st.integers(min_value=0, max_value=1000),
    )
    def test_property_kfold_tests_every_speaker_once(n_male, n_female, k, n_valid, seed):
        assume(k <= max(n_male, n_female))  # else no stratum spans the folds: refused (tested below)
        df = make_manifest({("c", "en", "male"): [2] * n_male, ("c", "en", "female"): [2] * n_female})
        _check_folds(df, speaker_kfold(df, k=k, seed=seed, n_valid=n_valid), n_valid=n_valid)

else:

    @needs_hypothesis
    def test_property_no_speaker_in_two_splits_and_both_genders_everywhere():
        pass

    @needs_hypothesis
    def test_property_kfold_tests_every_speaker_once():
        pass


def _check_folds(df: pd.DataFrame, folds, *, n_valid: int) -> None:
    """The fold invariants: no speaker in two roles within a fold, every speaker tested exactly once, the
    validation speakers drawn from the fold's training speakers (``n_valid`` per stratum, gender within corpus
    and language, keeping one to train) and each stratum spread over the test folds as evenly as possible."""
    keys = df["corpus"] + "/" + df["speaker"]
    stratum = dict(zip(keys, df["corpus"] + "|" + df["language"] + "|" + df["gender"], strict=True))
    strata = sorted(set(stratum.values()))
    tested = []
    per_fold = []
    for fold in folds:
        m = fold.apply(df)
        assert_speaker_independent(m)  # one role per speaker within the fold
        assert not set(fold.test_speakers) & set(fold.valid_speakers)
        assert set(keys[m["split"] == "test"]) == set(fold.test_speakers)
        assert set(keys[m["split"] == "valid"]) == set(fold.valid_speakers)
        train = set(keys[m["split"] == "train"])
        for st_ in strata:
            n_train_side = sum(1 for s in set(keys) if stratum[s] == st_ and s not in fold.test_speakers)
            n_valid_st = sum(1 for s in fold.valid_speakers if stratum[s] == st_)
            assert n_valid_st == min(n_valid, max(n_train_side - 1, 0))
            assert n_train_side == 0 or any(stratum[s] == st_ for s in train)  # never all moved to valid
        tested += fold.test_speakers
        per_fold.append([sum(stratum[s] == st_ for s in fold.test_speakers) for st_ in strata])
    assert sorted(tested) == sorted(set(keys))  # every speaker tested exactly once
    counts = np.asarray(per_fold)
    assert (counts.max(0) - counts.min(0) <= 1).all()  # each stratum as even as possible over the folds
    sizes = counts.sum(1)
    assert sizes.max() - sizes.min() <= 1


def test_kfold_is_gender_stratified_within_corpus_and_language():
    layout = {
        ("a", "en", "male"): [3, 5, 2, 4, 4, 6, 1],
        ("a", "en", "female"): [2, 2, 3, 3, 2],
        ("b", "de", "male"): [4, 4, 4],
        ("b", "de", "female"): [5, 1, 2, 2],
    }
    df = make_manifest(layout)
    keys = df["corpus"] + "/" + df["speaker"]
    for seed in range(5):
        folds = speaker_kfold(df, k=3, seed=seed, n_valid=1)
        _check_folds(df, folds, n_valid=1)
        for (corpus, lang, gender), sizes in layout.items():
            sel = (df["corpus"] == corpus) & (df["language"] == lang) & (df["gender"] == gender)
            stratum = set(keys[sel])
            n = [len(stratum & set(f.test_speakers)) for f in folds]
            assert max(n) - min(n) <= 1 and sum(n) == len(sizes)
    # seeded: the same folds for the same seed, other folds for another
    a, b = speaker_kfold(df, k=3, seed=0), speaker_kfold(df, k=3, seed=0)
    assert [f.test_speakers for f in a] == [f.test_speakers for f in b]
    assert [f.test_speakers for f in a] != [f.test_speakers for f in speaker_kfold(df, k=3, seed=1)]


def test_kfold_argument_errors():
    df = make_manifest({("c", "en", "male"): [1] * 2})
    with pytest.raises(ValueError, match="cannot fill"):
        speaker_kfold(df, k=3)
    with pytest.raises(ValueError, match="k >= 2"):
        speaker_kfold(df, k=1)
    df = make_manifest({("c", "en", "male"): [1] * 3, ("c", "en", "female"): [1] * 3})
    with pytest.raises(ValueError, match="fewer than 4 speakers"):
        speaker_kfold(df, k=4)
    with pytest.raises(ValueError, match="protocol"):
        speaker_folds(df, protocol="holdout")


def test_leave_one_speaker_out_has_one_valid_speaker_per_gender():
    df = make_manifest({("c", "de", "male"): [3] * 5, ("c", "de", "female"): [3] * 5})
    folds = leave_one_speaker_out(df, seed=1)
    assert len(folds) == 10
    _check_folds(df, folds, n_valid=1)
    for fold in folds:
        m = fold.apply(df)
        assert m.loc[m["split"] == "test", "speaker"].nunique() == 1
        assert m[m["split"] == "valid"].groupby("gender")["speaker"].nunique().to_dict() == {
            "female": 1,
            "male": 1,
        }
    no_valid = leave_one_speaker_out(df, n_valid=0)[0]
    assert "valid" not in set(no_valid.apply(df)["split"])


def test_cross_corpus_split_trains_on_a_and_tests_on_b():
    df = pd.concat(
        [
            make_manifest({("emodb", "de", "male"): [4] * 5, ("emodb", "de", "female"): [4] * 5}),
            make_manifest({("ravdess", "en", "male"): [4] * 6, ("ravdess", "en", "female"): [4] * 6}),
            make_manifest({("other", "fr", "male"): [1] * 2}),
        ],
        ignore_index=True,
    )
    out = cross_corpus_split(df, train="emodb", test=["ravdess"], by="corpus", seed=2)
    assert set(out["corpus"]) == {"emodb", "ravdess"}
    assert set(out.loc[out["corpus"] == "ravdess", "split"]) == {"test"}
    a = out[out["corpus"] == "emodb"]
    assert set(a["split"]) == {"train", "valid"}
    assert a[a["split"] == "valid"]["gender"].nunique() == 2
    assert_speaker_independent(out)
    by_lang = cross_corpus_split(df, train=["de", "fr"], test="en", by="language")
    assert set(by_lang.loc[by_lang["language"] == "en", "split"]) == {"test"}
    with pytest.raises(ValueError, match="both the train and the test side"):
        cross_corpus_split(df, train="emodb", test="emodb")
    with pytest.raises(ValueError, match="not in the manifest"):
        cross_corpus_split(df, train="emodb", test="iemocap")


def test_cross_lingual_split_with_a_bilingual_speaker():
    df = make_manifest({("c", "en", "male"): [2] * 4, ("c", "en", "female"): [2] * 4})
    extra = df[df["speaker"] == "en_m0"].assign(language="de", id=lambda d: d["id"] + "_de")
    df = pd.concat([df, extra, make_manifest({("c", "de", "female"): [2] * 2})], ignore_index=True)
    with pytest.raises(ValueError, match="speaker\\(s\\) on both sides"):
        cross_corpus_split(df, train="en", test="de", by="language")
    out = cross_corpus_split(df, train="en", test="de", by="language", shared_speakers="drop_from_train")
    assert_speaker_independent(out)
    assert set(out.loc[out["speaker"] == "en_m0", "split"]) == {"test"}


def test_assert_speaker_independent_names_the_leak():
    df = make_manifest({("c", "en", "male"): [2, 2]})
    df.loc[0, "split"] = "test"
    with pytest.raises(ValueError, match=r"c/en_m0 in \['test', 'train'\]"):
        assert_speaker_independent(df)


def test_real_emodb_kfold_has_both_genders_in_every_test_fold():
    folder = SHARED / "emodb"
    if not folder.is_dir():
        pytest.skip(f"real corpus folder {folder} is missing")
    from fairser.data.corpora import load_emodb

    df = load_emodb(folder).manifest
    for fold in speaker_kfold(df, k=5, seed=0):
        m = fold.apply(df)
        test = m[m["split"] == "test"]
        assert test.groupby("gender")["speaker"].nunique().to_dict() == {"female": 1, "male": 1}
    summary = split_summary(speaker_split(df, seed=0))
    assert summary["speakers"].sum() == 10 and summary["utterances"].sum() == 535

"""Tests of the built-in synthetic corpus (fairser.data.synth): determinism, bias knobs, splits, audio, prosody,
config."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import parselmouth
import pytest
import soundfile as sf
from pydantic import ValidationError

from fairser.data.labels import MELD_EMOTIONS
from fairser.data.manifest import read_manifest, resolve_audio_paths
from fairser.data.synth import (
    SkewRule,
    SynthConfig,
    UnderRepresentation,
    WeakCues,
    apply_skew,
    apply_under_representation,
    generate_corpus,
    is_kana,
    is_synthetic,
    load_lines,
    plan_corpus,
    read_corpus_info,
    synthesize,
)
from fairser.data.synth.espeak import EspeakError, ProsodySettings

SKEW = {"en": {"gender": "female", "emotions": ["anger", "joy"], "drop_fraction": 0.75}}
UNDER = {"ja": {"gender": "male", "keep_fraction": 0.5}}


def small_config(**overrides) -> SynthConfig:
    """2 languages x 4 speakers per gender (2 train / 1 valid / 1 test) x 2 utterances per emotion; skew (a) in
    en, under-representation (b) in ja (1 of 2 male training speakers kept), no weak cues (c)."""
    settings = {
        "languages": ["en", "ja"],
        "speakers_per_gender": 4,
        "split_speakers": {"train": 2, "valid": 1, "test": 1},
        "utterances_per_emotion": 2,
        "skew": SKEW,
        "under_representation": UNDER,
        "weak_cues": {},
        "extra_test_speakers": {},
    }
    return SynthConfig(**{**settings, **overrides})


def wav_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.wav"))
    }


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("synth")
    dirs = {name: base / name for name in ("a", "b", "seed1", "noskew")}
    generate_corpus(config=small_config(), out_dir=dirs["a"], progress=False, n_jobs=2)
    generate_corpus(config=small_config(), out_dir=dirs["b"], progress=False, n_jobs=1)
    generate_corpus(config=small_config(seed=1), out_dir=dirs["seed1"], progress=False, n_jobs=2)
    generate_corpus(
        config=small_config(skew={}, under_representation={}),
        out_dir=dirs["noskew"],
        progress=False,
        n_jobs=2,
    )
    return dirs


def test_same_seed_gives_identical_manifest_and_audio_whatever_n_jobs(corpora):
    a, b = corpora["a"], corpora["b"]
    assert (a / "manifest.csv").read_bytes() == (b / "manifest.csv").read_bytes()
    hashes = wav_hashes(a)
    assert len(hashes) == len(read_manifest(a / "manifest.csv"))
    assert hashes == wav_hashes(b)
    assert (a / "corpus.json").read_text() == (b / "corpus.json").read_text()


def test_other_seed_differs(corpora):
    a, other = corpora["a"], corpora["seed1"]
    assert (a / "manifest.csv").read_bytes() != (other / "manifest.csv").read_bytes()
    ha, ho = wav_hashes(a), wav_hashes(other)
    shared = set(ha) & set(ho)
    assert shared, "corpora of two seeds should share file names"
    assert sum(ha[k] == ho[k] for k in shared) == 0


def test_skew_and_under_representation_are_honoured_exactly_and_only_in_train(corpora):
    config = small_config()
    plan = plan_corpus(config=config)
    manifest = read_manifest(corpora["a"] / "manifest.csv")
    planned = plan.groupby(["language", "split", "gender", "emotion"]).size()
    kept = (
        manifest.groupby(["language", "split", "gender", "emotion"])
        .size()
        .reindex(planned.index, fill_value=0)
    )
    for (lang, split, gender, emotion), n in planned.items():
        expected = n
        if (lang, split, gender) == ("en", "train", "female") and emotion in ("anger", "joy"):
            expected = n - int(np.floor(0.75 * n + 0.5))  # (a): 75 % of the cell dropped
        if (lang, split, gender) == ("ja", "train", "male"):
            expected = n // 2  # (b): 1 of the 2 male training speakers kept, with all their utterances
        assert kept[(lang, split, gender, emotion)] == expected, (lang, split, gender, emotion)
    info = read_corpus_info(corpora["a"])
    n_cell = planned[("en", "train", "female", "anger")]
    assert info["counts"]["dropped_by_skew"] == {
        "en": {"female": {"anger": round(0.75 * n_cell), "joy": round(0.75 * n_cell)}}
    }
    per_speaker = 7 * config.utterances_per_emotion
    assert info["counts"]["dropped_by_under_representation"] == {
        "ja": {"male": {"speakers": 1, "utterances": per_speaker}}
    }


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.5, 0.9, 1.0])
def test_apply_skew_counts(fraction):
    config = small_config(skew={}, speakers_per_gender=6, split_speakers={"train": 3, "valid": 1, "test": 2})
    plan = plan_corpus(config=config)
    rule = SkewRule(gender="male", emotions=["sadness", "fear"], drop_fraction=fraction)
    kept, dropped = apply_skew(plan, skew={"ja": [rule]}, seed=3)
    for emotion in ("sadness", "fear"):
        cell = (
            (plan["language"] == "ja")
            & (plan["split"] == "train")
            & (plan["gender"] == "male")
            & (plan["emotion"] == emotion)
        )
        n = int(cell.sum())
        n_drop = int(np.floor(fraction * n + 0.5))
        assert dropped["ja"]["male"][emotion] == n_drop
        assert int(kept.index.isin(plan.index[cell]).sum()) == n - n_drop
    assert set(plan.index) - set(kept.index) <= set(
        plan.index[(plan["split"] == "train") & (plan["language"] == "ja")]
    )


@pytest.mark.parametrize(
    ("fraction", "n_kept"), [(0.01, 1), (0.25, 1), (0.3, 2), (0.5, 3), (0.6, 3), (1.0, 5)]
)
def test_apply_under_representation_keeps_exactly_the_configured_speakers(fraction, n_kept):
    """(b): of n = 5 training speakers, max(1, floor(f * n + 0.5)) are kept whole; nothing else moves."""
    config = small_config(
        speakers_per_gender=7, split_speakers={"train": 5, "valid": 1, "test": 1}, under_representation={}
    )
    plan = plan_corpus(config=config)
    rule = UnderRepresentation(gender="female", keep_fraction=fraction)
    kept, dropped = apply_under_representation(plan, under_representation={"en": rule}, seed=4)
    cell = (plan["language"] == "en") & (plan["split"] == "train") & (plan["gender"] == "female")
    kept_cell = kept[kept.index.isin(plan.index[cell])]
    assert kept_cell["speaker"].nunique() == n_kept
    # whole speakers: each kept speaker keeps every planned utterance
    assert (kept_cell.groupby("speaker").size() == 7 * config.utterances_per_emotion).all()
    assert set(plan.index) - set(kept.index) <= set(plan.index[cell])
    assert dropped == {
        "en": {
            "female": {"speakers": 5 - n_kept, "utterances": (5 - n_kept) * 7 * config.utterances_per_emotion}
        }
    }
    # seeded: the same seed keeps the same speakers
    again, _ = apply_under_representation(plan, under_representation={"en": rule}, seed=4)
    pd.testing.assert_frame_equal(kept, again)


@pytest.mark.parametrize("scale", [0.0, 0.5])
def test_weak_cues_scale_the_emotion_prosody_exactly_and_nothing_else(scale):
    """(c): one gender's emotion offsets x scale (pitch, range), factors ** scale (rate, loudness); same draws."""
    plain = plan_corpus(config=small_config())
    weak = plan_corpus(config=small_config(weak_cues={"ja": WeakCues(gender="male", scale=scale)}))
    cell = (plain["language"] == "ja") & (plain["gender"] == "male")
    prosody_cols = ["espeak_pitch", "espeak_range", "espeak_rate", "level_dbfs", "cue_scale"]
    others = [c for c in plain.columns if c not in prosody_cols]
    pd.testing.assert_frame_equal(plain[others], weak[others])  # same script, splits, seeds: no extra draw
    pd.testing.assert_frame_equal(plain.loc[~cell], weak.loc[~cell])
    assert (weak.loc[cell, "cue_scale"] == scale).all() and (plain["cue_scale"] == 1.0).all()
    table = SynthConfig().prosody
    p, w = plain.loc[cell], weak.loc[cell]
    pitch = np.array([table[e].pitch for e in p["emotion"]])
    rng_ = np.array([table[e].range for e in p["emotion"]])
    rate = np.array([table[e].rate for e in p["emotion"]])
    volume = np.array([table[e].volume for e in p["emotion"]])
    # exact up to the plan's rounding (2 decimals for eSpeak units, 3 for the level in dB)
    np.testing.assert_allclose(w["espeak_pitch"] - p["espeak_pitch"], (scale - 1) * pitch, atol=0.0101)
    np.testing.assert_allclose(w["espeak_range"] - p["espeak_range"], (scale - 1) * rng_, atol=0.0101)
    factor = rate ** (scale - 1)  # both rates rounded to 0.01: the plain one's error is multiplied by factor
    assert (np.abs(w["espeak_rate"] - p["espeak_rate"] * factor) <= 0.005 * (1 + factor) + 1e-9).all()
    np.testing.assert_allclose(
        w["level_dbfs"] - p["level_dbfs"], (scale - 1) * 20 * np.log10(volume), atol=0.00101
    )


def test_skewed_corpus_is_the_unskewed_one_minus_dropped_rows(corpora):
    skewed = read_manifest(corpora["a"] / "manifest.csv")
    full = read_manifest(corpora["noskew"] / "manifest.csv")
    assert set(skewed["id"]) < set(full["id"])
    hs, hf = wav_hashes(corpora["a"]), wav_hashes(corpora["noskew"])
    assert all(hf[path] == digest for path, digest in hs.items())
    common = full.set_index("id").loc[skewed["id"]].reset_index()
    pd.testing.assert_frame_equal(common[skewed.columns], skewed, check_dtype=False)


def test_splits_are_speaker_disjoint_and_hold_both_genders(corpora):
    manifest = read_manifest(corpora["a"] / "manifest.csv")
    assert manifest.groupby("speaker")["split"].nunique().max() == 1
    assert manifest.groupby("speaker")["gender"].nunique().max() == 1
    for (lang, split), group in manifest.groupby(["language", "split"]):
        assert set(group["gender"]) == {"female", "male"}, (lang, split)
    sizes = manifest.groupby(["language", "gender", "split"])["speaker"].nunique()
    assert sizes.xs("train", level="split").to_dict() == {
        ("en", "female"): 2,
        ("en", "male"): 2,
        ("ja", "female"): 2,
        ("ja", "male"): 1,  # under-representation
    }
    assert (sizes.xs("test", level="split") == 1).all()


def test_manifest_columns_and_corpus_info(corpora):
    manifest = read_manifest(corpora["a"] / "manifest.csv", labels=MELD_EMOTIONS)
    assert set(manifest["corpus"]) == {"synthetic"}
    assert {"line_id", "text_emotion", "voice", "parallel_id"} <= set(manifest.columns)
    assert set(manifest["text_emotion"]) <= set(MELD_EMOTIONS)
    info = read_corpus_info(corpora["a"])
    assert info["synthetic"] is True and info["complete"] is True
    assert SynthConfig.model_validate(info["config"]) == small_config()
    assert info["counts"]["utterances"] == len(manifest)
    assert is_synthetic(corpora["a"]) and is_synthetic(corpora["a"] / "manifest.csv")


def test_is_synthetic_false_elsewhere(tmp_path):
    assert not is_synthetic(tmp_path)
    (tmp_path / "corpus.json").write_text(json.dumps({"corpus": "emodb"}))
    assert not is_synthetic(tmp_path)


def test_japanese_transcripts_are_kana(corpora):
    manifest = read_manifest(corpora["a"] / "manifest.csv")
    ja = manifest.loc[manifest["language"] == "ja", "transcript"]
    assert len(ja) and all(is_kana(t) for t in ja)
    assert not is_kana("今日はいい天気") and not is_kana("")


def test_lines_are_parallel_in_every_language(corpora):
    manifest = read_manifest(corpora["a"] / "manifest.csv")
    lines = {line.line_id: line for group in load_lines().values() for line in group}
    for row in manifest.itertuples():
        assert row.transcript == lines[row.line_id].texts[row.language]
        assert row.line_id.rsplit("_", 1)[0] == row.text_emotion
    by_parallel = manifest.groupby("parallel_id")[["line_id", "emotion"]].nunique()
    assert (by_parallel == 1).all().all()


def test_kanji_line_is_rejected(tmp_path):
    raw = {e: [{"en": "Hi.", "de": "Hallo.", "ja": "こんにちは。"}] for e in MELD_EMOTIONS}
    raw["anger"][0]["ja"] = "怒っている！"
    path = tmp_path / "lines.yaml"
    path.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ValueError, match="kana"):
        load_lines(path)


def test_text_reliability_controls_the_wording():
    always = plan_corpus(config=small_config(text_reliability=1.0))
    never = plan_corpus(config=small_config(text_reliability=0.0))
    assert (always["text_emotion"] == always["emotion"]).all()
    assert (never["text_emotion"] != never["emotion"]).all()


def test_audio_is_16k_mono_pcm16_and_not_silent(corpora):
    manifest = read_manifest(corpora["a"] / "manifest.csv")
    for path in resolve_audio_paths(manifest, root=corpora["a"]):
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16"), path
        audio, _ = sf.read(path)
        assert info.duration > 0.3 and np.sqrt(np.mean(audio**2)) > 0.01, path


def _mean_f0(path: Path) -> float:
    audio, sr = sf.read(path)
    f0 = (
        parselmouth.Sound(audio, sampling_frequency=sr)
        .to_pitch(pitch_floor=60, pitch_ceiling=600)
        .selected_array["frequency"]
    )
    return float(np.mean(f0[f0 > 0]))


def test_prosody_moves_f0(corpora):
    manifest = read_manifest(corpora["a"] / "manifest.csv")
    paths = dict(zip(manifest["id"], resolve_audio_paths(manifest, root=corpora["a"]), strict=True))
    for speaker in ("en_m00", "ja_f01"):
        rows = manifest[manifest["speaker"] == speaker]
        f0 = {
            e: np.mean([_mean_f0(paths[i]) for i in rows.loc[rows["emotion"] == e, "id"]])
            for e in ("anger", "surprise", "sadness")
        }
        assert f0["anger"] > f0["sadness"] and f0["surprise"] > f0["sadness"], (speaker, f0)


def test_espeak_synthesis_is_repeatable_and_checks_voices():
    prosody = ProsodySettings(pitch=45, range=50, rate=170, volume=50)
    first = synthesize("Hello there.", voice="en+f3", prosody=prosody, seed=1)
    synthesize("Something else entirely.", voice="de+m1", prosody=prosody, seed=2)
    assert np.array_equal(first, synthesize("Hello there.", voice="en+f3", prosody=prosody, seed=1))
    with pytest.raises(EspeakError, match="variant 'zz'"):
        synthesize("Hello.", voice="en+zz", prosody=prosody)
    with pytest.raises(EspeakError, match="no voice"):
        synthesize("Hello.", voice="xx+f1", prosody=prosody)


def test_second_call_is_a_no_op_and_another_config_regenerates(tmp_path):
    config = SynthConfig(
        languages=["de"],
        speakers_per_gender=3,
        split_speakers={"train": 1, "valid": 1, "test": 1},
        utterances_per_emotion=1,
        skew={},
        extra_test_speakers={},
    )
    first = generate_corpus(config=config, out_dir=tmp_path, progress=False)
    wav = tmp_path / first["audio_path"].iloc[0]
    stamp = os.stat(wav).st_mtime_ns
    again = generate_corpus(config=config, out_dir=tmp_path, progress=False)
    pd.testing.assert_frame_equal(first, again)
    assert os.stat(wav).st_mtime_ns == stamp
    # an interrupted run (corpus.json says complete: false) is redone by the next call
    info = json.loads((tmp_path / "corpus.json").read_text())
    (tmp_path / "corpus.json").write_text(json.dumps({**info, "complete": False}))
    wav.unlink()
    redone = generate_corpus(config=config, out_dir=tmp_path, progress=False)
    pd.testing.assert_frame_equal(first, redone)
    assert wav.is_file() and read_corpus_info(tmp_path)["complete"] is True
    other = SynthConfig.model_validate({**config.model_dump(), "seed": 5})
    with pytest.warns(UserWarning, match="seed"):
        regenerated = generate_corpus(config=other, out_dir=tmp_path, progress=False)
    assert read_corpus_info(tmp_path)["config"]["seed"] == 5 and len(regenerated) == len(first)
    assert not regenerated["synth_seed"].equals(first["synth_seed"])


def test_foreign_files_are_not_overwritten_without_consent(tmp_path):
    (tmp_path / "manifest.csv").write_text("id\n")
    config = SynthConfig(
        languages=["ja"],
        speakers_per_gender=3,
        split_speakers={"train": 1, "valid": 1, "test": 1},
        utterances_per_emotion=1,
        skew={},
        extra_test_speakers={},
    )
    with pytest.raises(FileExistsError, match="overwrite=True"):
        generate_corpus(config=config, out_dir=tmp_path, progress=False)
    assert len(generate_corpus(config=config, out_dir=tmp_path, progress=False, overwrite=True)) == 42


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"text_reliability": 1.5}, "text_reliability"),
        ({"speakers_per_gender": 10}, "must equal speakers_per_gender"),
        (
            {"skew": {"en": {"gender": "female", "emotions": ["angry"], "drop_fraction": 0.5}}},
            "unknown emotion",
        ),
        (
            {"skew": {"en": {"gender": "female", "emotions": ["anger"], "drop_fraction": 1.2}}},
            "drop_fraction",
        ),
        (
            {"skew": {"de": {"gender": "female", "emotions": ["anger"], "drop_fraction": 0.5}}},
            "not generated",
        ),
        ({"under_representation": {"de": {"gender": "male", "keep_fraction": 0.5}}}, "not generated"),
        ({"under_representation": {"en": {"gender": "male", "keep_fraction": 0.0}}}, "keep_fraction"),
        ({"weak_cues": {"de": {"gender": "male", "scale": 0.5}}}, "not generated"),
        ({"weak_cues": {"ja": {"gender": "male", "scale": 1.5}}}, "scale"),
        ({"weak_cues": {"ja": {"gender": "other", "scale": 0.5}}}, "gender"),
        ({"voice_variants": {"female": ["f9"], "male": ["m1"]}}, "unknown eSpeak NG variant"),
        ({"languages": ["en", "fr"]}, "languages"),
        ({"prosody": {"anger": {"pitch": 10, "range": 10, "rate": 1.1, "volume": 1.5}}}, "missing"),
        ({"seeed": 3}, "Extra inputs are not permitted"),
    ],
)
def test_config_rejects_bad_values(overrides, message):
    with pytest.raises(ValidationError, match=message):
        small_config(**overrides)


def test_default_config_plan_biases_and_control_language():
    """The default corpus (docs/synthetic.md): 52 speakers per gender and language (12/4/36) plus extra test
    speakers (en 4, ja 16), 3 utterances per emotion; en: (a) + (b) against women (female anger, joy,
    surprise), ja: (c) against men, de: no bias (the control)."""
    config = SynthConfig()
    plan = plan_corpus(config=config)
    assert len(plan) == 3 * 2 * 52 * 7 * 3 + (4 + 16) * 2 * 7 * 3
    kept, under = apply_under_representation(
        plan, under_representation=config.under_representation, seed=config.seed
    )
    kept, dropped = apply_skew(kept, skew=config.skew, seed=config.seed)
    assert under == {"en": {"female": {"speakers": 9, "utterances": 9 * 21}}}
    # 90 % of the 3 kept speakers' 9 per cell
    assert dropped == {"en": {"female": {"anger": 8, "joy": 8, "surprise": 8}}}
    assert len(kept) == len(plan) - 9 * 21 - 24
    speakers = kept.groupby(["language", "split", "gender"])["speaker"].nunique()
    test = speakers.xs("test", level="split")
    assert test.to_dict() == {
        (lang, g): n for lang, n in (("de", 36), ("en", 40), ("ja", 52)) for g in ("female", "male")
    }
    assert (speakers.xs("train", level="split").drop(("en", "female")) == 12).all()
    assert speakers[("en", "train", "female")] == 3 and (speakers.xs("valid", level="split") == 4).all()
    train = kept[kept["split"] == "train"]
    assert train.groupby(["language", "gender", "emotion"]).size().min() > 0
    scales = plan.groupby(["language", "gender"])["cue_scale"].unique()
    assert {k: list(v) for k, v in scales.items() if list(v) != [1.0]} == {("ja", "male"): [0.5]}
    assert (
        "de" not in config.skew and "de" not in config.under_representation and "de" not in config.weak_cues
    )


def test_extra_test_speakers_are_test_only_and_change_no_base_speaker():
    """Extra test speakers come from streams of their own: the plan with them is the plan without them plus
    exactly the configured number of test speakers per gender, with the usual scripts, voices and prosody."""
    config = small_config(extra_test_speakers={"ja": 3})
    base = plan_corpus(config=small_config())
    plan = plan_corpus(config=config)
    pd.testing.assert_frame_equal(plan[plan["id"].isin(base["id"])].reset_index(drop=True), base)
    extra = plan[~plan["id"].isin(base["id"])]
    assert (extra["split"] == "test").all() and set(extra["language"]) == {"ja"}
    assert extra.groupby("gender")["speaker"].nunique().to_dict() == {"female": 3, "male": 3}
    assert (extra.groupby("speaker").size() == 7 * config.utterances_per_emotion).all()
    # speaker slot k speaks the same script in every language, extra slots included
    assert sorted(extra["speaker"].str[-3:].unique()) == ["f04", "f05", "f06", "m04", "m05", "m06"]
    assert set(extra["voice"].str.split("+").str[1]) <= set(
        config.voice_variants["female"] + config.voice_variants["male"]
    )
    # the biases act on the training split only, so the extras never lose a row
    kept, _ = apply_under_representation(plan, under_representation=config.under_representation, seed=0)
    kept, _ = apply_skew(kept, skew=config.skew, seed=0)
    assert set(extra["id"]) <= set(kept["id"])


def test_age_band_is_metadata_spread_evenly_over_each_split():
    """``age_band`` (a three-valued attribute to try non-binary sensitive attributes on) cycles over the
    speakers of each (language, gender, split) cell and draws nothing from the RNG: the voices are unchanged."""
    from fairser.data.synth.config import AGE_BANDS

    config = SynthConfig()
    plan = plan_corpus(config=config)
    speakers = plan.drop_duplicates("speaker")
    per_cell = (
        speakers.groupby(["language", "gender", "split"])["age_band"].value_counts().unstack(fill_value=0)
    )
    assert list(per_cell.columns) == list(AGE_BANDS)
    assert (per_cell.max(axis=1) - per_cell.min(axis=1) <= 1).all()  # as even as the cell's size allows
    assert (plan.groupby("speaker")["age_band"].nunique() == 1).all()  # one band per speaker
    # without the metadata columns, the plan of version 1's default config is byte for byte that of generator
    # version 1 (hash recorded from it): age_band and cue_scale draw nothing from the random streams
    v1 = SynthConfig(
        speakers_per_gender=16,
        split_speakers={"train": 7, "valid": 3, "test": 6},
        utterances_per_emotion=5,
        weak_cues={},
        extra_test_speakers={},
    )
    csv = plan_corpus(config=v1).drop(columns=["age_band", "cue_scale"]).to_csv(index=False).encode()
    assert (
        hashlib.sha256(csv).hexdigest() == "2b6c3e9eae10978a836058a4ece7f76e37ada93f12a85a72be2a9466f022d925"
    )

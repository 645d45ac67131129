"""Tests of the built-in synthetic corpus (fairser.data.synth): determinism, skew, splits, audio, prosody, config."""

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
    apply_skew,
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


def small_config(**overrides) -> SynthConfig:
    """2 languages x 4 speakers per gender (2 train / 1 valid / 1 test) x 2 utterances per emotion."""
    settings = {
        "languages": ["en", "ja"],
        "speakers_per_gender": 4,
        "split_speakers": {"train": 2, "valid": 1, "test": 1},
        "utterances_per_emotion": 2,
        "skew": SKEW,
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
    generate_corpus(config=small_config(skew={}), out_dir=dirs["noskew"], progress=False, n_jobs=2)
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


def test_skew_is_honoured_exactly_and_only_in_train(corpora):
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
            expected = n - int(np.floor(0.75 * n + 0.5))
        assert kept[(lang, split, gender, emotion)] == expected, (lang, split, gender, emotion)
    info = read_corpus_info(corpora["a"])
    n_cell = planned[("en", "train", "female", "anger")]
    assert info["counts"]["dropped_by_skew"] == {
        "en": {"female": {"anger": round(0.75 * n_cell), "joy": round(0.75 * n_cell)}}
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
    assert (sizes.xs("train", level="split") == 2).all() and (sizes.xs("test", level="split") == 1).all()


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
        ({"voice_variants": {"female": ["f9"], "male": ["m1"]}}, "unknown eSpeak NG variant"),
        ({"languages": ["en", "fr"]}, "languages"),
        ({"prosody": {"anger": {"pitch": 10, "range": 10, "rate": 1.1, "volume": 1.5}}}, "missing"),
        ({"seeed": 3}, "Extra inputs are not permitted"),
    ],
)
def test_config_rejects_bad_values(overrides, message):
    with pytest.raises(ValidationError, match=message):
        small_config(**overrides)


def test_default_config_size_and_skew_cells_stay_non_empty():
    config = SynthConfig()
    plan = plan_corpus(config=config)
    kept, dropped = apply_skew(plan, skew=config.skew, seed=config.seed)
    assert 3000 <= len(kept) <= 4000
    train = kept[kept["split"] == "train"]
    assert train.groupby(["language", "gender", "emotion"]).size().min() > 0
    assert set(dropped) == set(config.languages)


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
    # without the column, the plan is byte for byte that of generator version 1 (hash recorded from it)
    csv = plan.drop(columns="age_band").to_csv(index=False).encode()
    assert (
        hashlib.sha256(csv).hexdigest() == "2b6c3e9eae10978a836058a4ece7f76e37ada93f12a85a72be2a9466f022d925"
    )

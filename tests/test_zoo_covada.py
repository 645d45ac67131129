"""CO-VADA: converted audio has the target pitch, labels are kept, converted features come from the cache;
and the zoo's objectives run through the benchmark from a config."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import parselmouth
import pytest
import soundfile as sf

from assets.offline import single_thread  # noqa: F401  (fixture)
from assets.zoo_corpus import harmonic_voice, tiny_corpus
from fairser.augment.covada import (
    FEMALE_TO_MALE,
    MALE_TO_FEMALE,
    convert_voices,
    median_f0,
    select_bias_guiding,
)
from fairser.bench.runner import run_benchmark
from fairser.config import BenchmarkConfig, TrainConfig
from fairser.data.manifest import read_manifest, resolve_audio_paths
from fairser.features import FeatureCache, build_audio_encoder, extract_audio_features
from fairser.objectives.covada import CoVADA
from fairser.objectives.stages import RunData
from fairser.run.backends import HeadTrainer
from fairser.train import ArrayDataset

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize(
    ("source_f0", "direction", "shift"), [(118.0, "up", MALE_TO_FEMALE), (225.0, "down", FEMALE_TO_MALE)]
)
def test_converted_audio_has_the_target_pitch(tmp_path, source_f0, direction, shift) -> None:
    src = tmp_path / "voice.wav"
    sf.write(src, harmonic_voice(source_f0, duration=1.0), 16000)
    out = convert_voices([src], out_dir=tmp_path / "vc", direction="f0")
    assert out.direction == [direction] and out.n_converted == 1
    assert out.source_f0[0] == pytest.approx(source_f0, rel=0.05)
    converted = parselmouth.Sound(str(out.paths[0]))
    assert median_f0(converted) == pytest.approx(shift.new_pitch_median, rel=0.05)
    assert converted.duration == pytest.approx(1.0, abs=0.02)
    again = convert_voices([src], out_dir=tmp_path / "vc", direction="f0")
    assert again.paths == out.paths and again.n_reused == 1 and again.n_converted == 0
    # Praat draws random numbers in "Change gender": seeded by the source, a fresh conversion is identical
    fresh = convert_voices([src], out_dir=tmp_path / "vc2", direction="f0")
    assert fresh.paths[0].read_bytes() == out.paths[0].read_bytes()
    # by the gender label instead of F0: a "female" label moves the voice down whatever its pitch
    by_label = convert_voices([src], out_dir=tmp_path / "vc", direction="gender", genders=["female"])
    assert by_label.direction == ["down"]


def test_conversion_skips_what_it_cannot_decide(tmp_path) -> None:
    silent = tmp_path / "silence.wav"
    sf.write(silent, np.zeros(8000, dtype=np.float32), 16000)
    out = convert_voices([silent, tmp_path / "missing.wav"], out_dir=tmp_path / "vc")
    assert out.paths == [None, None] and set(out.reasons) == {0, 1}
    assert "no voiced frame" in out.reasons[0]


def test_bias_guiding_selection_is_the_lowest_loss_correct_samples() -> None:
    loss = np.array([0.5, 0.1, 0.2, 0.05, 0.3, 0.9])
    correct = np.array([True, True, False, False, True, True])
    np.testing.assert_array_equal(select_bias_guiding(gce_losses=loss, correct=correct, top_k=0.5), [1, 4, 0])
    np.testing.assert_array_equal(
        select_bias_guiding(gce_losses=loss, correct=correct, top_k=1.0), [1, 4, 0, 5]
    )
    with pytest.raises(ValueError, match="top_k"):
        select_bias_guiding(gce_losses=loss, correct=correct, top_k=0.0)


def _run_data(tmp_path, manifest: pd.DataFrame, paths, extraction_log: list) -> RunData:
    encoder = build_audio_encoder("egemaps")
    cache = FeatureCache(tmp_path / "cache")
    feats = extract_audio_features(
        paths=paths, encoder=encoder, cache=cache, n_jobs=1, progress=False
    ).features
    labels = {e: i for i, e in enumerate(sorted(set(manifest["emotion"])))}

    def view(split):
        rows = np.flatnonzero(manifest["split"] == split)
        meta = manifest.iloc[rows].assign(row=rows).reset_index(drop=True)
        data = ArrayDataset(
            audio=feats[rows],
            y=meta["emotion"].map(labels).to_numpy(),
            domain=np.zeros(len(rows), dtype=np.int64),
            sensitive=meta["gender"].map({"male": 0, "female": 1}).to_numpy(),
        )
        return data, meta

    train, meta = view("train")
    valid, valid_meta = view("valid")
    mean, std = train.audio.mean(0), train.audio.std(0) + 1e-8
    for d in (train, valid):
        d.audio = ((d.audio - mean) / std).astype(np.float32)

    def featurize(new_paths, *, rows):
        assert len(rows) == len(new_paths)
        res = extract_audio_features(paths=new_paths, encoder=encoder, cache=cache, n_jobs=1, progress=False)
        extraction_log.append((res.n_extracted, res.n_cached))
        return ((res.features - mean) / std).astype(np.float32), res.ok

    cfg = TrainConfig(epochs=2, batch_size=16, hidden=16)
    trainer = HeadTrainer(
        config=cfg, seed=0, use_text=False, audio_dim=feats.shape[1], text_dim=0, n_classes=len(labels)
    )
    return RunData(
        train=train,
        train_meta=meta,
        views={"valid": (valid, valid_meta)},
        audio_paths=paths,
        featurize=featurize,
        cache_dir=tmp_path / "cache",
        cross_corpus=False,
        sensitive_values=("male", "female"),
        trainer=trainer,
        seed=0,
    )


def test_augment_keeps_labels_and_takes_converted_features_from_the_cache(tmp_path) -> None:
    manifest = read_manifest(tiny_corpus(tmp_path / "corpus", speakers_per_gender=3))
    paths = resolve_audio_paths(manifest, root=tmp_path / "corpus")
    log: list = []
    data = _run_data(tmp_path, manifest, paths, log)
    covada = CoVADA(n_domains=1, n_classes=4, bias_epochs=2, top_k=0.25)
    out = covada.augment(data=data)
    n = len(data.train)
    sel = covada.selection
    assert len(out) == n + sel["rows"].size == n + covada.summary()["covada_added_rows"]
    assert sel["rows"].size == int(np.ceil(0.25 * n)) and sel["correct"][sel["rows"]].all()
    np.testing.assert_array_equal(out.y[n:], data.train.y[sel["rows"]])  # labels kept
    np.testing.assert_array_equal(out.domain[n:], data.train.domain[sel["rows"]])
    assert (out.sensitive[n:] == -1).all()  # converted voices belong to no speaker group (default)
    np.testing.assert_array_equal(out.audio[:n], data.train.audio)
    assert (tmp_path / "voice_conversion").is_dir()  # next to the feature cache
    # each converted file moved away from its source speaker's gender (sources are 115 Hz / 215 Hz voices)
    src_gender = data.train_meta["gender"].to_numpy()[sel["rows"]]
    assert [d == "up" for d in sel["direction"]] == list(src_gender == "male")
    assert log[0][0] == len(set(sel["paths"]))  # first call: converted files extracted

    again = CoVADA(n_domains=1, n_classes=4, bias_epochs=2, top_k=0.25).augment(data=data)
    assert log[1] == (0, len(set(sel["paths"])))  # second call: every converted feature from the cache
    np.testing.assert_array_equal(again.audio, out.audio)


@pytest.mark.slow
def test_zoo_objectives_run_through_the_benchmark(tmp_path) -> None:
    manifest = tiny_corpus(tmp_path / "corpus", speakers_per_gender=3)
    objectives = [
        {"name": "erm", "label": "ERM"},
        {"name": "erm", "label": "Resampling", "sampler": "balanced"},
        {"name": "reweighting"},
        {"name": "adversarial", "params": {"warmup_steps": 5}},
        {"name": "jtt", "params": {"first_epochs": 1}},
        {"name": "lff"},
        {"name": "covada", "params": {"bias_epochs": 1, "top_k": 0.2, "converted_gender": "target"}},
    ]
    cfg = BenchmarkConfig.model_validate(
        {
            "output_dir": str(tmp_path / "out"),
            "corpus": {
                "kind": "manifest",
                "path": str(manifest),
                "labels": ["anger", "sadness", "neutral", "joy"],
            },
            "features": {"cache_dir": str(tmp_path / "cache"), "n_jobs": 1},
            "languages": ["en"],
            "modalities": ["audio"],
            "objectives": objectives,
            "seeds": [0],
            "train": {"epochs": 2, "batch_size": 16, "hidden": 16},
            "evaluation": {"n_boot": 10, "n_perm": 10, "min_samples": 3},
            "n_jobs": 1,
        }
    )
    run_benchmark(cfg, progress=False)
    out = tmp_path / "out"
    meta = json.loads((out / "benchmark.json").read_text())
    assert meta["failures"] == [] and meta["n_finished"] == len(objectives)
    rows = {
        r["objective_label"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())
    }
    assert rows["Resampling"]["sampler"] == "balanced"
    assert rows["covada"]["n_train"]["used"] > rows["covada"]["n_train"]["original"]
    assert rows["jtt"]["stages"][0]["stage"] == "jtt_identification"
    comparison = (out / "comparison.md").read_text()
    for label in rows:
        assert f"| {label} |" in comparison
    assert (out / "tradeoff.png").stat().st_size > 0

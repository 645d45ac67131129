"""IDI: gender inferred by the F0 rule, k-means and a cross-fitted classifier; agreement with true gender;
the ``groups`` option makes group objectives train on inferred groups; high F0-rule agreement on RAVDESS."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from sklearn.metrics import accuracy_score, cohen_kappa_score

from assets.offline import single_thread  # noqa: F401  (fixture)
from assets.zoo_corpus import harmonic_voice, tiny_corpus
from fairser.bench.runner import run_benchmark
from fairser.config import BenchmarkConfig, GroupsConfig
from fairser.methods.idi import (
    gender_agreement,
    infer_gender,
    infer_gender_classifier,
    infer_gender_f0,
    infer_gender_kmeans,
    utterance_f0,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

pytestmark = pytest.mark.usefixtures("single_thread")


def test_f0_rule_decides_per_speaker_by_the_median() -> None:
    f0 = np.array([120.0, 130.0, 300.0, 210.0, 220.0, np.nan, np.nan])
    speaker = np.array(["a", "a", "a", "b", "b", "b", "c"])
    np.testing.assert_array_equal(infer_gender_f0(f0=f0, speaker=speaker), [0, 0, 0, 1, 1, 1, -1])
    np.testing.assert_array_equal(infer_gender_f0(f0=f0, speaker=speaker, threshold=125.0)[:3], [1, 1, 1])


def two_corpora(seed: int = 0):
    """Speaker embeddings separated by gender within each corpus, and much more by corpus."""
    rng = np.random.default_rng(seed)
    rows = []
    for corpus, offset in (("a", 0.0), ("b", 12.0)):
        for g in (0, 1):
            for s in range(4):
                centre = rng.normal(size=5) * 0.3 + offset
                centre[0] += 3.0 * g
                for _ in range(5):
                    rows.append(
                        (corpus, f"{corpus}{g}{s}", g, centre + rng.normal(size=5) * 0.3, 120 + 100 * g)
                    )
    corpus, speaker, gender, x, f0 = map(np.array, zip(*rows, strict=True))
    return corpus, speaker, gender, np.stack(x), f0.astype(float)


def test_kmeans_clusters_speakers_within_each_corpus_and_names_them_by_f0() -> None:
    corpus, speaker, gender, x, f0 = two_corpora()
    within = infer_gender_kmeans(features=x, speaker=speaker, f0=f0, within=corpus)
    np.testing.assert_array_equal(within, gender)
    pooled = infer_gender_kmeans(features=x, speaker=speaker, f0=f0)  # clusters by corpus instead
    assert accuracy_score(gender, pooled) < 0.75


def test_classifier_never_sees_the_labels_of_the_block_it_labels() -> None:
    corpus, speaker, gender, x, _ = two_corpora(seed=1)
    x = x - np.where(corpus == "b", 12.0, 0.0)[:, None]  # a gender direction shared by the corpora
    pred = infer_gender_classifier(features=x, gender=gender, speaker=speaker, holdout=corpus)
    np.testing.assert_array_equal(pred, gender)
    flipped = np.where(corpus == "a", 1 - gender, gender)  # corrupt corpus a's labels
    again = infer_gender_classifier(features=x, gender=flipped, speaker=speaker, holdout=corpus)
    np.testing.assert_array_equal(again[corpus == "a"], pred[corpus == "a"])  # a labelled by b's classifier
    assert (again[corpus == "b"] != gender[corpus == "b"]).all()  # b labelled by a's (corrupted) one
    folds = infer_gender_classifier(features=x, gender=gender, speaker=speaker)  # speaker folds
    assert accuracy_score(gender, folds) == 1.0
    with pytest.raises(ValueError, match="one block only"):
        infer_gender_classifier(features=x, gender=gender, speaker=speaker, holdout=np.zeros(len(x)))


def test_agreement_matches_sklearn_and_skips_unknown() -> None:
    true = np.array([0, 0, 0, 1, 1, 1, -1, 0])
    inferred = np.array([0, 1, 1, 1, 1, 0, 1, -1])
    speaker = np.array(["a", "a", "a", "b", "b", "c", "d", "e"])  # a: majority vote wrong; b right; c wrong
    out = gender_agreement(true=true, inferred=inferred, speaker=speaker)
    both = (true >= 0) & (inferred >= 0)
    assert out["n"] == 6
    assert out["accuracy"] == pytest.approx(accuracy_score(true[both], inferred[both]))
    assert out["kappa"] == pytest.approx(cohen_kappa_score(true[both], inferred[both]))
    assert out["n_speakers"] == 3 and out["speaker_accuracy"] == pytest.approx(1 / 3)


def test_utterance_f0_goes_through_the_feature_cache(tmp_path) -> None:
    paths = []
    for f0 in (120.0, 230.0):
        paths.append(tmp_path / f"{int(f0)}.wav")
        sf.write(paths[-1], harmonic_voice(f0), 16000)
    sf.write(tmp_path / "silence.wav", np.zeros(4000, dtype=np.float32), 16000)
    values = utterance_f0([*paths, tmp_path / "silence.wav"], cache_dir=tmp_path / "cache")
    np.testing.assert_allclose(values[:2], [120.0, 230.0], rtol=0.03)
    assert np.isnan(values[2])
    # the two voices are cached; digital silence is skipped before any encoder runs (nothing to cache)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 2


def test_groups_config_reads_yaml_true() -> None:
    assert GroupsConfig.model_validate({"source": True}).source == "true"
    assert not GroupsConfig.model_validate({"source": True}).inferred
    with pytest.raises(ValueError, match="source"):
        GroupsConfig.model_validate({"source": "guess"})


@pytest.mark.slow
def test_group_objectives_train_on_inferred_groups(tmp_path) -> None:
    manifest = tiny_corpus(tmp_path / "corpus", speakers_per_gender=6, utterances=1)  # train: speakers 0, 3
    frame = pd.read_csv(manifest)
    frame.loc[frame["speaker"] == "a_f0", "gender"] = "unknown"  # a training speaker without a label
    frame.to_csv(manifest, index=False)
    inferred = {"source": "inferred", "method": "f0"}
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
            "objectives": [
                {"name": "groupdro", "label": "true groups"},
                {"name": "groupdro", "label": "IDI f0", "groups": inferred},
                # an absurd threshold: every speaker inferred male, so the female rows change group
                {
                    "name": "reweighting",
                    "label": "IDI all male",
                    "groups": {**inferred, "f0_threshold": 1000},
                },
                {
                    "name": "minmaxgap",
                    "label": "IDI kmeans",
                    "groups": {"source": "inferred", "method": "kmeans"},
                },
                {"name": "groupdro", "label": "IDI fill", "groups": {"source": "fill", "method": "f0"}},
            ],
            "seeds": [0],
            "train": {"epochs": 1, "batch_size": 8, "hidden": 8},
            "evaluation": {"n_boot": 10, "n_perm": 10, "min_samples": 2},
            "n_jobs": 1,
        }
    )
    run_benchmark(cfg, progress=False)
    rows = {
        r["objective_label"]: r
        for r in map(json.loads, (tmp_path / "out" / "results.jsonl").read_text().splitlines())
    }
    assert "groups" not in rows["true groups"]
    assert rows["IDI f0"]["groups"]["agreement_train"]["speaker_accuracy"] == 1.0
    assert rows["IDI f0"]["groups"]["changed_train_rows"] == 4  # the unlabelled speaker gets a gender
    assert rows["IDI fill"]["groups"]["changed_train_rows"] == 4  # only the unlabelled speaker changes
    all_male = rows["IDI all male"]["groups"]
    assert all_male["changed_train_rows"] == 8  # the unlabelled and the labelled female speaker, now "male"
    assert all_male["agreement_train"]["accuracy"] == pytest.approx(8 / 12)  # 3 labelled speakers, 1 wrong
    assert rows["IDI kmeans"]["groups"]["agreement_all"]["speaker_kappa"] == 1.0
    # evaluation always uses the true gender
    pred = pd.read_csv(next((tmp_path / "out" / "runs").glob("audio__IDI_all_male*/predictions.csv")))
    assert set(pred["gender"]) == {"male", "female"}
    notes = json.loads((tmp_path / "out" / "benchmark.json").read_text())["notes"]
    assert any(n.startswith("IDI f0: agreement") for n in notes)


@pytest.mark.realdata
def test_f0_rule_agrees_with_ravdess_gender(tmp_path) -> None:
    root = SHARED / "ravdess"
    if not (root / "manifest.csv").is_file():
        pytest.skip(f"RAVDESS not found at {root} (see ../shared/data/README.md)")
    manifest = pd.read_csv(root / "manifest.csv")
    # one utterance per speaker and emotion (192 files): the emotion mix of the corpus, whose high-arousal
    # speech raises F0 (on all 1440 files the rule agrees on 23 of 24 speakers)
    sample = manifest.groupby(["speaker", "emotion"]).sample(n=1, random_state=0)
    f0 = utterance_f0([root / p for p in sample["path"]], cache_dir=tmp_path / "cache", n_jobs=2)
    sample = sample.assign(corpus="ravdess")
    result = infer_gender(sample, method="f0", f0=f0)
    assert result.agreement["n_speakers"] == 24
    assert result.agreement["speaker_accuracy"] > 0.85
    assert result.agreement["accuracy"] > 0.85 and result.agreement["kappa"] > 0.7

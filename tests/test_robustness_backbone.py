"""``fairser robustness`` with its model sources and for raw-audio backbones (issue 15): a tiny random SSL
(wav2vec2 + LoRA) benchmark run with ``train.save_model``, tested on telephone and noise through the CLI
(saved model, degraded waveforms cached in the feature cache, checked against ``fairser predict`` on the
cached files), re-fitted as well; and a head run whose saved models give the re-fit's table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from typer.testing import CliRunner

from assets.offline import block_network, single_thread  # noqa: F401  (fixtures)
from assets.zoo_corpus import tiny_corpus
from fairser.config import BenchmarkConfig
from fairser.errors import UserError

pytestmark = pytest.mark.usefixtures("block_network", "single_thread")
LABELS = ["anger", "sadness", "neutral", "joy"]
CONDITIONS = ["telephone", "noise:kind=white,snr_db=5"]


def _config(root, name: str, **overrides) -> BenchmarkConfig:
    data = {
        "output_dir": str(root / name),
        "corpus": {"kind": "manifest", "path": str(root / "corpus" / "manifest.csv"), "labels": LABELS},
        "features": {"cache_dir": str(root / "cache"), "n_jobs": 1},
        "languages": ["en"],
        "modalities": ["audio"],
        "objectives": [{"name": "erm"}],
        "seeds": [0],
        "train": {"epochs": 3, "batch_size": 16, "hidden": 8, "save_model": True},
        "evaluation": {"n_boot": 20, "n_perm": 20, "min_samples": 2},
        "n_jobs": 1,
    }
    data.update(overrides)
    return BenchmarkConfig.model_validate(data)


@pytest.fixture(scope="module")
def ssl_run(tmp_path_factory):
    """A finished, saved ERM run of a tiny random wav2vec2 with LoRA and a classifier head on a 48-file corpus
    (test split: 2 male + 2 female speakers x 4 emotions = 16 files)."""
    pytest.importorskip(
        "transformers", reason="transformers is not installed (pip install transformers peft)"
    )
    pytest.importorskip("peft", reason="peft is not installed (pip install peft)")
    from assets.tiny_models import save_tiny_ssl
    from fairser.bench import run_benchmark

    root = tmp_path_factory.mktemp("robust_ssl")
    tiny_corpus(root / "corpus", speakers_per_gender=6, utterances=1)
    model_dir = save_tiny_ssl(root / "tiny-w2v2", kind="wav2vec2", layer_norm_cnn=True)
    backbone = {"name": "ssl", "path": str(model_dir), "finetune": "lora", "lora": {"r": 2, "alpha": 4},
                "mlp_hidden": 16, "precision": "fp32", "mixed_precision": "no", "per_device_batch_size": 8,
                "eval_batch_size": 4, "epochs": 4, "lr": 3e-2}  # fmt: skip
    cfg = _config(root, "out", backbone=backbone)
    run_benchmark(cfg, progress=False)
    return root, cfg


def _invoke(*args):
    from fairser.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.slow
def test_backbone_run_on_degraded_waveforms_from_its_saved_model(ssl_run):
    from fairser.degrade import build_condition, degrade_file, degraded_audio_fingerprints
    from fairser.features import FeatureCache
    from fairser.run import plan_runs
    from fairser.run.predict import load_predictor, predict, read_input

    root, cfg = ssl_run
    out = root / "out"
    (spec,) = plan_runs(cfg)
    args = ["robustness", out, *(a for c in CONDITIONS for a in ("--conditions", c))]
    res = _invoke(*args, "--n-boot", 30, "--n-perm", 30, "-q")
    assert res.exit_code == 0, res.output
    assert "model source: saved (all 1 run(s) saved their model)" in res.output
    record = json.loads((out / "robustness.json").read_text())
    assert (record["model_source"], record["inputs"]) == ("saved", "waveforms")

    conds = pd.read_csv(out / "robustness_conditions.csv").set_index("condition")
    assert list(conds.index) == ["telephone mulaw", "white noise 5dB"]
    assert (
        (conds["n_files"] == 16).all()
        and (conds["n_extracted"] == 16).all()
        and (conds["n_cached"] == 0).all()
    )
    # G.711 at 8 kHz: 8 bits x 8000 samples/s = 64 kbps; white noise scaled to exactly 5 dB of each file
    assert conds.loc["telephone mulaw", "bitrate_kbps_mean"] == pytest.approx(64.0)
    assert conds.loc["white noise 5dB", "snr_db_mean"] == pytest.approx(5.0, abs=1e-3)
    assert conds.loc["white noise 5dB", "snr_db_min"] == pytest.approx(5.0, abs=1e-3)
    table = pd.read_csv(out / "robustness.csv")
    assert len(table) == 2 and set(table["n_speakers"]) == {4} and set(table["n"]) == {16}
    for col in ("delta_weighted_f1", "delta_weighted_f1_gap", "delta_uar"):
        assert table[col].notna().all()
        assert (table[f"{col}_ci_low"] <= table[col] + 1e-12).all()
        assert (table[col] <= table[f"{col}_ci_high"] + 1e-12).all()

    # the cached degraded files are the condition applied with each file's own generator, to the bit
    manifest = pd.read_csv(root / "corpus" / "manifest.csv", keep_default_na=False)
    test = manifest[manifest["split"] == "test"].reset_index(drop=True)
    cache = FeatureCache(root / "cache")
    noise = build_condition("noise", kind="white", snr_db=5)
    fp, _ = degraded_audio_fingerprints(condition=noise, seed=cfg.robustness.seed, sample_rate=16000)
    files = []
    for rel in test["audio_path"]:
        digest = cache.file_hash(root / "corpus" / rel)
        files.append(cache.entry_path(fingerprint=fp, content_hash=digest).with_suffix(".wav"))
    expected, _ = degrade_file(root / "corpus" / test["audio_path"][0], condition=noise,
                               seed=cfg.robustness.seed, content_hash=cache.file_hash(root / "corpus" / test["audio_path"][0]),
                               sample_rate=16000)  # fmt: skip
    stored, rate = sf.read(files[0], dtype="float32")
    assert rate == 16000 and np.array_equal(stored, expected)

    # `fairser predict` of the saved model on the cached noisy files gives the table's degraded W-F1
    from sklearn.metrics import f1_score

    noisy = test.assign(audio_path=[str(f) for f in files])
    noisy.to_csv(root / "noisy.csv", index=False)
    pred = predict(load_predictor(out / "runs" / spec.run_id), read_input(root / "noisy.csv"), progress=False)
    wf1 = f1_score(
        pred.table["y_true"], pred.table["y_pred"], labels=LABELS, average="weighted", zero_division=0
    )
    row = table.set_index("condition").loc["white noise 5dB"]
    assert row["weighted_f1_degraded"] == pytest.approx(wf1)
    clean = pd.read_csv(out / "runs" / spec.run_id / "predictions.csv", keep_default_na=False)
    wf1_clean = f1_score(clean["y_true"], clean["y_pred"], labels=LABELS, average="weighted", zero_division=0)
    assert row["weighted_f1_clean"] == pytest.approx(wf1_clean)

    # a warm re-run degrades nothing and gives the same tables
    res = _invoke(*args, "--n-boot", 30, "--n-perm", 30, "-q")
    assert res.exit_code == 0, res.output
    again = pd.read_csv(out / "robustness_conditions.csv")
    assert (again["n_extracted"] == 0).all() and (again["n_cached"] == 16).all()
    pd.testing.assert_frame_equal(pd.read_csv(out / "robustness.csv"), table)

    # re-fitting the backbone (1 epoch, seeded) reproduces the stored predictions and gives the same table
    from fairser.bench.robustness import evaluate_robustness

    refit = evaluate_robustness(
        out, conditions=CONDITIONS, source="refit", n_boot=30, n_perm=30, progress=False
    )
    assert refit.source == "refit"
    pd.testing.assert_frame_equal(refit.table, table)
    assert not (out / "runs" / spec.run_id / "checkpoints").exists()  # the re-fit trained in a scratch folder

    # a stored table the saved model does not reproduce is refused, naming the run
    path = out / "runs" / spec.run_id / "predictions.csv"
    clean.loc[0, "prob_anger"] += 1e-3
    clean.to_csv(path, index=False)
    res = _invoke(*args[:4], "--source", "saved", "-q")
    assert res.exit_code == 2 and f"the saved model of run {spec.run_id} does not reproduce" in res.output
    res = _invoke(*args[:4], "--source", "best", "-q")
    assert res.exit_code == 2 and "unknown model source 'best'" in res.output


def test_saved_head_models_give_the_refit_table(tmp_path):
    from fairser.bench import run_benchmark
    from fairser.bench.robustness import evaluate_robustness
    from fairser.run import plan_runs

    tiny_corpus(tmp_path / "corpus", speakers_per_gender=6, utterances=1)
    cfg = _config(tmp_path, "out", seeds=[0, 1])
    run_benchmark(cfg, progress=False)
    out = tmp_path / "out"
    conditions = ["resample:rate=4000"]
    saved = evaluate_robustness(out, conditions=conditions, n_boot=30, n_perm=30, progress=False)
    assert saved.source == "saved"  # auto: every run saved its model
    assert json.loads((out / "robustness.json").read_text())["inputs"] == "features"
    refit = evaluate_robustness(
        out, conditions=conditions, source="refit", n_boot=30, n_perm=30, progress=False
    )
    assert (
        refit.source == "refit"
        and json.loads((out / "robustness.json").read_text())["model_source"] == "refit"
    )
    pd.testing.assert_frame_equal(saved.table, refit.table)
    pd.testing.assert_frame_equal(saved.per_class, refit.per_class)
    pd.testing.assert_frame_equal(saved.runs, refit.runs)
    # one run without its model folder: auto re-fits, saved is refused by name
    import shutil

    spec = plan_runs(cfg)[1]
    shutil.rmtree(out / "runs" / spec.run_id / "model")
    again = evaluate_robustness(out, conditions=conditions, n_boot=30, n_perm=30, progress=False)
    assert again.source == "refit"
    pd.testing.assert_frame_equal(again.table, saved.table)
    with pytest.raises(UserError, match=f"1 of 2 finished run.s. have no saved model .e.g. {spec.run_id}"):
        evaluate_robustness(out, conditions=conditions, source="saved", progress=False)


@pytest.mark.slow
def test_zero_shot_audio_llm_runs_on_degraded_waveforms(tmp_path):
    """A zero-shot tiny Qwen2-Audio (nothing trained, configs/tiny_qwen2_audio_zero_shot.yaml): its saved and
    its "re-fitted" (loaded) model reproduce the stored predictions and give the same table, in both settings
    (audio+text keeps its transcripts)."""
    pytest.importorskip(
        "transformers", reason="transformers is not installed (pip install transformers peft)"
    )
    from pathlib import Path

    import yaml

    from assets.tiny_models import save_tiny_qwen2_audio
    from fairser.bench import run_benchmark
    from fairser.bench.robustness import evaluate_robustness
    from fairser.data.labels import MELD_EMOTIONS

    config = Path(__file__).resolve().parents[1] / "configs" / "tiny_qwen2_audio_zero_shot.yaml"
    data = yaml.safe_load(config.read_text())
    data["output_dir"] = str(tmp_path / "out")
    data["corpus"]["path"] = str(tmp_path / "corpus")
    data["corpus"]["synth"]["utterances_per_emotion"] = 1
    data["features"] = {"cache_dir": str(tmp_path / "cache"), "n_jobs": 1}
    data["backbone"]["path"] = str(
        save_tiny_qwen2_audio(tmp_path / "model", words=MELD_EMOTIONS, vocab_size=520)
    )
    data["evaluation"] = {"n_boot": 20, "n_perm": 20, "min_samples": 3}
    data["train"] = {"save_model": True}
    run_benchmark(BenchmarkConfig.model_validate(data), progress=False)
    out = tmp_path / "out"
    n_test = int((pd.read_csv(tmp_path / "corpus" / "manifest.csv")["split"] == "test").sum())
    saved = evaluate_robustness(
        out, conditions=["noise:kind=white,snr_db=5"], n_boot=20, n_perm=20, progress=False
    )
    assert saved.source == "saved"
    cond = saved.conditions.iloc[0]
    assert (
        cond["n_files"] == n_test
        and cond["n_extracted"] == n_test
        and cond["snr_db_mean"] == pytest.approx(5.0, abs=1e-3)
    )
    # one row per setting x language; both settings read the same cached noisy files
    assert set(saved.table["modality"]) == {"audio", "audio+text"} and set(saved.table["language"]) == {
        "en",
        "de",
    }
    assert saved.table["delta_weighted_f1"].notna().all()
    loaded = evaluate_robustness(
        out, conditions=["noise:kind=white,snr_db=5"], source="refit", n_boot=20, n_perm=20, progress=False
    )
    assert loaded.conditions.iloc[0]["n_extracted"] == 0
    pd.testing.assert_frame_equal(loaded.table, saved.table)


def test_degraded_waveforms_are_seeded_cached_and_name_their_failures(tmp_path):
    from assets.zoo_corpus import harmonic_voice
    from fairser.degrade import build_condition, degrade_file, extract_degraded_audio
    from fairser.features import FeatureCache

    paths = [tmp_path / "a.wav", tmp_path / "b.wav", tmp_path / "a_copy.wav", tmp_path / "bad.wav"]
    for p, f0 in zip(paths[:3], (120.0, 220.0, 120.0), strict=True):
        sf.write(p, harmonic_voice(f0, seed=0), 16000)
    paths[3].write_bytes(b"not audio at all")
    cache = FeatureCache(tmp_path / "cache")
    noise = build_condition("noise", kind="white", snr_db=10)
    res = extract_degraded_audio(paths=paths, condition=noise, cache=cache, seed=3, progress=False)
    # a.wav and its byte-identical copy share one entry (content-addressed); the bad file is named, not dropped
    assert (
        res.ok.tolist() == [True, True, True, False] and res.files[0] == res.files[2] and res.files[3] is None
    )
    assert res.n_extracted == 3 and res.n_cached == 0 and res.failures[0][0] == paths[3]
    assert np.allclose(res.measure("snr_db")[:3], 10.0, atol=1e-3)
    expected, _ = degrade_file(
        paths[1], condition=noise, seed=3, content_hash=cache.file_hash(paths[1]), sample_rate=16000
    )
    assert np.array_equal(sf.read(res.files[1], dtype="float32")[0], expected)
    # warm: nothing degraded, the same files; another seed: other noise, other files
    warm = extract_degraded_audio(paths=paths, condition=noise, cache=cache, seed=3, progress=False)
    assert (warm.n_extracted, warm.n_cached) == (0, 3) and warm.files == res.files
    other = extract_degraded_audio(paths=paths[:2], condition=noise, cache=cache, seed=4, progress=False)
    assert other.n_extracted == 2 and other.files[1] != res.files[1]
    assert not np.array_equal(sf.read(other.files[1], dtype="float32")[0], expected)
    # a damaged entry is degraded again (and only it)
    res.files[1].write_bytes(b"RIFF")
    again = extract_degraded_audio(paths=paths[:2], condition=noise, cache=cache, seed=3, progress=False)
    assert (again.n_extracted, again.n_cached) == (1, 1)
    assert np.array_equal(sf.read(again.files[1], dtype="float32")[0], expected)

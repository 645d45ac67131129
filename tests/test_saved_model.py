"""Saved models (``train.save_model``) and ``fairser predict``: round trip, refusals, inputs, unreadable audio."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from assets.offline import single_thread  # noqa: F401  (fixture)
from assets.zoo_corpus import tiny_corpus
from fairser.cli import app
from fairser.config import BenchmarkConfig
from fairser.errors import UserError

pytestmark = pytest.mark.usefixtures("single_thread")
LABELS = ["anger", "sadness", "neutral", "joy"]


def _config(root: Path, name: str, **overrides) -> BenchmarkConfig:
    data = {
        "output_dir": str(root / name),
        "corpus": {"kind": "manifest", "path": str(root / "corpus" / "manifest.csv"), "labels": LABELS},
        "features": {"cache_dir": str(root / "cache"), "n_jobs": 1},
        "languages": ["en"],
        "modalities": ["audio"],
        "objectives": [{"name": "minmaxgap", "label": "ERM-MinMaxGAP"}],
        "seeds": [0],
        "train": {"epochs": 3, "batch_size": 16, "hidden": 8, "save_model": True},
        "evaluation": {"n_boot": 10, "n_perm": 10, "min_samples": 2},
        "n_jobs": 1,
    }
    data.update(overrides)
    return BenchmarkConfig.model_validate(data)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny corpus and two saved ERM-MinMaxGAP runs: audio with standard normalisation, and a joint
    audio / audio+text model with per-speaker normalisation (transcripts set so that the text branch works)."""
    from fairser.bench import run_benchmark
    from fairser.run import plan_runs

    root = tmp_path_factory.mktemp("saved")
    path = tiny_corpus(root / "corpus", speakers_per_gender=6, utterances=1)
    manifest = pd.read_csv(path, keep_default_na=False)
    manifest["transcript"] = manifest["emotion"].map(
        {"anger": "leave me alone", "sadness": "i miss her", "neutral": "the bus is late", "joy": "we won"}
    )
    manifest.to_csv(path, index=False)
    runs = {}
    for name, extra in (
        ("standard", {}),
        (
            "per_speaker",
            {
                "modalities": ["audio", "audio+text"],
                "joint_modalities": True,
                "train": {
                    "epochs": 3,
                    "batch_size": 16,
                    "hidden": 8,
                    "save_model": True,
                    "normalise": "per_speaker",
                },
            },
        ),
    ):
        cfg = _config(root, name, **extra)
        run_benchmark(cfg, progress=False)
        (spec,) = plan_runs(cfg)
        runs[name] = root / name / "runs" / spec.run_id
    return root, runs


def _invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_run_ids_do_not_change_with_save_model(tmp_path) -> None:
    from fairser.run import plan_runs

    cfg = _config(tmp_path, "x")
    off = cfg.model_copy(update={"train": cfg.train.model_copy(update={"save_model": False})})
    assert [r.run_id for r in plan_runs(cfg)] == [r.run_id for r in plan_runs(off)]
    assert BenchmarkConfig().train.save_model is False  # off by default


def test_saved_head_round_trips_weights_and_reproduces_the_test_predictions_exactly(
    trained, tmp_path
) -> None:
    from fairser.run.predict import HeadPredictor
    from fairser.run.saved import load_saved_model

    root, runs = trained
    for name, run_dir in runs.items():
        saved = load_saved_model(run_dir)
        meta = saved.meta
        assert meta["kind"] == "head" and meta["labels"] == LABELS and meta["run"]["objective"] == "minmaxgap"
        assert meta["run"]["run_id"] == run_dir.name and meta["schema_version"] == 1
        assert meta["normalise"]["mode"] == ("standard" if name == "standard" else "per_speaker")
        row = json.loads((root / name / "results.jsonl").read_text().splitlines()[0])
        assert row["saved_model"] == str(run_dir / "model")
        predictor = HeadPredictor(saved)
        state = predictor.model.state_dict()
        assert set(state) == {k[5:] for k in saved.tensors if k.startswith("head.")}
        for k, v in state.items():
            assert torch.equal(v, saved.tensors[f"head.{k}"])
        if name == "standard":  # the train-only statistics, as the run computed them
            from fairser.run import prepare_data
            from fairser.run.prepare import normaliser

            cfg = _config(root, name)
            mean, std = normaliser(prepare_data(cfg, progress=False), cfg).stats[""]
            np.testing.assert_array_equal(saved.tensors["normalise.0.mean"].numpy(), mean)
            np.testing.assert_array_equal(saved.tensors["normalise.0.std"].numpy(), std)
        else:  # per speaker: no statistics kept, computed from predict's input
            assert not any(k.startswith("normalise.") for k in saved.tensors)
            assert meta["features"]["text"]["name"] == "e5" and meta["modalities"] == ["audio", "audio+text"]

        out = tmp_path / f"{name}.csv"
        res = _invoke("predict", run_dir, root / "corpus" / "manifest.csv", "--out", out, "--quiet")
        assert res.exit_code == 0, res.output
        ran = pd.read_csv(run_dir / "predictions.csv", keep_default_na=False)
        mine = pd.read_csv(out, keep_default_na=False)
        assert list(mine.columns) == list(ran.columns)
        # every split predicted; the test rows are the run's own test predictions, to the last bit
        assert set(mine["split"]) == {"train", "valid", "test"}
        test = mine[mine["split"] == "test"].reset_index(drop=True)
        pd.testing.assert_frame_equal(test, ran, check_exact=True)
        # and `fairser audit` reads the table as it is
        res = _invoke(
            "audit", out, "--n-boot", 10, "--n-perm", 10, "--min-samples", 2, "--no-power", "--quiet"
        )
        assert res.exit_code == 0, res.output


def test_predict_on_a_file_a_folder_and_with_unreadable_audio(trained, tmp_path) -> None:
    root, runs = trained
    run_dir = runs["standard"]
    manifest = pd.read_csv(root / "corpus" / "manifest.csv", keep_default_na=False)
    full = tmp_path / "full.csv"
    assert _invoke("predict", run_dir, root / "corpus" / "manifest.csv", "-o", full, "-q").exit_code == 0
    full_pred = pd.read_csv(full, keep_default_na=False).set_index("id")

    one = manifest.iloc[5]
    out = tmp_path / "one.csv"
    res = _invoke("predict", run_dir, root / "corpus" / one["audio_path"], "-o", out, "-q")
    assert res.exit_code == 0, res.output
    pred = pd.read_csv(out, keep_default_na=False)
    assert (
        len(pred) == 1 and pred.loc[0, "id"] == Path(one["audio_path"]).name and pred.loc[0, "y_true"] == ""
    )
    prob = [f"prob_{lab}" for lab in LABELS]
    np.testing.assert_array_equal(pred[prob].to_numpy()[0], full_pred.loc[one["id"], prob].to_numpy())

    # a folder with two unreadable files: they are counted and listed, the others predicted
    folder = tmp_path / "audio"
    shutil.copytree(root / "corpus" / "audio", folder)
    (folder / "a" / "empty.wav").write_bytes(b"")
    (folder / "a" / "noise.wav").write_bytes(b"RIFF not really a wav file")
    out = tmp_path / "folder.csv"
    res = _invoke("predict", run_dir, folder, "-o", out, "-q")
    assert res.exit_code == 0, res.output
    assert "2 unreadable audio file(s) left out" in res.output
    pred = pd.read_csv(out, keep_default_na=False)
    assert len(pred) == len(manifest) and set(pred["id"]) == {
        f"a/{Path(p).name}" for p in manifest["audio_path"]
    }
    listed = pd.read_csv(tmp_path / "folder_unreadable.csv")
    assert sorted(Path(p).name for p in listed["audio_path"]) == ["empty.wav", "noise.wav"]
    assert any("empty file" in r for r in listed["reason"])
    by_file = pred.assign(stem=pred["id"].str[2:-4]).set_index("stem")
    np.testing.assert_array_equal(
        by_file.loc[manifest["id"], prob].to_numpy(), full_pred.loc[manifest["id"], prob].to_numpy()
    )

    # a manifest naming a missing file: counted, not a crash
    broken = manifest.head(4).copy()
    broken.loc[1, "audio_path"] = "audio/a/missing.wav"
    broken.to_csv(root / "corpus" / "broken.csv", index=False)
    res = _invoke("predict", run_dir, root / "corpus" / "broken.csv", "-o", tmp_path / "b.csv", "-q")
    assert res.exit_code == 0 and "1 unreadable audio file(s)" in res.output
    assert len(pd.read_csv(tmp_path / "b.csv")) == 3

    # nothing readable: one message, exit 2, no traceback
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.wav").write_bytes(b"")
    res = _invoke("predict", run_dir, bad, "-o", tmp_path / "none.csv", "-q")
    assert (
        res.exit_code == 2 and "no audio file could be read" in res.output and "Traceback" not in res.output
    )


def test_per_speaker_and_transcript_models_refuse_inputs_that_cannot_feed_them(trained, tmp_path) -> None:
    root, runs = trained
    wav = root / "corpus" / pd.read_csv(root / "corpus" / "manifest.csv")["audio_path"][0]
    res = _invoke("predict", runs["per_speaker"], wav, "-o", tmp_path / "x.csv", "-q")
    assert res.exit_code == 2 and "per speaker" in res.output and "corpus and speaker columns" in res.output
    from fairser.run.predict import load_predictor, read_input

    predictor = load_predictor(runs["per_speaker"])
    with pytest.raises(UserError, match="needs a manifest with a split column"):
        read_input(wav, split="test")
    with pytest.raises(UserError, match="not among the model's labels"):
        m = pd.read_csv(root / "corpus" / "manifest.csv", keep_default_na=False)
        m.loc[0, "emotion"] = "disgust"
        m.to_csv(tmp_path / "other.csv", index=False)
        read_input(tmp_path / "other.csv", labels=predictor.labels)


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run_dir / "model", dst / "model")
    return dst


def test_loading_refuses_tampered_or_mismatched_model_folders(trained, tmp_path) -> None:
    from fairser.run.predict import load_predictor

    _, runs = trained
    wav_dir = tmp_path / "empty_run"
    wav_dir.mkdir()
    with pytest.raises(UserError, match="train.save_model: true"):
        load_predictor(wav_dir)

    cases = {}
    run = _copy(runs["standard"], tmp_path / "weights")
    data = bytearray((run / "model" / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (run / "model" / "model.safetensors").write_bytes(bytes(data))
    cases["weights"] = (run, "does not match the sha256")
    for what, edit, message in (
        ("version", lambda m: m.update(schema_version=99), "schema version 99"),
        ("key", lambda m: m.pop("normalise"), r"lacks key\(s\) \['normalise'\]"),
        ("schema", lambda m: m.update(schema="other"), "not a fairser saved model"),
        ("shape", lambda m: m["model"].update(hidden=16), "does not fit the model"),
        ("labels", lambda m: m.update(labels=[*m["labels"], "fear"]), "5 labels"),
        ("encoder", lambda m: m["features"]["audio"].update(fingerprint="0" * 64), "audio encoder differs"),
    ):
        run = _copy(runs["standard"], tmp_path / what)
        meta = json.loads((run / "model" / "model.json").read_text())
        edit(meta)
        (run / "model" / "model.json").write_text(json.dumps(meta))
        cases[what] = (run, message)
    for run, message in cases.values():
        with pytest.raises(UserError, match=message):
            load_predictor(run)
    res = _invoke("predict", cases["weights"][0], wav_dir, "-q")
    assert res.exit_code == 2 and "sha256" in res.output and "Traceback" not in res.output


@pytest.mark.slow
def test_a_tiny_qwen2_audio_lora_run_is_saved_and_predict_reproduces_its_test_predictions(tmp_path) -> None:
    pytest.importorskip("peft", reason="peft is not installed (pip install peft)")
    from assets.tiny_models import save_tiny_qwen2_audio
    from fairser.bench import run_benchmark
    from fairser.run import plan_runs

    model_dir = save_tiny_qwen2_audio(tmp_path / "tiny-qwen2-audio", words=tuple(LABELS))
    tiny_corpus(tmp_path / "corpus", speakers_per_gender=3, utterances=1)
    cfg = _config(
        tmp_path,
        "out",
        train={"save_model": True},
        backbone={
            "name": "qwen2_audio",
            "path": str(model_dir),
            "precision": "fp32",
            "mixed_precision": "no",
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
            "per_device_batch_size": 8,
            "eval_batch_size": 4,
            "epochs": 1,
            "lr": 1e-3,
        },
    )
    run_benchmark(cfg, progress=False)
    (spec,) = plan_runs(cfg)
    run_dir = tmp_path / "out" / "runs" / spec.run_id
    from fairser.run.saved import load_saved_model

    saved = load_saved_model(run_dir)
    assert saved.kind == "backbone" and saved.meta["base_model"]["config_sha256"]
    assert saved.tensors and all("lora_" in k for k in saved.tensors)  # LoRA only (label-token mode)
    out = tmp_path / "pred.csv"
    res = _invoke(
        "predict", run_dir, tmp_path / "corpus" / "manifest.csv", "--split", "test", "-o", out, "-q"
    )
    assert res.exit_code == 0, res.output
    ran = pd.read_csv(run_dir / "predictions.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(pd.read_csv(out, keep_default_na=False), ran, check_exact=True)
    # another base model is refused before anything runs
    other = save_tiny_qwen2_audio(tmp_path / "other", words=tuple(LABELS), seed=1)
    res = _invoke("predict", run_dir, tmp_path / "corpus" / "manifest.csv", "--backbone-path", other, "-q")
    assert res.exit_code == 2 and "not the one the run was trained from" in res.output

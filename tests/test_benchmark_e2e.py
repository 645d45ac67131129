"""End to end: a small synthetic corpus through features, training, evaluation and the table; resume."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from fairser.bench.runner import plan_runs, run_benchmark
from fairser.cli import app
from fairser.config import BenchmarkConfig
from fairser.data.risk import read_data_risk
from fairser.results import ResultsStore

pytestmark = pytest.mark.slow


def _config(tmp_path, **extra):
    return BenchmarkConfig.model_validate(
        {
            "name": "e2e",
            "output_dir": str(tmp_path / "out"),
            "corpus": {
                "kind": "synthetic",
                "path": str(tmp_path / "corpus"),
                "synth": {
                    "languages": ["en", "de"],
                    "speakers_per_gender": 4,
                    "split_speakers": {"train": 2, "valid": 1, "test": 1},
                    "utterances_per_emotion": 1,
                    "extra_test_speakers": {},
                    "skew": {"de": {"gender": "female", "emotions": ["anger"], "drop_fraction": 1.0}},
                },
            },
            "features": {"cache_dir": str(tmp_path / "cache"), "n_jobs": 2},
            "languages": ["en", "de"],
            "seeds": [0],
            "train": {"epochs": 3, "batch_size": 32},
            "evaluation": {"n_boot": 50, "n_perm": 50, "min_samples": 3},
            "n_jobs": 1,
            **extra,
        }
    )


def test_benchmark_writes_table_and_resumes(tmp_path, capsys):
    cfg = _config(tmp_path)
    table = run_benchmark(cfg, progress=False)
    out = tmp_path / "out"
    store = ResultsStore(out / "results.jsonl")
    runs = plan_runs(cfg)
    assert len(runs) == 4  # 2 modality settings x 2 objectives x 1 seed
    assert store.finished() == {r.run_id for r in runs}

    text = (out / "table.md").read_text()
    assert "SYNTHETIC" in text
    for lang in ("en", "de"):
        for modality in ("audio", "audio+text"):
            assert f"| {lang} | {modality} |" in text
    assert {"ERM W-F1", "ERM-MinMaxGAP W-F1", "ERM-MinMaxGAP Δ gap"} <= set(table.columns)
    # beneath the paper table: every run's gap with CI, p and the domain's minimum detectable gap
    assert "### Gaps with their uncertainty" in text and "| Language | Modality | Objective | Seed |" in text
    gaps = pd.read_csv(out / "gaps.csv")
    assert len(gaps) == 8 and set(gaps["objective"]) == {"ERM", "ERM-MinMaxGAP"}  # 4 runs x 2 languages
    mdg = pd.read_csv(out / "mdg.csv", keep_default_na=False)
    assert len(mdg) == 4 and set(mdg["setting"]) == {"audio", "audio+text"}  # per setting x domain
    assert set(mdg["run_id"]) == {r.run_id for r in runs if r.objective.display == "ERM"}  # the baseline's
    # 1 test speaker per gender: no MDG (and no CI), each with its reason beneath the table
    assert (mdg["speakers_per_group"] == "1/1").all() and (mdg["mdg"] == "").all()
    assert (
        "- de/audio (audio): with 1/1 speakers per value the permutation test cannot reach p < 0.05" in text
    )
    assert "- en/audio+text (audio+text): CI undefined: male has 1 speaker, female has 1 speaker" in text
    # `fairser table` prints the same text from the folder (rows and mdg.csv)
    res = CliRunner().invoke(app, ["table", str(out)])
    assert res.exit_code == 0 and res.output == text + "\n"
    # the power analysis in 2 processes (one per setting) writes the same mdg.csv and table
    mdg_csv = (out / "mdg.csv").read_text()
    (out / "mdg.csv").unlink()
    run_benchmark(cfg.model_copy(update={"n_jobs": 2}), progress=False)
    assert (out / "mdg.csv").read_text() == mdg_csv and (out / "table.md").read_text() == text
    meta = json.loads((out / "benchmark.json").read_text())
    assert meta["synthetic"] is True and meta["n_finished"] == 4
    # the training-data bias risk of the prepared manifest: de's training females have no anger (the skew)
    risk = read_data_risk(out / "data_risk.csv").table.set_index(["language", "value"])
    assert risk.loc[("de", "female"), "n_anger"] == 0 and risk.loc[("de", "male"), "n_anger"] > 0
    assert risk.loc[("de", "female"), "js_divergence"] > 0 == risk.loc[("en", "female"), "js_divergence"]

    pred = pd.read_csv(out / "runs" / runs[0].run_id / "predictions.csv")
    assert {"id", "y_true", "y_pred", "gender", "language", "modality", "speaker", "prob_joy"} <= set(
        pred.columns
    )
    assert set(pred["language"]) == {"en", "de"}
    log = pd.read_csv(out / "runs" / runs[1].run_id / "train_log.csv")
    assert {"lambda", "R"} <= set(log.columns)  # MinMaxGAP logs its weight and penalty every step

    # Resume: delete one run's row; only that run is redone, features come from the cache.
    before = {r["run_id"]: r for r in store.rows()}
    victim = runs[2].run_id
    assert store.remove(victim) == 1
    capsys.readouterr()
    run_benchmark(cfg, progress=False)
    printed = capsys.readouterr().out
    assert "resuming: 3 of 4 runs already finished" in printed
    after = {r["run_id"]: r for r in store.rows()}
    assert set(after) == set(before)
    for rid in before:
        if rid != victim:
            assert after[rid]["elapsed_s"] == before[rid]["elapsed_s"]  # untouched rows
    meta = json.loads((out / "benchmark.json").read_text())
    assert meta["timings_s"]["features_audio_extracted"] == 0  # warm cache: nothing re-extracted


def test_joint_modalities_masks_text_and_uses_language_x_modality_domains(tmp_path):
    # two objectives in a 2-process pool: also covers the parallel path of the runner
    cfg = _config(
        tmp_path, joint_modalities=True, objectives=[{"name": "minmaxgap"}, {"name": "erm"}], n_jobs=2
    )
    run_benchmark(cfg, progress=False)
    rows = ResultsStore(tmp_path / "out" / "results.jsonl").rows()
    assert len(rows) == 2 and {r["setting"] for r in rows} == {"joint"}
    assert {r["objective"] for r in rows} == {"minmaxgap", "erm"} and all(r["status"] == "ok" for r in rows)
    for row in rows:
        domains = {(d["language"], d["modality"]) for d in row["domains"]}
        assert domains == {(lang, m) for lang in ("en", "de") for m in ("audio", "audio+text")}

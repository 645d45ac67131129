"""Cross-validated protocols in the benchmark (issue 12): folds per cell, pooled out-of-fold evaluation, resume
per fold, the linear head and per-speaker normalisation (METHODS.md §5)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from assets.offline import single_thread  # noqa: F401  (fixture)
from assets.zoo_corpus import tiny_corpus
from fairser.config import BenchmarkConfig
from fairser.results import ResultsStore, evaluate_run, jsonable

pytestmark = pytest.mark.usefixtures("single_thread")

LABELS = ["anger", "sadness", "neutral", "joy"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """6 speakers per gender, 4 emotions x 2 utterances each (real WAVs), one corpus and language."""
    return tiny_corpus(tmp_path_factory.mktemp("cv") / "corpus", speakers_per_gender=6, utterances=2)


def _config(tmp_path, corpus, **overrides) -> BenchmarkConfig:
    data = {
        "output_dir": str(tmp_path / "out"),
        "corpus": {"kind": "manifest", "path": str(corpus), "labels": LABELS},
        "features": {"cache_dir": str(corpus.parent / "cache"), "n_jobs": 1},
        "languages": ["en"],
        "modalities": ["audio"],
        "objectives": [{"name": "erm"}],
        "seeds": [0],
        "train": {"epochs": 3, "batch_size": 16, "hidden": 8},
        "evaluation": {"n_boot": 20, "n_perm": 20, "min_samples": 2},
        "n_jobs": 1,
    }
    data.update(overrides)
    return BenchmarkConfig.model_validate(data)


def test_kfold_pools_out_of_fold_predictions_and_resumes_per_fold(tmp_path, corpus, monkeypatch):
    from fairser.bench import run_benchmark
    from fairser.run import plan_runs

    cfg = _config(
        tmp_path,
        corpus,
        protocol="kfold",
        folds=3,
        objectives=[
            {"name": "erm", "label": "ERM"},
            {"name": "erm", "label": "ERM linear", "head": "linear"},
        ],
    )
    run_benchmark(cfg, progress=False)
    out = tmp_path / "out"
    store = ResultsStore(out / "results.jsonl")
    rows = store.rows()
    runs = plan_runs(cfg, n_folds=3)
    assert len(runs) == 6 and {r.fold for r in runs} == {0, 1, 2}
    assert all(f"__fold{r.fold}__" in r.run_id for r in runs)
    folds = [r for r in rows if isinstance(r.get("fold"), int)]
    pooled = [r for r in rows if r.get("fold") == "pooled"]
    assert len(folds) == 6 and len(pooled) == 2 and all(r["status"] == "ok" for r in rows)
    assert {r["run_id"] for r in pooled} == {r.pool_id for r in runs}
    assert {r.get("head") for r in pooled} == {None, "linear"}

    manifest = pd.read_csv(corpus)
    all_speakers = set(manifest["corpus"] + "/" + manifest["speaker"])
    for row in pooled:
        fold_rows = sorted((r for r in folds if r["pool_id"] == row["run_id"]), key=lambda r: r["fold"])
        # model selection on validation speakers drawn from the fold's training speakers, never its test ones
        tested = []
        for r in fold_rows:
            test, valid = set(r["fold_speakers"]["test"]), set(r["fold_speakers"]["valid"])
            assert test and len(valid) == 2 and not test & valid
            tested += r["fold_speakers"]["test"]
        assert sorted(tested) == sorted(all_speakers)  # every speaker tested exactly once
        # the pooled predictions: every utterance once
        pred = pd.read_csv(out / "runs" / row["run_id"] / "predictions.csv")
        assert len(pred) == len(manifest) and set(pred["id"]) == set(manifest["id"])
        assert pred.groupby("speaker")["fold"].nunique().max() == 1
        # pooled metrics equal a hand-pooled computation: concatenate the folds' predictions and evaluate
        hand = pd.concat(
            [pd.read_csv(out / "runs" / r["run_id"] / "predictions.csv") for r in fold_rows],
            ignore_index=True,
        )
        metrics, _ = evaluate_run(hand, labels=LABELS, evaluation=cfg.evaluation, seed=0)
        assert json.dumps(jsonable(metrics["domains"]), sort_keys=True) == json.dumps(
            row["domains"], sort_keys=True
        )  # gaps, CIs, p-values
        assert metrics["overall_uar"] == pytest.approx(row["overall_uar"])
        assert metrics["overall_weighted_f1"] == pytest.approx(row["overall_weighted_f1"])
        d = row["domains"][0]
        assert d["n"] == len(manifest) and d["weighted_f1_p_value"] is not None
        assert d["weighted_f1_ci_low"] <= d["weighted_f1_gap"] <= d["weighted_f1_ci_high"]

    # the tables read the pooled rows only (one per objective and seed)
    table = pd.read_csv(out / "table.csv")
    assert table.loc[table["language"] == "en", "ERM W-F1"].iloc[0] == pytest.approx(
        next(r for r in pooled if r["objective_label"] == "ERM")["domains"][0]["weighted_f1"]
    )

    # fairser audit on the folder reads the pooled predictions, not the single folds
    from fairser.audit.table import read_predictions

    audited = read_predictions(out)
    assert set(audited["run_id"]) == {r["run_id"] for r in pooled} and len(audited) == 2 * len(manifest)

    # a re-run of the finished grid reuses mdg.csv (same runs, same predictions, same power settings): no
    # simulation, and the table rendered from the reused rows is the same to the byte
    mdg = pd.read_csv(out / "mdg.csv")
    assert np.isfinite(mdg["mdg"]).all() and set(mdg["run_id"]) == {
        r.pool_id for r in runs if r.objective.display == "ERM"
    }
    text, mdg_csv = (out / "table.md").read_text(), (out / "mdg.csv").read_text()
    import fairser.metrics.power as power_module

    def simulate_again(*args, **kwargs):
        raise AssertionError("the minimum detectable gap was simulated again")

    with monkeypatch.context() as m:
        m.setattr(power_module, "minimum_detectable_gap", simulate_again)
        run_benchmark(cfg, progress=False)
        assert (out / "table.md").read_text() == text and (out / "mdg.csv").read_text() == mdg_csv
        # changed predictions (here: one flipped label) are simulated again
        path = out / "runs" / mdg["run_id"].iloc[0] / "predictions.csv"
        changed = pd.read_csv(path)
        changed.loc[0, "y_pred"] = next(x for x in LABELS if x != changed.loc[0, "y_pred"])
        changed.to_csv(path, index=False)
        with pytest.raises(AssertionError, match="simulated again"):
            run_benchmark(cfg, progress=False)

    # resume per fold: drop one fold's row and the pooled row of its cell; only that fold is trained again
    victim = runs[1]
    before = {r["run_id"]: r for r in rows}
    assert store.remove(victim.run_id) == 1 and store.remove(victim.pool_id) == 1
    run_benchmark(cfg, progress=False)
    after = {r["run_id"]: r for r in store.rows()}
    assert set(after) == set(before)
    for rid, r in before.items():
        if rid not in (victim.run_id, victim.pool_id):
            assert after[rid]["elapsed_s"] == r["elapsed_s"]  # finished folds were skipped
    assert json.dumps(after[victim.pool_id]["domains"]) == json.dumps(before[victim.pool_id]["domains"])


def test_loso_has_one_fold_per_speaker(tmp_path, corpus):
    from fairser.run import plan_runs, prepare_data

    cfg = _config(tmp_path, corpus, protocol="loso", valid_speakers=2)
    prepared = prepare_data(cfg, progress=False)
    assert len(prepared.folds) == 12
    runs = plan_runs(cfg, n_folds=len(prepared.folds))
    assert len(runs) == 12 and len({r.pool_id for r in runs}) == 1
    for f in prepared.folds:
        m = prepared.for_fold(f.index).manifest
        assert m.loc[m["split"] == "test", "speaker"].nunique() == 1
        assert m[m["split"] == "valid"].groupby("gender")["speaker"].nunique().to_dict() == {
            "female": 2,
            "male": 2,
        }
    assert any("leave-one-speaker-out" in n for n in prepared.notes)
    with pytest.raises(ValueError, match="number of folds"):
        plan_runs(cfg)


def test_loso_folds_skip_the_bootstrap_and_the_pooled_row_keeps_it(tmp_path, corpus):
    from fairser.bench import run_benchmark

    cfg = _config(tmp_path, corpus, protocol="loso", valid_speakers=1, train={"epochs": 1, "hidden": 8})
    run_benchmark(cfg, progress=False)
    rows = ResultsStore(tmp_path / "out" / "results.jsonl").rows()
    folds = [r for r in rows if isinstance(r.get("fold"), int)]
    (pooled,) = [r for r in rows if r.get("fold") == "pooled"]
    folds.sort(key=lambda r: r["fold"])
    assert len(folds) == 12 and all(r["status"] == "ok" for r in rows)
    for r in folds:  # one test speaker: no CI, no p-value, and the row says why
        assert all(d.get("weighted_f1_ci_low") is None for d in r["domains"])
        assert any("leave-one-speaker-out fold" in n for n in r["notes"])
    # the pooled evaluation is the full one, equal to evaluating the concatenated fold predictions
    d = pooled["domains"][0]
    assert d["weighted_f1_p_value"] is not None and d["weighted_f1_ci_low"] is not None
    hand = pd.concat(
        [pd.read_csv(tmp_path / "out" / "runs" / r["run_id"] / "predictions.csv") for r in folds],
        ignore_index=True,
    )
    metrics, _ = evaluate_run(hand, labels=LABELS, evaluation=cfg.evaluation, seed=0)
    assert json.dumps(jsonable(metrics["domains"]), sort_keys=True) == json.dumps(
        pooled["domains"], sort_keys=True
    )


def test_holdout_run_ids_do_not_see_the_new_fields(tmp_path, corpus):
    from fairser.run import plan_runs

    plain = _config(tmp_path, corpus)
    explicit = _config(
        tmp_path,
        corpus,
        protocol="holdout",
        folds=4,
        train={"epochs": 3, "batch_size": 16, "hidden": 8, "head": "mlp"},
    )
    assert [r.run_id for r in plan_runs(plain)] == [r.run_id for r in plan_runs(explicit)]
    assert all(r.fold is None and r.pool_id is None for r in plan_runs(plain))
    linear = _config(tmp_path, corpus, train={"epochs": 3, "batch_size": 16, "hidden": 8, "head": "linear"})
    assert plan_runs(linear)[0].run_id != plan_runs(plain)[0].run_id
    a = plan_runs(_config(tmp_path, corpus, protocol="kfold", folds=3))
    b = plan_runs(_config(tmp_path, corpus, protocol="kfold", folds=4))
    assert not {r.run_id for r in a} & {r.run_id for r in b}


def test_protocol_config_is_validated(tmp_path, corpus):
    with pytest.raises(ValueError, match="corpus.cross"):
        BenchmarkConfig.model_validate(
            {
                "protocol": "kfold",
                "corpus": {
                    "kind": "import",
                    "sources": [{"name": "emodb", "path": "x"}],
                    "cross": {"train": ["a"], "test": ["b"]},
                },
            }
        )
    with pytest.raises(ValueError, match="protocol"):
        _config(tmp_path, corpus, protocol="bootstrap")
    with pytest.raises(ValueError, match="folds"):
        _config(tmp_path, corpus, protocol="kfold", folds=1)


def test_linear_head_is_logistic_regression_and_runs_every_kind_of_objective(tmp_path, corpus):
    import torch

    from fairser.models import LinearHead, build_head
    from fairser.run import execute_run, plan_runs, prepare_data

    head = build_head(use_text=False, audio_dim=88, text_dim=0, n_classes=4, kind="linear")
    assert isinstance(head, LinearHead) and sum(p.numel() for p in head.parameters()) == 88 * 4 + 4
    x = torch.randn(5, 88)
    out = head(x)
    torch.testing.assert_close(out.logits, x @ head.classifier.weight.T + head.classifier.bias)
    fused = build_head(use_text=True, audio_dim=88, text_dim=16, n_classes=4, kind="linear")
    mask = torch.tensor([True, False, True, False, True])
    z = fused(x, torch.randn(5, 16), mask).embedding
    assert z.shape == (5, 104) and torch.equal(z[~mask, 88:], torch.zeros(2, 16))

    cfg = _config(
        tmp_path,
        corpus,
        train={"epochs": 2, "batch_size": 16, "head": "linear"},
        objectives=[
            {"name": "erm"},
            {"name": "minmaxgap"},
            {"name": "adversarial", "params": {"warmup_steps": 1}},
        ],
    )
    prepared = prepare_data(cfg, progress=False)
    for spec in plan_runs(cfg):
        row, pred, _ = execute_run(spec, prepared, cfg)
        assert row["status"] == "ok" and len(pred) == int((prepared.manifest["split"] == "test").sum())


def test_per_speaker_normalisation_standardises_each_speaker(tmp_path, corpus):
    from fairser.run import prepare_data
    from fairser.run.prepare import normaliser

    cfg = _config(tmp_path, corpus, train={"epochs": 2, "normalise": "per_speaker"})
    prepared = prepare_data(cfg, progress=False)
    rows = np.arange(len(prepared.manifest))
    x = normaliser(prepared, cfg)(prepared.audio, rows)
    varying = prepared.audio.std(0) > 1e-3
    for _, idx in prepared.manifest.groupby("speaker").indices.items():
        np.testing.assert_allclose(x[idx].mean(0), 0, atol=1e-4)
        sd = x[idx][:, varying].std(0)
        assert np.all(
            (np.abs(sd - 1) < 1e-3) | (sd < 1e-3)
        )  # unit std (or a constant feature of the speaker)
    assert any("per_speaker" in n and "transductive" in n for n in prepared.notes)


def test_target_original_keeps_each_corpus_labels():
    cfg = BenchmarkConfig.model_validate(
        {"corpus": {"kind": "import", "target": "original", "sources": [{"name": "emodb", "path": "x"}]}}
    )
    assert cfg.corpus.labels == ("anger", "boredom", "disgust", "fear", "happiness", "sadness", "neutral")
    with pytest.raises(ValueError, match="label vocabulary"):
        BenchmarkConfig.model_validate(
            {
                "corpus": {
                    "kind": "import",
                    "target": "original",
                    "sources": [{"name": "generic", "path": "x"}],
                }
            }
        )

"""The run pipeline: model selection, one execute_run, views from the grouper, any sensitive attribute."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from assets.offline import single_thread  # noqa: F401  (fixture)
from assets.zoo_corpus import tiny_corpus
from fairser.config import BenchmarkConfig
from fairser.train import ModelSelection

pytestmark = pytest.mark.usefixtures("single_thread")

AGES = ("18-39", "40-59", "60+")


def test_model_selection_keeps_the_strictly_best_epoch_and_stops_after_patience() -> None:
    scores = [0.50, 0.60, 0.60, 0.55, 0.70, 0.65, 0.64, 0.69]
    sel = ModelSelection(patience=2)
    kept, stopped_at = [], None
    for epoch, s in enumerate(scores):
        kept.append(sel.update(epoch, s))
        if sel.stop:
            stopped_at = epoch
            break
    # epoch 2 ties epoch 1 (not better), epoch 3 is worse: two bad epochs in a row -> stop after epoch 3
    assert kept == [True, True, False, False] and stopped_at == 3
    assert (sel.best_epoch, sel.best_score, sel.bad_epochs) == (1, 0.60, 2)

    sel = ModelSelection(patience=3)
    for epoch, s in enumerate(scores):
        sel.update(epoch, s)
        if sel.stop:
            break
    # 0.70 at epoch 4 resets the count; 0.65, 0.64, 0.69 are three bad epochs -> stop after epoch 7
    assert (epoch, sel.best_epoch, sel.best_score) == (7, 4, 0.70)

    last = ModelSelection(patience=1, keep="last")
    assert all(last.update(e, s) for e, s in enumerate(scores)) and not last.stop
    assert (last.best_epoch, last.best_score) == (7, 0.69)  # the returned (last) epoch
    with pytest.raises(ValueError, match="keep"):
        ModelSelection(patience=1, keep="first")


def _age_manifest(tmp_path) -> pd.DataFrame:
    """A tiny manifest (one corpus, one language) with an ``age_band`` column of three values.

    Speakers ``a_<m|f><s>`` (train s = 0, 3; valid 1, 4; test 2, 5); age band ``AGES[(s // 3 + 2 * female) % 3]``:
    males 18-39 / 40-59, females 60+ / 18-39; speaker a_m4 (valid) has no age band (unknown).
    """
    path = tiny_corpus(tmp_path / "corpus", speakers_per_gender=6, utterances=1)
    manifest = pd.read_csv(path)
    s = manifest["speaker"].str[3:].astype(int)
    female = (manifest["gender"] == "female").astype(int)
    manifest["age_band"] = [AGES[(i // 3 + 2 * f) % 3] for i, f in zip(s, female, strict=True)]
    manifest.loc[manifest["speaker"] == "a_m4", "age_band"] = "unknown"
    manifest.to_csv(path, index=False)
    return manifest


def _config(tmp_path, **overrides) -> BenchmarkConfig:
    data = {
        "output_dir": str(tmp_path / "out"),
        "corpus": {
            "kind": "manifest",
            "path": str(tmp_path / "corpus" / "manifest.csv"),
            "labels": ["anger", "sadness", "neutral", "joy"],
        },
        "features": {"cache_dir": str(tmp_path / "cache"), "n_jobs": 1},
        "languages": ["en"],
        "modalities": ["audio"],
        "objectives": [{"name": "erm"}],
        "seeds": [0],
        "train": {"epochs": 2, "batch_size": 16, "hidden": 8},
        "evaluation": {"n_boot": 10, "n_perm": 10, "min_samples": 2},
        "n_jobs": 1,
    }
    data.update(overrides)
    return BenchmarkConfig.model_validate(data)


def test_views_number_domains_and_sensitive_values_with_the_grouper(tmp_path) -> None:
    from fairser.run import prepare_data
    from fairser.run.backends import FeatureBackend
    from fairser.run.views import run_grouper, split_views

    manifest = _age_manifest(tmp_path)
    for sensitive, values in (
        (("age_band",), AGES),
        (("gender", "age_band"), ("male × 18-39", "male × 40-59", "female × 18-39", "female × 60+")),
    ):
        cfg = _config(tmp_path, sensitive=list(sensitive), modalities=["audio", "audio+text"])
        prepared = prepare_data(cfg, progress=False)
        grouper = run_grouper(prepared.manifest, setting="joint", config=cfg)
        assert grouper.values == values and grouper.domains == (("en", "audio"), ("en", "audio+text"))
        views = split_views(
            prepared.manifest,
            setting="joint",
            config=cfg,
            grouper=grouper,
            labels=prepared.labels,
            make=FeatureBackend(prepared, cfg).dataset,
        )
        train, meta = views["train"]
        n = int((manifest["split"] == "train").sum())
        assert len(train) == 2 * n and train.n_values == len(values)  # once per modality (joint)
        np.testing.assert_array_equal(train.domain, np.repeat([0, 1], n))  # language x modality order
        value = (
            meta[list(sensitive)]
            .astype(str)
            .agg(" × ".join, axis=1)
            .map({v: i for i, v in enumerate(values)})
        )
        np.testing.assert_array_equal(train.sensitive, value.to_numpy())
        np.testing.assert_array_equal(train.group, len(values) * train.domain + train.sensitive)
        valid = views["valid"][0]
        unknown = (views["valid"][1]["speaker"] == "a_m4").to_numpy()
        assert unknown.any() and (valid.sensitive[unknown] == -1).all() and (valid.group[unknown] == -1).all()
        assert (valid.sensitive[~unknown] >= 0).all()


def test_execute_run_with_cached_features_gives_the_row_and_predictions(tmp_path) -> None:
    from fairser.run import execute_run, plan_runs, prepare_data

    _age_manifest(tmp_path)
    cfg = _config(
        tmp_path,
        objectives=[{"name": "minmaxgap"}, {"name": "adversarial", "params": {"warmup_steps": 2}}],
        evaluation={"n_boot": 10, "n_perm": 10, "min_samples": 2, "gender_probe": True},
    )
    prepared = prepare_data(cfg, progress=False)
    mmg, adv = plan_runs(cfg)
    row, pred, logs = execute_run(mmg, prepared, cfg)
    n_test = int((prepared.manifest["split"] == "test").sum())
    assert row["status"] == "ok" and row["run_id"] == mmg.run_id and row["epochs_run"] == 2
    assert len(pred) == n_test and set(pred["gender"]) == {"male", "female"}
    assert [d["language"] for d in row["domains"]] == ["en"] and row["domains"][0]["n"] == n_test
    assert {"lambda", "R"} <= set(logs[0]) and row["final_lambda"] == logs[-1]["lambda"]
    assert 0 <= row["gender_probe"]["accuracy"] <= 1 and "sensitive" not in row  # gender: the default row
    again, pred_again, _ = execute_run(mmg, prepared, cfg)  # a run is a function of its spec
    pd.testing.assert_frame_equal(pred, pred_again)
    assert json.dumps(again["domains"]) == json.dumps(row["domains"])  # (NaN != NaN: compare the JSON)
    # an objective that requires the embedding width gets it from the run's model (the head's hidden width)
    from fairser.run.execute import derived_params

    assert derived_params(adv.objective, embed_dim=lambda: 8) == {"embed_dim": 8}
    row, _, logs = execute_run(adv, prepared, cfg)
    assert row["status"] == "ok" and {"alpha", "sensitive_loss"} <= set(logs[-1])


@pytest.mark.parametrize(
    ("sensitive", "values"),
    [
        (["age_band"], list(AGES)),
        (["gender", "age_band"], ["male × 18-39", "male × 40-59", "female × 18-39", "female × 60+"]),
    ],
)
def test_a_k_valued_and_an_intersectional_attribute_run_through_the_benchmark(tmp_path, sensitive, values):
    from fairser.bench import run_benchmark

    _age_manifest(tmp_path)
    cfg = _config(
        tmp_path,
        sensitive=sensitive,
        objectives=[{"name": "erm"}, {"name": "minmaxgap"}, {"name": "groupdro"}],
    )
    run_benchmark(cfg, progress=False)
    out = tmp_path / "out"
    meta = json.loads((out / "benchmark.json").read_text())
    assert meta["failures"] == [] and meta["n_finished"] == 3
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert all(r["status"] == "ok" for r in rows)
    assert all(r["sensitive"] == {"columns": sensitive, "values": values} for r in rows)
    mmg = next(r for r in rows if r["objective"] == "minmaxgap")
    assert mmg["final_lambda"] is not None and np.isfinite(mmg["mean_R_last_epoch"])
    # the run ids differ from the same grid on gender (so results of different attributes never mix)
    from fairser.run import plan_runs

    gender_ids = {r.run_id for r in plan_runs(cfg.model_copy(update={"sensitive": ("gender",)}))}
    assert gender_ids.isdisjoint(r["run_id"] for r in rows)


def test_minmaxgap_issue13_options_run_end_to_end_and_rows_state_the_head(tmp_path) -> None:
    """All four issue-13 options together through execute_run (the run supplies the training speakers for
    the held-out folds); every row states the head settings; ``epoch_selection: last`` trains every epoch."""
    from fairser.run import execute_run, plan_runs, prepare_data

    tiny_corpus(tmp_path / "corpus", speakers_per_gender=6, utterances=2)
    params = {
        "noise": "permutation",
        "group_loss": "class_balanced",
        "side": "worse_only",
        "heldout_folds": 2,
    }
    cfg = _config(
        tmp_path,
        objectives=[{"name": "erm"}, {"name": "minmaxgap", "params": params}],
        train={
            "epochs": 3,
            "batch_size": 16,
            "hidden": 8,
            "dropout": 0.4,
            "weight_decay": 0.05,
            "epoch_selection": "last",
            "patience": 1,
        },
    )
    prepared = prepare_data(cfg, progress=False)
    erm, mmg = plan_runs(cfg)
    row, _, logs = execute_run(mmg, prepared, cfg)
    assert row["status"] == "ok" and row["epochs_run"] == 3 and row["best_epoch"] == 2
    assert {"R_null", "R_excess", "heldout_fold"} <= set(logs[0])
    assert [s["heldout_fold"] for s in logs if s["epoch"] in (0, 1, 2)][::1] == [
        float(s["epoch"] % 2) for s in logs
    ]
    assert np.isfinite(row["mean_R_null_last_epoch"])
    settings = row["head_settings"]
    assert settings["dropout"] == 0.4 and settings["weight_decay"] == 0.05
    assert settings["epoch_selection"] == "last" and settings["sampler"] == "stratified"
    erm_row, _, _ = execute_run(erm, prepared, cfg)
    assert erm_row["head_settings"] == settings  # the same head for every objective of the comparison

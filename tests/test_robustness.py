"""``fairser robustness`` and training-time degradation (issue 15): the paired change on a hand-made example,
the command end to end on a tiny corpus (re-fit checked exactly, warm re-run extracts nothing, refusal of a
run that does not reproduce), and ``degrade_augment``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from assets.offline import single_thread  # noqa: F401  (fixture)
from assets.zoo_corpus import tiny_corpus
from fairser.config import BenchmarkConfig
from fairser.errors import UserError
from fairser.metrics.paired import paired_delta

pytestmark = pytest.mark.usefixtures("single_thread")

LABELS = ["anger", "sadness", "neutral", "joy"]


def _table(pred_female_b: str) -> pd.DataFrame:
    """2 male + 2 female speakers, each one 'a' and one 'b' utterance; all correct except the female
    speakers' 'b' utterances, predicted ``pred_female_b``."""
    rows = []
    for spk, gender in (("m1", "male"), ("m2", "male"), ("f1", "female"), ("f2", "female")):
        for y in ("a", "b"):
            pred = pred_female_b if (gender == "female" and y == "b") else y
            rows.append({"id": f"{spk}_{y}", "speaker": spk, "gender": gender, "y_true": y, "y_pred": pred})
    return pd.DataFrame(rows)


def test_paired_delta_on_a_hand_made_example():
    clean, degraded = _table("b"), _table("a")
    res = paired_delta(clean=[clean], degraded=[degraded], labels=["a", "b"], n_boot=300, n_perm=2000, seed=0)
    # degraded confusion (rows true a, b): [[4, 0], [2, 2]]: F1(a) = 2(2/3)/(5/3) = 0.8, F1(b) = 2/3, W-F1 = 11/15
    # female alone [[2, 0], [2, 0]]: F1(a) = 2/3, F1(b) = 0 -> W-F1 = 1/3; male W-F1 = 1: gap 2/3 (clean 0)
    wf1, gap = res.row("weighted_f1"), res.row("weighted_f1_gap")
    assert (wf1["clean"], wf1["degraded"]) == pytest.approx((1.0, 11 / 15))
    assert wf1["delta"] == pytest.approx(11 / 15 - 1)
    assert gap["delta"] == pytest.approx(2 / 3)
    assert res.row("weighted_f1_female")["delta"] == pytest.approx(1 / 3 - 1)
    assert res.row("weighted_f1_male")["delta"] == pytest.approx(0.0)
    # the signed gap (female − male) goes 0 -> 1/3 - 1: women lost 2/3 more; its CI is that point (every
    # speaker of a gender changes alike) and its p uses the shuffled-gender null (~ 1/3, as the gap's)
    signed = res.row("weighted_f1_signed_gap")
    assert (signed["clean"], signed["delta"]) == pytest.approx((0.0, -2 / 3))
    assert (signed["ci_low"], signed["ci_high"]) == pytest.approx((-2 / 3, -2 / 3))
    assert 0.28 < signed["p_value"] < 0.39
    # within each gender every speaker changes alike, so every paired resample gives the same change
    assert (wf1["ci_low"], wf1["ci_high"]) == pytest.approx((11 / 15 - 1, 11 / 15 - 1))
    assert (gap["ci_low"], gap["ci_high"]) == pytest.approx((2 / 3, 2 / 3))
    # a gap's null shuffles gender among the 4 speakers (pairs kept): of the 6 assignments, {f1, f2} and
    # {m1, m2} as "female" give |change| 2/3; the 4 mixed ones give 0 (both groups change alike): p ~ 1/3
    assert 0.28 < gap["p_value"] < 0.39
    # a metric's own change keeps the clean/degraded swap null: only the female speakers changed, so a swap
    # pattern reaches |delta| when both are unswapped or both swapped (probability 1/2)
    assert 0.45 < res.row("weighted_f1_female")["p_value"] < 0.55
    per_class = res.per_class.set_index(["group", "label"])
    assert per_class.loc[("female", "b"), "delta"] == pytest.approx(-1.0)
    assert per_class.loc[("female", "a"), "delta"] == pytest.approx(0.0)
    assert per_class.loc[("male", "b"), "delta"] == pytest.approx(0.0)
    assert (per_class.loc[("female", "b"), "ci_low"], per_class.loc[("female", "b"), "ci_high"]) == (
        -1.0,
        -1.0,
    )
    # the class x gender interaction: women's recall change of 'b' (-1) minus men's (0), CI [-1, -1] (every
    # speaker of a gender changes alike); the shuffled-gender null reaches |-1| for {f1, f2} or {m1, m2}: p ~ 1/3
    fb, mb = per_class.loc[("female", "b")], per_class.loc[("male", "b")]
    assert (fb["delta_vs_other"], mb["delta_vs_other"]) == pytest.approx((-1.0, 1.0))
    assert (fb["delta_vs_other_ci_low"], fb["delta_vs_other_ci_high"]) == pytest.approx((-1.0, -1.0))
    assert 0.28 < fb["delta_vs_other_p"] < 0.39
    assert per_class.loc[("female", "a"), "delta_vs_other"] == pytest.approx(0.0)
    assert per_class.loc[("female", "a"), "delta_vs_other_p"] == 1.0
    # no change at all: delta 0, CI [0, 0], p = 1
    same = paired_delta(clean=[clean], degraded=[clean.copy()], labels=["a", "b"], n_boot=50, n_perm=50)
    assert same.row("weighted_f1")["delta"] == 0 and same.row("weighted_f1")["p_value"] == 1.0
    # two seeds: the change is averaged over them
    two = paired_delta(
        clean=[clean, clean], degraded=[degraded, clean], labels=["a", "b"], n_boot=20, n_perm=20
    )
    assert two.row("weighted_f1")["delta"] == pytest.approx((11 / 15 - 1) / 2)
    with pytest.raises(ValueError, match="different utterances"):
        paired_delta(clean=[clean], degraded=[degraded.iloc[::-1]], labels=["a", "b"])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return tiny_corpus(tmp_path_factory.mktemp("robust") / "corpus", speakers_per_gender=6, utterances=2)


def _config(tmp_path, corpus, **overrides) -> BenchmarkConfig:
    data = {
        "output_dir": str(tmp_path / "out"),
        "corpus": {"kind": "manifest", "path": str(corpus), "labels": LABELS},
        "features": {"cache_dir": str(corpus.parent / "cache"), "n_jobs": 1},
        "languages": ["en"],
        "modalities": ["audio"],
        "objectives": [{"name": "erm"}, {"name": "minmaxgap", "label": "MMG"}],
        "seeds": [0, 1],
        "train": {"epochs": 3, "batch_size": 16, "hidden": 8},
        "evaluation": {"n_boot": 20, "n_perm": 20, "min_samples": 2},
        "n_jobs": 1,
    }
    data.update(overrides)
    return BenchmarkConfig.model_validate(data)


def test_robustness_end_to_end_refits_checks_and_caches(tmp_path, corpus):
    from fairser.bench import run_benchmark
    from fairser.bench.robustness import evaluate_robustness

    cfg = _config(tmp_path, corpus, objectives=[{"name": "erm"}])
    run_benchmark(cfg, progress=False)
    out = tmp_path / "out"
    conditions = ["resample:rate=4000", "noise:kind=white,snr_db=0"]
    res = evaluate_robustness(out, conditions=conditions, n_boot=30, n_perm=30, progress=False)
    table = res.table
    assert len(table) == 2  # conditions (one objective, setting, language, modality)
    assert set(table["n_seeds"]) == {2} and set(table["condition"]) == {"resample 4kHz", "white noise 0dB"}
    for col in ("delta_weighted_f1", "delta_weighted_f1_gap", "delta_uar"):
        assert table[col].notna().all()
        assert (table[f"{col}_ci_low"] <= table[col] + 1e-12).all() and (
            table[col] <= table[f"{col}_ci_high"] + 1e-12
        ).all()
    assert np.allclose(table["weighted_f1_degraded"] - table["weighted_f1_clean"], table["delta_weighted_f1"])
    conds = res.conditions.set_index("condition")
    assert conds.loc["white noise 0dB", "snr_db_mean"] == pytest.approx(0.0, abs=1e-3)
    assert conds.loc["white noise 0dB", "n_extracted"] == conds.loc["white noise 0dB", "n_files"] == 32
    # the benchmark's own evaluation of every run, clean included: the clean rows equal the stored results
    runs = res.runs
    assert set(runs["condition"]) == {"clean", "resample 4kHz", "white noise 0dB"}
    per_class = pd.read_csv(out / "robustness_per_class.csv")
    assert len(per_class) == 2 * 2 * len(LABELS)  # conditions x genders x classes
    for name in ("robustness.md", "figures/robustness_curves.png", "figures/robustness_per_class.png"):
        assert (out / name).is_file()
    # the pooled predictions of every cell and condition (clean included): 32 test files x 2 seeds x 3 conditions
    stored = pd.read_csv(out / "robustness_predictions.csv.gz")
    assert len(stored) == 32 * 2 * 3 and set(stored["condition"]) == {
        "clean",
        "resample 4kHz",
        "white noise 0dB",
    }
    assert stored.groupby(["condition", "seed"])["id"].nunique().eq(32).all()
    md = (out / "robustness.md").read_text()
    assert "ΔW-F1" in md and "## Which classes lose most recall" in md
    # the ranking: per cell and group, rank 1 is the class whose mean recall change is lowest
    from fairser.report.robustness import class_ranking

    ranking = class_ranking(per_class)
    for _, sub in ranking.groupby(["objective", "setting", "language", "modality", "group"]):
        assert sub.loc[sub["rank"] == 1, "mean_delta"].min() == sub["mean_delta"].min()
        assert (sub["n_conditions"] == len(conditions)).all()
    means = per_class.groupby(["objective", "setting", "language", "modality", "group", "label"])[
        "delta"
    ].mean()
    assert np.allclose(ranking.set_index(means.index.names)["mean_delta"].loc[means.index], means)
    from fairser.report import build_report

    report = build_report(out, n_boot=10)  # the report gains a robustness section
    html = report.html.read_text()
    assert "Robustness to codecs, channels and noise" in html and "white noise 0dB" in html
    # a warm re-run extracts nothing and gives the same table
    again = evaluate_robustness(out, conditions=conditions, n_boot=30, n_perm=30, progress=False)
    assert (again.conditions["n_extracted"] == 0).all()
    pd.testing.assert_frame_equal(again.table, table)
    # conditions add up over calls with the same settings: the noise alone again keeps the earlier resample
    # rows and replaces the noise rows (same numbers, no duplicates); other settings or keep_previous=False
    # start anew
    noise_only = evaluate_robustness(out, conditions=conditions[1:], n_boot=30, n_perm=30, progress=False)
    pd.testing.assert_frame_equal(noise_only.table, table, check_exact=False, rtol=1e-12)
    assert len(pd.read_csv(out / "robustness_per_class.csv")) == len(per_class)
    assert set(noise_only.runs["condition"]) == {"clean", "resample 4kHz", "white noise 0dB"}
    assert len(noise_only.runs) == len(runs)
    assert "resample 4kHz" in (out / "robustness.md").read_text()
    import json

    recorded = json.loads((out / "robustness.json").read_text())["conditions"]
    assert [c["table_label"] for c in recorded] == ["resample 4kHz", "white noise 0dB"]
    other = evaluate_robustness(out, conditions=conditions[1:], n_boot=20, n_perm=30, progress=False)
    assert list(other.table["condition"]) == ["white noise 0dB"]
    fresh = evaluate_robustness(
        out, conditions=conditions[:1], n_boot=20, n_perm=30, keep_previous=False, progress=False
    )
    assert list(fresh.table["condition"]) == ["resample 4kHz"]  # the noise rows of `other` are not kept
    # a run whose stored predictions the re-fit does not reproduce is refused, by name
    run_dir = next(p for p in (out / "runs").iterdir() if "seed1" in p.name)
    pred = pd.read_csv(run_dir / "predictions.csv")
    pred.loc[0, "prob_anger"] += 1e-3
    pred.to_csv(run_dir / "predictions.csv", index=False)
    with pytest.raises(UserError, match=f"re-fitting run {run_dir.name} does not reproduce"):
        evaluate_robustness(out, conditions=conditions[:1], n_boot=5, n_perm=5, progress=False)
    with pytest.raises(UserError, match="unknown degradation condition"):
        evaluate_robustness(out, conditions=["mp4:bitrate_kbps=3"], progress=False)


def test_degrade_augment_replaces_a_seeded_fraction_of_training_features(tmp_path, corpus):
    from fairser.run import plan_runs, prepare_data
    from fairser.run.execute import fit_run

    aug = {"fraction": 0.5, "conditions": [{"name": "noise", "params": {"kind": "white", "snr_db": 0}},
                                           {"name": "resample", "params": {"rate": 4000}}]}  # fmt: skip
    plain, cfg = (
        _config(tmp_path, corpus, seeds=[0]),
        _config(tmp_path, corpus, seeds=[0], degrade_augment=aug),
    )
    assert plan_runs(plain)[0].run_id != plan_runs(cfg)[0].run_id  # a new input, a new run id
    prepared = prepare_data(cfg, progress=False)
    spec = plan_runs(cfg)[1]  # MinMaxGAP: any objective
    fitted = fit_run(spec, prepared, cfg)
    record = fitted.augmentation
    n_train = int((prepared.manifest["split"] == "train").sum())
    assert record["n_utterances"] == n_train and record["n_degraded"] == round(0.5 * n_train)
    assert sum(record["per_condition"].values()) == record["n_degraded"] and record["n_failed"] == 0
    clean = fit_run(plan_runs(plain)[1], prepared, plain).context.train.audio
    changed = ~np.isclose(fitted.context.train.audio, clean).all(axis=1)
    assert changed.sum() == record["n_degraded"]
    again = fit_run(spec, prepared, cfg)  # seeded: the same utterances, conditions and features
    np.testing.assert_array_equal(again.context.train.audio, fitted.context.train.audio)
    with pytest.raises(ValueError, match="degrade_augment"):
        _config(tmp_path, corpus, degrade_augment={"fraction": 0.5, "conditions": []})


def test_class_ranking_skips_a_class_a_group_never_has():
    """EmoDB has no 'surprise': its recall change is NaN for both genders and the ranking leaves it out."""
    from fairser.report.robustness import class_ranking, render_class_changes

    rows = []
    for condition, (anger, sad) in {"mp3 16k": (-0.30, -0.10), "opus 6k": (-0.10, -0.20)}.items():
        for group in ("male", "female"):
            for label, delta in (("anger", anger), ("sadness", sad), ("surprise", np.nan)):
                rows.append({"objective": "ERM", "setting": "audio", "language": "de", "modality": "audio",
                             "condition": condition, "group": group, "label": label, "delta": delta,
                             "ci_low": delta, "ci_high": delta, "n": 0 if label == "surprise" else 5,
                             "delta_vs_other": 0.0, "delta_vs_other_ci_low": 0.0, "delta_vs_other_ci_high": 0.0,
                             "delta_vs_other_p": 1.0})  # fmt: skip
    ranking = class_ranking(pd.DataFrame(rows)).set_index(["group", "label"])
    assert "surprise" not in ranking.index.get_level_values("label")
    # anger: mean(-0.30, -0.10) = -0.20 (worst under mp3); sadness: -0.15: anger ranks first
    assert ranking.loc[("male", "anger"), "mean_delta"] == pytest.approx(-0.20)
    assert ranking.loc[("male", "anger"), "rank"] == 1 and ranking.loc[("male", "sadness"), "rank"] == 2
    assert ranking.loc[("female", "anger"), "worst_condition"] == "mp3 16k"
    assert "| surprise |" not in render_class_changes(pd.DataFrame(rows)).split("### Recall change")[0]

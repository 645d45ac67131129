"""evaluate_predictions on synthetic predictions tables with known structure (planted gaps, correlated speakers)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score

from fairser.metrics import GAP_METRICS, evaluate_predictions

LABELS = ["anger", "happiness", "neutral", "sadness"]


def make_predictions(
    *,
    domains=(("en", "audio"), ("de", "audio")),
    speakers_per_gender=8,
    utts_per_speaker=20,
    acc=None,
    speaker_sd=0.0,
    seed=0,
):
    """A predictions table; each speaker has an accuracy drawn around its gender's (``acc``), spread by
    ``speaker_sd``, so utterances of one speaker are correlated when ``speaker_sd`` > 0."""
    acc = acc or {"male": 0.7, "female": 0.7}
    rng = np.random.default_rng(seed)
    rows = []
    for lang, mod in domains:
        for gender, base in acc.items():
            for s in range(speakers_per_gender):
                spk = f"{lang}-{gender}-{s}"
                p_correct = float(np.clip(base + rng.normal(0, speaker_sd), 0.02, 0.98))
                for u in range(utts_per_speaker):
                    t = int(rng.integers(len(LABELS)))
                    wrong = (t + int(rng.integers(1, len(LABELS)))) % len(LABELS)
                    p = t if rng.random() < p_correct else wrong
                    rows.append(
                        {
                            "id": f"{spk}-{u}",
                            "y_true": LABELS[t],
                            "y_pred": LABELS[p],
                            "gender": gender,
                            "language": lang,
                            "modality": mod,
                            "speaker": spk,
                            "seed": 0,
                        }
                    )
    return pd.DataFrame(rows)


def _row(frame, **keys):
    mask = np.ones(len(frame), dtype=bool)
    for k, v in keys.items():
        mask &= frame[k].to_numpy() == v
    out = frame[mask]
    assert len(out) == 1, keys
    return out.iloc[0]


def test_point_estimates_equal_sklearn_and_unknown_gender_counts_only_overall():
    df = make_predictions(seed=1)
    df.loc[df.index[:30], "gender"] = "unknown"
    df.loc[df.index[30:35], "gender"] = np.nan
    ev = evaluate_predictions(df, labels=LABELS, n_boot=0, n_perm=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wf1 = f1_score(df.y_true, df.y_pred, average="weighted", labels=LABELS, zero_division=0)
        assert _row(ev.table("overall"), metric="weighted_f1").value == pytest.approx(wf1)
        assert _row(ev.table("overall"), metric="uar").n == len(df)
        for (lang, gender), sub in df[df.gender.isin(["male", "female"])].groupby(["language", "gender"]):
            r = _row(ev.table("by_group"), language=lang, modality="audio", gender=gender, metric="uar")
            assert r.value == pytest.approx(balanced_accuracy_score(sub.y_true, sub.y_pred))
            assert r.n == len(sub)
            assert r.n_speakers == sub.speaker.nunique()
    # the 35 unknown-gender rows are in no group but in the domain and overall rows
    assert ev.table("by_group")[ev.table("by_group").metric == "accuracy"].n.sum() == len(df) - 35
    assert ev.table("by_domain")[ev.table("by_domain").metric == "accuracy"].n.sum() == len(df)
    assert any("35 row(s) with unknown gender" in n for n in ev.notes)
    assert set(ev.table("by_group").gender) == {"male", "female"}
    assert (
        np.isnan(ev.table("by_group").ci_low).all() and np.isnan(ev.gaps.p_value).all()
    )  # n_boot = n_perm = 0


def test_gaps_signed_gaps_per_class_and_summary_are_consistent():
    df = make_predictions(
        acc={"male": 0.8, "female": 0.55}, domains=[("en", "audio"), ("de", "audio")], seed=2
    )
    ev = evaluate_predictions(df, labels=LABELS, n_boot=200, n_perm=200)
    assert set(ev.gaps.metric) == set(GAP_METRICS)
    for lang in ("en", "de"):
        m = _row(ev.table("by_group"), language=lang, gender="male", metric="macro_f1").value
        f = _row(ev.table("by_group"), language=lang, gender="female", metric="macro_f1").value
        g = _row(ev.gaps, language=lang, metric="macro_f1")
        assert g.gap == pytest.approx(abs(m - f))
        assert g.signed_gap == pytest.approx(f - m) and g.signed_gap < 0  # female worse, as planted
        assert g.signed_ci_high < 0
        # per-class TPR by gender = sklearn recall within the group
        sub = df[(df.language == lang) & (df.gender == "female")]
        recall = recall_score(sub.y_true, sub.y_pred, labels=LABELS, average=None, zero_division=0)
        pc = ev.per_class[ev.per_class.language == lang].set_index("class").loc[LABELS]
        np.testing.assert_allclose(pc.tpr_female, recall)
        np.testing.assert_allclose(pc.tpr_gap, np.abs(pc.tpr_male - pc.tpr_female))
        assert _row(ev.gaps, language=lang, metric="deo_max").gap == pytest.approx(pc.tpr_gap.max())
        assert _row(ev.gaps, language=lang, metric="dsp_mean").gap == pytest.approx(pc.sp_gap.mean())
    for metric in GAP_METRICS:
        gaps = ev.gaps[ev.gaps.metric == metric].set_index("language").gap
        s = _row(ev.summary, metric=metric)
        assert s.mean_gap == pytest.approx(gaps.mean())
        assert s.worst_gap == pytest.approx(gaps.max())
        assert s.worst_domain == f"{gaps.idxmax()} / audio"
        assert s.n_domains == 2
    # fairlearn vocabulary
    diff = ev.difference(metric="uar")
    assert diff.loc[("en", "audio"), "uar"] == pytest.approx(_row(ev.gaps, language="en", metric="uar").gap)
    gmin = ev.group_min(metric="uar")
    assert gmin.loc[("de", "audio"), "uar"] == pytest.approx(
        ev.table("by_group").query("language == 'de' and metric == 'uar'").value.min()
    )


def test_ci_contains_estimate_and_narrows_with_more_data():
    small = evaluate_predictions(make_predictions(speakers_per_gender=6, utts_per_speaker=10), n_perm=0)
    large = evaluate_predictions(make_predictions(speakers_per_gender=40, utts_per_speaker=10), n_perm=0)
    for ev in (small, large):
        for frame in (ev.table("overall"), ev.table("by_domain"), ev.table("by_group")):
            assert (frame.ci_low <= frame.value + 1e-12).all() and (
                frame.value <= frame.ci_high + 1e-12
            ).all()
        acc = ev.gaps[ev.gaps.metric == "accuracy"]
        assert (acc.signed_ci_low <= acc.signed_gap).all() and (acc.signed_gap <= acc.signed_ci_high).all()
    width = {
        name: (ev.table("by_group").ci_high - ev.table("by_group").ci_low).mean()
        for name, ev in (("s", small), ("l", large))
    }
    assert width["l"] < 0.6 * width["s"]
    w_overall = [(ev.table("overall").ci_high - ev.table("overall").ci_low).mean() for ev in (small, large)]
    assert w_overall[1] < 0.6 * w_overall[0]


def test_speaker_bootstrap_is_wider_than_utterance_bootstrap_for_correlated_speakers():
    df = make_predictions(speakers_per_gender=10, utts_per_speaker=40, speaker_sd=0.25, seed=3)
    kw = dict(labels=LABELS, n_boot=500, n_perm=0)
    spk = evaluate_predictions(df, resample="speaker", **kw)
    utt = evaluate_predictions(df, resample="utterance", **kw)
    w_spk = (spk.table("by_group").ci_high - spk.table("by_group").ci_low).to_numpy()
    w_utt = (utt.table("by_group").ci_high - utt.table("by_group").ci_low).to_numpy()
    assert (w_spk > w_utt).all()
    assert w_spk.mean() > 1.5 * w_utt.mean()
    assert utt.settings["resample_used"] == "utterance" and spk.settings["resample_used"] == "speaker"
    pd.testing.assert_series_equal(
        spk.table("by_group").value, utt.table("by_group").value
    )  # same estimates, other CIs


def test_permutation_p_value_small_for_planted_gap():
    df = make_predictions(acc={"male": 0.85, "female": 0.45}, speakers_per_gender=10, seed=4)
    ev = evaluate_predictions(df, labels=LABELS, n_boot=0, n_perm=500)
    p = ev.gaps.set_index(["language", "metric"]).p_value
    for lang in ("en", "de"):
        for metric in ("accuracy", "weighted_f1", "macro_f1", "uar", "deo_mean"):
            assert p[(lang, metric)] < 0.01, (lang, metric)
    assert _row(ev.summary, metric="accuracy").mean_gap_p_value < 0.01


def test_permutation_p_value_large_without_gap():
    # Female speakers are exact copies of male speakers: every gap is 0, so no permutation is less extreme.
    male = make_predictions(acc={"male": 0.6}, speakers_per_gender=8, speaker_sd=0.2, seed=5)
    female = male.assign(
        gender="female",
        speaker=male.speaker.str.replace("male", "female"),
        id=male.id.str.replace("male", "female"),
    )
    ev = evaluate_predictions(pd.concat([male, female]), labels=LABELS, n_boot=0, n_perm=300)
    assert (ev.gaps.gap.abs() < 1e-12).all()
    assert (ev.gaps.p_value > 0.2).all()


def test_one_gender_domain_and_tiny_group_give_nan_with_reason():
    df = make_predictions(domains=[("en", "audio"), ("de", "audio"), ("ja", "audio")], seed=7)
    df = df[~((df.language == "de") & (df.gender == "male"))]  # de: female only
    tiny = df[(df.language == "ja") & (df.gender == "female")].index[5:]
    df = df.drop(index=tiny)  # ja: 5 female rows
    ev = evaluate_predictions(df, labels=LABELS, n_boot=100, n_perm=100)

    de = ev.gaps[ev.gaps.language == "de"]
    assert de.gap.isna().all() and de.p_value.isna().all()
    assert de.reason.str.contains("one gender only").all()
    r = _row(ev.table("by_group"), language="de", gender="male", metric="accuracy")
    assert r.n == 0 and np.isnan(r.value) and r.reason == "no rows"

    ja = ev.gaps[ev.gaps.language == "ja"]
    assert ja.gap.isna().all() and ja.reason.str.contains("female n=5 < min_samples=10").all()
    r = _row(ev.table("by_group"), language="ja", gender="female", metric="uar")
    assert np.isnan(r.value) and np.isnan(r.ci_low) and r.reason == "n=5 < min_samples=10"
    assert not np.isnan(_row(ev.table("by_group"), language="ja", gender="male", metric="uar").value)
    assert ev.per_class[ev.per_class.language == "ja"].tpr_gap.isna().all()

    s = _row(ev.summary, metric="accuracy")
    assert s.n_domains == 1 and s.worst_domain == "en / audio"
    assert s.mean_gap == pytest.approx(_row(ev.gaps, language="en", metric="accuracy").gap)
    assert "2 domain(s)" in s.reason

    none = evaluate_predictions(df[df.language == "de"], labels=LABELS, n_boot=10, n_perm=10)
    assert none.summary.mean_gap.isna().all() and (none.summary.reason == "no domain has a defined gap").all()


def test_single_speaker_group_has_value_but_no_ci():
    df = make_predictions(speakers_per_gender=1, utts_per_speaker=30, domains=[("en", "audio")])
    ev = evaluate_predictions(df, labels=LABELS, n_boot=50, n_perm=50)
    assert ev.table("by_group").value.notna().all() and ev.table("by_group").ci_low.isna().all()
    assert ev.table("by_group").reason.str.contains("only 1 speaker").all()
    assert ev.gaps.gap.notna().all() and ev.gaps.ci_low.isna().all()


def test_same_seed_same_numbers_regardless_of_row_order():
    df = make_predictions(speaker_sd=0.1, seed=8)
    kw = dict(labels=LABELS, n_boot=100, n_perm=100)
    a = evaluate_predictions(df, seed=11, **kw)
    b = evaluate_predictions(df.sample(frac=1.0, random_state=0), seed=11, **kw)
    c = evaluate_predictions(df, seed=12, **kw)
    for name in ("overall", "by_group", "gaps", "per_class", "summary"):
        pd.testing.assert_frame_equal(a.table(name), b.table(name))
    assert not np.allclose(a.table("by_group").ci_low, c.table("by_group").ci_low)
    pd.testing.assert_series_equal(a.table("by_group").value, c.table("by_group").value)


def test_missing_speaker_ids_fall_back_to_utterances_and_say_so():
    df = make_predictions(seed=9).drop(columns="speaker")
    ev = evaluate_predictions(df, labels=LABELS, n_boot=50, n_perm=50)
    assert ev.settings["resample_used"] == "utterance"
    assert any("utterance-level resampling used because speaker ids are missing" in n for n in ev.notes)
    assert ev.table("by_group").n_speakers.isna().all()
    assert ev.table("by_group").ci_low.notna().all()
    partial = make_predictions(seed=9)
    partial.loc[partial.index[:7], "speaker"] = None
    ev = evaluate_predictions(partial, labels=LABELS, n_boot=50, n_perm=50)
    assert ev.settings["resample_used"] == "speaker"
    assert any("7 row(s) without a speaker id" in n for n in ev.notes)


def test_more_than_two_groups_use_max_minus_min_and_no_sign():
    df = make_predictions(acc={"male": 0.8, "female": 0.6, "nonbinary": 0.4}, domains=[("en", "audio")])
    ev = evaluate_predictions(df, labels=LABELS, n_boot=50, n_perm=50)
    values = ev.table("by_group")[ev.table("by_group").metric == "accuracy"].value
    g = _row(ev.gaps, metric="accuracy")
    assert g.gap == pytest.approx(values.max() - values.min())
    assert np.isnan(g.signed_gap)
    assert ev.settings["groups"] == ["male", "female", "nonbinary"]


def test_serialisation_and_long_frame():
    df = make_predictions(seed=10)
    df.loc[df.index[:3], "gender"] = "unknown"
    ev = evaluate_predictions(df, labels=LABELS, n_boot=20, n_perm=20)
    payload = json.loads(json.dumps(ev.to_dict(), allow_nan=False))
    assert payload["settings"]["resample_used"] == "speaker"
    assert len(payload["gaps"]) == len(ev.gaps)
    assert payload["confusion"][0].keys() >= {"language", "modality", "gender", "true", "pred", "count"}
    long = ev.to_frame()
    assert set(long.scope) == {"overall", "domain", "group", "gap", "summary_mean", "summary_worst"}
    assert list(long.columns[:4]) == ["scope", "language", "modality", "gender"]
    # the confusion table holds every stratum, including unknown gender where it occurs
    en = ev.table("confusion")[ev.table("confusion").language == "en"]
    assert (
        en.groupby("gender")["count"].sum().to_dict()
        == df[df.language == "en"].gender.value_counts().to_dict()
    )


def test_no_domain_columns_means_one_domain():
    df = make_predictions(seed=12).drop(columns=["language", "modality"])
    ev = evaluate_predictions(df, labels=LABELS, domain_cols=(), n_boot=20, n_perm=20)
    assert len(ev.gaps) == len(GAP_METRICS)
    assert (ev.summary.worst_domain == "all").all()
    assert ev.difference().shape == (1, len(GAP_METRICS))


def test_bad_input_is_named():
    df = make_predictions()
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['modality'\].*domain_cols"):
        evaluate_predictions(df.drop(columns="modality"), labels=LABELS)
    bad = df.copy()
    bad.loc[3, "y_pred"] = "happy"
    with pytest.raises(ValueError, match=r"y_pred .*'happy'.*id \['en-male-0-3'\]"):
        evaluate_predictions(bad, labels=LABELS)
    with pytest.raises(ValueError, match="several runs"):
        evaluate_predictions(pd.concat([df, df]), labels=LABELS)
    with pytest.raises(ValueError, match="resample"):
        evaluate_predictions(df, labels=LABELS, resample="cluster")
    with pytest.raises(TypeError, match="DataFrame"):
        evaluate_predictions(df.to_dict(), labels=LABELS)
    with pytest.raises(ValueError, match="empty"):
        evaluate_predictions(df.iloc[:0], labels=LABELS)


def test_other_sensitive_attribute_and_all_unknown():
    df = make_predictions(acc={"male": 0.8, "female": 0.5}, domains=[("en", "audio")], seed=13)
    df["age_band"] = np.where(df.gender == "male", "young", "old")
    ev = evaluate_predictions(df, labels=LABELS, sensitive="age_band", n_boot=20, n_perm=20)
    assert ev.settings["groups"] == ["old", "young"]
    assert "signed_gap = M(young) - M(old)" in ev.notes and ev.reference == "old"
    assert _row(ev.gaps, metric="accuracy").signed_gap > 0.15
    assert set(ev.table("by_group").age_band) == {"old", "young"}
    df["age_band"] = None
    ev = evaluate_predictions(df, labels=LABELS, sensitive="age_band", n_boot=20, n_perm=20)
    assert ev.table("by_group").empty and list(ev.table("by_group").columns[:3]) == [
        "language",
        "modality",
        "age_band",
    ]
    assert ev.gaps.gap.isna().all() and ev.gaps.reason.str.contains("one age_band only").all()
    assert _row(ev.table("overall"), metric="accuracy").n == len(df)


# Hand-made, one domain, labels a / b, age band with three values (and three rows of unknown age, all wrong):
#   young: a->a a->a a->b b->b b->a b->a   accuracy 3/6, TPR(a) 2/3, TPR(b) 1/3, P(y^=a) 4/6, FPR(a) 2/3, FPR(b) 1/3
#   mid:   a->b a->b b->b b->b             accuracy 2/4, TPR(a) 0,   TPR(b) 1,   P(y^=a) 0,   FPR(a) 0,   FPR(b) 1
#   old:   a->a a->a b->b b->b             accuracy 4/4, TPR(a) 1,   TPR(b) 1,   P(y^=a) 1/2, FPR(a) 0,   FPR(b) 0
# gap(accuracy) = max - min = 1 - 1/2; per class TPR gap a: 1 - 0 = 1, b: 1 - 1/3 = 2/3 (ΔEO mean 5/6, max 1);
# SP gap a: 2/3 - 0, b: 1 - 1/3 (ΔSP mean = max = 2/3); FPR gap a: 2/3, b: 1; equalized odds 1 for both classes.
THREE = [
    ("young", "a", "a"),
    ("young", "a", "a"),
    ("young", "a", "b"),
    ("young", "b", "b"),
    ("young", "b", "a"),
    ("young", "b", "a"),
    ("mid", "a", "b"),
    ("mid", "a", "b"),
    ("mid", "b", "b"),
    ("mid", "b", "b"),
    ("old", "a", "a"),
    ("old", "a", "a"),
    ("old", "b", "b"),
    ("old", "b", "b"),
    ("unknown", "a", "b"),
    ("", "b", "a"),
    (None, "b", "a"),
]


def three_valued_table():
    return pd.DataFrame(
        [
            {"id": f"u{i}", "y_true": t, "y_pred": p, "age_band": age, "language": "en", "modality": "audio"}
            for i, (age, t, p) in enumerate(THREE)
        ]
    )


def test_three_valued_attribute_gap_is_max_minus_min_without_sign():
    ev = evaluate_predictions(
        three_valued_table(), labels=["a", "b"], sensitive="age_band", min_samples=2, n_boot=0, n_perm=0
    )
    assert ev.groups == ["mid", "old", "young"] and ev.reference is None
    assert ev.settings["n_unknown"] == 3
    acc = ev.by_group["accuracy"].xs(("en", "audio"))
    assert acc.to_dict() == pytest.approx({"mid": 2 / 4, "old": 4 / 4, "young": 3 / 6})
    gap = _row(ev.gaps, metric="accuracy")
    assert gap.gap == pytest.approx(1 / 2)
    assert np.isnan(ev.gaps.signed_gap).all()  # no signed gap with three values
    assert np.isnan(ev.signed_difference()).all().all()
    assert not any(n.startswith("signed_gap") for n in ev.notes)
    assert any("3 values of age_band" in n and "no signed gap" in n for n in ev.notes)
    assert ev.group_min(metric="accuracy").iloc[0, 0] == pytest.approx(1 / 2)
    assert ev.group_max(metric="accuracy").iloc[0, 0] == pytest.approx(1.0)
    # The unknown rows count overall (9 of 17 right) but in no group (3 + 2 + 4 of 14 right).
    assert _row(ev.table("overall"), metric="accuracy").value == pytest.approx(9 / 17)
    assert ev.table("by_group").groupby("metric")["n"].sum()["accuracy"] == 14
    s = _row(ev.summary, metric="accuracy")
    assert s.mean_gap == pytest.approx(1 / 2) and s.worst_gap == pytest.approx(1 / 2)


def test_three_valued_attribute_parity_per_class_is_max_minus_min():
    ev = evaluate_predictions(
        three_valued_table(), labels=["a", "b"], sensitive="age_band", min_samples=2, n_boot=0, n_perm=0
    )
    pc = ev.per_class.set_index("class")
    assert pc.loc["a", ["tpr_young", "tpr_mid", "tpr_old"]].tolist() == pytest.approx([2 / 3, 0, 1])
    assert pc.loc["b", ["tpr_young", "tpr_mid", "tpr_old"]].tolist() == pytest.approx([1 / 3, 1, 1])
    assert pc["tpr_gap"].tolist() == pytest.approx([1, 2 / 3])
    assert pc["sp_gap"].tolist() == pytest.approx([2 / 3, 2 / 3])
    assert pc["fpr_gap"].tolist() == pytest.approx([2 / 3, 1])
    assert pc["eodds_gap"].tolist() == pytest.approx([1, 1])
    gaps = ev.gaps.set_index("metric")["gap"]
    assert gaps["deo_mean"] == pytest.approx(5 / 6) and gaps["deo_max"] == pytest.approx(1)
    assert gaps["dsp_mean"] == pytest.approx(2 / 3) and gaps["dsp_max"] == pytest.approx(2 / 3)
    assert gaps["eodds_mean"] == pytest.approx(1) and gaps["eodds_max"] == pytest.approx(1)
    # CIs and p-values run with three values too (and the point estimates do not move).
    boot = evaluate_predictions(
        three_valued_table(), labels=["a", "b"], sensitive="age_band", min_samples=2, n_boot=20, n_perm=20
    )
    pd.testing.assert_series_equal(boot.gaps["gap"], ev.gaps["gap"])
    assert boot.gaps.set_index("metric").loc["accuracy", "p_value"] > 0


EMODB = Path(__file__).resolve().parents[2] / "shared" / "data" / "emodb" / "manifest.csv"


@pytest.mark.realdata
def test_emodb_oracle_predictions_show_the_label_imbalance_and_wide_speaker_cis():
    if not EMODB.exists():
        pytest.skip(f"EmoDB manifest not found at {EMODB} (shared data folder missing)")
    manifest = pd.read_csv(EMODB)
    labels = sorted(manifest.emotion.unique())
    oracle = manifest.assign(
        id=manifest.path, y_true=manifest.emotion, y_pred=manifest.emotion, modality="audio"
    )
    ev = evaluate_predictions(oracle, labels=labels, n_boot=200, n_perm=200)
    # A perfect predictor has no performance, TPR or FPR gap ...
    assert (ev.gaps.set_index("metric").loc[["accuracy", "uar", "deo_max", "eodds_max"], "gap"] == 0).all()
    # ... but its predictions inherit the corpus's gender imbalance: disgust is 35 of 302 female utterances
    # vs 11 of 233 male ones (README of the shared data), and that is exactly ΔSP for disgust.
    counts = pd.crosstab(manifest.emotion, manifest.gender)
    share = counts / counts.sum()
    disgust = _row(ev.per_class, **{"class": "disgust"})
    assert disgust.sp_gap == pytest.approx(abs(share.loc["disgust", "female"] - share.loc["disgust", "male"]))
    assert _row(ev.gaps, metric="dsp_max").gap == pytest.approx((share.female - share.male).abs().max())
    assert (ev.table("by_group").n_speakers == 5).all()

    # A noisy predictor whose accuracy differs by speaker: with 5 speakers per gender the speaker-level
    # intervals are much wider than utterance-level ones, as METHODS.md §2 says the report must show.
    rng = np.random.default_rng(0)
    skill = dict(zip(sorted(manifest.speaker.unique()), rng.uniform(0.3, 0.95, 10), strict=True))
    correct = rng.random(len(manifest)) < manifest.speaker.map(skill).to_numpy()
    noisy = oracle.assign(y_pred=np.where(correct, oracle.y_true, rng.choice(labels, len(oracle))))
    spk = evaluate_predictions(noisy, labels=labels, n_boot=300, n_perm=0, resample="speaker")
    utt = evaluate_predictions(noisy, labels=labels, n_boot=300, n_perm=0, resample="utterance")
    width = [(e.table("by_group").ci_high - e.table("by_group").ci_low).mean() for e in (spk, utt)]
    assert width[0] > 1.5 * width[1]

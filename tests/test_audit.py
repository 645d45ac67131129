"""fairser audit: hand-made CSVs against direct computation, several runs, intersectional groups, bad input."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, recall_score
from typer.testing import CliRunner

from fairser.audit import (
    INTERSECTION_SEP,
    Audit,
    AuditInputError,
    audit_predictions,
    print_audit,
    read_predictions,
)
from fairser.cli import app
from fairser.metrics import GAP_METRICS, evaluate_predictions

LABELS = ["anger", "neutral", "sadness"]

# Hand-made: one domain, 2 male + 2 female speakers, 4 utterances each.
# male accuracy 6/8, female 5/8; TPR(anger) male 3/3, female 1/3.
HAND_CSV = """id,y_true,y_pred,gender,language,modality,speaker
m1a,anger,anger,male,en,audio,m1
m1b,anger,anger,male,en,audio,m1
m1c,sadness,sadness,male,en,audio,m1
m1d,sadness,anger,male,en,audio,m1
m2a,neutral,neutral,male,en,audio,m2
m2b,neutral,sadness,male,en,audio,m2
m2c,anger,anger,male,en,audio,m2
m2d,sadness,sadness,male,en,audio,m2
f1a,anger,neutral,female,en,audio,f1
f1b,anger,anger,female,en,audio,f1
f1c,sadness,sadness,female,en,audio,f1
f1d,sadness,sadness,female,en,audio,f1
f2a,neutral,neutral,female,en,audio,f2
f2b,neutral,neutral,female,en,audio,f2
f2c,anger,sadness,female,en,audio,f2
f2d,sadness,neutral,female,en,audio,f2
"""


@pytest.fixture
def hand_csv(tmp_path):
    path = tmp_path / "hand.csv"
    path.write_text(HAND_CSV)
    return path


def synthetic_table(*, seed=0, n_spk=4, utts=12, domains=(("en", "audio"), ("de", "audio")), age=False):
    """Random predictions with speakers (female accuracy lower in 'de')."""
    rng = np.random.default_rng(seed)
    rows = []
    for lang, mod in domains:
        for gender in ("male", "female"):
            for s in range(n_spk):
                acc = 0.5 if (lang == "de" and gender == "female") else 0.8
                for u in range(utts):
                    t = int(rng.integers(len(LABELS)))
                    p = t if rng.random() < acc else (t + 1) % len(LABELS)
                    row = {
                        "id": f"{lang}-{gender}{s}-{u}",
                        "y_true": LABELS[t],
                        "y_pred": LABELS[p],
                        "gender": gender,
                        "language": lang,
                        "modality": mod,
                        "speaker": f"{lang}-{gender}{s}",
                    }
                    if age:
                        row["age_band"] = "young" if s % 2 == 0 else "old"
                    rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------- numbers


def test_hand_made_csv_equals_direct_computation(hand_csv):
    audit = audit_predictions(hand_csv, labels=LABELS, min_samples=4, n_boot=200, n_perm=200)
    assert len(audit) == 1 and audit.run_columns == []
    f = audit.frame()
    df = pd.read_csv(hand_csv)
    # By hand.
    assert f.by_group.loc[("en", "audio", "male"), "accuracy"] == pytest.approx(6 / 8)
    assert f.by_group.loc[("en", "audio", "female"), "accuracy"] == pytest.approx(5 / 8)
    assert f.difference(metric="accuracy").loc[("en", "audio"), "accuracy"] == pytest.approx(1 / 8)
    assert f.signed_difference(metric="accuracy").iloc[0, 0] == pytest.approx(5 / 8 - 6 / 8)
    anger = f.per_class.set_index("class").loc["anger"]
    assert anger["tpr_male"] == pytest.approx(1.0) and anger["tpr_female"] == pytest.approx(1 / 3)
    assert anger["tpr_gap"] == pytest.approx(2 / 3)
    # Against scikit-learn, every group and metric.
    for gender, sub in df.groupby("gender"):
        row = f.by_group.loc[("en", "audio", gender)]
        assert row["weighted_f1"] == pytest.approx(
            f1_score(sub.y_true, sub.y_pred, labels=LABELS, average="weighted", zero_division=0)
        )
        assert row["macro_f1"] == pytest.approx(
            f1_score(sub.y_true, sub.y_pred, labels=LABELS, average="macro", zero_division=0)
        )
        assert row["uar"] == pytest.approx(balanced_accuracy_score(sub.y_true, sub.y_pred))
        recalls = recall_score(sub.y_true, sub.y_pred, labels=LABELS, average=None, zero_division=0)
        tprs = f.per_class.set_index("class")[f"tpr_{gender}"].reindex(LABELS).to_numpy()
        np.testing.assert_allclose(tprs, recalls)
        cm = f.confusion(domain=("en", "audio"))[gender]
        np.testing.assert_array_equal(cm.to_numpy(), confusion_matrix(sub.y_true, sub.y_pred, labels=LABELS))
    assert f.overall["weighted_f1"] == pytest.approx(
        f1_score(df.y_true, df.y_pred, labels=LABELS, average="weighted", zero_division=0)
    )
    # Thin layer: CIs and p-values are those of evaluate_predictions with the same seed.
    ev = evaluate_predictions(df, labels=LABELS, min_samples=4, n_boot=200, n_perm=200, seed=0)
    pd.testing.assert_frame_equal(f.gaps, ev.gaps)
    pd.testing.assert_frame_equal(f.table("by_group"), ev.table("by_group"))
    low, high = f.by_group_ci
    assert (low <= f.by_group + 1e-12).all().all() and (f.by_group <= high + 1e-12).all().all()
    p = f.p_values(metric="weighted_f1").iloc[0, 0]
    assert 0 < p <= 1
    assert f.group_min(metric="accuracy").iloc[0, 0] == pytest.approx(5 / 8)
    assert f.group_max(metric="accuracy").iloc[0, 0] == pytest.approx(6 / 8)
    # Two speakers per group: every speaker-level CI is defined.
    assert f.undefined().empty


def test_metricframe_like_shapes():
    audit = audit_predictions(synthetic_table(), labels=LABELS, n_boot=50, n_perm=50)
    f = audit.frame()
    assert list(f.by_group.index.names) == ["language", "modality", "gender"]
    assert list(f.by_group.columns) == ["accuracy", "weighted_f1", "macro_f1", "uar"]
    assert list(f.difference().columns) == list(GAP_METRICS)
    assert f.difference().shape == (2, len(GAP_METRICS))
    low, high = f.overall_ci
    assert (low <= f.overall).all() and (f.overall <= high).all()
    d_low, d_high = f.difference_ci(metric="uar")
    assert d_low.shape == d_high.shape == (2, 1)
    wide = f.by_group["uar"].unstack("gender")
    np.testing.assert_allclose(
        f.difference(metric="uar")["uar"].to_numpy(), (wide["male"] - wide["female"]).abs().to_numpy()
    )
    with pytest.raises(KeyError, match="unknown metric"):
        f.difference(metric="f2")


def test_y_pred_taken_from_probabilities_when_absent():
    df = synthetic_table()
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(len(LABELS)), len(df))
    for i, lab in enumerate(LABELS):
        df[f"prob_{lab}"] = probs[:, i]
    argmax = np.asarray(LABELS)[probs.argmax(1)]
    audit = audit_predictions(df.drop(columns="y_pred"), n_boot=0, n_perm=0)
    ref = evaluate_predictions(df.assign(y_pred=argmax), labels=LABELS, n_boot=0, n_perm=0)
    pd.testing.assert_frame_equal(audit.frame().table("by_group"), ref.table("by_group"))
    assert any("argmax" in n for n in audit.notes)
    assert audit.settings["labels"] == LABELS  # order of the prob_* columns


# ----------------------------------------------------------------------------------------------- runs


def test_several_runs_are_audited_separately():
    a = synthetic_table(seed=1).assign(objective="ERM", seed=0)
    b = synthetic_table(seed=2).assign(objective="MinMaxGAP", seed=0)
    c = synthetic_table(seed=3).assign(objective="ERM", seed=1)
    audit = audit_predictions(pd.concat([a, b, c]), labels=LABELS, n_boot=30, n_perm=30)
    assert audit.run_columns == ["objective", "seed"]
    assert sorted((f.run["objective"], f.run["seed"]) for f in audit) == [
        ("ERM", 0),
        ("ERM", 1),
        ("MinMaxGAP", 0),
    ]
    for part, keys in ((a, {"objective": "ERM", "seed": 0}), (b, {"objective": "MinMaxGAP", "seed": 0})):
        alone = evaluate_predictions(part, labels=LABELS, n_boot=30, n_perm=30, seed=0)
        pd.testing.assert_frame_equal(audit.frame(**keys).gaps, alone.gaps)
        assert audit.frame(**keys).settings["n_rows"] == len(part)
    tidy = audit.table("gaps")
    assert list(tidy.columns[:3]) == ["objective", "seed", "attribute"]
    assert len(tidy) == 3 * 2 * len(GAP_METRICS)
    # Explicit by: only the objective -> the ERM rows of both seeds clash on ids, and the message says so.
    with pytest.raises(AuditInputError, match=r"more than once within a domain.*'seed'"):
        audit_predictions(pd.concat([a, c]), by=["objective"], n_boot=0, n_perm=0)


def test_duplicates_without_run_columns_name_the_column_that_differs():
    a = synthetic_table(seed=1).assign(model="A")
    b = synthetic_table(seed=2).assign(model="B")
    with pytest.raises(AuditInputError) as err:
        audit_predictions(pd.concat([a, b]), n_boot=0, n_perm=0)
    msg = str(err.value)
    assert "id 'en-male0-0'" in msg and "['model']" in msg
    audit = audit_predictions(pd.concat([a, b]), by=["model"], n_boot=0, n_perm=0)
    assert [f.run for f in audit] == [{"model": "A"}, {"model": "B"}]


def test_intersectional_groups():
    df = synthetic_table(age=True, n_spk=4)
    audit = audit_predictions(
        df, sensitive=["gender", "age_band"], marginals=True, labels=LABELS, n_boot=40, n_perm=40
    )
    inter = f"gender{INTERSECTION_SEP}age_band"
    assert audit.attributes == ["gender", "age_band", inter]
    f = audit.frame(attribute=inter)
    # fairser.grouping's order: by gender (male, female), then by age band (sorted)
    assert f.groups == [f"{g}{INTERSECTION_SEP}{a}" for g in ("male", "female") for a in ("old", "young")]
    for (lang, gender, age), sub in df.groupby(["language", "gender", "age_band"]):
        group = f"{gender}{INTERSECTION_SEP}{age}"
        assert f.by_group.loc[(lang, "audio", group), "uar"] == pytest.approx(
            balanced_accuracy_score(sub.y_true, sub.y_pred)
        )
    de = f.by_group.xs("de", level="language")["accuracy"]
    assert f.difference(metric="accuracy").loc[("de", "audio"), "accuracy"] == pytest.approx(
        de.max() - de.min()
    )
    assert np.isnan(f.signed_difference(metric="accuracy")).all().all()  # no sign with 4 groups
    assert f.reference is None
    # The marginal attributes are there too, and an unknown component makes the intersection unknown.
    assert audit.frame(attribute="age_band").settings["groups"] == ["old", "young"]
    df.loc[df.index[:5], "age_band"] = None
    audit = audit_predictions(df, sensitive=["gender", "age_band"], labels=LABELS, n_boot=0, n_perm=0)
    assert audit.attributes == [inter]  # without marginals: the intersection only
    assert audit.frame(attribute=inter).settings["n_unknown"] == 5


# Hand-made gender × age band, one domain, labels a / b; two rows belong to no intersectional group:
#   male × young:   a->a b->b            accuracy 1,   TPR(a) 1,   TPR(b) 1
#   male × old:     a->a b->a            accuracy 1/2, TPR(a) 1,   TPR(b) 0
#   female × young: a->b b->b a->a b->b  accuracy 3/4, TPR(a) 1/2, TPR(b) 1
#   female × old:   a->b b->a a->a b->b  accuracy 1/2, TPR(a) 1/2, TPR(b) 1/2
#   unknown gender, old: a->a;  male, age missing: b->a
# gap(accuracy) = 1 - 1/2; TPR gap a: 1 - 1/2, b: 1 - 0 (ΔEO mean 3/4, max 1). Gender alone (the row with a
# missing age band is male): male 3/5, female 5/8, gap and signed gap (female - male) 1/40.
INTERSECTION_CSV = """id,y_true,y_pred,gender,age_band,language,modality
r1,a,a,male,young,en,audio
r2,b,b,male,young,en,audio
r3,a,a,male,old,en,audio
r4,b,a,male,old,en,audio
r5,a,b,female,young,en,audio
r6,b,b,female,young,en,audio
r7,a,a,female,young,en,audio
r8,b,b,female,young,en,audio
r9,a,b,female,old,en,audio
r10,b,a,female,old,en,audio
r11,a,a,female,old,en,audio
r12,b,b,female,old,en,audio
r13,a,a,unknown,old,en,audio
r14,b,a,male,,en,audio
"""
INTER = f"gender{INTERSECTION_SEP}age_band"


def _check_intersection(gaps, by_group, per_class):
    """The hand-computed numbers above, from tidy tables (an audit's or its CSVs)."""
    acc = by_group[by_group.metric == "accuracy"].set_index("group")
    expected = {"male × old": 1 / 2, "male × young": 1.0, "female × old": 1 / 2, "female × young": 3 / 4}
    assert list(acc.index) == list(expected)  # fairser.grouping's order: gender first, then age band
    assert acc["value"].to_dict() == pytest.approx(expected)
    assert acc["n"].tolist() == [2, 2, 4, 4]  # the two rows with an unknown part are in no group
    g = gaps.set_index("metric")
    assert g.loc["accuracy", "gap"] == pytest.approx(1 / 2) and np.isnan(g.loc["accuracy", "signed_gap"])
    assert g.loc["deo_mean", "gap"] == pytest.approx(3 / 4) and g.loc["deo_max", "gap"] == pytest.approx(1)
    pc = per_class.set_index("class")
    assert pc["tpr_gap"].tolist() == pytest.approx([1 / 2, 1])
    assert pc.loc["b", "tpr_male × old"] == pytest.approx(0)


def test_gender_by_age_band_intersection_hand_computed():
    df = pd.read_csv(io.StringIO(INTERSECTION_CSV), dtype=str, keep_default_na=False, na_values=[""])
    audit = audit_predictions(
        df, sensitive=["gender", "age_band"], labels=["a", "b"], min_samples=2, n_boot=0, n_perm=0
    )
    assert audit.attributes == [INTER]
    f = audit.frame(attribute=INTER)
    assert f.settings["sensitive_columns"] == ["gender", "age_band"] and f.settings["n_unknown"] == 2
    _check_intersection(audit.table("gaps"), audit.table("by_group"), f.per_class)
    assert f.difference(metric="accuracy").iloc[0, 0] == pytest.approx(1 / 2)
    text = _printed(audit)
    assert "W-F1 gap (max − min, 4)" in text and "signed (" not in text  # no signed gap with four values


def _printed(audit):
    console = Console(width=250, record=True, file=io.StringIO())
    print_audit(audit, console=console)
    return console.export_text()


def test_cli_audit_intersection_and_marginals(tmp_path):
    path = tmp_path / "inter.csv"
    path.write_text(INTERSECTION_CSV)
    args = [
        "audit",
        str(path),
        "--labels",
        "a,b",
        "--min-samples",
        "2",
        "--n-boot",
        "0",
        "--n-perm",
        "0",
        "-q",
    ]
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, [*args, "--sensitive", "gender", "--sensitive", "age_band", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    gaps, by_group = pd.read_csv(out / "gaps.csv"), pd.read_csv(out / "by_group.csv")
    assert set(gaps.attribute) == {INTER}
    _check_intersection(gaps, by_group, pd.read_csv(out / "per_class.csv"))
    # --marginals: gender and age band alone too; gender alone has two values, so a signed gap female - male.
    out = tmp_path / "marginals"
    result = CliRunner().invoke(
        app, [*args, "--sensitive", "gender", "--sensitive", "age_band", "--marginals", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    back = Audit.load(out)
    assert back.attributes == ["gender", "age_band", INTER]
    gender = back.frame(attribute="gender")
    assert gender.reference == "male"
    assert gender.by_group["accuracy"].xs(("en", "audio")).to_dict() == pytest.approx(
        {"male": 3 / 5, "female": 5 / 8}
    )
    acc = gender.gaps.set_index("metric").loc["accuracy"]
    assert acc.gap == pytest.approx(1 / 40) and acc.signed_gap == pytest.approx(1 / 40)
    text = _printed(back)
    assert "signed (female − male)" in text and "W-F1 gap (max − min, 4)" in text  # gender; gender × age band


def test_cli_audit_missing_sensitive_column_is_one_line(hand_csv):
    result = CliRunner().invoke(app, ["audit", str(hand_csv), "--sensitive", "age_band", "-q"])
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)  # no traceback
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "cannot audit" in lines[0] and "missing column(s) ['age_band']" in lines[0]
    assert "--sensitive" in lines[0]


def test_cli_audit_help_documents_sensitive():
    result = CliRunner().invoke(app, ["audit", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0
    assert "--sensitive" in result.output and "--marginals" in result.output
    assert "--group-cols" not in result.output and "--intersectional" not in result.output


def test_write_and_load_round_trip(tmp_path):
    df = synthetic_table(age=True).assign(objective="ERM", seed=3)
    audit = audit_predictions(
        df, sensitive=["gender", "age_band"], marginals=True, labels=LABELS, n_boot=30, n_perm=30
    )
    paths = audit.write(tmp_path / "out")
    assert {p.name for p in paths.values()} >= {"gaps.csv", "per_class.csv", "audit.json", "undefined.csv"}
    meta = json.loads(paths["audit"].read_text())
    assert meta["run_columns"] == ["objective", "seed"] and len(meta["frames"]) == 3
    back = Audit.load(tmp_path / "out")
    assert back.attributes == audit.attributes
    for f in audit:
        g = back.frame(attribute=f.attribute, **f.run)
        for name in ("gaps", "by_group", "summary"):
            left, right = f.table(name), g.table(name)
            pd.testing.assert_frame_equal(left, right[left.columns], check_dtype=False)
        cols = [c for c in f.per_class.columns]
        pd.testing.assert_frame_equal(f.per_class, g.per_class[cols], check_dtype=False)
        pd.testing.assert_frame_equal(f.by_group, g.by_group, check_dtype=False)


# ----------------------------------------------------------------------------------------------- bad input


def _csv(tmp_path, df, name="p.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def test_unknown_labels_name_the_label_and_rows(tmp_path):
    df = synthetic_table()
    df.loc[3, "y_true"] = "fear"
    df.loc[7, "y_pred"] = "boredom"
    with pytest.raises(AuditInputError) as err:
        audit_predictions(_csv(tmp_path, df), labels="anger,neutral,sadness", n_boot=0, n_perm=0)
    msg = str(err.value)
    assert "y_true holds label(s) not in the label set" in msg and "'fear'" in msg
    assert f"id '{df.id[3]}'" in msg and "p.csv:5" in msg  # header is line 1
    assert "'boredom'" in msg and f"id '{df.id[7]}'" in msg


def test_missing_columns_are_named_with_a_hint():
    df = synthetic_table().drop(columns=["modality"])
    with pytest.raises(AuditInputError, match=r"missing column\(s\) \['modality'\].*--domain-cols"):
        audit_predictions(df, n_boot=0, n_perm=0)
    with pytest.raises(AuditInputError, match=r"missing column\(s\) \['age_band'\].*--sensitive"):
        audit_predictions(synthetic_table(), sensitive=["gender", "age_band"], n_boot=0, n_perm=0)
    audit = audit_predictions(df, domain_cols=["language"], n_boot=0, n_perm=0)
    assert audit.frame().domain_cols == ["language"]


def test_nan_probabilities_name_the_rows(tmp_path):
    df = synthetic_table()
    for lab in LABELS:
        df[f"prob_{lab}"] = 1 / 3
    df.loc[10, "prob_anger"] = np.nan
    path = _csv(tmp_path, df)
    with pytest.raises(AuditInputError) as err:
        audit_predictions(path, n_boot=0, n_perm=0)
    msg = str(err.value)
    assert "NaN (or non-numeric) probabilities in ['prob_anger']" in msg and f"id '{df.id[10]}'" in msg
    assert "p.csv:12" in msg
    df.loc[10, "prob_anger"] = 1.5
    with pytest.raises(AuditInputError, match=r"outside \[0, 1\]"):
        audit_predictions(df, n_boot=0, n_perm=0)
    df = df.drop(columns="prob_anger").assign(prob_fear=0.0)
    with pytest.raises(AuditInputError, match=r"\['prob_fear'\] name label\(s\) not in the label set"):
        audit_predictions(df, labels=LABELS, n_boot=0, n_perm=0)


def test_missing_labels_name_the_rows():
    df = synthetic_table()
    df.loc[4, "y_pred"] = None
    with pytest.raises(AuditInputError, match=rf"missing y_pred in 1 row\(s\): id '{df.id[4]}'"):
        audit_predictions(df, labels=LABELS, n_boot=0, n_perm=0)


def test_group_with_one_member_is_named_and_its_numbers_undefined():
    df = synthetic_table()
    keep = ~((df.language == "de") & (df.gender == "female")) | (df.id == "de-female0-0")
    df = df[keep]
    audit = audit_predictions(df, labels=LABELS, n_boot=30, n_perm=30)
    assert any("group de / audio / gender=female: 1 row(s) < min_samples=10" in w for w in audit.warnings), (
        audit.warnings
    )
    und = audit.undefined()
    group_rows = und[(und.table == "by_group") & (und.group == "female") & (und.domain == "de / audio")]
    assert len(group_rows) == 4 and group_rows.reason.str.contains("n=1 < min_samples=10").all()
    gap_rows = und[(und.table == "gaps") & (und.domain == "de / audio")]
    assert len(gap_rows) == len(GAP_METRICS) and gap_rows.reason.str.contains("female n=1").all()
    assert not und[und.domain == "en / audio"].shape[0]  # the other domain is complete


def test_group_with_one_speaker_has_no_ci():
    df = synthetic_table()
    df.loc[(df.language == "de") & (df.gender == "female"), "speaker"] = "de-female-only"
    audit = audit_predictions(df, labels=LABELS, n_boot=30, n_perm=30)
    assert any("one speaker (de-female-only)" in w for w in audit.warnings)
    und = audit.undefined()
    ci_rows = und[(und.table == "by_group") & (und.group == "female") & (und.domain == "de / audio")]
    assert (ci_rows.undefined == "ci_low, ci_high").all() and ci_rows.reason.str.contains(
        "only 1 speaker"
    ).all()


def test_language_with_one_gender_is_named_and_gaps_are_nan():
    df = synthetic_table(domains=(("en", "audio"), ("de", "audio"), ("ja", "audio")))
    df = df[~((df.language == "ja") & (df.gender == "male"))]
    audit = audit_predictions(df, labels=LABELS, n_boot=30, n_perm=30)
    assert any("domain ja / audio: only gender 'female'" in w for w in audit.warnings)
    f = audit.frame()
    assert np.isnan(f.difference().loc[("ja", "audio")]).all()
    reasons = f.gaps.set_index("language").loc["ja", "reason"]
    assert reasons.str.contains("one gender only").all()
    summary = f.summary.set_index("metric").loc["weighted_f1"]
    assert summary["n_domains"] == 2 and "1 domain(s) without a defined gap" in summary["reason"]


def test_read_predictions_keeps_text_and_finds_benchmark_runs(tmp_path):
    df = synthetic_table().assign(seed=0)
    df.loc[0, "speaker"] = "NA"  # a speaker called NA stays a speaker
    run = tmp_path / "bench" / "runs" / "r1"
    run.mkdir(parents=True)
    df.to_csv(run / "predictions.csv", index=False)
    (tmp_path / "bench" / "benchmark.json").write_text(json.dumps({"synthetic": True, "source": "synth"}))
    read = read_predictions(tmp_path / "bench")
    assert read.loc[0, "speaker"] == "NA" and read["seed"].dtype.kind == "i"
    audit = audit_predictions(tmp_path / "bench", n_boot=0, n_perm=0)
    assert audit.synthetic and "synth" in audit.source
    with pytest.raises(AuditInputError, match="without runs"):
        read_predictions(tmp_path)
    with pytest.raises(AuditInputError, match="does not exist"):
        read_predictions(tmp_path / "nope.csv")


# ----------------------------------------------------------------------------------------------- CLI


def test_cli_audit_writes_files_and_prints_summary(hand_csv, tmp_path):
    out = tmp_path / "audit"
    result = CliRunner().invoke(
        app,
        [
            "audit",
            str(hand_csv),
            "--labels",
            "anger,neutral,sadness",
            "--min-samples",
            "4",
            "--n-boot",
            "50",
            "--n-perm",
            "50",
            "--out",
            str(out),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "W-F1 and its gap per domain" in result.output and str(out) in result.output
    gaps = pd.read_csv(out / "gaps.csv")
    acc = gaps[gaps.metric == "accuracy"].iloc[0]
    assert acc.gap == pytest.approx(1 / 8) and acc.attribute == "gender"
    per_class = pd.read_csv(out / "per_class.csv").set_index("class")
    assert per_class.loc["anger", "tpr_gap"] == pytest.approx(2 / 3)
    assert json.loads((out / "audit.json").read_text())["settings"]["min_samples"] == 4


def test_cli_audit_bad_input_exits_with_the_message(tmp_path):
    df = pd.read_csv(io.StringIO(HAND_CSV))
    df.loc[2, "y_true"] = "fear"
    path = _csv(tmp_path, df)
    result = CliRunner().invoke(app, ["audit", str(path), "--labels", "core4", "-q"])
    assert result.exit_code == 2
    assert "cannot audit" in result.output and "'fear'" in result.output and "id 'm1c'" in result.output


def test_gender_spellings_are_normalised_and_said():
    df = synthetic_table()
    ref = audit_predictions(df, labels=LABELS, n_boot=0, n_perm=0)
    df["gender"] = df["gender"].map({"male": "M", "female": " Female"})
    audit = audit_predictions(df, labels=LABELS, n_boot=0, n_perm=0)
    assert audit.frame().settings["groups"] == ["male", "female"]
    pd.testing.assert_frame_equal(audit.frame().gaps, ref.frame().gaps)
    assert any("'M' -> 'male'" in n and "' Female' -> 'female'" in n for n in audit.notes)

"""fairser.results: the store, the one seed aggregation, the tables (byte-identical to the code they replace),
the one JSON conversion and a run's evaluation on any sensitive attribute."""

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairser.config import EvalConfig
from fairser.report import gap_cells, headline_table, tradeoff_points
from fairser.results import (
    ResultsStore,
    comparison_table,
    evaluate_run,
    fmt_delta,
    fmt_pm,
    gaps_table,
    jsonable,
    paper_table,
    predictions_table,
    render_comparison,
    render_gaps,
    render_table,
    seed_stats,
    sensitive_labels,
)
from fairser.results.tables import GAP_COLUMNS

ASSETS = Path(__file__).parent / "assets" / "results_tables"


def _row(obj, seed, gaps, wf1s, setting="audio"):
    return {
        "run_id": f"{setting}-{obj}-{seed}",
        "status": "ok",
        "setting": setting,
        "objective": obj.lower(),
        "objective_label": obj,
        "seed": seed,
        "overall_weighted_f1": sum(wf1s) / len(wf1s),
        "domains": [
            {
                "language": lang,
                "modality": setting,
                "weighted_f1": w,
                "weighted_f1_gap": g,
                "weighted_f1_signed_gap": None if g is None else -g,
            }
            for lang, w, g in zip(["en", "de"], wf1s, gaps, strict=False)
        ],
    }


def test_store_appends_skips_and_removes(tmp_path):
    store = ResultsStore(tmp_path / "r.jsonl")
    store.append({"run_id": "a", "status": "ok", "x": float("nan")})
    store.append({"run_id": "b", "status": "failed"})
    with open(store.path, "a") as f:
        f.write('{"run_id": "c", "sta')  # a line cut by a crash
    assert store.finished() == {"a"}
    assert store.rows()[0]["x"] is None  # NaN stored as null, not as invalid JSON
    assert store.remove("a") == 1
    assert store.finished() == set()


def test_paper_table_means_stds_and_deltas():
    rows = [
        _row("ERM", 0, gaps=[0.10, 0.20], wf1s=[0.6, 0.5]),
        _row("ERM", 1, gaps=[0.20, 0.40], wf1s=[0.7, 0.5]),
        _row("MMG", 0, gaps=[0.05, 0.10], wf1s=[0.6, 0.4]),
        _row("MMG", 1, gaps=[0.05, 0.10], wf1s=[0.6, 0.4]),
    ]
    t = paper_table(rows, baseline="ERM")
    en = t[(t.language == "en")].iloc[0]
    assert math.isclose(en["ERM W-F1"], 0.65)
    assert math.isclose(en["ERM gap"], 0.15)
    assert math.isclose(en["MMG Δ gap"], 0.05 - 0.15)
    worst = t[t.language == "Worst domain"].iloc[0]
    assert math.isclose(worst["ERM gap"], (0.20 + 0.40) / 2)
    overall = t[t.language == "Overall"].iloc[0]
    assert math.isclose(overall["ERM gap"], (0.15 + 0.30) / 2)
    text = render_table(t, synthetic=True, source="x", n_seeds=2)
    assert "SYNTHETIC" in text and "| en | audio | 65.0 ± 7.1 | 15.0 ± 7.1 |" in text


# ------------------------------------------------------------------------------------- seed aggregation


def test_seed_stats_mean_std_n_per_group_in_order_of_appearance():
    long = pd.DataFrame(
        {
            "obj": ["B", "B", "A", "A", "A", "B"],
            "seed": [0, 1, 0, 1, 2, 2],
            "x": [1.0, 3.0, 2.0, np.nan, 4.0, 5.0],
        }
    )
    s = seed_stats(long, by=["obj"], values=["x"])
    assert list(s.columns) == ["obj", "x", "x_std", "n_seeds"]
    assert list(s["obj"]) == ["B", "A"]
    b, a = s.iloc[0], s.iloc[1]
    assert b["x"] == 3.0 and b["x_std"] == 2.0 and b["n_seeds"] == 3  # std of 1, 3, 5 (ddof=1) = 2
    # a NaN seed is left out of mean and std but still counted as a seed
    assert a["x"] == 3.0 and math.isclose(a["x_std"], math.sqrt(2)) and a["n_seeds"] == 3
    one = seed_stats(long[long["seed"] == 0], by=["obj"], values=["x"])
    assert one["x_std"].isna().all() and (one["n_seeds"] == 1).all()  # one seed: no std


def _hand_rows():
    # two seeds of ERM and of MMG; numbers exact in binary so every mean is exact
    return [
        _row("ERM", 0, gaps=[0.125, 0.25], wf1s=[0.5, 0.75]),  # overall 0.625, mean gap 0.1875, worst 0.25
        _row("ERM", 1, gaps=[0.375, None], wf1s=[0.75, 0.25]),  # overall 0.5, mean gap 0.375, worst 0.375
        _row("MMG", 0, gaps=[0.0625, 0.125], wf1s=[0.5, 0.5]),  # overall 0.5, mean gap 0.09375, worst 0.125
        _row("MMG", 1, gaps=[0.0625, 0.0625], wf1s=[0.5, 0.5]),  # overall 0.5, mean gap 0.0625, worst 0.0625
    ]


def test_the_one_aggregation_gives_the_numbers_of_the_four_old_tables():
    rows = _hand_rows()
    sd = lambda a, b: abs(a - b) / math.sqrt(2)  # noqa: E731 - std of two values, ddof=1
    # 1. paper table (bench/table.py)
    t = paper_table(rows, baseline="ERM").set_index("language")
    assert t.loc["en", "ERM gap"] == 0.25 and math.isclose(t.loc["en", "ERM gap std"], sd(0.125, 0.375))
    assert t.loc["de", "ERM gap"] == 0.25 and np.isnan(t.loc["de", "ERM gap std"])  # one defined seed
    assert t.loc["de", "ERM n_seeds"] == 2
    assert t.loc["Overall", "ERM W-F1"] == 0.5625 and t.loc["Overall", "ERM gap"] == 0.28125
    assert t.loc["Worst domain", "MMG gap"] == 0.09375
    assert t.loc["Worst domain", "MMG Δ gap"] == 0.09375 - 0.3125
    # 2. comparison table (bench/runner.py)
    c = comparison_table(rows, baseline="ERM").set_index("objective")
    assert c.loc["ERM", "wf1"] == 0.5625 and math.isclose(c.loc["ERM", "wf1_std"], sd(0.625, 0.5))
    assert c.loc["ERM", "mean_gap"] == 0.28125 and c.loc["ERM", "worst_gap"] == 0.3125
    assert c.loc["MMG", "d_worst_gap"] == 0.09375 - 0.3125 and c.loc["MMG", "n_seeds"] == 2
    # 3. headline table (report/build.py)
    h = headline_table(rows).set_index("objective")
    assert h.loc["ERM", "seeds"] == 2
    assert h.loc["ERM", "W-F1 (%)"] == f"56.2 ± {100 * sd(0.625, 0.5):.1f}" == "56.2 ± 8.8"
    assert (
        h.loc["ERM", "mean gap (%)"] == "28.1 ± 13.3" and h.loc["ERM", "worst-domain gap (%)"] == "31.2 ± 8.8"
    )
    assert h.loc["MMG", "W-F1 (%)"] == "50.0 ± 0.0"
    # 4. gap heatmap cells and trade-off points (report/figures.py)
    cells = gap_cells(rows).set_index(["objective", "language"])
    assert cells.loc[("ERM", "de"), "gap"] == 0.25 and cells.loc[("ERM", "de"), "n_seeds"] == 2
    assert math.isclose(cells.loc[("ERM", "en"), "gap_std"], sd(0.125, 0.375))
    p = tradeoff_points(rows).set_index("objective")
    assert p.loc["ERM", "wf1"] == 0.5625 and p.loc["ERM", "gap"] == 0.3125
    assert math.isclose(p.loc["ERM", "gap_high"] - p.loc["ERM", "gap"], sd(0.25, 0.375))
    assert p.loc["ERM", "error"] == "mean ± std over seeds"


def test_fmt_pm_and_delta():
    assert fmt_pm(0.12345, 0.01) == "12.3 ± 1.0"
    assert fmt_pm(0.5, np.nan) == fmt_pm(0.5, None) == "50.0"
    assert fmt_pm(np.nan, 0.1) == fmt_pm(None, None) == "–"
    assert fmt_delta(-0.0123) == "-1.2" and fmt_delta(0.0) == "+0.0" and fmt_delta(None) == "–"


# ------------------------------------------------------------------- byte-identical to the replaced code


def _csv(frame: pd.DataFrame) -> str:
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    return buf.getvalue()


def test_tables_are_byte_identical_to_the_code_they_replace():
    """The assets were rendered by the code before fairser.results (see the assets' README)."""
    rows = [r for r in ResultsStore(ASSETS / "rows.jsonl").rows() if r["status"] == "ok"]
    table = paper_table(rows, baseline="ERM")
    comparison = comparison_table(rows, baseline="ERM", order=["ERM", "ERM-MinMaxGAP", "JTT", "IDI"])
    rendered = {
        "table.md": render_table(table, synthetic=True, source="synthetic rows", n_seeds=3),
        "table.csv": _csv(table),
        "comparison.md": render_comparison(
            comparison, synthetic=False, source="synthetic rows", baseline="ERM"
        ),
        "comparison.csv": _csv(comparison),
        "headline.csv": _csv(headline_table(rows)),
        "gap_cells.csv": _csv(gap_cells(rows)),
    }
    for name, text in rendered.items():
        assert text == (ASSETS / name).read_text(), name
    # The trade-off points' std now comes from the same groupby as the tables (before: Series.std, a
    # different summation): equal up to the last bit of a float.
    old, new = pd.read_csv(ASSETS / "tradeoff_points.csv"), tradeoff_points(rows)
    assert list(new.columns) == list(old.columns)
    for col in old.columns:
        if not pd.api.types.is_numeric_dtype(old[col]):
            assert list(new[col]) == list(old[col]), col
        else:
            np.testing.assert_allclose(new[col].to_numpy(float), old[col].to_numpy(float), rtol=1e-14, atol=0)


# ------------------------------------------------------------------------------- the sensitive attribute

AGE_BAND = {"columns": ["age_band"], "values": ["18-34", "35-59", "60+"]}
GENDER_X_AGE = {
    "columns": ["gender", "age_band"],
    "values": ["male × 18-34", "male × 60+", "female × 18-34", "female × 60+"],
}


def _rows_of(sensitive):
    rows = [
        _row("ERM", 0, gaps=[0.10, 0.20], wf1s=[0.6, 0.5]),
        _row("MMG", 0, gaps=[0.05, 0.10], wf1s=[0.6, 0.4]),
    ]
    if sensitive is not None:
        for r in rows:
            r["sensitive"] = sensitive
    return rows


def test_sensitive_labels_name_the_attribute_and_its_gap():
    gender = sensitive_labels(_rows_of(None))
    assert gender.is_gender and gender.name == "gender" and gender.values == ("male", "female")
    assert gender.description == "gender gap |W-F1(male) − W-F1(female)|"
    assert gender.formula() == "|W-F1(male) − W-F1(female)|" and gender.spread == "|male − female|"
    assert gender.gap_title == "Gender gap"
    assert gender.signed() == "signed gap = W-F1(female) − W-F1(male) (reference: male)"
    assert sensitive_labels([]) == gender  # no rows: the default

    age = sensitive_labels(_rows_of(AGE_BAND))
    assert not age.is_gender and age.name == "age_band" and age.columns == ("age_band",)
    assert age.description == "age_band gap (max − min of W-F1 over its 3 values: 18-34, 35-59, 60+)"
    assert age.spread == "max − min" and age.gap_title == "age_band gap" and age.signed() is None

    both = sensitive_labels(_rows_of(GENDER_X_AGE))
    assert both.name == "gender × age_band" and both.columns == ("gender", "age_band")
    assert both.description == (
        "gender × age_band gap (max − min of W-F1 over its 4 values: male × 18-34, male × 60+, "
        "female × 18-34, female × 60+)"
    )

    # two values of another attribute: the gender-style wording, and the signed gap's reference is named
    smoker = sensitive_labels(_rows_of({"columns": ["smoker"], "values": ["no", "yes"]}))
    assert smoker.description == "smoker gap |W-F1(no) − W-F1(yes)|" and smoker.spread == "|no − yes|"
    assert smoker.signed() == "signed gap = W-F1(yes) − W-F1(no) (reference: no)"
    assert smoker.signed("TPR") == "signed gap = TPR(yes) − TPR(no) (reference: no)"


_GENDER_TABLE = (
    "Data: x. W-F1 and gender gap |W-F1(male) − W-F1(female)| in %, mean ± std over 1 seed(s); Δ = objective − "
    "ERM. Overall: W-F1 on all test utterances, gap = mean over domains; Worst domain: max over domains of the "
    "gap."
)
_GENDER_COMPARISON = (
    "Data: x. In %, mean ± std over seeds. Gaps: |W-F1(male) − W-F1(female)| per domain (mean and max over "
    "domains); ΔSP / ΔEO: mean over domains of the mean over classes."
)


@pytest.mark.parametrize(
    ("sensitive", "table_text", "comparison_text"),
    [
        (None, _GENDER_TABLE, _GENDER_COMPARISON),
        (
            AGE_BAND,
            _GENDER_TABLE.replace(
                "gender gap |W-F1(male) − W-F1(female)|",
                "age_band gap (max − min of W-F1 over its 3 values: 18-34, 35-59, 60+)",
            ),
            _GENDER_COMPARISON.replace(
                "|W-F1(male) − W-F1(female)|",
                "age_band gap (max − min of W-F1 over its 3 values: 18-34, 35-59, 60+)",
            ),
        ),
        (
            GENDER_X_AGE,
            _GENDER_TABLE.replace(
                "gender gap |W-F1(male) − W-F1(female)|",
                "gender × age_band gap (max − min of W-F1 over its 4 values: male × 18-34, male × 60+, "
                "female × 18-34, female × 60+)",
            ),
            _GENDER_COMPARISON.replace(
                "|W-F1(male) − W-F1(female)|",
                "gender × age_band gap (max − min of W-F1 over its 4 values: male × 18-34, male × 60+, "
                "female × 18-34, female × 60+)",
            ),
        ),
    ],
)
def test_tables_describe_the_gap_of_the_rows_attribute(sensitive, table_text, comparison_text):
    rows = _rows_of(sensitive)
    table = render_table(paper_table(rows, baseline="ERM"), synthetic=False, source="x", n_seeds=1)
    assert table.splitlines()[0] == table_text
    comparison = render_comparison(
        comparison_table(rows, baseline="ERM"), synthetic=False, source="x", baseline="ERM"
    )
    assert comparison.splitlines()[0].startswith(comparison_text)
    # the numbers do not depend on the wording
    assert (
        table.splitlines()[2:]
        == render_table(
            paper_table(_rows_of(None), baseline="ERM"), synthetic=False, source="x", n_seeds=1
        ).splitlines()[2:]
    )


@pytest.mark.parametrize(
    "other",
    [None, GENDER_X_AGE, {"columns": ["age_band"], "values": ["18-34", "60+"]}],
    ids=["gender", "intersection", "other-values"],
)
def test_rows_of_different_sensitive_attributes_are_refused(other):
    rows = _rows_of(AGE_BAND) + [
        {**r, "run_id": r["run_id"] + "-other", "seed": 1} | ({"sensitive": other} if other else {})
        for r in _rows_of(None)
    ]
    for build in (
        lambda: sensitive_labels(rows),
        lambda: paper_table(rows, baseline="ERM"),
        lambda: comparison_table(rows, baseline="ERM"),
    ):
        with pytest.raises(ValueError, match="different sensitive attributes") as err:
            build()
        assert "age_band with values ['18-34', '35-59', '60+'] (e.g. run audio-ERM-0)" in str(err.value)


# ------------------------------------------------------------------------------------------------- JSON


def test_jsonable_converts_numpy_nonfinite_keys_and_tuples():
    value = {
        1: np.float32(0.5),
        "n": np.int64(3),
        "ok": np.bool_(True),
        "t": (np.float64(1.25), float("nan"), float("inf")),
        "na": pd.NA,
        "nat": pd.NaT,
        "nested": [{"x": np.float64(-np.inf)}, None, "s"],
    }
    out = jsonable(value)
    assert out == {
        "1": 0.5,
        "n": 3,
        "ok": True,
        "t": [1.25, None, None],
        "na": None,
        "nat": None,
        "nested": [{"x": None}, None, "s"],
    }
    assert type(out["n"]) is int and type(out["ok"]) is bool and type(out["1"]) is float
    json.dumps(out, allow_nan=False)  # plain JSON


def test_jsonable_keeps_what_the_four_old_copies_produced():
    # results store: a row with NumPy values and NaN is written as it was
    row = {"run_id": "a", "x": np.float64(0.1), "k": {2: np.int32(7)}, "nan": np.nan, "l": (1, 2)}
    assert json.dumps(jsonable(row), sort_keys=True) == (
        '{"k": {"2": 7}, "l": [1, 2], "nan": null, "run_id": "a", "x": 0.1}'
    )
    # runner (objective summaries / stages): the same values once the store has written them
    summary = {"jtt_error_set_size": np.int64(4), "jtt_error_rate": float("nan"), "stage": "jtt"}
    roundtrip = json.loads(json.dumps(summary, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    assert (
        jsonable(roundtrip)
        == jsonable(summary)
        == {"jtt_error_set_size": 4, "jtt_error_rate": None, "stage": "jtt"}
    )


# ------------------------------------------------------------------------ evaluation on any attribute


class _Spec:
    class objective:  # noqa: N801 - stands in for an ObjectiveSpec
        display = "ERM"
        name = "erm"
        params = {}

    seed, setting, run_id = 0, "audio", "audio-erm-0"


def _meta(n_per_cell: int = 12) -> tuple[pd.DataFrame, np.ndarray]:
    """One domain (en, audio); a 2 x 2 grid of gender x age_band, 12 utterances per cell. The model is
    right on every 'young' utterance; on 'old' it is right on half of each class (male) or on every
    'a' and no 'b' (female)."""
    recs, pred = [], []
    for gender in ("male", "female"):
        for age in ("young", "old"):
            for i in range(n_per_cell):
                y = "ab"[i % 2]
                if age == "young":
                    p = y
                elif gender == "male":
                    p = y if i % 4 < 2 else "ba"["ab".index(y)]
                else:
                    p = "a"
                recs.append(
                    {
                        "id": f"{gender}-{age}-{i}",
                        "emotion": y,
                        "gender": gender,
                        "age_band": age,
                        "language": "en",
                        "modality": "audio",
                        "speaker": f"{gender}-{age}-{i % 3}",
                        "corpus": "c",
                    }
                )
                pred.append(p)
    meta = pd.DataFrame(recs)
    proba = np.array([[1.0, 0.0] if p == "a" else [0.0, 1.0] for p in pred])
    return meta, proba


@pytest.mark.parametrize(
    ("sensitive", "expected"),
    [
        # young: all right. old (24 rows): a: TP 9, FP 9, FN 3 -> F1 0.6; b: TP 3, FP 3, FN 9 -> F1 1/3
        (("age_band",), {"young": 1.0, "old": (0.6 + 1 / 3) / 2}),
        # male × old: a and b half right -> 0.5; female × old: a P 1/2 R 1 (F1 2/3), b F1 0 -> 1/3
        (
            ("gender", "age_band"),
            {"male × young": 1.0, "male × old": 0.5, "female × young": 1.0, "female × old": 1 / 3},
        ),
    ],
)
def test_evaluate_run_on_another_sensitive_attribute(sensitive, expected):
    meta, proba = _meta()
    pred = predictions_table(meta=meta, proba=proba, labels=["a", "b"], spec=_Spec, sensitive=sensitive)
    assert list(pred.columns[:10]) == [
        "id", "split", "y_true", "y_pred", "gender", "language", "modality", "speaker", "corpus", "age_band",
    ]  # fmt: skip
    evaluation = EvalConfig(n_boot=0, n_perm=0, resample="utterance")
    fields, _ = evaluate_run(pred, labels=["a", "b"], evaluation=evaluation, seed=0, sensitive=sensitive)
    (domain,) = fields["domains"]
    assert (domain["language"], domain["modality"], domain["n"]) == ("en", "audio", 48)
    for value, wf1 in expected.items():
        assert math.isclose(domain[f"weighted_f1_{value}"], wf1), value
    assert math.isclose(domain["weighted_f1_gap"], max(expected.values()) - min(expected.values()))
    assert "weighted_f1_male" not in domain


def test_evaluate_run_on_gender_keeps_the_row_fields():
    meta, proba = _meta()
    pred = predictions_table(meta=meta, proba=proba, labels=["a", "b"], spec=_Spec)
    assert "age_band" not in pred.columns
    assert list(pred.columns[-6:]) == ["prob_a", "prob_b", "objective", "seed", "setting", "run_id"]
    evaluation = EvalConfig(n_boot=0, n_perm=0, resample="utterance")
    fields, _ = evaluate_run(pred, labels=["a", "b"], evaluation=evaluation, seed=0)
    (domain,) = fields["domains"]
    # male: a: TP 9, FP 3, FN 3 -> F1 0.75, b alike; female: a: TP 12, FP 6 -> F1 0.8, b: TP 6, FN 6 -> 2/3
    male, female = 0.75, (0.8 + 2 / 3) / 2
    assert math.isclose(domain["weighted_f1_male"], male)
    assert math.isclose(domain["weighted_f1_female"], female)
    assert math.isclose(domain["weighted_f1_gap"], male - female)
    assert math.isclose(domain["weighted_f1_signed_gap"], female - male)
    # all 48 rows: a: TP 21, FP 9, FN 3 -> F1 7/9; b: TP 15, FP 3, FN 9 -> F1 5/7; recalls 7/8 and 5/8
    assert math.isclose(fields["overall_weighted_f1"], (7 / 9 + 5 / 7) / 2)
    assert math.isclose(fields["overall_uar"], 0.75)


def test_evaluate_run_two_valued_intersection_keeps_gender_as_the_reference():
    """gender × corpus with one corpus has two values, male × … first: the signed gap is female − male, as for
    gender alone (an intersection joined into one text column would sort ``female × …`` first and flip it)."""
    meta, proba = _meta()
    pred = predictions_table(meta=meta, proba=proba, labels=["a", "b"], spec=_Spec)
    evaluation = EvalConfig(n_boot=0, n_perm=0, resample="utterance")
    both, _ = evaluate_run(
        pred, labels=["a", "b"], evaluation=evaluation, seed=0, sensitive=("gender", "corpus")
    )
    (domain,) = both["domains"]
    corpus = str(pred["corpus"].iloc[0])
    male, female = 0.75, (0.8 + 2 / 3) / 2  # as in the test above
    assert math.isclose(domain[f"weighted_f1_male × {corpus}"], male)
    assert math.isclose(domain[f"weighted_f1_female × {corpus}"], female)
    assert math.isclose(domain["weighted_f1_signed_gap"], female - male)


# ------------------------------------------------------------------------ gaps with their uncertainty


def _uncertain_row(obj, seed, en, de):
    """A run with an en domain (gap, ci_low, ci_high, p) and a de domain whose gap is ``de`` (None:
    undefined, with the evaluation's reason)."""
    row = _row(obj, seed, gaps=[en[0], de], wf1s=[0.5, 0.75])
    d_en, d_de = row["domains"]
    d_en.update(weighted_f1_ci_low=en[1], weighted_f1_ci_high=en[2], weighted_f1_p_value=en[3])
    if de is None:
        d_de.update(
            weighted_f1_ci_low=None,
            weighted_f1_ci_high=None,
            weighted_f1_p_value=None,
            weighted_f1_reason="one gender only (female): no gap",
            dsp_mean_gap=None,
            dsp_mean_reason="one gender only (female): no gap",
        )
    else:
        d_de.update(weighted_f1_ci_low=None, weighted_f1_ci_high=None, weighted_f1_p_value=0.5)
        d_de["weighted_f1_reason"] = "too few speakers for a CI"
    return row


def _uncertain_rows():
    return [
        _uncertain_row("MMG", 0, en=(0.0625, 0.0, 0.125, 0.5), de=0.25),  # given first: ERM still leads
        _uncertain_row("ERM", 0, en=(0.125, 0.02, 0.25, 0.01), de=None),
        _uncertain_row("ERM", 1, en=(0.25, 0.125, 0.375, 0.04999), de=0.125),
    ]


_MDG = pd.DataFrame(
    {
        "setting": ["audio", "audio"],
        "language": ["en", "de"],
        "modality": ["audio", "audio"],
        "mdg": [0.2, 0.1],
        "mdg_se": [0.01, 0.005],
        "speakers_per_group": ["6/6", "4/4"],
        "reason": ["", ""],
    }
)


def test_gaps_table_carries_ci_p_mark_and_mdg():
    gaps = gaps_table(_uncertain_rows(), baseline="ERM", mdg=_MDG)
    assert list(gaps.columns) == list(GAP_COLUMNS)
    # baseline first within each domain, seeds in the rows' order; de (modality audio) before en
    assert list(zip(gaps.language, gaps.objective, gaps.seed, strict=True)) == [
        ("de", "ERM", 0), ("de", "ERM", 1), ("de", "MMG", 0),
        ("en", "ERM", 0), ("en", "ERM", 1), ("en", "MMG", 0),
    ]  # fmt: skip
    en = gaps[gaps.language == "en"].set_index(["objective", "seed"])
    assert en.loc[("ERM", 0), "significant"] and en.loc[("ERM", 1), "significant"]
    assert not en.loc[("MMG", 0), "significant"]  # p = 0.5
    assert list(en["below_mdg"]) == [True, False, True]  # 12.5 < 20, 25 >= 20, 6.25 < 20
    de = gaps[gaps.language == "de"].set_index(["objective", "seed"])
    assert math.isnan(de.loc[("ERM", 0), "gap"]) and de.loc[("ERM", 0), "below_mdg"] is pd.NA
    assert de.loc[("ERM", 0), "reason"] == "one gender only (female): no gap"
    assert not de.loc[("ERM", 1), "below_mdg"] and (de["mdg"] == 0.1).all()

    text = render_gaps(gaps)
    lines = text.splitlines()
    assert lines[0] == "### Gaps with their uncertainty"
    assert "| en | audio | ERM | 0 | 12.5 [2.0, 25.0]*† | 0.010 | 20.0 ± 1.0 (6/6) |" in lines
    assert "| en | audio | ERM | 1 | 25.0 [12.5, 37.5]* | 0.050 | 20.0 ± 1.0 (6/6) |" in lines
    assert "| en | audio | MMG | 0 | 6.2 [0.0, 12.5]† | 0.500 | 20.0 ± 1.0 (6/6) |" in lines
    assert "| de | audio | ERM | 0 | – | – | 10.0 ± 0.5 (4/4) |" in lines
    assert "| de | audio | ERM | 1 | 12.5 [–] | 0.500 | 10.0 ± 0.5 (4/4) |" in lines  # CI undefined
    assert "80% power at α = 0.05" in text and "METHODS.md §2.1" in text
    assert (
        "2 of 5 gaps are below their domain's MDG (1 of them significant): for these the data cannot "
        "detect a gap this small reliably." in text
    )
    # undefined domains with their reasons (every metric), and what Overall covers
    assert (
        "- de/audio (audio), weighted_f1: one gender only (female): no gap — ERM seed 0" in lines
        and "- de/audio (audio), dsp_mean: one gender only (female): no gap — ERM seed 0" in lines
    )
    assert lines[-1] == (
        "Overall (audio): W-F1 on all test utterances of en/audio, de/audio; gap = mean over en/audio, "
        "de/audio (left out where undefined: de/audio in ERM seed 0)."
    )
    # beneath the paper table, whose text is unchanged
    plain = render_table(
        paper_table(_uncertain_rows(), baseline="ERM"), synthetic=False, source="x", n_seeds=2
    )
    both = render_table(
        paper_table(_uncertain_rows(), baseline="ERM"), synthetic=False, source="x", n_seeds=2, gaps=gaps
    )
    assert both == plain + "\n" + text


def test_gaps_table_without_mdg_and_as_csv(tmp_path):
    gaps = gaps_table(_uncertain_rows(), baseline="ERM")
    assert gaps["mdg"].isna().all() and gaps["below_mdg"].isna().all()
    text = render_gaps(gaps, ci=0.9)
    assert "| en | audio | ERM | 0 | 12.5 [2.0, 25.0]* | 0.010 | – |" in text  # no † without an MDG
    assert "with its 90% CI" in text and "MDG: not computed (–)." in text and "below their" not in text
    # the CSV holds the same numbers, tidy
    gaps.to_csv(tmp_path / "gaps.csv", index=False)
    back = pd.read_csv(tmp_path / "gaps.csv")
    assert list(back.columns) == list(GAP_COLUMNS) and len(back) == 6
    e0 = back[(back.language == "en") & (back.objective == "ERM") & (back.seed == 0)].iloc[0]
    assert (e0.gap, e0.ci_low, e0.ci_high, e0.p_value, bool(e0.significant)) == (
        0.125,
        0.02,
        0.25,
        0.01,
        True,
    )
    # a domain whose MDG is undefined: "–" and the reason beneath
    no_mdg = _MDG.assign(mdg=[0.2, np.nan], mdg_se=[0.01, np.nan], reason=["", "too few speakers"])
    text = render_gaps(gaps_table(_uncertain_rows(), baseline="ERM", mdg=no_mdg))
    assert "| de | audio | ERM | 1 | 12.5 [–] | 0.500 | – |" in text and "MDG: not computed" not in text
    assert "MDG undefined (–):\n\n- de/audio (audio): too few speakers\n" in text
    assert (
        "W-F1 gaps without a CI ([–]):\n\n- de/audio (audio): too few speakers for a CI — ERM seed 1, MMG seed 0"
        in text
    )
    # rows without any undefined gap
    clean = [_uncertain_row("ERM", 0, en=(0.125, 0.02, 0.25, 0.01), de=0.125)]
    clean_text = render_gaps(gaps_table(clean, mdg=_MDG))
    assert (
        "Undefined gaps: none." in clean_text
        and "1 of 2 gaps are below their domain's MDG (1 of them significant)" in clean_text
    )
    assert clean_text.splitlines()[-1].endswith("gap = mean over en/audio, de/audio.")

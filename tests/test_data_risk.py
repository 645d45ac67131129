"""Training-data bias risk (fairser.data.risk): gender-wise emotion distributions of the training split and their
Jensen-Shannon divergence, printed by `fairser data validate`, written by the benchmark, shown by the report."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fairser.cli import app
from fairser.data.risk import js_divergence, read_data_risk, training_data_risk
from fairser.report import build_report
from fairser.report.risk import risk_section, risk_vs_gap
from fairser.results import ResultsStore

# Hand-computed: P = (1, 0), Q = (1/2, 1/2), M = (3/4, 1/4);
# KL(P||M) = log2(4/3), KL(Q||M) = 1/2 log2(2/3) + 1/2 log2(2) -> JSD = 3/2 - 3/4 log2(3).
JS_HALF = 1.5 - 0.75 * math.log2(3)


def _row(i, *, emotion, gender, language="en", speaker="s", corpus="c1", split="train", **extra):
    return {
        "id": f"u{i}",
        "audio_path": f"a{i}.wav",
        "transcript": "",
        "emotion": emotion,
        "gender": gender,
        "language": language,
        "speaker": speaker,
        "corpus": corpus,
        "split": split,
        **extra,
    }


def tiny_manifest() -> pd.DataFrame:
    """en: males all anger, females half anger half joy (JSD = JS_HALF), plus an unknown-gender training row
    and test/valid rows of another distribution that must not count. de: two corpora, c1 with equal
    distributions (JSD 0) and c2 with disjoint ones (JSD 1). ja: female training rows only."""
    spec = [
        # en / train
        ("anger", "male", "en", "m1", "c1", "train"),
        ("anger", "male", "en", "m2", "c1", "train"),
        ("anger", "female", "en", "f1", "c1", "train"),
        ("joy", "female", "en", "f1", "c1", "train"),
        ("joy", "unknown", "en", "x1", "c1", "train"),
        # en / not training
        ("joy", "male", "en", "m3", "c1", "test"),
        ("joy", "male", "en", "m3", "c1", "test"),
        ("anger", "female", "en", "f3", "c1", "valid"),
        # de / c1: the same distribution
        ("anger", "male", "de", "dm1", "c1", "train"),
        ("joy", "male", "de", "dm1", "c1", "train"),
        ("anger", "female", "de", "df1", "c1", "train"),
        ("joy", "female", "de", "df1", "c1", "train"),
        # de / c2: disjoint
        ("sadness", "male", "de", "dm2", "c2", "train"),
        ("neutral", "female", "de", "df2", "c2", "train"),
        # ja: females only
        ("joy", "female", "ja", "jf1", "c1", "train"),
        ("anger", "male", "ja", "jm1", "c1", "test"),
    ]
    return pd.DataFrame(
        [
            _row(i, emotion=e, gender=g, language=lang, speaker=s, corpus=c, split=sp)
            for i, (e, g, lang, s, c, sp) in enumerate(spec)
        ]
    )


def _scope(risk, language, scope="language", corpus=None):
    s = risk.scopes()
    mask = (s.language == language) & (s.scope == scope)
    if corpus is not None:
        mask &= s.corpus == corpus
    assert mask.sum() == 1
    return s[mask].iloc[0]


def test_js_divergence_matches_the_hand_computed_value_and_scipy_is_the_distance_squared():
    assert js_divergence([1, 0], [0.5, 0.5]) == pytest.approx(JS_HALF, abs=1e-12)
    assert js_divergence([2, 0], [1, 1]) == pytest.approx(JS_HALF, abs=1e-12)  # counts are normalised
    assert js_divergence([1, 0], [0, 1]) == pytest.approx(1.0)
    assert js_divergence([0.2, 0.8], [0.2, 0.8]) == pytest.approx(0.0, abs=1e-12)


def test_training_data_risk_on_a_tiny_manifest():
    risk = training_data_risk(tiny_manifest())
    assert risk.attribute == "gender" and risk.values == ("male", "female")
    assert risk.labels == ("neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust")  # meld7 order
    t = risk.table
    en = t[(t.language == "en") & (t.scope == "language")].set_index("value")
    # only the training rows: the test males (joy) and the valid female are left out
    assert en.loc["male", "n"] == 2 and en.loc["female", "n"] == 2
    assert en.loc["male", "n_anger"] == 2 and en.loc["male", "n_joy"] == 0
    assert en.loc["female", "share_anger"] == 0.5 and en.loc["female", "share_joy"] == 0.5
    assert en.loc["male", "share_anger"] == 1.0 and en.loc["male", "share_neutral"] == 0.0
    assert en.loc["male", "n_speakers"] == 2 and en.loc["female", "n_speakers"] == 1
    row = _scope(risk, "en")
    assert row.n_unknown == 1 and row.corpus == "c1"
    assert row.js_divergence == pytest.approx(JS_HALF, abs=1e-12) and row.js_pair == "male vs female"
    # de pools two corpora (JSD of the pooled distributions), and each corpus has its own row
    pooled = _scope(risk, "de")
    assert pooled.corpus == "c1+c2" and pooled.n_male == 3 and pooled.n_female == 3
    # male (1/3 anger, 1/3 joy, 1/3 sadness) vs female (1/3 anger, 1/3 joy, 1/3 neutral): M puts 1/6 on each
    # of sadness and neutral, so each KL is 1/3 log2(2) -> JSD = 1/3
    assert pooled.js_divergence == pytest.approx(1 / 3, abs=1e-12)
    assert _scope(risk, "de", "corpus", "c1").js_divergence == pytest.approx(0.0, abs=1e-12)
    assert _scope(risk, "de", "corpus", "c2").js_divergence == pytest.approx(1.0)
    assert set(risk.scopes().query("language != 'de'").scope) == {"language"}  # one corpus: no corpus rows
    # ja: one value only -> undefined, with the reason
    ja = _scope(risk, "ja")
    assert np.isnan(ja.js_divergence) and ja.reason == "only 'female' in the training rows"
    assert t[(t.language == "ja") & (t.value == "male")].iloc[0].n == 0
    assert np.isnan(t[(t.language == "ja") & (t.value == "male")].iloc[0].share_joy)
    assert list(risk.per_language().language) == ["de", "en", "ja"]


def test_all_rows_labels_and_roundtrip(tmp_path):
    m = tiny_manifest()
    every = training_data_risk(m, split=None, labels=["anger", "joy", "sadness", "neutral"])
    assert every.labels == ("anger", "joy", "sadness", "neutral")
    en = every.table[(every.table.language == "en")].set_index("value")
    assert en.loc["male", "n"] == 4 and en.loc["male", "n_joy"] == 2  # the test rows count now
    # male (1/2, 1/2) vs female (2/3 anger, 1/3 joy)
    assert _scope(every, "en").js_divergence == pytest.approx(js_divergence([0.5, 0.5], [2 / 3, 1 / 3]))
    risk = training_data_risk(m)
    back = read_data_risk(risk.write(tmp_path / "data_risk.csv"))
    assert back.values == risk.values and back.labels == risk.labels and back.split == "train"
    assert back.attribute == "gender"
    pd.testing.assert_frame_equal(back.scopes(), risk.scopes(), check_dtype=False)


def test_more_than_two_values_report_the_largest_pairwise_divergence_and_its_pair():
    m = pd.DataFrame(
        [_row(0, emotion="anger", gender="male", accent="a", speaker="s0")]
        + [_row(1, emotion="anger", gender="male", accent="b", speaker="s1")]
        + [_row(2, emotion="joy", gender="male", accent="b", speaker="s2")]
        + [_row(3, emotion="joy", gender="female", accent="c", speaker="s3")]
        + [_row(4, emotion="joy", gender="female", accent="unknown", speaker="s4")]
    )
    risk = training_data_risk(m, sensitive=["accent"])
    assert risk.values == ("a", "b", "c")
    row = _scope(risk, "en")
    # pairs: a-b = JS_HALF, b-c = JS_HALF, a-c = 1 (disjoint)
    assert row.js_divergence == pytest.approx(1.0) and row.js_pair == "a vs c" and row.n_unknown == 1
    # an intersection: a row unknown in one part is unknown
    inter = training_data_risk(m, sensitive=["gender", "accent"])
    assert inter.attribute == "gender × accent" and _scope(inter, "en").n_unknown == 1
    assert inter.values == ("male × a", "male × b", "female × c")
    with pytest.raises(KeyError, match="not a column"):
        training_data_risk(m, sensitive=["age_band"])


def test_validate_prints_the_risk_table(tmp_path):
    path = tmp_path / "manifest.csv"
    tiny_manifest().to_csv(path, index=False)
    res = CliRunner().invoke(app, ["data", "validate", str(path), "--no-check-files"])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "Training-data bias risk (split 'train'; gender)" in out
    assert f"language en (c1): JS divergence {JS_HALF:.4f}; 1 utterance(s) of unknown gender left out" in out
    assert "language de (c1+c2): JS divergence 0.3333" in out
    assert "language de, corpus c2: JS divergence 1.0000" in out
    assert "language ja (c1): JS divergence undefined (only 'female' in the training rows)" in out
    en_block = out.split("language en (c1)")[1].split("language ja")[0].splitlines()
    male = next(line.split() for line in en_block if line.strip().startswith("male"))
    female = next(line.split() for line in en_block if line.strip().startswith("female"))
    header = next(line.split() for line in en_block if line.strip().startswith("gender"))
    # n, speakers, then one share (%) per emotion in the meld7 order
    assert header[:5] == ["gender", "n", "speakers", "neutral", "joy"] and header[-1] == "disgust"
    assert male[1:3] == ["2", "2"] and dict(zip(header, male, strict=True))["anger"] == "100.0"
    assert dict(zip(header, female, strict=True))["joy"] == "50.0"
    # another attribute, and a missing column is one message and a non-zero exit
    bad = CliRunner().invoke(
        app, ["data", "validate", str(path), "--no-check-files", "--sensitive", "accent"]
    )
    assert bad.exit_code == 2 and "sensitive attribute 'accent' is not a column" in bad.output
    assert "Traceback" not in bad.output


# ----------------------------------------------------------------------------------------------- report


@pytest.fixture(scope="module")
def fake_bench(tmp_path_factory):
    from test_report import make_fake_benchmark

    return make_fake_benchmark(
        tmp_path_factory.mktemp("riskbench") / "results", seeds=(0, 1), settings=("audio",)
    )


def test_report_shows_the_risk_beside_the_baseline_gap_when_the_file_exists(fake_bench, tmp_path):
    bench = tmp_path / "bench"
    shutil.copytree(fake_bench, bench)
    risk = training_data_risk(tiny_manifest())
    risk.write(bench / "data_risk.csv")
    rows = [r for r in ResultsStore(bench / "results.jsonl").rows() if r["status"] == "ok"]
    points = risk_vs_gap(risk, rows, baseline="ERM")
    # the baseline's gap per domain, mean over seeds, by hand
    for lang, mod in (("de", "audio"), ("en", "audio")):
        gaps = [
            d["weighted_f1_gap"]
            for r in rows
            if r["objective_label"] == "ERM"
            for d in r["domains"]
            if d["language"] == lang and d["modality"] == mod
        ]
        p = points[(points.language == lang) & (points.modality == mod)].iloc[0]
        assert len(gaps) == 2 and p.gap == pytest.approx(np.mean(gaps)) and p.n_seeds == 2
        assert p.gap_std == pytest.approx(np.std(gaps, ddof=1))
    assert points.set_index(["language", "modality"]).loc[("en", "audio"), "js_divergence"] == pytest.approx(
        JS_HALF
    )
    section = risk_section(bench, rows, baseline="ERM", synthetic=True, source="fake")
    table = section.table.set_index("language")
    assert table.loc["en", "JS divergence (base 2)"] == f"{JS_HALF:.4f}"
    assert table.loc["ja", "JS divergence (base 2)"].startswith("– (only 'female'")
    assert table.loc["en", "n train male"] == 2 and table.loc["en", "n unknown"] == 1
    de_gap = points[(points.language == "de") & (points.modality == "audio")].iloc[0]
    assert table.loc["de", "ERM W-F1 gap, audio (%)"].startswith(f"{100 * de_gap.gap:.1f} ± ")

    report = build_report(bench, out_dir=tmp_path / "report", n_boot=20)
    page = report.html.read_text()
    assert '<h2 id="data-risk">Training-data bias risk</h2>' in page and 'id="fig-data_risk"' in page
    assert f"{JS_HALF:.4f}" in page and "ERM W-F1 gap, audio (%)" in page
    assert report.figures["data_risk"].is_file() and report.figures["data_risk"].stat().st_size > 10_000
    md = report.markdown.read_text()
    assert "## Training-data bias risk" in md and "figures/data_risk.png" in md and f"{JS_HALF:.4f}" in md


def test_report_without_the_file_omits_the_section(fake_bench, tmp_path):
    assert not (fake_bench / "data_risk.csv").exists()
    rows = [r for r in ResultsStore(fake_bench / "results.jsonl").rows() if r["status"] == "ok"]
    assert risk_section(fake_bench, rows, baseline="ERM", synthetic=True, source="fake") is None
    report = build_report(fake_bench, out_dir=tmp_path / "report", n_boot=20)
    page, md = report.html.read_text(), report.markdown.read_text()
    assert "data-risk" not in page and "Training-data bias risk" not in page
    assert "Training-data bias risk" not in md and "data_risk" not in report.figures
    assert not Path(tmp_path / "report" / "figures" / "data_risk.png").exists()

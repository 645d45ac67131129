"""fairser report: figures, self-contained HTML and Markdown from a (fake) benchmark folder and an audit folder."""

from __future__ import annotations

import base64
import json
import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import f1_score
from typer.testing import CliRunner

from fairser.audit import audit_predictions
from fairser.cli import app
from fairser.metrics import evaluate_predictions
from fairser.report import (
    build_report,
    gap_cells,
    plot_gap_heatmap,
    plot_tradeoff,
    plot_weight_dynamics,
    tradeoff_points,
)
from fairser.results import ResultsStore, gaps_table, paper_table, render_gaps, render_table

LABELS = ["neutral", "joy", "sadness", "anger"]
OBJECTIVES = (("erm", "ERM"), ("minmaxgap", "ERM-MinMaxGAP"))


def _predictions(*, setting, objective, label, seed, languages, female_only=(), utts=12, spk=4):
    """Test predictions of one run: 'de' has a planted gap (females worse) that MinMaxGAP halves."""
    rng = np.random.default_rng(zlib.crc32(f"{setting}/{objective}/{seed}".encode()))
    modalities = ["audio", "audio+text"] if setting == "joint" else [setting]
    rows = []
    for lang in languages:
        for gender in ("male", "female"):
            if gender == "male" and lang in female_only:
                continue
            for s in range(spk):
                speaker = f"{lang}-{gender[0]}{s}"
                acc = 0.75
                if lang == "de" and gender == "female":
                    acc = 0.45 if objective == "erm" else 0.6
                for u in range(utts):
                    t = (s + u) % len(LABELS)
                    p = t if rng.random() < acc else (t + 1 + int(rng.integers(3))) % len(LABELS)
                    prob = np.full(len(LABELS), 0.1)
                    prob[p] = 0.7
                    for mod in modalities:
                        rows.append(
                            {
                                "id": f"{speaker}-{u}",
                                "split": "test",
                                "y_true": LABELS[t],
                                "y_pred": LABELS[p],
                                **{f"prob_{lab}": prob[i] for i, lab in enumerate(LABELS)},
                                "gender": gender,
                                "language": lang,
                                "modality": mod,
                                "speaker": speaker,
                                "corpus": "synthetic",
                            }
                        )
    pred = pd.DataFrame(rows)
    pred["objective"], pred["seed"], pred["setting"] = label, seed, setting
    return pred


def _run_row(pred: pd.DataFrame, *, run_id, setting, objective, label, seed) -> dict:
    """A results.jsonl row as fairser.bench.runner.execute_run writes it."""
    ev = evaluate_predictions(pred, labels=LABELS, n_boot=50, n_perm=50, seed=seed)
    domains = []
    for (lang, mod), sub in pred.groupby(["language", "modality"], sort=False):
        d = {"language": lang, "modality": mod, "n": len(sub)}
        d["weighted_f1"] = f1_score(
            sub.y_true, sub.y_pred, labels=LABELS, average="weighted", zero_division=0
        )
        g = ev.gaps[(ev.gaps.language == lang) & (ev.gaps.modality == mod)]
        for rec in g.to_dict(orient="records"):
            for col in ("gap", "signed_gap", "ci_low", "ci_high", "p_value", "reason"):
                d[f"{rec['metric']}_{col}"] = rec[col]
        b = ev.table("by_group")
        b = b[(b.language == lang) & (b.modality == mod)]
        for rec in b[b.metric == "weighted_f1"].to_dict(orient="records"):
            d[f"weighted_f1_{rec['gender']}"] = rec["value"]
        domains.append(d)
    return {
        "run_id": run_id,
        "status": "ok",
        "setting": setting,
        "objective": objective,
        "objective_label": label,
        "seed": seed,
        "domains": domains,
        "overall_weighted_f1": f1_score(
            pred.y_true, pred.y_pred, labels=LABELS, average="weighted", zero_division=0
        ),
        "summary": ev.summary.to_dict(orient="records"),
        "notes": list(ev.notes),
    }


def make_fake_benchmark(
    root: Path,
    *,
    seeds=(0, 1),
    settings=("audio", "audio+text"),
    languages=("en", "de", "ja"),
    female_only=("ja",),
    synthetic=True,
    with_predictions=True,
) -> Path:
    """A benchmark output folder as fairser.bench.runner.run_benchmark writes it (results.jsonl,
    runs/<id>/predictions.csv, table.md/csv, benchmark.json), without training anything."""
    root.mkdir(parents=True, exist_ok=True)
    store = ResultsStore(root / "results.jsonl")
    for setting in settings:
        for objective, label in OBJECTIVES:
            for seed in seeds:
                run_id = f"{setting}__{label}__seed{seed}__fake"
                pred = _predictions(
                    setting=setting,
                    objective=objective,
                    label=label,
                    seed=seed,
                    languages=languages,
                    female_only=female_only,
                )
                pred["run_id"] = run_id
                if with_predictions:
                    (root / "runs" / run_id).mkdir(parents=True, exist_ok=True)
                    pred.to_csv(root / "runs" / run_id / "predictions.csv", index=False)
                    log = {"step": range(6), "epoch": [0, 0, 1, 1, 2, 2], "erm": 1.0}
                    if objective == "minmaxgap":  # its per-step lambda_t and R_t, as fit() logs them
                        log |= {"lambda": [1.0, 1.1, 1.2, 1.3, 1.4, 1.5], "R": [0.3, 0.1, 0.2, 0.2, 0.4, 0.2]}
                    pd.DataFrame(log).to_csv(root / "runs" / run_id / "train_log.csv", index=False)
                store.append(
                    _run_row(
                        pred, run_id=run_id, setting=setting, objective=objective, label=label, seed=seed
                    )
                )
    store.append({"run_id": "broken", "status": "failed", "error": "RuntimeError: boom"})
    rows = [r for r in store.rows() if r["status"] == "ok"]
    table = paper_table(rows, baseline="ERM")
    source = "built-in synthetic corpus (eSpeak NG), data/synthetic" if synthetic else "emodb (fake)"
    (root / "table.md").write_text(
        render_table(table, synthetic=synthetic, source=source, n_seeds=len(seeds))
    )
    table.to_csv(root / "table.csv", index=False)
    meta = {"name": "fake", "synthetic": synthetic, "source": source, "sampler": "stratified", "notes": []}
    (root / "benchmark.json").write_text(json.dumps(meta))
    return root


# ----------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    return make_fake_benchmark(tmp_path_factory.mktemp("bench") / "results")


@pytest.fixture(scope="module")
def bench_report(bench_dir, tmp_path_factory):
    return build_report(bench_dir, out_dir=tmp_path_factory.mktemp("report"), n_boot=100)


_EXTERNAL = re.compile(r"""(?:src|href|srcset|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


def assert_self_contained(page: str) -> None:
    """No resource the browser would fetch: no http(s):// or //host src/href, no <link>, no script src,
    no CSS url() or @import to anything but data: URIs."""
    assert not _EXTERNAL.search(page), _EXTERNAL.search(page).group(0)
    assert "<link" not in page.lower() and "<script" not in page.lower()
    assert "@import" not in page
    for url in re.findall(r"url\(([^)]*)\)", page):
        assert url.strip("'\" ").startswith("data:"), url


def _png_images(page: str) -> list[bytes]:
    return [
        base64.b64decode(b) for b in re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    ]


# ----------------------------------------------------------------------------------------------- report


def test_report_from_benchmark_folder(bench_report, bench_dir):
    page = bench_report.html.read_text()
    assert_self_contained(page)
    images = _png_images(page)
    assert len(images) == 4 and all(img.startswith(b"\x89PNG\r\n\x1a\n") for img in images)
    for name in ("gap_heatmap", "tradeoff", "per_class_tpr_gaps", "weight_dynamics"):
        png = bench_report.figures[name]
        assert png.parent == bench_report.out_dir / "figures" and png.read_bytes() in images
        pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
        assert pixels.std() > 20 and pixels.shape[0] > 300  # a drawn figure, not a blank canvas
    assert 'id="synthetic-banner"' in page and "SYNTHETIC DATA" in page
    assert "built-in synthetic corpus (eSpeak NG)" in page
    # The paper table is fairser.results.tables' own rendering.
    rows = [r for r in ResultsStore(bench_dir / "results.jsonl").rows() if r["status"] == "ok"]
    expected = render_table(
        paper_table(rows, baseline="ERM"), synthetic=True, source=bench_report.data.source, n_seeds=2
    )
    # beneath it, the gaps with their CI and p-value (no mdg.csv in this folder: no MDG, shown as "–")
    gaps = render_gaps(gaps_table(rows, baseline="ERM"))
    assert bench_report.table.read_text() == expected + "\n" + gaps
    assert "### Gaps with their uncertainty" in gaps and "MDG: not computed (–)." in gaps
    assert list(pd.read_csv(bench_report.out_dir / "gaps.csv").columns)[:5] == [
        "setting",
        "language",
        "modality",
        "objective",
        "seed",
    ]
    assert (
        "<h3>Gaps with their uncertainty</h3>" in page
        and "Undefined gaps (left out of the means above)" in page
    )
    assert page.count("<tr>") > 10 and "ERM-MinMaxGAP" in page
    # Undefined numbers with their reason: Japanese has female speakers only.
    und = pd.read_csv(bench_report.undefined)
    ja = und[und.domain.str.startswith("ja")]
    assert len(ja) and ja.reason.str.contains("one gender only").all()
    assert "one gender only (female): no gap" in page
    assert "run broken failed: RuntimeError: boom" in page  # the failed run is a visible warning
    md = bench_report.markdown.read_text()
    assert (
        "SYNTHETIC DATA" in md
        and "![" in md
        and "figures/tradeoff.png" in md
        and expected in md
        and gaps in md
    )
    # gender (rows without "sensitive"): the wording of before any attribute could be chosen
    assert md.startswith("# fairser report: gender gaps in speech emotion recognition\n")
    assert "Gap = |W-F1(male) − W-F1(female)| within a domain (METHODS.md §2)" in md
    assert (
        "Gender gap in W-F1 per language × modality" in md and "largest male–female training-loss gap" in md
    )


def test_report_from_audit_folder_of_a_hand_made_csv(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for lang in ("en", "de"):
        for gender in ("male", "female"):
            for s in range(3):
                for u in range(8):
                    t = LABELS[(s + u) % 4]
                    p = (
                        t
                        if rng.random() < (0.5 if gender == "female" and lang == "de" else 0.8)
                        else LABELS[0]
                    )
                    rows.append((f"{lang}{gender}{s}-{u}", t, p, gender, lang, "audio", f"{lang}{gender}{s}"))
    cols = ["id", "y_true", "y_pred", "gender", "language", "modality", "speaker"]
    csv = tmp_path / "mine.csv"
    pd.DataFrame(rows, columns=cols).to_csv(csv, index=False)
    audit = audit_predictions(csv, labels=LABELS, n_boot=100, n_perm=100)
    audit.write(tmp_path / "audit")
    report = build_report(tmp_path / "audit")
    assert report.out_dir == tmp_path / "audit" / "report"
    page = report.html.read_text()
    assert_self_contained(page)
    assert "SYNTHETIC" not in page and "mine.csv" in page
    assert len(_png_images(page)) == 3
    # The paper table holds the audit's own numbers.
    frame = audit.frame()
    table = pd.read_csv(report.out_dir / "table.csv")
    de = table[(table.language == "de") & (table.modality == "audio")].iloc[0]
    assert de["model W-F1"] == pytest.approx(frame.by_domain.loc[("de", "audio"), "weighted_f1"])
    assert de["model gap"] == pytest.approx(
        frame.difference(metric="weighted_f1").loc[("de", "audio")].iloc[0]
    )
    # One run: the trade-off error bars are its bootstrap CIs.
    assert "bootstrap CI (one seed)" in page


def test_report_without_predictions_or_metadata_says_what_is_missing(tmp_path):
    root = make_fake_benchmark(tmp_path / "r", seeds=(0,), settings=("audio",), with_predictions=False)
    (root / "benchmark.json").unlink()
    report = build_report(root, n_boot=50)
    page = report.html.read_text()
    assert "per_class_tpr_gaps" not in report.figures and len(_png_images(page)) == 2
    assert "per-class figure not drawn: no runs/&lt;run_id&gt;/predictions.csv" in page
    assert "benchmark.json is missing" in page
    with pytest.raises(FileNotFoundError, match="neither results.jsonl"):
        build_report(tmp_path)


def test_tradeoff_points_and_plot(bench_dir):
    rows = [r for r in ResultsStore(bench_dir / "results.jsonl").rows() if r["status"] == "ok"]
    points = tradeoff_points(rows)
    assert len(points) == 4 and set(points.n_seeds) == {2}
    erm = points[(points.objective == "ERM") & (points.setting == "audio")].iloc[0]
    runs = [r for r in rows if r["objective_label"] == "ERM" and r["setting"] == "audio"]
    wf1 = np.array([r["overall_weighted_f1"] for r in runs])
    worst = np.array(
        [
            np.nanmax(
                [np.nan if d["weighted_f1_gap"] is None else d["weighted_f1_gap"] for d in r["domains"]]
            )
            for r in runs
        ]
    )
    assert erm.wf1 == pytest.approx(wf1.mean()) and erm.wf1_high - erm.wf1 == pytest.approx(wf1.std(ddof=1))
    assert erm.gap == pytest.approx(worst.mean()) and erm.gap - erm.gap_low == pytest.approx(
        worst.std(ddof=1)
    )
    fig = plot_tradeoff(points, synthetic=True, source="test data")
    axes = [ax for ax in fig.axes if ax.get_xlabel()]
    assert len(axes) == 2 and all("gap" in ax.get_xlabel() and "W-F1" in ax.get_ylabel() for ax in axes)
    # Grayscale: objectives differ by marker shape and fill, not by colour alone.
    lines = [ln for ln in axes[0].get_lines() if ln.get_marker() not in ("None", None, "_", "|")]
    assert {ln.get_marker() for ln in lines} == {"o", "s"}
    assert {ln.get_markerfacecolor() for ln in lines} == {"black", "white"}
    texts = [t.get_text() for t in fig.texts]
    assert any("SYNTHETIC" in t for t in texts) and any("Data: test data" in t for t in texts)
    # Into a caller's axes (the method-zoo comparison): no banner added.
    from matplotlib.figure import Figure

    own = Figure()
    ax = own.subplots()
    assert plot_tradeoff(points[points.setting == "audio"], ax=ax) is own and len(ax.get_lines()) > 0
    assert not own.texts


def test_gap_cells_and_heatmap_mark_undefined_cells(bench_dir):
    rows = [r for r in ResultsStore(bench_dir / "results.jsonl").rows() if r["status"] == "ok"]
    cells = gap_cells(rows)
    de = cells[(cells.objective == "ERM") & (cells.language == "de") & (cells.modality == "audio")].iloc[0]
    gaps = [
        d["weighted_f1_gap"]
        for r in rows
        if r["objective_label"] == "ERM"
        for d in r["domains"]
        if (d["language"], d["modality"]) == ("de", "audio")
    ]
    assert de.gap == pytest.approx(np.mean(gaps)) and de.n_seeds == 2 and de.n_tested == 2
    ja = cells[cells.language == "ja"]
    assert ja.gap.isna().all() and ja.n_tested.eq(0).all() and ja.reason.str.contains("one gender only").all()
    fig = plot_gap_heatmap(cells, synthetic=False, source="x")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts.count("n/a") == 4  # ja x 2 modalities x 2 objectives
    assert any(t.startswith(f"{100 * de.gap:.1f} ± ") for t in texts)
    heat_axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in heat_axes] == ["ERM", "ERM-MinMaxGAP"]
    assert all(ax.get_xlabel() == "modality" and ax.get_ylabel() == "language" for ax in heat_axes)


def test_cli_report(bench_dir, tmp_path):
    out = tmp_path / "rep"
    result = CliRunner().invoke(app, ["report", str(bench_dir), "--out", str(out), "--n-boot", "50", "-q"])
    assert result.exit_code == 0, result.output
    assert str(out / "report.html") in result.output and "figures:" in result.output
    assert (out / "figures" / "tradeoff.png").is_file()
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "missing")])
    assert bad.exit_code == 2 and "does not exist" in bad.output


def test_tradeoff_styles_stay_distinct_for_a_large_zoo():
    from fairser.report.figures import MARKERS

    names = [f"method {i}" for i in range(2 * len(MARKERS))]
    points = pd.DataFrame({"objective": names, "wf1": 0.6, "gap": np.linspace(0.01, 0.2, len(names))})
    fig = plot_tradeoff(points)
    lines = [ln for ln in fig.axes[0].get_lines() if ln.get_marker() not in ("None", None, "_", "|")]
    styles = {(ln.get_label(), ln.get_marker(), ln.get_markerfacecolor()) for ln in lines}
    assert len(styles) == len(names) and len({s[1:] for s in styles}) == len(names)


def test_weight_dynamics_are_per_epoch_means_of_the_runs_that_logged_them(bench_report, bench_dir):
    dyn = bench_report.data.dynamics
    # only ERM-MinMaxGAP logged lambda and R: 2 settings x 2 seeds x 3 epochs
    assert set(dyn["objective"]) == {"ERM-MinMaxGAP"} and len(dyn) == 12
    first = dyn[(dyn.setting == "audio") & (dyn.seed == 0)].sort_values("epoch")
    np.testing.assert_allclose(first["lambda"], [1.05, 1.25, 1.45])
    np.testing.assert_allclose(first["R"], [0.2, 0.2, 0.3])
    assert (first["steps"] == 2).all()
    page = bench_report.html.read_text()
    assert "training dynamics" in page and "figures/weight_dynamics.png" in bench_report.markdown.read_text()
    # a figure per setting, R_t above lambda_t, one line per (objective, seed)
    fig = plot_weight_dynamics(dyn)
    axes = [ax for ax in fig.axes if ax.get_lines()]
    assert len(axes) == 4 and all(len(ax.get_lines()) == 2 for ax in axes)
    assert "R_t" in axes[0].get_ylabel() and "λ_t" in axes[2].get_ylabel()
    with pytest.raises(ValueError, match="no run logged"):
        plot_weight_dynamics(dyn.iloc[:0])


def test_weight_dynamics_skip_invalid_steps_and_unreadable_logs_and_keep_reruns_apart(tmp_path):
    from fairser.report import weight_dynamics

    def run(run_id, log):
        (tmp_path / "runs" / run_id).mkdir(parents=True)
        path = tmp_path / "runs" / run_id / "train_log.csv"
        path.write_text("") if log is None else pd.DataFrame(log).to_csv(path, index=False)
        return {"run_id": run_id, "objective_label": "MMG", "setting": "audio", "seed": 0}

    ratio = {"step": [0, 1, 2], "epoch": [0, 0, 0], "lambda": [2.0, 8e7, 3.0], "R": [0.1, 0.0, 0.2]}
    rows = [
        run("ratio", {**ratio, "n_valid_domains": [3, 0, 3]}),  # the R = 0 step has no valid domain
        run("rerun", {"step": [0, 1], "epoch": [0, 1], "lambda": [1.0, 1.1], "R": [0.3, 0.2]}),
        run("empty", None),
        run("erm", {"step": [0], "epoch": [0], "erm": [1.0]}),
    ]
    warnings: list[str] = []
    dyn = weight_dynamics(tmp_path, rows, warnings=warnings)
    assert set(dyn["run_id"]) == {"ratio", "rerun"}
    first = dyn[dyn.run_id == "ratio"].iloc[0]
    assert first["lambda"] == pytest.approx(2.5) and first["R"] == pytest.approx(0.15) and first["steps"] == 2
    assert len(warnings) == 1 and "empty" in warnings[0]
    # same label, setting and seed (a rerun with other settings): two lines, not one zig-zag
    fig = plot_weight_dynamics(dyn)
    assert all(len(ax.get_lines()) == 2 for ax in fig.axes if ax.get_lines())


# ------------------------------------------------------------------------------- the sensitive attribute

AGE_BANDS = ["18-34", "35-59", "60+"]


def _age_band_benchmark(root: Path) -> Path:
    """The fake benchmark, re-labelled as runs on the speakers' age band (3 values): the predictions get an
    ``age_band`` column and the rows name the attribute, as a run with ``sensitive: [age_band]`` writes them."""
    make_fake_benchmark(root, seeds=(0,), settings=("audio",))
    for csv in root.glob("runs/*/predictions.csv"):
        pred = pd.read_csv(csv)
        pred["age_band"] = [AGE_BANDS[int(s[-1]) % 3] for s in pred["speaker"]]
        pred.to_csv(csv, index=False)
    store = ResultsStore(root / "results.jsonl")
    rows = store.rows()
    store.path.unlink()
    for r in rows:
        store.append(
            r | ({"sensitive": {"columns": ["age_band"], "values": AGE_BANDS}} if "domains" in r else {})
        )
    return root


def test_report_names_the_runs_sensitive_attribute(tmp_path):
    report = build_report(_age_band_benchmark(tmp_path / "r"), n_boot=50)
    md = report.markdown.read_text()
    page = report.html.read_text()
    assert md.startswith("# fairser report: age_band gaps in speech emotion recognition\n")
    assert "<title>fairser report: age_band gaps in speech emotion recognition</title>" in page
    for text in (
        "Gap = age_band gap (max − min of W-F1 over its 3 values: 18-34, 35-59, 60+) within a domain",
        "W-F1 and age_band gap (max − min of W-F1 over its 3 values: 18-34, 35-59, 60+) in %",
        "age_band gap in W-F1 per language × modality and objective",
        "Overall W-F1 against the worst-domain W-F1 age_band gap, one point per objective",
        "Which emotions drive the gap: per-class age_band gap in TPR (recall)",
        "R_t (the largest age_band training-loss gap, max − min over its 3 values, over domains in a batch)",
        "steps without a domain holding two age_band values left out",
    ):
        assert text in md and text in page, text
    assert "male − female" not in md and "male–female" not in md and "gender gap" not in md.lower()
    # the per-class gaps are the age band's, not gender's
    assert set(report.data.per_class["attribute"]) == {"age_band"}


def test_figures_name_the_sensitive_attribute(bench_dir):
    from fairser.results import GENDER, SensitiveLabels

    rows = [r for r in ResultsStore(bench_dir / "results.jsonl").rows() if r["status"] == "ok"]
    age = SensitiveLabels(columns=("age_band",), values=tuple(AGE_BANDS))
    for sensitive, title, bar, xlabel, r_label in (
        (
            GENDER,
            "Gender gap in weighted F1 per domain",
            "W-F1 gender gap |male − female| (%)",
            "worst-domain gender gap in W-F1 (%)",
            "R_t: largest male−female loss gap",
        ),
        (
            age,
            "age_band gap in weighted F1 per domain",
            "W-F1 age_band gap, max − min (%)",
            "worst-domain age_band gap in W-F1 (%)",
            "R_t: largest age_band loss gap",
        ),
    ):
        fig = plot_gap_heatmap(gap_cells(rows), sensitive=sensitive)
        assert fig._suptitle.get_text() == title
        assert fig.axes[-1].get_ylabel() == bar  # the colour bar
        fig = plot_tradeoff(tradeoff_points(rows), sensitive=sensitive)
        assert {ax.get_xlabel() for ax in fig.axes} == {xlabel}
        dyn = pd.DataFrame(
            {
                "run_id": "a",
                "objective": "M",
                "setting": "audio",
                "seed": 0,
                "epoch": [0, 1],
                "lambda": 1.0,
                "R": 0.1,
            }
        )
        fig = plot_weight_dynamics(dyn, sensitive=sensitive)
        assert fig.axes[0].get_ylabel() == r_label + "\n(median over the epoch's batches)"


def test_report_refuses_runs_of_different_sensitive_attributes(tmp_path):
    root = _age_band_benchmark(tmp_path / "r")
    store = ResultsStore(root / "results.jsonl")
    gender_row = {k: v for k, v in store.rows()[0].items() if k != "sensitive"} | {"run_id": "gender-run"}
    store.append(gender_row)
    with pytest.raises(ValueError, match="different sensitive attributes"):
        build_report(root, n_boot=20)


def test_report_of_an_audit_of_another_attribute_names_it(tmp_path):
    root = _age_band_benchmark(tmp_path / "r")
    csv = next(root.glob("runs/*/predictions.csv"))
    audit = audit_predictions(csv, labels=LABELS, sensitive="age_band", n_boot=20, n_perm=20)
    audit.write(tmp_path / "audit")
    report = build_report(tmp_path / "audit")
    assert report.data.rows[0]["sensitive"] == {"columns": ["age_band"], "values": AGE_BANDS}
    md = report.markdown.read_text()
    assert md.startswith("# fairser report: age_band gaps in speech emotion recognition\n")
    assert "Gap = age_band gap (max − min of W-F1 over its 3 values: 18-34, 35-59, 60+)" in md


def test_report_headline_shows_the_benchmarks_minimum_detectable_gaps(bench_dir, tmp_path):
    """A benchmark folder with ``mdg.csv`` (written by fairser benchmark): the headline's gaps carry the MDG."""
    import shutil

    folder = tmp_path / "bench"
    shutil.copytree(bench_dir, folder)
    rows = [r for r in ResultsStore(folder / "results.jsonl").rows() if r["status"] == "ok"]
    domains = {(r["setting"], d["language"], d["modality"]) for r in rows for d in r["domains"]}
    mdg = pd.DataFrame(
        [
            {
                "setting": s,
                "language": lang,
                "modality": m,
                "mdg": 0.5,
                "mdg_se": 0.01,
                "speakers_per_group": "3/3",
            }
            | {"reason": ""}
            for s, lang, m in sorted(domains)
        ]
    )
    mdg.to_csv(folder / "mdg.csv", index=False)
    report = build_report(folder, out_dir=tmp_path / "report", n_boot=20)
    md = report.markdown.read_text()
    headline = md[md.index("## Headline numbers") : md.index("## Paper-style table")]
    assert "### Gaps with their uncertainty" in headline and "| 50.0 ± 1.0 (3/3) |" in headline
    assert "80% power at α = 0.05" in headline and "MDG: not computed" not in headline
    gaps = pd.read_csv(report.out_dir / "gaps.csv")
    assert (gaps["mdg"] == 0.5).all() and gaps["below_mdg"].dropna().all()


def test_weight_dynamics_of_a_pooled_cross_validated_row_read_its_first_fold(tmp_path):
    from fairser.report import weight_dynamics

    (tmp_path / "runs" / "cell__f0").mkdir(parents=True)
    log = {"step": [0, 1], "epoch": [0, 0], "lambda": [1.0, 0.9], "R": [0.2, 0.4], "R_null": [0.1, 0.3]}
    pd.DataFrame(log).to_csv(tmp_path / "runs" / "cell__f0" / "train_log.csv", index=False)
    row = {
        "run_id": "cell__pooled",
        "fold": "pooled",
        "folds": [{"run_id": "cell__f0"}, {"run_id": "cell__f1"}],
        "objective_label": "MMG noise",
        "setting": "audio",
        "seed": 0,
    }
    dyn = weight_dynamics(tmp_path, [row])
    assert len(dyn) == 1 and dyn["run_id"].iloc[0] == "cell__pooled"
    assert dyn["lambda"].iloc[0] == pytest.approx(0.95) and dyn["R_null"].iloc[0] == pytest.approx(0.2)

"""What a report shows, read from a benchmark output folder or an audit folder.

Both sources become one :class:`ReportData`: run rows in the format of the benchmark's ``results.jsonl``
(so :func:`fairser.results.tables.paper_table` and the figures work on either), a tidy per-class table, and
the list of undefined numbers with their reasons.

* Benchmark folder (``results.jsonl``, ``benchmark.json``, ``runs/<run_id>/predictions.csv``): rows as
  written. The per-class TPR gaps are computed here with :func:`fairser.audit.audit_predictions` on each
  objective's predictions, seeds pooled: every seed predicts the same test utterances, so a pooled rate
  is the mean of the seeds' rates, and the speaker-level bootstrap resamples a speaker with all of its
  utterances in every seed.
* Audit folder (``audit.json`` + CSVs from ``fairser audit --out``): rows are rebuilt from the audit of the
  ``gender`` attribute (or the first one); the run columns give objective, setting and seed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fairser.audit import Audit, audit_predictions, read_predictions, run_label
from fairser.grouping import GENDER_VALUES, INTERSECTION_SEP
from fairser.metrics import GAP_METRICS, MetricFrame
from fairser.results import finished_rows, sensitive_labels
from fairser.results.aggregate import seed_stats

__all__ = [
    "ReportData",
    "load_audit_folder",
    "load_benchmark_folder",
    "load_report_data",
    "weight_dynamics",
]

_UNDEFINED_COLUMNS = ["scope", "domain", "group", "table", "metrics", "fields", "reason"]


@dataclass
class ReportData:
    """Everything a report renders, whatever folder it came from."""

    kind: str  # "benchmark" or "audit"
    path: Path
    source: str
    synthetic: bool
    rows: list[dict[str, Any]]
    baseline: str
    per_class: pd.DataFrame
    per_class_caption: str
    domain_cols: list[str]
    axis_names: tuple[str, str]
    undefined: pd.DataFrame
    ci: float = 0.95
    per_class_error: str | None = None  # what the per-class bars are, when not the bootstrap CI
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: per-epoch lambda_t and R_t of the runs that logged them (:func:`weight_dynamics`); empty for audits
    dynamics: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def n_seeds(self) -> int:
        return len({r["seed"] for r in self.rows})


def load_report_data(
    path: str | Path, *, n_boot: int = 1000, seed: int = 0, progress: bool = False
) -> ReportData:
    """Read a benchmark output folder (``results.jsonl``) or an audit folder (``audit.json``)."""
    path = Path(path)
    if (path / "results.jsonl").is_file():
        return load_benchmark_folder(path, n_boot=n_boot, seed=seed, progress=progress)
    if (path / "audit.json").is_file() or (path.is_file() and path.name == "audit.json"):
        return load_audit_folder(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    raise FileNotFoundError(
        f"{path} holds neither results.jsonl (a benchmark output folder: `fairser benchmark`) nor audit.json "
        "(an audit folder: `fairser audit PREDICTIONS --out DIR`)"
    )


def weight_dynamics(
    path: str | Path, rows: list[dict[str, Any]], *, warnings: list[str] | None = None
) -> pd.DataFrame:
    """Per-epoch medians of the adaptive weight ``lambda`` and the penalty ``R`` of every run that logged them.

    Reads ``runs/<run_id>/train_log.csv`` (for a pooled cross-validated row, its first fold's; ERM-MinMaxGAP logs ``lambda_t`` and ``R_t`` every step; other
    objectives' logs lack them and are skipped). Steps where no domain had both genders
    (``n_valid_domains == 0``: ``R_t = 0`` by definition, and a ``ratio`` weight of ``L_ERM / 1e-8``) are left
    out, and the median keeps a few extreme steps from dominating an epoch. Columns: ``run_id, objective,
    setting, seed, epoch, lambda, R, steps``, plus ``R_null`` (the permutation null) when a run logged it; empty when no run logged both. Unreadable logs are skipped and
    named in ``warnings``.
    """
    columns = ["run_id", "objective", "setting", "seed", "epoch", "lambda", "R", "steps"]
    frames = []
    for r in rows:
        run_id = str(r["run_id"])
        if r.get("folds"):  # a pooled cross-validated row: its first fold's log (the pool has none)
            run_id = str(r["folds"][0]["run_id"])
        log_path = Path(path) / "runs" / run_id / "train_log.csv"
        if not log_path.is_file():
            continue
        try:
            if not {"epoch", "lambda", "R"} <= set(pd.read_csv(log_path, nrows=0).columns):
                continue
            log = pd.read_csv(log_path)
        except (pd.errors.EmptyDataError, pd.errors.ParserError) as err:
            if warnings is not None:
                warnings.append(f"training-dynamics figure: skipped {log_path}: {err}")
            continue
        if "n_valid_domains" in log.columns:
            log = log[log["n_valid_domains"] > 0]
        log = log.dropna(subset=["lambda", "R"])
        if log.empty:
            continue
        aggs = {"lambda": ("lambda", "median"), "R": ("R", "median"), "steps": ("R", "size")}
        if "R_null" in log.columns:  # noise: permutation
            aggs["R_null"] = ("R_null", "median")
        per_epoch = log.groupby("epoch", as_index=False).agg(**aggs)
        frames.append(
            per_epoch.assign(
                run_id=r["run_id"], objective=r["objective_label"], setting=r["setting"], seed=r["seed"]
            )
        )
    if not frames:
        return pd.DataFrame(columns=columns)
    out = pd.concat(frames, ignore_index=True)
    return out[columns + (["R_null"] if "R_null" in out.columns else [])]


def _baseline(rows: list[dict[str, Any]]) -> str:
    for r in rows:
        if r.get("objective") == "erm":
            return r["objective_label"]
    return rows[0]["objective_label"]


def _domain_label(d: dict[str, Any]) -> str:
    return f"{d['language']} / {d['modality']}"


def _simplify_fields(fields: pd.Series) -> str:
    """``tpr_gap, tpr_gap_ci_low, p_value`` -> ``TPR gap, its CI, p-value`` (order kept)."""
    out: dict[str, None] = {}
    for f in (t for x in fields for t in str(x).split(", ") if t):
        base = f.removesuffix("_ci_low").removesuffix("_ci_high")
        name = {"value": "value", "gap": "gap", "p_value": "p-value", "ci": "CI"}.get(base)
        if name is None:
            name = base.replace("_gap", "").upper() + " gap" if base.endswith("_gap") else base
        out[name + (" CI" if f != base and base not in ("ci",) else "")] = None
    return ", ".join(out).replace("ci CI", "CI")


def _join_metrics(metrics: pd.Series, table: str) -> str:
    names = list(dict.fromkeys(map(str, metrics)))
    if table == "gaps" and set(names) == set(GAP_METRICS):
        return f"all {len(GAP_METRICS)} gaps"
    return ", ".join(names)


def _compact_undefined(frame: pd.DataFrame) -> pd.DataFrame:
    """One line per (scope, domain, group, table, reason): metrics, fields and seeds joined."""
    if frame.empty:
        return pd.DataFrame(columns=_UNDEFINED_COLUMNS)
    frame = frame.copy()
    if "seed" not in frame.columns:
        frame["seed"] = ""
    frame = frame.fillna("").astype(str)
    keys = ["scope", "domain", "group", "table", "reason"]
    rows = []
    for key, sub in frame.groupby(keys, sort=False):
        rec = dict(zip(keys, key, strict=True))
        rec["metrics"] = _join_metrics(sub["metric"], rec["table"])
        rec["fields"] = _simplify_fields(sub["fields"])
        seeds = [x for x in dict.fromkeys(sub["seed"]) if x]
        rec["seeds"] = ", ".join(seeds)
        rows.append(rec)
    out = pd.DataFrame(rows)
    cols = (
        _UNDEFINED_COLUMNS
        if out["seeds"].eq("").all()
        else [*_UNDEFINED_COLUMNS[:1], "seeds", *_UNDEFINED_COLUMNS[1:]]
    )
    return out[cols]


# ----------------------------------------------------------------------------------------------- benchmark


def load_benchmark_folder(
    path: str | Path, *, n_boot: int = 1000, seed: int = 0, progress: bool = False
) -> ReportData:
    """Rows, metadata and pooled per-class gaps of a benchmark output folder."""
    path = Path(path)
    found = finished_rows(path)  # headline rows of one config (refuses a folder mixing configs)
    rows = found.rows
    warnings = found.warnings()
    meta_path = path / "benchmark.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    notes = list(meta.get("notes", []))
    if not meta:
        warnings.append(f"{meta_path} is missing: data source and synthetic flag unknown")
    if meta.get("sampler"):
        notes.append(f"batch sampler: {meta['sampler']} (the same for every objective)")
    notes += list(dict.fromkeys(n for r in rows for n in r.get("notes", [])))
    source = str(meta.get("source") or path)
    synthetic = bool(meta.get("synthetic", False))

    undefined = []
    for r in rows:
        scope = f"{r['objective_label']} ({r['setting']})"
        for d in r["domains"]:
            for metric in GAP_METRICS:
                gap, reason = d.get(f"{metric}_gap"), d.get(f"{metric}_reason") or ""
                fields = ["gap"] if gap is None else []
                if gap is not None and reason:  # defined gap, but its CI or p-value may not be
                    fields += [f for f in ("ci_low", "ci_high", "p_value") if d.get(f"{metric}_{f}") is None]
                if fields:
                    undefined.append(
                        {
                            "scope": scope,
                            "seed": str(r["seed"]),
                            "domain": _domain_label(d),
                            "group": "",
                            "table": "gaps",
                            "metric": metric,
                            "fields": ", ".join(fields),
                            "reason": reason or "(no reason recorded)",
                        }
                    )
    per_class, caption, pc_undefined, ci = _pooled_per_class(
        path, rows, n_boot=n_boot, seed=seed, progress=progress
    )
    if caption.startswith("not drawn"):
        warnings.append(f"per-class figure {caption}")
    undefined_frame = pd.concat([pd.DataFrame(undefined), pc_undefined], ignore_index=True)
    return ReportData(
        dynamics=weight_dynamics(path, rows, warnings=warnings),
        kind="benchmark",
        path=path,
        source=source,
        synthetic=synthetic,
        rows=rows,
        baseline=_baseline(rows),
        per_class=per_class,
        per_class_caption=caption,
        domain_cols=["language", "modality"],
        axis_names=("language", "modality"),
        undefined=_compact_undefined(undefined_frame),
        ci=ci,
        notes=notes,
        warnings=warnings,
    )


def _pooled_per_class(
    path: Path, rows: list[dict[str, Any]], *, n_boot: int, seed: int, progress: bool
) -> tuple[pd.DataFrame, str, pd.DataFrame, float]:
    files = [path / "runs" / r["run_id"] / "predictions.csv" for r in rows]
    present = [f for f in files if f.is_file()]
    empty = pd.DataFrame()
    if not present:
        return empty, "not drawn: no runs/<run_id>/predictions.csv in the folder", empty, 0.95
    preds = read_predictions(present)
    sensitive = sensitive_labels(rows).columns  # the runs' attribute (gender unless the rows name another)
    needed = {"id", "objective", "setting", "seed", "y_true", "y_pred", *sensitive, "language", "modality"}
    lacking = sorted(needed - set(preds.columns))
    if lacking:
        return empty, f"not drawn: predictions lack column(s) {lacking}", empty, 0.95
    # Seeds pooled: the same utterance in several seeds becomes several rows of one (objective, setting).
    preds["id"] = preds["id"].astype(str) + "#seed" + preds["seed"].astype(str)
    labels = [c[len("prob_") :] for c in preds.columns if c.startswith("prob_")] or None
    audit = audit_predictions(
        preds.drop(columns=[c for c in preds.columns if c.startswith("prob_")]),
        labels=labels,
        sensitive=sensitive,
        by=["objective", "setting"],
        n_boot=n_boot,
        n_perm=0,
        seed=seed,
        progress=progress,
    )
    table = audit.table("per_class")
    table["series"] = table["objective"].astype(str)
    n_seeds = preds.groupby(["objective", "setting"])["seed"].nunique()
    seeds = ", ".join(sorted({str(v) for v in n_seeds}))
    caption = (
        f"Predictions of all seeds pooled per objective ({seeds} seed(s); every seed predicts the same test "
        "utterances, so pooled rates are the means of the seeds' rates)."
    )
    if len(present) < len(files):
        caption += f" {len(files) - len(present)} run(s) without predictions.csv left out."
    undefined = audit.undefined()
    undefined = undefined[undefined["table"] == "per_class"].copy()
    undefined.insert(
        0,
        "scope",
        undefined["objective"].astype(str) + " (" + undefined["setting"].astype(str) + ")",
    )
    undefined = undefined.rename(columns={"undefined": "fields"})[
        ["scope", "domain", "group", "table", "metric", "fields", "reason"]
    ]
    undefined["metric"] = undefined["metric"].astype(str)
    undefined["table"] = "per-class"
    undefined["seed"] = "all (pooled)"
    return table, caption, undefined, float(audit.settings["ci"])


# ----------------------------------------------------------------------------------------------- audit


def _domain_keys(frame: MetricFrame, record: dict[str, Any]) -> tuple[str, str]:
    cols = frame.domain_cols
    if not cols:
        return "all", "all"
    first = str(record[cols[0]])
    rest = " / ".join(str(record[c]) for c in cols[1:]) or "all"
    return first, rest


def _fnum(x: Any) -> float | None:
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA:
        return None
    return float(x)


def _row_from_frame(frame: MetricFrame) -> dict[str, Any]:
    """A results.jsonl-style row from one audited run (so the paper table and figures apply)."""
    run = frame.run
    cols = frame.domain_cols
    gaps = frame.gaps
    by_group = frame.table("by_group")
    by_group = by_group[by_group["metric"] == "weighted_f1"]
    by_domain = frame.table("by_domain")
    domains = []
    for rec in by_domain[by_domain["metric"] == "weighted_f1"].to_dict(orient="records"):
        language, modality = _domain_keys(frame, rec)
        d: dict[str, Any] = {"language": language, "modality": modality, "n": int(rec["n"])}
        d["weighted_f1"] = _fnum(rec["value"])
        mask = pd.Series(True, index=gaps.index)
        gmask = pd.Series(True, index=by_group.index)
        for c in cols:
            mask &= gaps[c].astype(str) == str(rec[c])
            gmask &= by_group[c].astype(str) == str(rec[c])
        for g in gaps[mask].to_dict(orient="records"):
            for col in ("gap", "signed_gap", "ci_low", "ci_high", "p_value"):
                d[f"{g['metric']}_{col}"] = _fnum(g[col])
            d[f"{g['metric']}_reason"] = g["reason"] or ""
        for g in by_group[gmask].to_dict(orient="records"):
            d[f"weighted_f1_{g[frame.attribute]}"] = _fnum(g["value"])
        domains.append(d)
    low, high = frame.overall_ci
    row = {
        "run_id": str(run.get("run_id") or run_label(run)),
        "status": "ok",
        "setting": str(run.get("setting", "all")),
        "objective": str(run.get("objective", "model")).lower(),
        "objective_label": str(run.get("objective", run_label(run) if run else "model")),
        "seed": run.get("seed", 0),
        "domains": domains,
        "overall_weighted_f1": _fnum(frame.overall["weighted_f1"]),
        "overall_weighted_f1_ci_low": _fnum(low["weighted_f1"]),
        "overall_weighted_f1_ci_high": _fnum(high["weighted_f1"]),
        "summary": frame.summary.to_dict(orient="records"),
        "notes": list(frame.notes),
    }
    if (frame.attribute, tuple(frame.groups)) != ("gender", GENDER_VALUES):  # as a benchmark's results rows
        row["sensitive"] = {"columns": frame.attribute.split(INTERSECTION_SEP), "values": frame.groups}
    return row


def _audit_per_class(frames: list[MetricFrame]) -> tuple[pd.DataFrame, str | None]:
    """Per-class table, one series per objective: a run's own CIs, or mean ± std over its seeds."""
    parts = []
    for f in frames:
        pc = f.per_class.copy()
        rest = {k: v for k, v in f.run.items() if k not in ("seed", "run_id")}
        series = str(f.run["objective"]) if "objective" in f.run else (run_label(rest) if rest else "model")
        pc.insert(0, "series", series)
        pc.insert(1, "_key", run_label(rest))
        pc.insert(2, "_seed", str(f.run.get("seed", "")))
        parts.append(pc)
    table = pd.concat(parts, ignore_index=True)
    keys = ["series", "_key", *frames[0].domain_cols, "class"]
    if table.groupby(keys, sort=False)["_seed"].nunique().max() <= 1:
        return table.drop(columns=["_key", "_seed"]), None
    gaps = [f"{rate}_gap" for rate in ("tpr", "fpr", "sp", "eodds")]
    out = seed_stats(table.astype({g: float for g in gaps}), by=keys, values=gaps, seed="_seed")
    for gap in gaps:
        out[f"{gap}_ci_low"] = out[gap] - out[f"{gap}_std"]
        out[f"{gap}_ci_high"] = out[gap] + out[f"{gap}_std"]
    reasons = table.groupby(keys, sort=False)["reason"].agg(
        lambda r: "; ".join(dict.fromkeys(str(x) for x in r if str(x)))
    )
    out["reason"] = reasons.to_numpy()
    out = out[keys + [c for g in gaps for c in (g, f"{g}_ci_low", f"{g}_ci_high")] + ["reason"]]
    return out.drop(columns=["_key"]), "± std over seeds (mean over seeds; not a CI)"


def load_audit_folder(path: str | Path) -> ReportData:
    """Rows, per-class gaps and undefined numbers of an audit folder (``fairser audit --out``)."""
    audit = Audit.load(path)
    path = Path(path)
    attribute = "gender" if "gender" in audit.attributes else audit.attributes[0]
    frames = [f for f in audit.frames if f.attribute == attribute]
    rows = [_row_from_frame(f) for f in frames]
    per_class, error = _audit_per_class(frames)
    domain_cols = frames[0].domain_cols
    axis = (domain_cols[0] if domain_cols else "", " / ".join(domain_cols[1:]))
    undefined = audit.undefined().rename(columns={"undefined": "fields"})
    runs = [{c: r[c] for c in audit.run_columns} for r in undefined.to_dict(orient="records")]
    undefined["scope"] = [
        f"{run_label({k: v for k, v in run.items() if k != 'seed'})} — {attr}"
        for run, attr in zip(runs, undefined["attribute"], strict=True)
    ]
    undefined["seed"] = [str(run.get("seed", "")) for run in runs]
    notes = list(dict.fromkeys([*audit.notes, *(n for f in audit.frames for n in f.notes)]))
    if len(audit.attributes) > 1:
        notes.append(
            f"figures and table show the attribute {attribute!r}; the audit also covers "
            f"{[a for a in audit.attributes if a != attribute]} (see its CSVs and the undefined-numbers list)"
        )
    return ReportData(
        kind="audit",
        path=path,
        source=audit.source,
        synthetic=audit.synthetic,
        rows=rows,
        baseline=_baseline(rows),
        per_class=per_class,
        per_class_caption=f"Audit of {len(frames)} run(s), attribute {attribute}.",
        per_class_error=error,
        domain_cols=domain_cols,
        axis_names=axis,
        undefined=_compact_undefined(undefined),
        ci=float(audit.settings.get("ci", 0.95)),
        notes=notes,
        warnings=list(audit.warnings),
    )

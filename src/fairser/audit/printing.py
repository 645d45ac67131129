"""The printed summary of an audit (rich tables): per domain for a few frames, one line per frame for many."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fairser.audit.container import Audit
from fairser.audit.runs import run_label
from fairser.metrics import MetricFrame

__all__ = ["print_audit"]

_METRIC_NAMES = {"weighted_f1": "W-F1", "accuracy": "accuracy", "uar": "UAR", "macro_f1": "macro-F1"}


def _isnan(x: Any) -> bool:
    return bool(pd.isna(x)) if np.ndim(x) == 0 else False


def _num(x: Any, digits: int = 3) -> str:
    return "–" if _isnan(x) else f"{float(x):.{digits}f}"


def _with_ci(value: Any, low: Any, high: Any) -> str:
    text = _num(value)
    if not _isnan(value) and not (_isnan(low) and _isnan(high)):
        text += f" [{_num(low)}, {_num(high)}]"
    return text


def _p(x: Any) -> str:
    return "–" if _isnan(x) else (f"{float(x):.3f}" + (" *" if float(x) < 0.05 else ""))


def print_audit(audit: Audit, *, console=None, max_detailed: int = 4) -> None:
    """Readable summary of ``audit`` (rich tables): per domain for up to ``max_detailed`` frames, else one
    line per frame; then the notes and warnings."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    ci = int(round(100 * audit.settings.get("ci", 0.95)))
    if audit.synthetic:
        console.print(
            "[bold reverse] SYNTHETIC DATA [/] numbers describe the built-in generator, not real speech"
        )
    console.print(f"[bold]Audit[/] of {audit.source}")
    if len(audit.frames) <= max_detailed:
        for f in audit.frames:
            _print_frame(f, console=console, ci=ci)
    else:
        table = Table(title=f"W-F1 gaps (max − min over values) per run ({ci}% CI; * p < 0.05)")
        for col in (
            "run",
            "attribute",
            "W-F1",
            "mean W-F1 gap",
            "p",
            "worst W-F1 gap (domain)",
            "p",
            "ΔEO mean",
            "MDG (min–max over domains)",
            "undefined",
        ):
            table.add_column(col)
        for f in audit.frames:
            s = f.summary.set_index("metric")
            w, deo = s.loc["weighted_f1"], s.loc["deo_mean"]
            table.add_row(
                run_label(f.run),
                f.attribute,
                _num(f.overall["weighted_f1"]),
                _with_ci(w["mean_gap"], w["mean_gap_ci_low"], w["mean_gap_ci_high"]),
                _p(w["mean_gap_p_value"]),
                f"{_with_ci(w['worst_gap'], w['worst_gap_ci_low'], w['worst_gap_ci_high'])} ({w['worst_domain']})",
                _p(w["worst_gap_p_value"]),
                _num(deo["mean_gap"]),
                _mdg_range(f),
                str(len(f.undefined())),
            )
        console.print(table)
        power = next((f.settings["power"] for f in audit.frames if f.settings.get("power")), None)
        if power and power.get("relevant_gap") is not None:
            blind = sum(
                int(((g["metric"] == power["metric"]) & ~(g["mdg"] <= power["relevant_gap"])).sum())
                for g in (f.gaps for f in audit.frames if "mdg" in f.gaps.columns)
            )
            console.print(
                f"power: in {blind} (run, domain) pair(s) a {power['metric']} gap of {power['relevant_gap']:.3f} "
                "(the size that matters here) cannot be detected with 80% power (MDG above it or undefined)."
            )
    notes = list(dict.fromkeys([*audit.notes, *(n for f in audit.frames for n in f.notes)]))
    for note in notes:
        console.print(f"[dim]note:[/] {note}")
    for w in audit.warnings:
        console.print(f"[yellow]warning:[/] {w}")


def _print_frame(f: MetricFrame, *, console, ci: int) -> None:
    from rich.table import Table

    sens, groups = f.attribute, f.groups
    signed = len(groups) == 2  # a signed gap exists only with exactly two values
    title = f"{run_label(f.run)} — {sens}: W-F1 and its gap per domain ({ci}% CI; * p < 0.05)"
    table = Table(title=title)
    columns = [
        "domain",
        "n (speakers)",
        "W-F1",
        "W-F1 gap" if signed else f"W-F1 gap (max − min, {len(groups)})",
    ]
    if signed:
        columns.append(f"signed ({groups[1]} − {groups[0]})")
    power = f.settings.get("power") or {}
    has_mdg = "mdg" in f.gaps.columns
    pm = power.get("metric", "weighted_f1")
    if has_mdg:
        columns.append(f"MDG {_METRIC_NAMES.get(pm, pm)} (80%)")
    columns += ["p", "ΔSP max", "ΔEO max", "undefined because"]
    for col in columns:
        table.add_column(col, overflow="fold")
    by_domain = f.table("by_domain")
    dom = by_domain[by_domain["metric"] == "weighted_f1"].reset_index(drop=True)
    gaps = f.gaps.set_index([*f.domain_cols, "metric"]) if f.domain_cols else f.gaps.set_index("metric")
    power_rows: list[tuple[str, Any]] = []
    for rec in dom.to_dict(orient="records"):
        key = tuple(rec[c] for c in f.domain_cols)

        def g(metric: str, key=key):
            return gaps.loc[(*key, metric)] if f.domain_cols else gaps.loc[metric]

        w, dsp, deo = g("weighted_f1"), g("dsp_max"), g("deo_max")
        spk = "" if _isnan(rec["n_speakers"]) else f" ({rec['n_speakers']})"
        cells = [
            " / ".join(map(str, key)) or "all",
            f"{rec['n']}{spk}",
            _with_ci(rec["value"], rec["ci_low"], rec["ci_high"]),
            _with_ci(w["gap"], w["ci_low"], w["ci_high"]),
        ]
        if signed:
            cells.append(_with_ci(w["signed_gap"], w["signed_ci_low"], w["signed_ci_high"]))
        if has_mdg:
            m = g(pm)
            cells.append(_num(m["mdg"]) + ("" if _isnan(m["mdg_se"]) else f" ± {_num(m['mdg_se'])}"))
            power_rows.append((cells[0], m))
        cells += [_p(w["p_value"]), _num(dsp["gap"]), _num(deo["gap"]), str(w["reason"] or "")]
        table.add_row(*cells)
    console.print(table)
    if has_mdg:
        _print_power(power_rows, power=power, metric=pm, console=console)
    s = f.summary.set_index("metric").loc["weighted_f1"]
    console.print(
        f"W-F1 overall {_with_ci(f.overall['weighted_f1'], *(c['weighted_f1'] for c in f.overall_ci))}; "
        f"mean {sens} gap over domains {_with_ci(s['mean_gap'], s['mean_gap_ci_low'], s['mean_gap_ci_high'])} "
        f"(p {_p(s['mean_gap_p_value'])}); worst domain {s['worst_domain']}: "
        f"{_with_ci(s['worst_gap'], s['worst_gap_ci_low'], s['worst_gap_ci_high'])} (p {_p(s['worst_gap_p_value'])})"
    )
    pc = f.per_class.dropna(subset=["tpr_gap"]).sort_values("tpr_gap", ascending=False).head(3)
    if len(pc):
        parts = []
        for rec in pc.to_dict(orient="records"):
            where = " / ".join(str(rec[c]) for c in f.domain_cols) or "all"
            rates = ", ".join(f"{gr} {_num(rec.get(f'tpr_{gr}'), 2)}" for gr in groups if f"tpr_{gr}" in rec)
            parts.append(
                f"{rec['class']} in {where}: {_with_ci(rec['tpr_gap'], rec['tpr_gap_ci_low'], rec['tpr_gap_ci_high'])}"
                f" ({rates})"
            )
        console.print("largest per-class TPR (recall) gaps: " + "; ".join(parts))


def _print_power(rows: list[tuple[str, Any]], *, power: dict, metric: str, console) -> None:
    """What the minimum detectable gaps mean, and where the data cannot detect the gap that matters."""
    name = _METRIC_NAMES.get(metric, metric)
    console.print(
        f"MDG: the smallest true {name} gap the between-speaker permutation test finds with 80% power at "
        f"alpha 0.05 (simulated from these speakers, ± Monte-Carlo SE; METHODS.md §2 'Power'); a smaller gap, "
        "or a non-significant one, is no evidence of fairness."
    )
    for where, m in rows:
        if _isnan(m["mdg"]) and m.get("mdg_reason"):
            console.print(f"[yellow]power:[/] {where}: {m['mdg_reason']}")
    relevant = power.get("relevant_gap")
    if relevant is None:
        return
    blind = [(w, m) for w, m in rows if _isnan(m["mdg"]) or float(m["mdg"]) > relevant]
    if blind:
        shown = ", ".join(f"{w} (MDG {_num(m['mdg'])})" for w, m in blind)
        console.print(
            f"[yellow]power:[/] a {name} gap of {relevant:.3f} (the size that matters here) cannot be detected "
            f"reliably in {shown}: more test speakers per value are needed (`fairser power FILE --gap "
            f"{100 * relevant:g}` says how many)."
        )
    else:
        console.print(f"power: a {name} gap of {relevant:.3f} is detectable (80% power) in every domain.")


def _mdg_range(f: MetricFrame) -> str:
    if "mdg" not in f.gaps.columns:
        return "–"
    metric = (f.settings.get("power") or {}).get("metric", "weighted_f1")
    mdg = f.gaps.loc[f.gaps["metric"] == metric, "mdg"].dropna()
    return "–" if mdg.empty else f"{mdg.min():.3f}–{mdg.max():.3f}"

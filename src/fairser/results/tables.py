"""The benchmark's tables: the paper-style table (W-F1 and the sensitive attribute's gap per language x
modality, objectives side by side) and the method-zoo comparison (one line per objective), as frames and as
Markdown. The texts name the rows' attribute (:func:`fairser.results.labels.sensitive_labels`; gender when the
rows carry none), and rows of different attributes are refused.

Mean ± std over seeds (:func:`fairser.results.aggregate.seed_stats`), the change of each objective against
the baseline (ERM), an overall row (W-F1 over all test utterances of a run; gap = mean over domains of
gap_d, METHODS.md §2) and a worst-domain row (max_d gap_d), like the ERM-MinMaxGAP paper's table.

Beneath it, the gaps with their uncertainty (:func:`gaps_table`, :func:`render_gaps`): every run's W-F1 gap
per domain with its speaker-level CI and permutation p-value, the minimum detectable gap of the domain
(:func:`fairser.metrics.power.minimum_detectable_gap`, METHODS.md §2.1), the undefined domains with their
reasons and the domains the Overall row covers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fairser.results.aggregate import seed_stats
from fairser.results.labels import GENDER, SensitiveLabels, sensitive_labels

__all__ = [
    "comparison_table",
    "fmt_delta",
    "fmt_pm",
    "gaps_table",
    "long_results",
    "paper_table",
    "read_mdg",
    "render_comparison",
    "render_gaps",
    "render_table",
]

_GAP = "weighted_f1_gap"


def fmt_pm(mean: float | None, std: float | None) -> str:
    """``mean ± std`` in % with one decimal (``–`` when the mean is undefined; no ``± …`` without a std)."""
    if mean is None or not np.isfinite(mean):
        return "–"
    s = f"{100 * mean:.1f}"
    if std is not None and np.isfinite(std):
        s += f" ± {100 * std:.1f}"
    return s


def fmt_delta(x: float | None) -> str:
    """A signed change in % with one decimal (``–`` when undefined)."""
    return "–" if x is None or not np.isfinite(x) else f"{100 * x:+.1f}"


# ------------------------------------------------------------------------------------------- paper table


def long_results(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (run, domain) with W-F1 and its gap (the sensitive attribute's), plus per-run 'Overall' and
    'Worst domain' rows."""
    out = []
    for r in rows:
        base = {"objective": r["objective_label"], "seed": r["seed"], "setting": r["setting"]}
        gaps = []
        for d in r["domains"]:
            gap = d.get(_GAP)
            gaps.append(np.nan if gap is None else gap)
            out.append(
                {
                    **base,
                    "language": d["language"],
                    "modality": d["modality"],
                    "weighted_f1": d["weighted_f1"],
                    "gap": np.nan if gap is None else gap,
                    "signed_gap": d.get("weighted_f1_signed_gap"),
                }
            )
        gaps_arr = np.asarray(gaps, dtype=float)
        finite = gaps_arr[np.isfinite(gaps_arr)]
        out.append(
            {
                **base,
                "language": "Overall",
                "modality": r["setting"],
                "weighted_f1": r["overall_weighted_f1"],
                "gap": float(finite.mean()) if finite.size else np.nan,
            }
        )
        out.append(
            {
                **base,
                "language": "Worst domain",
                "modality": r["setting"],
                "weighted_f1": np.nan,
                "gap": float(finite.max()) if finite.size else np.nan,
            }
        )
    return pd.DataFrame(out)


def paper_table(rows: list[dict[str, Any]], *, baseline: str) -> pd.DataFrame:
    """Aggregate run rows into the paper's table (one row per language x modality, then Overall / Worst).

    Columns: ``language, modality``, then per objective ``<obj> W-F1``, ``<obj> W-F1 std``, ``<obj> gap``,
    ``<obj> gap std``, ``<obj> n_seeds``, and for every non-baseline objective ``Δ W-F1`` / ``Δ gap`` (its
    mean minus the baseline's mean). ``attrs["sensitive"]``: the rows' :class:`SensitiveLabels` (``ValueError``
    when the rows belong to different sensitive attributes).
    """
    labels = sensitive_labels(rows)
    long = long_results(rows)
    if long.empty:
        return pd.DataFrame(columns=["language", "modality"])
    # Overall / Worst rows are per setting (their modality is the setting).
    agg = seed_stats(long, by=["language", "modality", "objective"], values=["weighted_f1", "gap"])
    objectives = list(dict.fromkeys(long["objective"]))
    if baseline in objectives:
        objectives.remove(baseline)
        objectives.insert(0, baseline)
    table = agg[["language", "modality"]].drop_duplicates().reset_index(drop=True)
    for obj in objectives:
        sub = agg.loc[
            agg["objective"] == obj,
            ["language", "modality", "weighted_f1", "weighted_f1_std", "gap", "gap_std", "n_seeds"],
        ]
        sub = sub.rename(
            columns={
                "weighted_f1": f"{obj} W-F1",
                "weighted_f1_std": f"{obj} W-F1 std",
                "gap": f"{obj} gap",
                "gap_std": f"{obj} gap std",
                "n_seeds": f"{obj} n_seeds",
            }
        )
        table = table.merge(sub, on=["language", "modality"], how="left")
    for obj in objectives[1:]:
        if baseline in objectives:
            table[f"{obj} Δ W-F1"] = table[f"{obj} W-F1"] - table[f"{baseline} W-F1"]
            table[f"{obj} Δ gap"] = table[f"{obj} gap"] - table[f"{baseline} gap"]
    order = {"Overall": 1, "Worst domain": 2}
    table["_o"] = table["language"].map(lambda x: order.get(x, 0))
    table = (
        table.sort_values(["_o", "modality", "language"], kind="stable")
        .drop(columns="_o")
        .reset_index(drop=True)
    )
    table.attrs["objectives"] = objectives
    table.attrs["baseline"] = baseline
    table.attrs["sensitive"] = labels
    return table


def render_table(
    table: pd.DataFrame,
    *,
    synthetic: bool,
    source: str,
    n_seeds: int,
    gaps: pd.DataFrame | None = None,
    ci: float = 0.95,
) -> str:
    """Markdown rendering (values in %, mean ± std over seeds); states the data source, 'synthetic' and the
    gap of the table's sensitive attribute. A cell with fewer finished runs than ``n_seeds`` is marked
    ``(n=k)``. With ``gaps`` (:func:`gaps_table`) the gaps with their
    uncertainty follow beneath (:func:`render_gaps`)."""
    labels: SensitiveLabels = table.attrs.get("sensitive", GENDER)
    objectives = table.attrs.get("objectives", [])
    baseline = table.attrs.get("baseline")
    head = ["Language", "Modality"]
    for obj in objectives:
        head += [f"{obj} W-F1", f"{obj} gap"]
        if obj != baseline and baseline in objectives:
            head += ["Δ W-F1", "Δ gap"]
    lines = []
    if synthetic:
        lines.append(
            "**SYNTHETIC DATA** — built-in eSpeak NG corpus; numbers describe this generator, not real speech.\n"
        )
    counts = [r.get(f"{obj} n_seeds") for _, r in table.iterrows() for obj in objectives]
    fewer = any(n == n and n is not None and int(n) < n_seeds for n in counts)
    lines.append(
        f"Data: {source}. W-F1 and {labels.description} in %, mean ± std over {n_seeds} seed(s)"
        + ("; (n=k): a cell with only k finished runs" if fewer else "")
        + "; "
        "Δ = objective − " + f"{baseline}. Overall: W-F1 on all test utterances, gap = mean over domains; "
        "Worst domain: max over domains of the gap.\n"
    )
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for _, r in table.iterrows():
        cells = [str(r["language"]), str(r["modality"])]
        for obj in objectives:
            n = r.get(f"{obj} n_seeds")
            runs = f" (n={int(n)})" if n == n and n is not None and int(n) < n_seeds else ""
            for value in (
                fmt_pm(r.get(f"{obj} W-F1"), r.get(f"{obj} W-F1 std")),
                fmt_pm(r.get(f"{obj} gap"), r.get(f"{obj} gap std")),
            ):
                cells.append(value + runs if value != "–" else value)
            if obj != baseline and baseline in objectives:
                cells += [fmt_delta(r.get(f"{obj} Δ W-F1")), fmt_delta(r.get(f"{obj} Δ gap"))]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if gaps is not None:
        text += "\n" + render_gaps(gaps, ci=ci)
    return text


# ------------------------------------------------------------------------------ gaps with uncertainty

#: Columns of :func:`gaps_table`.
GAP_COLUMNS = (
    "setting",
    "language",
    "modality",
    "objective",
    "seed",
    "gap",
    "signed_gap",
    "ci_low",
    "ci_high",
    "p_value",
    "significant",
    "mdg",
    "mdg_se",
    "below_mdg",
    "speakers_per_group",
    "mdg_reason",
    "reason",
)
_ALPHA = 0.05


def _num(x: Any) -> float:
    """A row value as a float (``None`` and missing -> NaN)."""
    try:
        return np.nan if x is None else float(x)
    except (TypeError, ValueError):
        return np.nan


def gaps_table(
    rows: list[dict[str, Any]], *, baseline: str | None = None, mdg: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Every run's W-F1 gap per domain with its uncertainty, tidy: one line per (setting, language,
    modality, objective, seed), sorted by setting, modality, language, objective (``baseline`` first, then
    in the rows' order) and seed.

    Columns :data:`GAP_COLUMNS` (fractions): the gap and signed gap, the speaker-level CI (``ci_low``,
    ``ci_high``) and permutation ``p_value`` from the rows (``domains[*].weighted_f1_gap*``; for a
    cross-validated benchmark the rows are the pooled ones), ``significant`` (p < 0.05), the domain's
    minimum detectable gap ``mdg`` / ``mdg_se`` / ``speakers_per_group`` from ``mdg`` (a frame with
    ``setting, language, modality, mdg, mdg_se, speakers_per_group, reason``, e.g. from
    :func:`fairser.metrics.power.minimum_detectable_gap`; NaN without it) with ``mdg_reason`` (why it is
    undefined, from its ``reason`` column), ``below_mdg`` (the measured gap
    is smaller than the MDG; ``<NA>`` when either is undefined) and ``reason`` (why the gap or its CI is
    undefined, from the row).

    ``attrs``: ``sensitive`` (:class:`SensitiveLabels`), ``undefined`` (one line per undefined domain gap of
    any metric: ``setting, language, modality, metric, reason, runs``) and ``overall`` (per setting: the
    domains of its runs, those whose gap enters the Overall mean in some run and the runs that leave a domain
    out, ``setting, domains, gap_domains, left_out``).
    """
    labels = sensitive_labels(rows)
    recs, undefined, overall = [], {}, {}
    for r in rows:
        run = f"{r['objective_label']} seed {r['seed']}"
        cover = overall.setdefault(r["setting"], {"domains": {}, "missing": {}, "defined": set()})
        for d in r["domains"]:
            dom = (r["setting"], str(d["language"]), str(d["modality"]))
            name = f"{dom[1]}/{dom[2]}"
            cover["domains"].setdefault(name, None)
            gap = _num(d.get(_GAP))
            if not np.isfinite(gap):
                cover["missing"].setdefault(name, []).append(run)
            else:
                cover["defined"].add(name)
            p = _num(d.get("weighted_f1_p_value"))
            recs.append(
                {
                    "setting": dom[0],
                    "language": dom[1],
                    "modality": dom[2],
                    "objective": r["objective_label"],
                    "seed": r["seed"],
                    "gap": gap,
                    "signed_gap": _num(d.get("weighted_f1_signed_gap")),
                    "ci_low": _num(d.get("weighted_f1_ci_low")),
                    "ci_high": _num(d.get("weighted_f1_ci_high")),
                    "p_value": p,
                    "significant": bool(np.isfinite(p) and p < _ALPHA),
                    "reason": d.get("weighted_f1_reason") or "",
                }
            )
            for key, value in d.items():  # every metric's undefined gap, with the row's reason
                if key.endswith("_gap") and not key.endswith("_signed_gap") and not np.isfinite(_num(value)):
                    metric = key[: -len("_gap")]
                    reason = d.get(f"{metric}_reason") or "no reason recorded"
                    undefined.setdefault((*dom, metric, reason), []).append(run)
    gaps = pd.DataFrame(recs, columns=[c for c in GAP_COLUMNS if c not in _MDG_COLUMNS])
    if mdg is not None and len(mdg):
        m = mdg[["setting", "language", "modality", "mdg", "mdg_se", "speakers_per_group", "reason"]]
        m = m.rename(columns={"reason": "mdg_reason"}).astype({"mdg": float, "mdg_se": float})
        for c in ("setting", "language", "modality"):
            m[c] = m[c].astype(str)
        gaps = gaps.merge(m, on=["setting", "language", "modality"], how="left")
    else:
        gaps["mdg"], gaps["mdg_se"], gaps["speakers_per_group"], gaps["mdg_reason"] = np.nan, np.nan, "", ""
    for c in ("speakers_per_group", "mdg_reason"):
        gaps[c] = [x if isinstance(x, str) else "" for x in gaps[c]]  # missing (NaN, None) -> ""
    known = np.isfinite(gaps["gap"].astype(float)) & np.isfinite(gaps["mdg"].astype(float))
    gaps["below_mdg"] = pd.array(
        [bool(b) if k else pd.NA for b, k in zip(gaps["gap"] < gaps["mdg"], known, strict=True)],
        dtype="boolean",
    )
    order = list(dict.fromkeys([*([baseline] if baseline else []), *gaps["objective"]]))
    gaps["_o"] = gaps["objective"].map(
        {o: i for i, o in enumerate(order)}
    )  # baseline first, else rows' order
    gaps = gaps.sort_values(["setting", "modality", "language", "_o", "seed"], kind="stable").reset_index(
        drop=True
    )
    gaps = gaps[list(GAP_COLUMNS)]
    gaps.attrs["sensitive"] = labels
    gaps.attrs["undefined"] = pd.DataFrame(
        [
            {
                "setting": k[0],
                "language": k[1],
                "modality": k[2],
                "metric": k[3],
                "reason": k[4],
                "runs": ", ".join(v),
            }
            for k, v in undefined.items()
        ],
        columns=["setting", "language", "modality", "metric", "reason", "runs"],
    )
    gaps.attrs["overall"] = pd.DataFrame(
        [
            {
                "setting": s,
                "domains": ", ".join(c["domains"]),
                "gap_domains": ", ".join(n for n in c["domains"] if n in c["defined"]),
                "left_out": "; ".join(f"{n} in {', '.join(v)}" for n, v in c["missing"].items()),
            }
            for s, c in overall.items()
        ],
        columns=["setting", "domains", "gap_domains", "left_out"],
    )
    return gaps


def read_mdg(folder: str | Path) -> pd.DataFrame | None:
    """A benchmark folder's minimum detectable gaps (``mdg.csv``, written by ``fairser benchmark``), or
    ``None`` when it has none."""
    path = Path(folder) / "mdg.csv"
    if not path.is_file() or path.stat().st_size <= 1:
        return None
    text = {
        c: str
        for c in (
            "setting",
            "run_id",
            "language",
            "modality",
            "speakers_per_group",
            "reason",
            "source_sha256",
        )
    }
    return pd.read_csv(path, dtype=text, keep_default_na=False, na_values={"mdg": [""], "mdg_se": [""]})


_MDG_COLUMNS = ("mdg", "mdg_se", "below_mdg", "speakers_per_group", "mdg_reason")


def _fmt_ci(r: dict[str, Any]) -> str:
    gap = fmt_pm(r["gap"], None)
    if gap == "–":
        return "–"
    lo, hi = r["ci_low"], r["ci_high"]
    ci = f" [{100 * lo:.1f}, {100 * hi:.1f}]" if np.isfinite(lo) and np.isfinite(hi) else " [–]"
    return gap + ci + ("*" if r["significant"] else "") + ("†" if r["below_mdg"] is True else "")


def _fmt_p(p: float) -> str:
    return "–" if not np.isfinite(p) else f"{p:.3f}"


def _fmt_mdg(r: dict[str, Any]) -> str:
    if not np.isfinite(r["mdg"]):
        return "–"
    se = f" ± {100 * r['mdg_se']:.1f}" if np.isfinite(r["mdg_se"]) else ""
    spk = f" ({r['speakers_per_group']})" if r["speakers_per_group"] else ""
    return f"{100 * r['mdg']:.1f}{se}{spk}"


def render_gaps(gaps: pd.DataFrame, *, ci: float = 0.95) -> str:
    """Markdown of :func:`gaps_table`: "Gaps with their uncertainty", one line per language × modality ×
    objective × seed (gap [CI], p, MDG), then how the MDG was computed, the gaps below it, the undefined
    domains with their reasons and the domains Overall covers."""
    labels: SensitiveLabels = gaps.attrs.get("sensitive", GENDER)
    level = f"{100 * ci:g}%"
    has_mdg = bool(np.isfinite(gaps["mdg"].astype(float)).any())
    lines = [
        "### Gaps with their uncertainty\n",
        f"W-F1 {labels.description} in %, per run (objective × seed), with its {level} CI (speaker-level "
        "bootstrap) and the p-value of the between-speaker permutation test (METHODS.md §2); "
        "* = p < 0.05. Cross-validated benchmarks: computed on the pooled out-of-fold predictions. "
        "MDG = minimum detectable gap of the domain (± its Monte-Carlo SE; speakers per group).\n",
        "| Language | Modality | Objective | Seed | W-F1 gap [CI] | p | MDG |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in gaps.to_dict(orient="records"):
        cells = [
            r["language"],
            r["modality"],
            r["objective"],
            str(r["seed"]),
            _fmt_ci(r),
            _fmt_p(r["p_value"]),
        ]
        lines.append("| " + " | ".join([*map(str, cells), _fmt_mdg(r)]) + " |")
    lines.append("")
    if has_mdg:
        lines.append(
            "MDG: the smallest true W-F1 gap that the speaker-level permutation test detects with 80% power at "
            "α = 0.05, by simulation from this domain's speakers, utterances and between-speaker spread, "
            "estimated from the baseline's first seed's predictions (METHODS.md §2.1). "
            "† = the measured gap is below the MDG: the data cannot detect a gap this small reliably (a true "
            "gap of this size reaches p < 0.05 in less than 80% of repeats; *† = significant nonetheless).\n"
        )
        below = gaps[gaps["below_mdg"].fillna(False).astype(bool)]
        known = int(gaps["below_mdg"].notna().sum())
        if known:
            lines.append(
                f"{len(below)} of {known} gaps are below their domain's MDG"
                + (
                    f" ({int(below['significant'].sum())} of them significant): for these the data cannot "
                    "detect a gap this small reliably."
                    if len(below)
                    else "."
                )
                + "\n"
            )
    no_mdg = gaps[~np.isfinite(gaps["mdg"].astype(float)) & (gaps["mdg_reason"] != "")]
    no_mdg = no_mdg.drop_duplicates(["setting", "language", "modality"])
    if len(no_mdg):
        lines.append("MDG undefined (–):\n")
        lines += [
            f"- {r['language']}/{r['modality']} ({r['setting']}): {r['mdg_reason']}"
            for r in no_mdg.to_dict(orient="records")
        ]
        lines.append("")
    elif not has_mdg:
        lines.append("MDG: not computed (–).\n")
    und: pd.DataFrame = gaps.attrs.get("undefined", pd.DataFrame())
    if len(und):
        lines.append("Undefined gaps (left out of the means above):\n")
        for u in und.to_dict(orient="records"):
            lines.append(
                f"- {u['language']}/{u['modality']} ({u['setting']}), {u['metric']}: {u['reason']} — {u['runs']}"
            )
        lines.append("")
    else:
        lines.append("Undefined gaps: none.\n")
    no_ci = gaps[np.isfinite(gaps["gap"].astype(float)) & ~np.isfinite(gaps["ci_low"].astype(float))]
    if len(no_ci):  # a defined gap without its CI ("[–]"): why
        lines.append("W-F1 gaps without a CI ([–]):\n")
        for (setting, lang, mod, reason), sub in no_ci.groupby(
            ["setting", "language", "modality", "reason"], sort=False
        ):
            runs = ", ".join(f"{o} seed {s}" for o, s in zip(sub["objective"], sub["seed"], strict=True))
            lines.append(f"- {lang}/{mod} ({setting}): {reason or 'no reason recorded'} — {runs}")
        lines.append("")
    cover: pd.DataFrame = gaps.attrs.get("overall", pd.DataFrame())
    for c in cover.to_dict(orient="records"):
        text = (
            f"Overall ({c['setting']}): W-F1 on all test utterances of {c['domains']}; gap = mean over "
            f"{c['gap_domains'] or 'no domain'}"
        )
        text += f" (left out where undefined: {c['left_out']})." if c["left_out"] else "."
        lines.append(text)
    return "\n".join(lines).rstrip() + "\n"


# -------------------------------------------------------------------------------------- comparison table

_COMPARED = [
    "wf1",
    "uar",
    "mean_gap",
    "worst_gap",
    "dsp",
    "deo",
    "probe_acc",
    "probe_chance",
    "probe_input_acc",
]
_IDI = ["idi_speaker_acc", "idi_kappa"]


def _domain_values(r: dict[str, Any], key: str) -> np.ndarray:
    return np.asarray([np.nan if d.get(key) is None else d.get(key) for d in r["domains"]], dtype=float)


def _domain_mean(r: dict[str, Any], key: str) -> float:
    vals = _domain_values(r, key)
    return float(np.nanmean(vals)) if np.isfinite(vals).any() else np.nan


def _domain_max(r: dict[str, Any], key: str) -> float:
    vals = _domain_values(r, key)
    return float(np.nanmax(vals)) if np.isfinite(vals).any() else np.nan


def comparison_table(
    rows: list[dict[str, Any]], *, baseline: str, order: list[str] | None = None
) -> pd.DataFrame:
    """One line per objective (and setting): the method-zoo comparison, mean and std over seeds.

    Objectives appear in ``order`` (e.g. the config's), else in the order of ``rows``.

    Columns (fractions): ``wf1``, ``uar``, ``mean_gap`` (mean over domains of the W-F1 gap of the sensitive
    attribute),
    ``worst_gap`` (max over domains), ``dsp`` / ``deo`` (mean over domains of the mean-over-classes ΔSP /
    ΔEO), each with ``_std``; ``d_wf1`` / ``d_worst_gap`` (mean minus the baseline's in the same setting);
    ``probe_acc`` / ``probe_chance`` / ``probe_input_acc`` (linear gender probe on the learned embedding, its
    chance level, and the same probe on the input features; when run) and
    ``idi_speaker_acc`` / ``idi_kappa`` (agreement of inferred with true gender over training rows, IDI).
    ``attrs["sensitive"]``: the rows' :class:`SensitiveLabels` (``ValueError`` when the rows belong to
    different sensitive attributes).
    """
    labels = sensitive_labels(rows)
    recs = []
    for r in rows:
        probe = r.get("gender_probe") or {}
        probe_input = r.get("gender_probe_input") or {}
        agree = (r.get("groups") or {}).get("agreement_train") or {}
        recs.append(
            {
                "objective": r["objective_label"],
                "setting": r["setting"],
                "seed": r["seed"],
                "wf1": r["overall_weighted_f1"],
                "uar": r.get("overall_uar", np.nan),
                "mean_gap": _domain_mean(r, "weighted_f1_gap"),
                "worst_gap": _domain_max(r, "weighted_f1_gap"),
                "dsp": _domain_mean(r, "dsp_mean_gap"),
                "deo": _domain_mean(r, "deo_mean_gap"),
                "probe_acc": probe.get("accuracy", np.nan),
                "probe_chance": probe.get("chance", np.nan),
                "probe_input_acc": probe_input.get("accuracy", np.nan),
                "idi_speaker_acc": agree.get("speaker_accuracy", np.nan),
                "idi_kappa": agree.get("speaker_kappa", np.nan),
            }
        )
    long = pd.DataFrame(recs).astype(
        {"uar": float, "probe_acc": float, "probe_chance": float, "probe_input_acc": float}
    )
    stats = seed_stats(long, by=["setting", "objective"], values=_COMPARED + _IDI)
    table = stats[
        ["setting", "objective", *_COMPARED, *(f"{m}_std" for m in _COMPARED), *_IDI, "n_seeds"]
    ].copy()
    base = table[table["objective"] == baseline].set_index("setting")
    table["d_wf1"] = table["wf1"] - table["setting"].map(base["wf1"])
    table["d_worst_gap"] = table["worst_gap"] - table["setting"].map(base["worst_gap"])
    if order is not None:
        rank = {label: i for i, label in enumerate(order)}
        table = table.sort_values(
            ["setting", "objective"],
            key=lambda col: col.map(rank) if col.name == "objective" else col,
            kind="stable",
        ).reset_index(drop=True)
    table.attrs["sensitive"] = labels
    return table


def render_comparison(table: pd.DataFrame, *, synthetic: bool, source: str, baseline: str) -> str:
    """Markdown rendering of :func:`comparison_table` (in %, mean ± std over seeds)."""
    labels: SensitiveLabels = table.attrs.get("sensitive", GENDER)
    gaps = labels.formula() if labels.is_gender else labels.description
    has_probe = table["probe_acc"].notna().any()
    has_idi = table["idi_speaker_acc"].notna().any()
    head = ["Setting", "Objective", "Seeds", "W-F1", "UAR", "Mean gap", "Worst-domain gap", "ΔSP", "ΔEO"]
    head += ["Δ W-F1", "Δ worst gap"] + (["Gender probe: embedding / input (chance)"] if has_probe else [])
    head += ["IDI speaker acc (κ)"] if has_idi else []
    lines = []
    if synthetic:
        lines.append("**SYNTHETIC DATA** — built-in eSpeak NG corpus; numbers describe this generator.\n")
    lines.append(
        f"Data: {source}. In %, mean ± std over seeds. Gaps: {gaps} per domain (mean and "
        f"max over domains); ΔSP / ΔEO: mean over domains of the mean over classes. Δ = objective − {baseline} "
        "(negative Δ worst gap = fairer). Gender probe: speaker-independent CV accuracy of a linear probe on "
        "the learned test embedding (and on the input features). IDI: agreement of inferred with true gender over training speakers.\n"
    )
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for r in table.to_dict(orient="records"):
        cells = [str(r["setting"]), str(r["objective"]), str(int(r["n_seeds"]))]
        cells += [
            fmt_pm(r[k], r.get(f"{k}_std")) for k in ("wf1", "uar", "mean_gap", "worst_gap", "dsp", "deo")
        ]
        cells += [fmt_delta(r["d_wf1"]), fmt_delta(r["d_worst_gap"])]
        if has_probe:
            cells.append(
                "–"
                if not np.isfinite(r["probe_acc"])
                else f"{fmt_pm(r['probe_acc'], r['probe_acc_std'])} / {100 * r['probe_input_acc']:.1f} "
                f"({100 * r['probe_chance']:.0f})"
            )
        if has_idi:
            cells.append(
                "–"
                if not np.isfinite(r["idi_speaker_acc"])
                else f"{100 * r['idi_speaker_acc']:.0f} ({r['idi_kappa']:.2f})"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

"""The paper-style table: W-F1 and gender gap per language x modality, objectives side by side.

Mean ± std over seeds, the change of each objective against the baseline (ERM), an overall row (W-F1 over
all test utterances of a run; gap = mean over domains of gap_d, METHODS.md §2) and a worst-domain row
(max_d gap_d), like the ERM-MinMaxGAP paper's table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["long_results", "paper_table", "render_table"]

_GAP = "weighted_f1_gap"


def long_results(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (run, domain) with W-F1 and its gender gap, plus per-run 'Overall' and 'Worst domain' rows."""
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
    mean minus the baseline's mean).
    """
    long = long_results(rows)
    if long.empty:
        return pd.DataFrame(columns=["language", "modality"])
    # Overall / Worst rows are per setting; rename the setting for display.
    agg = (
        long.groupby(["language", "modality", "objective"], sort=False)
        .agg(
            wf1=("weighted_f1", "mean"),
            wf1_std=("weighted_f1", "std"),
            gap=("gap", "mean"),
            gap_std=("gap", "std"),
            n_seeds=("seed", "nunique"),
        )
        .reset_index()
    )
    objectives = list(dict.fromkeys(long["objective"]))
    if baseline in objectives:
        objectives.remove(baseline)
        objectives.insert(0, baseline)
    table = agg[["language", "modality"]].drop_duplicates().reset_index(drop=True)
    for obj in objectives:
        sub = agg[agg["objective"] == obj].drop(columns="objective")
        sub = sub.rename(
            columns={
                "wf1": f"{obj} W-F1",
                "wf1_std": f"{obj} W-F1 std",
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
    return table


def _pm(mean: float, std: float) -> str:
    if mean is None or not np.isfinite(mean):
        return "–"
    s = f"{100 * mean:.1f}"
    if std is not None and np.isfinite(std):
        s += f" ± {100 * std:.1f}"
    return s


def _delta(x: float) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{100 * x:+.1f}"


def render_table(table: pd.DataFrame, *, synthetic: bool, source: str, n_seeds: int) -> str:
    """Markdown rendering (values in %, mean ± std over seeds); states the data source and 'synthetic'."""
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
    lines.append(
        f"Data: {source}. W-F1 and gender gap |W-F1(male) − W-F1(female)| in %, mean ± std over {n_seeds} seed(s); "
        "Δ = objective − " + f"{baseline}. Overall: W-F1 on all test utterances, gap = mean over domains; "
        "Worst domain: max over domains of the gap.\n"
    )
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for _, r in table.iterrows():
        cells = [str(r["language"]), str(r["modality"])]
        for obj in objectives:
            cells += [
                _pm(r.get(f"{obj} W-F1"), r.get(f"{obj} W-F1 std")),
                _pm(r.get(f"{obj} gap"), r.get(f"{obj} gap std")),
            ]
            if obj != baseline and baseline in objectives:
                cells += [_delta(r.get(f"{obj} Δ W-F1")), _delta(r.get(f"{obj} Δ gap"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

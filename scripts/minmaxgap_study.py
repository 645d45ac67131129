"""Tables and figures of the ERM-MinMaxGAP study (issue 13, docs/minmaxgap_study.md).

Run:  PYTHONPATH=src .venv/bin/python scripts/minmaxgap_study.py [results/minmaxgap_study] [--figures DIR]

For every study folder (one per config of configs/minmaxgap_study/) and setting, one line per objective:
W-F1 and worst-domain W-F1 gender gap (max over domains, as the comparison table) as mean over seeds with a
95% t-interval over seeds, and the change against ERM *paired by seed* (same seed = same head
initialisation, sampler order and, under kfold, same folds): mean difference, its 95% t-interval, the paired
t-test p-value and the exact sign-flip permutation p-value (all 2^n sign patterns). Only complete cells are
shown (a cell whose seeds are not all finished is labelled). The tables read the benchmark's headline rows
(holdout rows, pooled cross-validated rows: :func:`fairser.results.pooled.headline_rows`) and the
comparison table's worst-domain gap; what the benchmark did not compute (the paired test) is here.
The lambda_t / R_t / null-baseline figure per variant is the report's (:func:`fairser.report.figures.plot_weight_dynamics`).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from fairser.report.data import weight_dynamics
from fairser.report.figures import figure_png, plot_weight_dynamics
from fairser.results.pooled import headline_rows
from fairser.results.tables import _domain_max

BASELINE = "ERM"


def t_interval(x: np.ndarray, ci: float = 0.95) -> tuple[float, float, float]:
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return (float(x.mean()) if len(x) else np.nan, np.nan, np.nan)
    half = stats.t.ppf(0.5 + ci / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def sign_flip_p(d: np.ndarray) -> float:
    """Exact two-sided sign-flip p-value of the mean of paired differences ``d``."""
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return np.nan
    observed = abs(d.mean())
    means = [abs((d * np.array(s)).mean()) for s in itertools.product((1, -1), repeat=len(d))]
    return float(np.mean([m >= observed - 1e-12 for m in means]))


def paired(d: np.ndarray) -> dict[str, float]:
    mean, lo, hi = t_interval(d)
    d = d[np.isfinite(d)]
    p_t = float(stats.ttest_1samp(d, 0.0).pvalue) if len(d) >= 2 and d.std() > 0 else np.nan
    return {"mean": mean, "lo": lo, "hi": hi, "p_t": p_t, "p_sign": sign_flip_p(d)}


def study_frame(folder: Path) -> pd.DataFrame:
    every = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in headline_rows(every) if r.get("status") == "ok"]
    fold_lambda: dict[str, list[float]] = {}  # a pooled row's final lambda: the mean over its folds
    for r in every:
        if r.get("pool_id") and r.get("final_lambda") is not None:
            fold_lambda.setdefault(r["pool_id"], []).append(r["final_lambda"])
    for r in rows:
        if r.get("final_lambda") is None and r["run_id"] in fold_lambda:
            r["final_lambda"] = float(np.mean(fold_lambda[r["run_id"]]))
    return pd.DataFrame(
        [
            {
                "setting": r["setting"],
                "objective": r["objective_label"],
                "seed": r["seed"],
                "wf1": r["overall_weighted_f1"],
                "worst_gap": _domain_max(r, "weighted_f1_gap"),
                "final_lambda": r.get("final_lambda"),
            }
            for r in rows
        ]
    )


def group_table(folder: Path, *, order: list[str]) -> str:
    """Per objective and language: mean over seeds of W-F1 (male / female), in %: who gains, who loses."""
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in headline_rows(rows) if r.get("status") == "ok"]
    recs = [
        {
            "objective": r["objective_label"],
            "language": d["language"],
            "male": d.get("weighted_f1_male"),
            "female": d.get("weighted_f1_female"),
        }
        for r in rows
        for d in r["domains"]
    ]
    frame = pd.DataFrame(recs).astype({"male": float, "female": float})
    means = frame.groupby(["objective", "language"], sort=False)[["male", "female"]].mean()
    languages = list(dict.fromkeys(frame["language"]))
    lines = ["| Objective | " + " | ".join(f"{lang}: male / female" for lang in languages) + " |"]
    lines.append("|" + "---|" * (len(languages) + 1))
    for obj in order:
        if obj not in means.index.get_level_values(0):
            continue
        cells = [
            f"{pct(means.loc[(obj, lang), 'male'])} / {pct(means.loc[(obj, lang), 'female'])}"
            for lang in languages
        ]
        lines.append(f"| {obj} | " + " | ".join(cells) + " |")
    return "Per-language W-F1 by gender (mean over seeds, %):\n\n" + "\n".join(lines) + "\n"


def study_table(frame: pd.DataFrame, *, order: list[str], n_seeds: int) -> pd.DataFrame:
    out = []
    for setting, sub in frame.groupby("setting", sort=False):
        base = sub[sub["objective"] == BASELINE].set_index("seed")
        for obj in order:
            cell = sub[sub["objective"] == obj].set_index("seed").sort_index()
            if cell.empty:
                continue
            rec = {
                "setting": setting,
                "objective": obj,
                "n_seeds": len(cell),
                "complete": len(cell) >= n_seeds,
            }
            for m in ("wf1", "worst_gap"):
                rec[m], rec[f"{m}_lo"], rec[f"{m}_hi"] = t_interval(cell[m].to_numpy(float))
                if obj != BASELINE:
                    common = cell.index.intersection(base.index)
                    d = (cell.loc[common, m] - base.loc[common, m]).to_numpy(float)
                    for k, v in paired(d).items():
                        rec[f"d_{m}_{k}"] = v
            lam = pd.to_numeric(cell["final_lambda"], errors="coerce")
            rec["final_lambda"] = float(lam.mean()) if lam.notna().any() else np.nan
            out.append(rec)
    return pd.DataFrame(out)


def pct(x: float) -> str:
    return "–" if not np.isfinite(x) else f"{100 * x:.1f}"


def fmt_p(p: float) -> str:
    return "–" if not np.isfinite(p) else (f"{p:.3f}" if p >= 0.001 else "<0.001")


def render(table: pd.DataFrame, *, title: str) -> str:
    lines = [f"#### {title}", ""]
    head = (
        "| Setting | Objective | Seeds | W-F1 [95% CI] | Worst-domain gap [95% CI] | Δ W-F1 vs ERM [95% CI] "
        "(p_t / p_sign) | Δ worst gap vs ERM [95% CI] (p_t / p_sign) | final λ |"
    )
    lines += [head, "|" + "---|" * 9]
    for r in table.to_dict(orient="records"):
        label = r["objective"] + ("" if r["complete"] else " (incomplete)")
        cells = [r["setting"], label, str(r["n_seeds"])]
        for m in ("wf1", "worst_gap"):
            cells.append(f"{pct(r[m])} [{pct(r[m + '_lo'])}, {pct(r[m + '_hi'])}]")
        for m in ("wf1", "worst_gap"):
            if r["objective"] == BASELINE:
                cells.append("–")
                continue
            mean, lo, hi = (r[f"d_{m}_{k}"] for k in ("mean", "lo", "hi"))
            cells.append(
                f"{100 * mean:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] "
                f"({fmt_p(r[f'd_{m}_p_t'])} / {fmt_p(r[f'd_{m}_p_sign'])})"
            )
        cells.append("–" if not np.isfinite(r["final_lambda"]) else f"{r['final_lambda']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="results/minmaxgap_study")
    parser.add_argument("--figures", default=None, help="write the lambda/R/null figure of each study here")
    parser.add_argument("--seeds", type=int, default=5, help="seeds of a complete cell")
    parser.add_argument("--csv", default=None, help="write the combined table as CSV here")
    args = parser.parse_args()
    root = Path(args.root)
    tables = []
    for folder in sorted(p for p in root.iterdir() if (p / "results.jsonl").is_file()):
        config = folder / "config.yaml"
        import yaml

        order = [o.get("label") or o["name"] for o in yaml.safe_load(config.read_text())["objectives"]]
        frame = study_frame(folder)
        if frame.empty:
            print(f"#### {folder.name}\n\nno finished (pooled) run yet\n")
            continue
        table = study_table(frame, order=order, n_seeds=args.seeds)
        if table.empty:
            continue
        print(render(table, title=folder.name))
        print(group_table(folder, order=order))
        tables.append(table.assign(study=folder.name))
        if args.figures:
            rows = [json.loads(x) for x in (folder / "results.jsonl").read_text().splitlines() if x.strip()]
            rows = [r for r in rows if r.get("status") == "ok" and r.get("fold") in (None, 0)]
            dyn = weight_dynamics(folder, rows)
            if len(dyn):
                synthetic = folder.name.startswith("synth")
                fig = plot_weight_dynamics(dyn, synthetic=synthetic, source=f"{folder}", max_columns=4)
                out = Path(args.figures) / f"dynamics_{folder.name}.png"
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(figure_png(fig, dpi=70))
                print(f"figure: {out}\n")
    if args.csv and tables:
        pd.concat(tables, ignore_index=True).to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()

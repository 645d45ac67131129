"""The codec-augmentation study (issue 15 item 3, docs/robustness_augmentation.md): run every arm, then compare.

Run:  PYTHONPATH=src .venv/bin/python scripts/robustness_augment_study.py [--seeds 0 1 2] [--objectives erm]
      [--compare-only] [--feature-shift]

Per arm (configs/robustness_augment/ARM.yaml: none, matched, heldout) it runs ``fairser benchmark`` with the
chosen seeds (resuming: finished runs are skipped) and ``fairser robustness`` on the arm's results folder
(the config's ``robustness.conditions``). Then it writes ``results/robustness_augment/comparison.md``:

1. per arm, the rows of its ``robustness.csv`` as produced (clean and degraded W-F1, ΔW-F1 and Δgap with the
   paired speaker-level CI and p);
2. per augmented arm, the difference augmented − none on the same test audio (clean, and each condition),
   paired by speaker with :func:`fairser.metrics.paired.paired_delta` (the ``none`` arm in its "clean"
   slot): W-F1 and the W-F1 gender gap with the bootstrap CI and the permutation p (seeds that finished in
   both arms, averaged inside each resample), and the change of the codec's drop (point estimate).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from fairser.metrics.paired import paired_delta

ARMS = ("none", "matched", "heldout")
BASE = "none"
LANGUAGE = {"de": "de (EmoDB)", "en": "en (RAVDESS)"}


def fairser(*args: str) -> None:
    exe = Path(sys.executable).with_name("fairser")
    print("+ fairser", *args, flush=True)
    subprocess.run([str(exe), *args], check=True)


def run_arm(arm: str, *, config_dir: Path, seeds: list[int], objectives: list[str] | None) -> Path:
    """``fairser benchmark`` (the arm's config with ``seeds`` and, if given, only the ``objectives`` of these
    names; run ids do not depend on the list) and ``fairser robustness``; the results folder."""
    data = yaml.safe_load((config_dir / f"{arm}.yaml").read_text())
    data["seeds"] = seeds
    if objectives:
        data["objectives"] = [o for o in data["objectives"] if o["name"] in objectives]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(data, f, sort_keys=False)
    fairser("benchmark", "--config", f.name, "-q")
    out = Path(data["output_dir"])
    fairser("robustness", str(out), "-q")
    return out


def load_arm(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """An arm's ``robustness.csv`` and pooled predictions: the folder's own, and those of earlier
    ``fairser robustness`` calls kept in ``parts/*/`` (e.g. one call per objective); later ones win."""
    tables, preds = [], []
    for d in [*sorted((folder / "parts").glob("*/")), folder]:
        if (d / "robustness.csv").is_file() and (d / "robustness_predictions.csv.gz").is_file():
            tables.append(pd.read_csv(d / "robustness.csv"))
            preds.append(pd.read_csv(d / "robustness_predictions.csv.gz", dtype={"speaker": str}))
    if not tables:
        return None
    table = pd.concat(tables, ignore_index=True).drop_duplicates(
        ["objective", "condition", "language"], keep="last"
    )
    pred = pd.concat(preds, ignore_index=True).drop_duplicates(
        ["objective", "seed", "condition", "id"], keep="last"
    )
    return table.reset_index(drop=True), pred.reset_index(drop=True)


def pct(v: float) -> str:
    return f"{100 * v:.1f}"


def ci(v: float, lo: float, hi: float) -> str:
    return f"{100 * v:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def arm_table(arm: str, frame: pd.DataFrame) -> list[str]:
    lines = [f"### Arm `{arm}`: degraded − clean ({int(frame['n_seeds'].iloc[0])} seed(s))", "",
             "| objective | condition | language | W-F1 clean → degraded | ΔW-F1 [95% CI] | p | gap clean → degraded | Δgap [95% CI] | p |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for _, r in frame.iterrows():
        lines.append(
            f"| {r['objective']} | {r['condition']} | {LANGUAGE.get(r['language'], r['language'])} | "
            f"{pct(r['weighted_f1_clean'])} → {pct(r['weighted_f1_degraded'])} | "
            f"{ci(r['delta_weighted_f1'], r['delta_weighted_f1_ci_low'], r['delta_weighted_f1_ci_high'])} | "
            f"{r['delta_weighted_f1_p']:.3f} | "
            f"{pct(r['weighted_f1_gap_clean'])} → {pct(r['weighted_f1_gap_degraded'])} | "
            f"{ci(r['delta_weighted_f1_gap'], r['delta_weighted_f1_gap_ci_low'], r['delta_weighted_f1_gap_ci_high'])} | "
            f"{r['delta_weighted_f1_gap_p']:.3f} |"
        )
    return [*lines, ""]


def between_arms(
    base: pd.DataFrame, arm: pd.DataFrame, *, labels: list[str], n_boot: int, n_perm: int
) -> pd.DataFrame:
    """augmented − none per objective × condition (clean included) × language, paired by speaker and seed."""
    seeds = sorted(set(base["seed"]) & set(arm["seed"]))
    rows = []
    for (objective, condition, language), b in base.groupby(
        ["objective", "condition", "language"], sort=False
    ):
        a = arm[
            (arm["objective"] == objective) & (arm["condition"] == condition) & (arm["language"] == language)
        ]
        if a.empty:  # an objective or condition the augmented arm has not been tested on (yet)
            continue
        # the files degraded in both arms (the same files: one seed, one cache)
        if condition != "clean":
            ok = set(b.loc[b["degraded_ok"].astype(bool), "id"]) & set(
                a.loc[a["degraded_ok"].astype(bool), "id"]
            )
            b, a = b[b["id"].isin(ok)], a[a["id"].isin(ok)]
        parts = ([], [])
        for s in seeds:
            for frame, out in ((b, parts[0]), (a, parts[1])):
                out.append(frame[frame["seed"] == s].sort_values("id").reset_index(drop=True))
        res = paired_delta(clean=parts[0], degraded=parts[1], labels=labels, values=("male", "female"),
                           n_boot=n_boot, n_perm=n_perm, seed=0)  # fmt: skip
        row = {"objective": objective, "condition": condition, "language": language, "n_seeds": len(seeds)}
        for metric in ("weighted_f1", "weighted_f1_gap"):
            r = res.row(metric)
            row.update({f"{metric}_none": r["clean"], f"{metric}_aug": r["degraded"], f"{metric}_diff": r["delta"],
                        f"{metric}_ci_low": r["ci_low"], f"{metric}_ci_high": r["ci_high"],
                        f"{metric}_p": r["p_value"], "n_speakers": r["n_speakers"]})  # fmt: skip
        rows.append(row)
    out = pd.DataFrame(rows)
    clean = out[out["condition"] == "clean"].set_index(["objective", "language"])["weighted_f1_diff"]
    out["drop_change"] = [
        r["weighted_f1_diff"] - clean.loc[(r["objective"], r["language"])]
        if r["condition"] != "clean"
        else float("nan")
        for _, r in out.iterrows()
    ]
    return out


def seen_conditions(config_path: Path) -> set[str]:
    """Labels of the conditions an arm degraded its training utterances with (as the robustness tables name them)."""
    from fairser.config import load_config
    from fairser.degrade import build_conditions

    aug = load_config(config_path).degrade_augment
    return {label for label, _ in build_conditions(aug.conditions)} if aug is not None else set()


def comparison_table(arm: str, frame: pd.DataFrame, *, seen: set[str]) -> list[str]:
    lines = [f"### `{arm}` − `none` on the same test audio ({int(frame['n_seeds'].iloc[0])} seed(s), paired by speaker)",
             "", "W-F1 and its gender gap of each arm, the difference augmented − none with the paired speaker-level "
             "bootstrap 95% CI and the paired permutation p; 'drop change' = (ΔW-F1 augmented) − (ΔW-F1 none), "
             "positive when augmentation shrinks the codec's drop (point estimate).", "",
             "| objective | condition | seen in training | language | W-F1 none → aug | diff [95% CI] | p | drop change | gap none → aug | gap diff [95% CI] | p |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for _, r in frame.iterrows():
        cond = r["condition"]
        seen_s = "—" if cond == "clean" else ("yes" if cond in seen else "**no**")
        drop = "—" if cond == "clean" else f"{100 * r['drop_change']:+.1f}"
        lines.append(
            f"| {r['objective']} | {cond} | {seen_s} | {LANGUAGE.get(r['language'], r['language'])} | "
            f"{pct(r['weighted_f1_none'])} → {pct(r['weighted_f1_aug'])} | "
            f"{ci(r['weighted_f1_diff'], r['weighted_f1_ci_low'], r['weighted_f1_ci_high'])} | "
            f"{r['weighted_f1_p']:.3f} | {drop} | "
            f"{pct(r['weighted_f1_gap_none'])} → {pct(r['weighted_f1_gap_aug'])} | "
            f"{ci(r['weighted_f1_gap_diff'], r['weighted_f1_gap_ci_low'], r['weighted_f1_gap_ci_high'])} | "
            f"{r['weighted_f1_gap_p']:.3f} |"
        )
    return [*lines, ""]


def feature_shift(
    config_path: Path, *, contrast: tuple[str, str] = ("telephone mulaw", "amr_nb 4.75k")
) -> list[str]:
    """Why augmentation may or may not transfer: how each test condition moves the eGeMAPS vectors.

    Per language, the features are z-scored with the clean files' mean and SD; per file the shift is
    degraded − clean (88 values). The table gives the median |shift| and the RMS shift (SD units) per
    condition and the mean over files of the cosine between two conditions' shifts of the same file (1: they
    move a file the same way, so training on one should help with the other; 0: unrelated directions). Then
    the features ``contrast[0]`` moves most beyond ``contrast[1]`` and the mean F0 per gender.
    """
    import numpy as np

    from fairser.config import load_config
    from fairser.run import prepare_data
    from fairser.run.degraded import run_conditions

    config = load_config(config_path)
    prepared = prepare_data(config, progress=False)
    rob = config.robustness
    conditions = run_conditions(rob.conditions, prepared, config, seed=rob.seed, pool_size=rob.babble_pool,
                                where="robustness.conditions")  # fmt: skip
    rows = np.arange(len(prepared.manifest))
    clean = np.asarray(prepared.audio, dtype=np.float64)
    shifted, ok = {}, np.ones(len(rows), dtype=bool)
    from fairser.degrade import extract_degraded_features
    from fairser.features import FeatureCache, build_audio_encoder

    encoder = build_audio_encoder(config.features.audio, **config.features.audio_options)
    for label, condition in conditions:  # raw (not normalised) degraded features, from the cache
        res = extract_degraded_features(
            paths=[prepared.paths[i] for i in rows], condition=condition, encoder=encoder,
            cache=FeatureCache(config.features.cache_dir), seed=rob.seed, n_jobs=1,
        )  # fmt: skip
        shifted[label], ok = np.asarray(res.features, dtype=np.float64), ok & res.ok
    labels = list(shifted)
    lines = ["### Feature shift per condition (eGeMAPS, z-scored per language with the clean files)", "",
             "Median |shift| and RMS shift over files and features in clean-SD units (the RMS is dominated by a few "
             "features with a small clean SD), and the mean per-file cosine between two conditions' shift vectors.", ""]  # fmt: skip
    for lang in sorted(prepared.manifest["language"].unique()):
        sel = (prepared.manifest["language"] == lang).to_numpy() & ok
        sd = clean[sel].std(0) + 1e-12
        z = {k: (v[sel] - clean[sel]) / sd for k, v in shifted.items()}
        unit = {k: d / (np.linalg.norm(d, axis=1, keepdims=True) + 1e-12) for k, d in z.items()}
        lines += [f"**{LANGUAGE.get(lang, lang)}** ({int(sel.sum())} files)", "",
                  "| condition | median abs shift | RMS shift | " + " | ".join(f"cos vs {k}" for k in labels) + " |",
                  "|---|---|---|" + "---|" * len(labels)]  # fmt: skip
        for a in labels:
            rms = float(np.sqrt((z[a] ** 2).mean()))
            med = float(np.median(np.abs(z[a])))
            cos = [float((unit[a] * unit[b]).sum(1).mean()) for b in labels]
            lines.append(f"| {a} | {med:.2f} | {rms:.2f} | " + " | ".join(f"{c:.2f}" for c in cos) + " |")
        lines.append("")
        a, b = contrast
        if a in z and b in z:  # the features condition a moves and condition b does not; mean F0 per gender
            names = list(getattr(encoder, "feature_names", None) or range(clean.shape[1]))
            med_a, med_b = np.median(z[a], axis=0), np.median(z[b], axis=0)
            top = np.argsort(-(np.abs(med_a) - np.abs(med_b)))[:8]
            lines += [f"Features {a} moves most beyond {b} (median shift, clean SD):", "",
                      f"| feature | {a} | {b} |", "|---|---|---|"]  # fmt: skip
            lines += [f"| {names[i]} | {med_a[i]:+.2f} | {med_b[i]:+.2f} |" for i in top]
            f0 = [i for i, n in enumerate(names) if str(n).startswith("F0semitone") and "amean" in str(n)]
            for g in ("male", "female"):
                sg = sel & (prepared.manifest["gender"] == g).to_numpy()
                for i in f0:
                    lines.append(f"- {g}: mean {names[i]} clean {clean[sg, i].mean():.2f}, {a} "
                                 f"{shifted[a][sg, i].mean():.2f}, {b} {shifted[b][sg, i].mean():.2f}")  # fmt: skip
            lines.append("")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    ap.add_argument(
        "--objectives", nargs="+", help="only these objectives (config names, e.g. erm); default: all"
    )
    ap.add_argument("--config-dir", type=Path, default=Path("configs/robustness_augment"))
    ap.add_argument("--results", type=Path, default=Path("results/robustness_augment"))
    ap.add_argument("--compare-only", action="store_true", help="only write the tables from finished arms")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--n-perm", type=int, default=1000)
    ap.add_argument(
        "--feature-shift", action="store_true", help="add the feature-shift diagnostic (cached features)"
    )
    args = ap.parse_args()
    if not args.compare_only:
        for arm in args.arms:
            run_arm(arm, config_dir=args.config_dir, seeds=args.seeds, objectives=args.objectives)
    tables, preds = {}, {}
    for arm in ARMS:
        found = load_arm(args.results / arm)
        if found is not None:
            tables[arm], preds[arm] = found
    if BASE not in tables:
        sys.exit(f"no robustness results of the '{BASE}' arm in {args.results / BASE}: run the study first")
    labels = [c.removeprefix("prob_") for c in preds[BASE].columns if c.startswith("prob_")]
    lines = ["# Codec augmentation study: tables (scripts/robustness_augment_study.py)", "",
             "Percentage points. EmoDB (de) + RAVDESS (en), 5 speaker folds pooled, eGeMAPS heads, audio only.", ""]  # fmt: skip
    for arm in ARMS:
        if arm in tables:
            lines += arm_table(arm, tables[arm])
    for arm in ARMS[1:]:
        if arm in preds:
            frame = between_arms(
                preds[BASE], preds[arm], labels=labels, n_boot=args.n_boot, n_perm=args.n_perm
            )
            frame.to_csv(args.results / f"comparison_{arm}.csv", index=False)
            lines += comparison_table(arm, frame, seen=seen_conditions(args.config_dir / f"{arm}.yaml"))
    if args.feature_shift:
        lines += feature_shift(args.config_dir / f"{BASE}.yaml")
    text = "\n".join(lines)
    (args.results / "comparison.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

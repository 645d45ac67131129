"""``fairser robustness``: finished runs tested on degraded test audio (METHODS.md §6, robustness).

For each finished run of a results folder, the model is obtained from a *model source* and its test split
is predicted once on clean audio and once per condition. The default source, :class:`RefitModels`, re-fits
the run in this process from its config and seed (the pipeline is seeded) and refuses a run whose clean
test predictions differ in any way from its stored ``predictions.csv``; a source that loads saved models
only has to return the same :class:`~fairser.run.execute.FittedRun` fields (``prepared``, ``views``,
``trainer``, ``result.model``).

The test audio is degraded once per condition for all runs (cached; :mod:`fairser.run.degraded`), and
normalised with each run's own clean statistics. Cross-validated folds are pooled per cell as in the
benchmark. Per condition x objective x setting x language x modality the outputs hold W-F1, UAR and the
gender gap, the change against clean audio with a paired speaker-level bootstrap CI and a paired
permutation p-value (:func:`fairser.metrics.paired.paired_delta`; seeds of a cell averaged), the recall
change per class and gender, and per run the benchmark's own evaluation of the degraded predictions
(:func:`fairser.results.rows.evaluate_run`: gap CI and p-value).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from rich.console import Console

from fairser.config import BenchmarkConfig, ConditionSpec, load_config
from fairser.errors import UserError
from fairser.results import ResultsStore, read_fold_predictions
from fairser.results.rows import evaluate_run, predictions_table
from fairser.run import PreparedData, RunSpec, plan_runs, prepare_data
from fairser.run.execute import FittedRun, fit_run

__all__ = ["ModelSource", "RefitModels", "RobustnessResult", "evaluate_robustness", "robustness_conditions"]

CLEAN = "clean"


class ModelSource(Protocol):
    """Where the trained model of a finished run comes from."""

    def fitted(self, spec: RunSpec, prepared: PreparedData, config: BenchmarkConfig) -> FittedRun: ...


class RefitModels:
    """Re-fit each run in this process, deterministically from its config and seed, and check its clean test
    predictions against the stored ``runs/<run_id>/predictions.csv`` exactly (labels and float32 probabilities).

    The benchmark trains in worker processes with one torch thread (or in the main process with the default
    thread count when it runs one job): both settings are tried, the one the config implies first.
    """

    def __init__(self, results_dir: Path) -> None:
        self.results_dir = Path(results_dir)

    def fitted(self, spec: RunSpec, prepared: PreparedData, config: BenchmarkConfig) -> FittedRun:
        import torch

        path = self.results_dir / "runs" / spec.run_id / "predictions.csv"
        if not path.is_file():
            raise UserError(f"run {spec.run_id} has no stored predictions", where=str(path),
                            fix="re-run `fairser benchmark` on this config to finish it")  # fmt: skip
        stored = read_fold_predictions(path)
        default_threads = torch.get_num_threads()
        worst = ""
        try:
            # the benchmark's pool (n_jobs > 1) trains with one thread; n_jobs: 1 trains in its main process
            order = (1, default_threads) if config.n_jobs > 1 else (default_threads, 1)
            for threads in dict.fromkeys(order):
                torch.set_num_threads(threads)
                fitted = fit_run(spec, prepared, config)
                test, meta = fitted.views["test"]
                proba = fitted.trainer.predict_proba(fitted.result.model, test).astype(np.float32)
                mismatch = _compare(stored, meta=meta, proba=proba, labels=fitted.labels)
                if mismatch is None:
                    return fitted
                worst = mismatch
        finally:
            torch.set_num_threads(default_threads)
        raise UserError(
            f"re-fitting run {spec.run_id} does not reproduce its stored test predictions ({worst})",
            where=str(path),
            fix="the code, data or features changed since the benchmark ran: re-run `fairser benchmark` with this "
            "checkout, then `fairser robustness` (or load saved models instead of re-fitting)",
        )


def _compare(
    stored: pd.DataFrame, *, meta: pd.DataFrame, proba: np.ndarray, labels: Sequence[str]
) -> str | None:
    """None when ``stored`` holds exactly these predictions, else what differs."""
    if len(stored) != len(meta) or not np.array_equal(
        stored["id"].to_numpy(), meta["id"].astype(str).to_numpy()
    ):
        return f"{len(stored)} stored rows vs {len(meta)} test rows, or in another order"
    prob = stored[[f"prob_{lab}" for lab in labels]].to_numpy(dtype=np.float64).astype(np.float32)
    if not np.array_equal(prob, proba):
        return f"probabilities differ by up to {float(np.abs(prob - proba).max()):.3g}"
    return None


@dataclasses.dataclass
class RobustnessResult:
    """What :func:`evaluate_robustness` wrote: the tables as frames and the files."""

    table: pd.DataFrame
    per_class: pd.DataFrame
    conditions: pd.DataFrame
    runs: pd.DataFrame
    files: list[Path]
    timings: dict[str, float]


def robustness_conditions(texts: Sequence[str] | None, config: BenchmarkConfig) -> tuple[ConditionSpec, ...]:
    """The conditions asked for: ``texts`` (``name:key=value,...`` or a preset name) else the config's
    ``robustness.conditions``."""
    from fairser.degrade import PRESETS, parse_condition

    if not texts:
        if not config.robustness.conditions:
            raise UserError("no degradation conditions given", where="--conditions / robustness.conditions",
                            fix="pass e.g. --conditions mp3:bitrate_kbps=16 telephone or a preset: "
                            + ", ".join(sorted(PRESETS)))  # fmt: skip
        return config.robustness.conditions
    specs: list[ConditionSpec] = []
    for text in texts:
        if text in PRESETS:
            specs.extend(ConditionSpec(name=n, params=p) for n, p in PRESETS[text])
        else:
            name, params = parse_condition(text)
            specs.append(ConditionSpec(name=name, params=params))
    return tuple(specs)


def evaluate_robustness(
    results_dir: str | Path,
    *,
    conditions: Sequence[str] | None = None,
    source: ModelSource | None = None,
    n_boot: int | None = None,
    n_perm: int | None = None,
    progress: bool = True,
    console: Console | None = None,
) -> RobustnessResult:
    """Test the finished runs of ``results_dir`` under degraded test audio; writes ``robustness.csv`` /
    ``.md``, ``robustness_per_class.csv``, ``robustness_conditions.csv``, ``robustness_runs.csv`` and the
    figures into ``results_dir``. ``n_boot`` / ``n_perm`` default to the benchmark's ``evaluation``."""
    console = console or Console()
    results_dir = Path(results_dir)
    cfg_path = results_dir / "config.yaml"
    if not cfg_path.is_file():
        raise UserError("not a benchmark results folder (no config.yaml)", where=str(results_dir),
                        fix="give the output_dir of a finished `fairser benchmark`")  # fmt: skip
    config = load_config(cfg_path)
    if config.backbone is not None:
        raise UserError("robustness of raw-audio backbone runs is not implemented yet (heads on cached features only)",
                        where=str(cfg_path), fix="run it on a benchmark of heads on cached features")  # fmt: skip
    specs = robustness_conditions(conditions, config)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    prepared = prepare_data(config, progress=progress, console=console)
    timings["prepare"] = time.perf_counter() - t0
    from fairser.run.degraded import run_conditions

    rob = config.robustness
    built = run_conditions(
        specs, prepared, config, seed=rob.seed, pool_size=rob.babble_pool, where="conditions"
    )
    done = ResultsStore(results_dir / "results.jsonl").finished()
    runs = [r for r in plan_runs(config, n_folds=len(prepared.folds) or None) if r.run_id in done]
    if not runs:
        raise UserError("no finished runs of this config in the results folder", where=str(results_dir / "results.jsonl"),
                        fix="run `fairser benchmark` first")  # fmt: skip

    # 1. degraded features of every test row, once per condition (cached)
    t0 = time.perf_counter()
    test_rows = (
        np.flatnonzero((prepared.manifest["split"] == "test").to_numpy())
        if config.protocol == "holdout"
        else np.arange(len(prepared.manifest))
    )
    raw: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    cond_rows = []
    from fairser.degrade import MEASURES, extract_degraded_features
    from fairser.features import FeatureCache, build_audio_encoder

    encoder = build_audio_encoder(config.features.audio, **config.features.audio_options)
    cache = FeatureCache(config.features.cache_dir)
    for label, condition in built:
        res = extract_degraded_features(
            paths=[prepared.paths[i] for i in test_rows], condition=condition, encoder=encoder, cache=cache,
            seed=rob.seed, n_jobs=config.features.n_jobs, progress=progress, description=f"{label} features",
        )  # fmt: skip
        feats = np.full((len(prepared.manifest), res.features.shape[1]), np.nan, dtype=np.float32)
        ok = np.zeros(len(prepared.manifest), dtype=bool)
        feats[test_rows], ok[test_rows] = res.features, res.ok
        raw[label] = (feats, ok)
        row = {"condition": label, "name": condition.name, "params": json.dumps(condition.config(), default=str),
               "n_files": len(test_rows), "n_failed": len(res.failures), "n_extracted": res.n_extracted,
               "n_cached": res.n_cached}  # fmt: skip
        for m in MEASURES:
            v = res.measure(m)[res.ok]
            v = v[np.isfinite(v)]
            row[f"{m}_mean"] = float(v.mean()) if v.size else np.nan
            row[f"{m}_min"] = float(v.min()) if v.size else np.nan
            row[f"{m}_max"] = float(v.max()) if v.size else np.nan
        cond_rows.append(row)
        if res.failures:
            console.print(f"[yellow]warning:[/] {label}: {len(res.failures)} test file(s) could not be degraded "
                          f"and are left out of this condition's comparison (e.g. {res.failures[0]})")  # fmt: skip
    timings["degraded_features"] = time.perf_counter() - t0
    conditions_frame = pd.DataFrame(cond_rows)

    # 2. each run: its model (re-fit and checked), clean and degraded test predictions
    t0 = time.perf_counter()
    source = source or RefitModels(results_dir)
    preds: dict[tuple[str, str], list[pd.DataFrame]] = {}  # (cell id, condition) -> folds' tables
    cell_of: dict[str, RunSpec] = {}
    for i, spec in enumerate(runs):
        console.print(f"[{i + 1}/{len(runs)}] {spec.run_id}: model, then {len(built)} condition(s)")
        fitted = source.fitted(spec, prepared, config)
        test, meta = fitted.views["test"]
        model, trainer = fitted.result.model, fitted.trainer
        from fairser.run.prepare import normaliser

        normalise = normaliser(fitted.prepared, config)
        rows = meta["row"].to_numpy()
        cell = spec.pool_id or spec.run_id
        cell_of[cell] = spec
        tables = {CLEAN: predictions_table(meta=meta, proba=trainer.predict_proba(model, test), labels=fitted.labels,
                                           spec=spec, sensitive=config.sensitive)}  # fmt: skip
        for label, _ in built:
            feats, ok = raw[label]
            degraded = dataclasses.replace(test, audio=normalise(np.nan_to_num(feats[rows]), rows))
            table = predictions_table(meta=meta, proba=trainer.predict_proba(model, degraded), labels=fitted.labels,
                                      spec=spec, sensitive=config.sensitive)  # fmt: skip
            table["degraded_ok"] = ok[rows]
            tables[label] = table
        for label, table in tables.items():
            preds.setdefault((cell, label), []).append(table)
    timings["models_and_predictions"] = time.perf_counter() - t0

    # 3. evaluate per cell (folds pooled) and condition
    t0 = time.perf_counter()
    ev = config.evaluation
    n_boot = ev.n_boot if n_boot is None else n_boot
    n_perm = ev.n_perm if n_perm is None else n_perm
    evaluation = ev.model_copy(update={"n_boot": n_boot, "n_perm": n_perm})
    labels = list(prepared.labels)
    pooled = {key: pd.concat(parts, ignore_index=True) for key, parts in preds.items()}
    run_rows, table_rows, class_rows = [], [], []
    for (cell, label), pred in pooled.items():
        spec = cell_of[cell]
        if label != CLEAN:
            pred = pred[pred["degraded_ok"]].drop(columns="degraded_ok")
        metrics, _ = evaluate_run(
            pred, labels=labels, evaluation=evaluation, seed=spec.seed, sensitive=config.sensitive
        )
        for d in metrics["domains"]:
            run_rows.append({"condition": label, "run_id": cell, "objective": spec.objective.display,
                             "setting": spec.setting, "seed": spec.seed, **d})  # fmt: skip
    # paired deltas: a cell's seeds share one test set; group cells by (objective, setting)
    groups: dict[tuple[str, str], list[str]] = {}
    for cell, spec in cell_of.items():
        groups.setdefault((spec.objective.display, spec.setting), []).append(cell)
    sensitive = config.sensitive[0] if len(config.sensitive) == 1 else None
    values = ("male", "female") if sensitive == "gender" else None
    for (objective, setting), cells in groups.items():
        for label, _ in built:
            clean_all = [pooled[(c, CLEAN)] for c in cells]
            deg_all = [pooled[(c, label)] for c in cells]
            for (lang, modality), _ in clean_all[0].groupby(["language", "modality"], sort=False):
                keep = deg_all[0]["degraded_ok"].to_numpy()
                c_parts = [_domain(f, lang=lang, modality=modality, keep=keep) for f in clean_all]
                d_parts = [
                    _domain(f, lang=lang, modality=modality, keep=keep).drop(columns="degraded_ok")
                    for f in deg_all
                ]
                if sensitive is None:
                    raise UserError("fairser robustness measures gaps of one sensitive column",
                                    where=f"sensitive: {list(config.sensitive)}", fix="use sensitive: [gender]")  # fmt: skip
                vals = values or tuple(sorted(set(c_parts[0][sensitive]) - {"unknown"}))
                from fairser.metrics.paired import paired_delta

                res = paired_delta(clean=c_parts, degraded=d_parts, labels=labels, sensitive=sensitive, values=vals,
                                   n_boot=n_boot, n_perm=n_perm, ci=ev.ci, seed=rob.seed)  # fmt: skip
                key = {"condition": label, "objective": objective, "setting": setting, "language": lang,
                       "modality": modality, "n_seeds": len(cells)}  # fmt: skip
                out = dict(key)
                for _, r in res.summary.iterrows():
                    m = r["metric"]
                    out.update({f"{m}_clean": r["clean"], f"{m}_degraded": r["degraded"], f"delta_{m}": r["delta"],
                                f"delta_{m}_ci_low": r["ci_low"], f"delta_{m}_ci_high": r["ci_high"],
                                f"delta_{m}_p": r["p_value"]})  # fmt: skip
                    out["n_speakers"], out["n"] = r["n_speakers"], r["n"]
                table_rows.append(out)
                for _, r in res.per_class.iterrows():
                    class_rows.append({**key, **r.to_dict()})
    timings["evaluation"] = time.perf_counter() - t0
    # every pooled cell's clean and degraded test predictions, e.g. to compare two results folders by speaker
    pd.concat(
        [p.assign(condition=label, cell=cell) for (cell, label), p in pooled.items()], ignore_index=True
    ).to_csv(results_dir / "robustness_predictions.csv.gz", index=False)
    table = pd.DataFrame(table_rows)
    per_class = pd.DataFrame(class_rows)
    runs_frame = pd.DataFrame(run_rows)
    if not conditions_frame.empty:
        table = table.merge(
            conditions_frame[["condition", "bitrate_kbps_mean", "snr_db_mean"]], on="condition", how="left"
        )
    files = _write(results_dir, table=table, per_class=per_class, conditions=conditions_frame, runs=runs_frame,
                   config=config, prepared=prepared, ci=ev.ci)  # fmt: skip
    (results_dir / "robustness.json").write_text(json.dumps({
        "conditions": [s.model_dump(mode="json") for s in specs], "seed": rob.seed, "n_boot": n_boot,
        "n_perm": n_perm, "model_source": type(source).__name__, "n_runs": len(runs), "timings_s": timings,
    }, indent=2))  # fmt: skip
    return RobustnessResult(table=table, per_class=per_class, conditions=conditions_frame, runs=runs_frame,
                            files=files, timings=timings)  # fmt: skip


def _domain(frame: pd.DataFrame, *, lang: str, modality: str, keep: np.ndarray) -> pd.DataFrame:
    """The rows of one language x modality whose degraded file was made (the same rows in every table)."""
    sel = (frame["language"] == lang).to_numpy() & (frame["modality"] == modality).to_numpy() & keep
    return frame[sel].reset_index(drop=True)


def _fmt_ci(v, lo, hi, *, scale: float = 100.0) -> str:
    if not np.isfinite(v):
        return "—"
    return f"{v * scale:+.1f} [{lo * scale:+.1f}, {hi * scale:+.1f}]"


def render_robustness(
    table: pd.DataFrame, conditions: pd.DataFrame, *, synthetic: bool, source: str, ci: float
) -> str:
    """The Markdown of ``robustness.md``: per objective and setting, condition x (language, modality):
    W-F1 clean -> degraded, ΔW-F1 and Δgap (percentage points) with the paired CI and p."""
    pct = int(round(ci * 100))
    lines = [("**SYNTHETIC DATA** — " if synthetic else "") + f"Robustness: {source}", "",
             f"Change against clean test audio, degraded − clean, in percentage points, with the paired speaker-level "
             f"bootstrap {pct}% CI and the paired permutation p-value (seeds averaged). Gap: |W-F1(female) − "
             "W-F1(male)|; a positive Δgap means the condition widened it.", ""]  # fmt: skip
    for (objective, setting), sub in table.groupby(["objective", "setting"], sort=False):
        lines += [f"### {objective}, setting {setting} ({int(sub['n_seeds'].iloc[0])} seed(s))", "",
                  "| condition | language | modality | W-F1 clean → degraded | ΔW-F1 | p | gap clean → degraded | Δgap | p |",
                  "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for _, r in sub.iterrows():
            lines.append(
                f"| {r['condition']} | {r['language']} | {r['modality']} | "
                f"{r['weighted_f1_clean'] * 100:.1f} → {r['weighted_f1_degraded'] * 100:.1f} | "
                f"{_fmt_ci(r['delta_weighted_f1'], r['delta_weighted_f1_ci_low'], r['delta_weighted_f1_ci_high'])} | "
                f"{r['delta_weighted_f1_p']:.3f} | "
                f"{r['weighted_f1_gap_clean'] * 100:.1f} → {r['weighted_f1_gap_degraded'] * 100:.1f} | "
                f"{_fmt_ci(r['delta_weighted_f1_gap'], r['delta_weighted_f1_gap_ci_low'], r['delta_weighted_f1_gap_ci_high'])} | "
                f"{r['delta_weighted_f1_gap_p']:.3f} |"
            )
        lines.append("")
    if not conditions.empty:
        lines += ["### Conditions as measured on the test files", "",
                  "| condition | files | failed | bitrate kbps (mean, min–max) | SNR dB (mean) |", "|---|---|---|---|---|"]  # fmt: skip
        for _, r in conditions.iterrows():
            br = (
                "—"
                if not np.isfinite(r["bitrate_kbps_mean"])
                else (
                    f"{r['bitrate_kbps_mean']:.2f} ({r['bitrate_kbps_min']:.2f}–{r['bitrate_kbps_max']:.2f})"
                )
            )
            snr = "—" if not np.isfinite(r["snr_db_mean"]) else f"{r['snr_db_mean']:.2f}"
            lines.append(f"| {r['condition']} | {r['n_files']} | {r['n_failed']} | {br} | {snr} |")
        lines.append("")
    return "\n".join(lines)


def _write(results_dir: Path, *, table, per_class, conditions, runs, config, prepared, ci) -> list[Path]:
    files = []
    for name, frame in (("robustness.csv", table), ("robustness_per_class.csv", per_class),
                        ("robustness_conditions.csv", conditions), ("robustness_runs.csv", runs)):  # fmt: skip
        frame.to_csv(results_dir / name, index=False)
        files.append(results_dir / name)
    md = render_robustness(table, conditions, synthetic=prepared.synthetic, source=prepared.source, ci=ci)
    (results_dir / "robustness.md").write_text(md)
    files.append(results_dir / "robustness.md")
    from fairser.report.robustness import plot_degradation_curves, plot_per_class_heatmap

    fig_dir = results_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    for name, fig in (("robustness_curves.png", plot_degradation_curves(table, per_class, synthetic=prepared.synthetic)),
                      ("robustness_per_class.png", plot_per_class_heatmap(per_class, synthetic=prepared.synthetic))):  # fmt: skip
        fig.savefig(fig_dir / name, dpi=110)
        files.append(fig_dir / name)
    return files

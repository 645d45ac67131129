"""The benchmark grid: corpus -> features -> one multilingual model per (setting, objective, seed).

As in the ERM-MinMaxGAP paper, one multilingual model is trained on all languages of a modality setting and
evaluated per language, so MinMaxGAP's max runs over the languages of that setting. With
``joint_modalities`` one model covers both settings (domains = language x modality; the transcript is
masked for the audio-only copy of each utterance). Each finished run is appended to ``results.jsonl`` at
once, and a re-run skips finished runs. Under ``protocol: kfold | loso`` each cell runs once per fold, and
once all its folds are finished their out-of-fold predictions are pooled into one row (``fold: "pooled"``,
:mod:`fairser.results.pooled`), which the tables use.

The stages live in :mod:`fairser.run`: :func:`~fairser.run.prepare.prepare_data` (corpus, features,
normalisation, IDI's inferred genders), :func:`~fairser.run.plan.plan_runs` (the grid and its run ids) and
:func:`~fairser.run.execute.execute_run` (one run, either backend). This module runs the grid (a process
pool), writes the results and renders the tables.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.markup import escape

from fairser.config import BenchmarkConfig
from fairser.data.risk import training_data_risk
from fairser.lifeline import die_with_parent
from fairser.progress import progress_bar
from fairser.results import (
    ResultsStore,
    comparison_table,
    headline_rows,
    pool_predictions,
    pooled_row,
    read_fold_predictions,
    render_comparison,
    sensitive_labels,
)
from fairser.run import PreparedData, RunSpec, execute_run, plan_runs, prepare_data
from fairser.run.preflight import check_grid

__all__ = [
    "PreparedData",
    "RunSpec",
    "execute_run",
    "plan_runs",
    "prepare_data",
    "run_benchmark",
]


_WORKER: dict[str, Any] = {}
_WORKER_PRELOAD = [
    "fairser.forkserver_lifeline",  # first: the forkserver dies with the benchmark (no orphans after SIGKILL)
    "fairser.bench.runner",
    "fairser.run",
    "fairser.metrics",
    "fairser.models",
    "fairser.objectives",
    "fairser.train",
    "torch._dynamo",  # imported by the first torch.optim.AdamW(...)
]


def _worker_init(owner: int, prepared: PreparedData, config: BenchmarkConfig) -> None:
    """A training worker (a child of the forkserver): exits when the forkserver or the benchmark's main
    process ``owner`` dies (:func:`fairser.lifeline.die_with_parent`), so a SIGKILL leaves no orphan."""
    import torch

    die_with_parent(owner=owner)

    torch.set_num_threads(1)
    _WORKER["prepared"], _WORKER["config"] = prepared, config


def _worker_run(spec: RunSpec):
    return execute_run(spec, _WORKER["prepared"], _WORKER["config"])


def _save_run(out_dir: Path, spec: RunSpec, row, pred: pd.DataFrame, step_logs) -> None:
    run_dir = out_dir / "runs" / spec.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    pred.to_csv(run_dir / "predictions.csv", index=False)
    pd.DataFrame(step_logs).to_csv(run_dir / "train_log.csv", index=False)


def run_benchmark(
    config: BenchmarkConfig, *, progress: bool = True, console: Console | None = None
) -> pd.DataFrame:
    """Run (or resume) the whole grid; returns the paper-style table and writes everything to ``output_dir``.

    Writes ``results.jsonl`` (one row per run, appended as each finishes), ``runs/<run_id>/predictions.csv``
    (the public predictions table, also the input of ``fairser audit``), ``table.md`` / ``table.csv`` (the
    paper-style table, then the gaps with their CI, p-value and minimum detectable gap), ``gaps.csv`` (those
    gaps, tidy), ``mdg.csv`` (the minimum detectable gap per setting and domain),
    ``data_risk.csv`` (the training data's bias risk, :mod:`fairser.data.risk`) and ``benchmark.json``
    (config, data source, stage timings). Cross-validated cells add a pooled row and
    ``runs/<pool_id>/predictions.csv`` (every speaker once).

    Before any training the grid is checked (:func:`fairser.run.preflight.check_grid`: empty splits, group
    objectives with one value in a training domain; a :class:`~fairser.errors.UserError`). A failed run is
    recorded (a ``status: failed`` row) and the others go on; ``table.attrs["failures"]`` lists them as
    ``(run_id, error)`` (also in ``benchmark.json``).
    """
    from fairser.results import gaps_table, paper_table, render_table

    console = console or Console()
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(_yaml(config))
    t_start = time.perf_counter()
    prepared = prepare_data(config, progress=progress, console=console)
    # training-data bias risk (METHODS.md §5); every speaker trains in some fold of a cross-validated protocol
    holdout = config.protocol == "holdout"
    training_data_risk(
        prepared.manifest,
        sensitive=config.sensitive,
        split="train" if holdout else None,
        labels=prepared.labels,
    ).write(out_dir / "data_risk.csv")
    store = ResultsStore(out_dir / "results.jsonl")
    runs = plan_runs(config, n_folds=len(prepared.folds) or None)
    done = store.finished()
    todo = [r for r in runs if r.run_id not in done]
    if len(todo) < len(runs):
        console.print(
            f"resuming: {len(runs) - len(todo)} of {len(runs)} runs already finished in {store.path}"
        )
    check_grid(todo, prepared, config)  # empty splits, one-valued group objectives: refused before training
    t0 = time.perf_counter()
    failures: list[tuple[str, str]] = []  # (run id, error)
    with progress_bar(enabled=progress, console=console) as bar:
        task = bar.add_task("training runs", total=len(todo))
        if config.n_jobs > 1 and len(todo) > 1:
            # forkserver with the heavy modules preloaded: each worker forks from a process that has already
            # imported torch and fairser (spawn paid 3-5 CPU-s of imports per worker); safe, unlike plain fork
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload(_WORKER_PRELOAD)
            with ProcessPoolExecutor(
                max_workers=min(config.n_jobs, len(todo)),
                mp_context=ctx,
                initializer=_worker_init,
                initargs=(os.getpid(), prepared, config),
            ) as pool:
                futures = {pool.submit(_worker_run, spec): spec for spec in todo}
                for fut in as_completed(futures):
                    spec = futures[fut]
                    exc = fut.exception()
                    _finish(spec, exc, None if exc else fut.result(), store, out_dir, failures, console)
                    bar.advance(task)
        else:
            for spec in todo:
                try:
                    out, exc = execute_run(spec, prepared, config), None
                except Exception as e:  # noqa: BLE001 - recorded and reported, other runs go on
                    out, exc = None, e
                _finish(spec, exc, out, store, out_dir, failures, console)
                bar.advance(task)
    if config.protocol != "holdout":
        _pool_folds(runs, store=store, out_dir=out_dir, config=config, prepared=prepared, console=console)
    timings = dict(prepared.timings)
    timings["training_and_evaluation"] = time.perf_counter() - t0
    planned: dict[str, int] = {}
    for spec in runs:  # a cross-validated cell's table row is its pooled row
        planned.setdefault(spec.pool_id or spec.run_id, len(planned))
    # in grid order, not finishing order, so the table is the same to the last digit on every run
    rows = sorted(
        (r for r in headline_rows(store.rows()) if r["run_id"] in planned and r.get("status") == "ok"),
        key=lambda r: planned[r["run_id"]],
    )
    t0 = time.perf_counter()
    baseline = config.objectives[0].display
    table = paper_table(rows, baseline=baseline)
    mdg = _minimum_detectable_gaps(rows, out_dir=out_dir, config=config, prepared=prepared)
    timings["power"] = time.perf_counter() - t0
    gaps = gaps_table(rows, baseline=baseline, mdg=mdg)
    text = render_table(
        table,
        synthetic=prepared.synthetic,
        source=prepared.source,
        n_seeds=len(config.seeds),
        gaps=gaps,
        ci=config.evaluation.ci,
    )
    (out_dir / "table.md").write_text(text)
    table.to_csv(out_dir / "table.csv", index=False)
    gaps.to_csv(out_dir / "gaps.csv", index=False)
    if len(config.objectives) > 1 and rows:
        _write_comparison(rows, out_dir=out_dir, config=config, prepared=prepared)
    timings["report"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    meta = {
        "name": config.name,
        "synthetic": prepared.synthetic,
        "source": prepared.source,
        "sampler": config.train.sampler,
        "protocol": config.protocol,
        "n_folds": len(prepared.folds) or None,
        "n_runs": len(runs),
        "n_finished": len(rows),
        "failures": [{"run_id": run_id, "error": error} for run_id, error in failures],
        "results_store": {"torn_lines_repaired": store.repaired, "unreadable_lines": len(store.skipped)},
        "notes": prepared.notes,
        "timings_s": timings,
    }
    (out_dir / "benchmark.json").write_text(json.dumps(meta, indent=2, default=str))
    print(text)  # plain print: a Markdown table must not be re-wrapped to the terminal width
    table.attrs["failures"] = failures  # the command line lists them and exits with code 1
    return table


def _minimum_detectable_gaps(
    rows: list[dict[str, Any]], *, out_dir: Path, config: BenchmarkConfig, prepared: PreparedData
) -> pd.DataFrame | None:
    """The minimum detectable W-F1 gap per (setting, language x modality) at 80% power and alpha = 0.05
    (:func:`fairser.metrics.power.minimum_detectable_gap`, METHODS.md §2.1), from the predictions of the
    baseline objective's first finished seed (the pooled predictions of a cross-validated cell): the design
    (speakers, utterances, between-speaker spread) is the test set's, the same for every objective.

    Writes ``mdg.csv`` and returns it as :func:`fairser.results.read_mdg` reads it back. A setting whose rows in
    the folder's previous ``mdg.csv`` came from the same run, the same predictions file (sha256) and the same
    power settings is not simulated again: its rows are reused as they are (the simulation is seeded, so it
    would give the same numbers). Fresh and reused rows go through the same CSV round trip, so the tables do
    not depend on which it was.
    """
    from fairser.features.cache import sha256_file
    from fairser.results import read_mdg

    power = {  # everything besides the predictions that the numbers depend on
        "labels": list(prepared.labels),
        "sensitive": list(config.sensitive),
        "domain_cols": ["language", "modality"],
        "min_samples": config.evaluation.min_samples,
        "n_sim": 300,
        "n_perm": 200,
        "seed": 0,
    }
    previous = read_mdg(out_dir)
    if previous is not None and "source_sha256" not in previous:
        previous = None  # written before the key existed: recompute
    baseline = config.objectives[0].display
    frames: list[pd.DataFrame | None] = []
    todo: list[tuple[int, str, str, Path, str]] = []  # (slot in frames, setting, run id, predictions, key)
    for setting in dict.fromkeys(r["setting"] for r in rows):
        first = next((r for r in rows if r["setting"] == setting and r["objective_label"] == baseline), None)
        path = None if first is None else out_dir / "runs" / first["run_id"] / "predictions.csv"
        if path is None or not path.exists():
            continue
        key = hashlib.sha256((sha256_file(path) + json.dumps(power, sort_keys=True)).encode()).hexdigest()
        if previous is not None:
            same = previous[
                (previous["setting"] == setting)
                & (previous["run_id"] == first["run_id"])
                & (previous["source_sha256"] == key)
            ]
            if len(same):
                frames.append(same)
                continue
        todo.append((len(frames), setting, first["run_id"], path, key))
        frames.append(None)
    paths = [t[3] for t in todo]
    if config.n_jobs > 1 and len(todo) > 1:
        # the settings are independent (and each simulation is seeded): one process per setting, as the runs
        with ProcessPoolExecutor(
            max_workers=min(config.n_jobs, len(todo)), mp_context=mp.get_context("forkserver")
        ) as pool:
            results = list(pool.map(_setting_mdg, paths, [power] * len(todo)))
    else:
        results = [_setting_mdg(path, power) for path in paths]
    for (slot, setting, run_id, _, key), mdg in zip(todo, results, strict=True):
        mdg.insert(0, "setting", setting)
        mdg.insert(1, "run_id", run_id)
        mdg["source_sha256"] = key
        frames[slot] = mdg
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    table.to_csv(out_dir / "mdg.csv", index=False)
    return read_mdg(out_dir)


def _setting_mdg(path: Path, power: dict[str, Any]) -> pd.DataFrame:
    """The minimum detectable gaps of one setting's predictions table (a pool worker's task)."""
    from fairser.metrics.power import minimum_detectable_gap

    return minimum_detectable_gap(
        read_fold_predictions(path),
        labels=power["labels"],
        sensitive=power["sensitive"],
        domain_cols=tuple(power["domain_cols"]),
        min_samples=power["min_samples"],
        n_sim=power["n_sim"],
        n_perm=power["n_perm"],
        seed=power["seed"],
    )


def _write_comparison(
    rows: list[dict[str, Any]], *, out_dir: Path, config: BenchmarkConfig, prepared: PreparedData
) -> None:
    """``comparison.md`` / ``comparison.csv`` (one line per objective) and ``tradeoff.png`` (W-F1 against
    worst-domain gap, one point per objective, mean ± std over seeds; :func:`fairser.report.plot_tradeoff`).
    Texts name the runs' sensitive attribute (:func:`fairser.results.sensitive_labels`)."""
    sensitive = sensitive_labels(rows)
    baseline = config.objectives[0].display
    table = comparison_table(rows, baseline=baseline, order=[o.display for o in config.objectives])
    table.to_csv(out_dir / "comparison.csv", index=False)
    (out_dir / "comparison.md").write_text(
        render_comparison(table, synthetic=prepared.synthetic, source=prepared.source, baseline=baseline)
    )
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from fairser.report import plot_tradeoff, tradeoff_points

    points = tradeoff_points(rows)
    rank = {label: i for i, label in enumerate(o.display for o in config.objectives)}
    points = points.sort_values("objective", key=lambda c: c.map(rank), kind="stable").reset_index(drop=True)
    if len(config.objectives) <= 6:
        fig = plot_tradeoff(points, synthetic=prepared.synthetic, source=prepared.source, sensitive=sensitive)
    else:  # a zoo: a larger panel per setting and the legend beside it, so points and labels stay readable
        settings = list(dict.fromkeys(points["setting"]))
        fig = Figure(figsize=(9.5, 6.2 * len(settings)))
        FigureCanvasAgg(fig)
        for i, setting in enumerate(settings):
            ax = fig.add_subplot(len(settings), 1, i + 1)
            plot_tradeoff(points[points["setting"] == setting], ax=ax, sensitive=sensitive)
            handles, labels = ax.get_legend_handles_labels()
            ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=True)
            ax.set_title(
                ("SYNTHETIC DATA — " if prepared.synthetic else "")
                + f"W-F1 vs worst-domain {sensitive.gap} ({setting}); mean ± std over seeds",
                fontsize=10,
            )
        fig.text(0.01, 0.005, f"Data: {prepared.source}", fontsize=7)
        fig.subplots_adjust(left=0.08, right=0.7, top=0.94, bottom=0.1)
    fig.savefig(out_dir / "tradeoff.png", dpi=110)


def _pool_folds(
    runs: list[RunSpec],
    *,
    store: ResultsStore,
    out_dir: Path,
    config: BenchmarkConfig,
    prepared: PreparedData,
    console: Console,
) -> None:
    """Pool every cross-validated cell whose folds are all finished and which has no pooled row yet: read the
    folds' ``predictions.csv``, concatenate them (every speaker once), evaluate, and write the pooled
    ``runs/<pool_id>/predictions.csv`` and row. A cell with a missing or failed fold is left unpooled (a re-run
    trains the missing fold, then pools)."""
    cells: dict[str, list[RunSpec]] = {}
    for spec in runs:
        cells.setdefault(spec.pool_id, []).append(spec)
    by_id = {r["run_id"]: r for r in store.rows() if r.get("status") == "ok"}
    for pool_id, specs in cells.items():
        if pool_id in by_id:
            continue
        missing = [s.run_id for s in specs if s.run_id not in by_id]
        if missing:
            console.print(f"[yellow]not pooled[/] {pool_id}: {len(missing)} fold(s) unfinished")
            continue
        preds = [read_fold_predictions(out_dir / "runs" / s.run_id / "predictions.csv") for s in specs]
        pooled = pool_predictions(preds, run_id=pool_id)
        row = pooled_row(
            [by_id[s.run_id] for s in specs],
            pooled,
            run_id=pool_id,
            labels=prepared.labels,
            evaluation=config.evaluation,
            sensitive=config.sensitive,
        )
        run_dir = out_dir / "runs" / pool_id
        run_dir.mkdir(parents=True, exist_ok=True)
        pooled.to_csv(run_dir / "predictions.csv", index=False)
        store.append(row)


def _finish(
    spec, exc, out, store: ResultsStore, out_dir: Path, failures: list[tuple[str, str]], console: Console
) -> None:
    if exc is not None:
        error = f"{type(exc).__name__}: {exc}"
        failures.append((spec.run_id, error))
        store.append({"run_id": spec.run_id, "status": "failed", "error": error})
        console.print(f"[red]run failed[/] {spec.run_id}: {escape(error)}", highlight=False)
        return
    row, pred, step_logs = out
    _save_run(out_dir, spec, row, pred, step_logs)
    store.append(row)


def _yaml(config: BenchmarkConfig) -> str:
    import yaml

    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)

"""``fairser robustness``: finished runs tested on degraded test audio (METHODS.md §6, robustness).

For each finished run of a results folder, the model comes from a *model source* and its test split is
predicted once on clean audio and once per condition. :class:`SavedModels` loads the model each run saved
(``train.save_model``: ``runs/<run_id>/model/``, with ``fairser predict``'s loaders); :class:`RefitModels`
re-fits the run in this process from its config and seed (the pipeline is seeded). ``auto`` (the default)
loads saved models when every finished run has one, else re-fits. Either way a run whose clean test
predictions differ in any way from its stored ``predictions.csv`` is refused.

Heads on cached features read degraded *features* (cached; :func:`fairser.degrade.extract_degraded_features`),
normalised with each run's own clean statistics; raw-audio backbones (SSL encoders, audio LLMs with LoRA,
zero-shot audio LLMs) read degraded *waveforms*, written once per file x condition x seed into the feature
cache (:func:`fairser.degrade.extract_degraded_audio`). The test audio is degraded once per condition for all
runs. From the predictions on, both paths share the evaluation: cross-validated folds pooled per cell as in
the benchmark; per condition x objective x setting x language x modality W-F1, UAR and the gender gap, the
change against clean audio with a paired speaker-level bootstrap CI and a paired permutation p-value
(:func:`fairser.metrics.paired.paired_delta`; seeds of a cell averaged), the recall change per class and
gender, and per run the benchmark's own evaluation of the degraded predictions
(:func:`fairser.results.rows.evaluate_run`: gap CI and p-value).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from rich.console import Console

from fairser.config import BenchmarkConfig, ConditionSpec, load_config
from fairser.errors import UserError
from fairser.results import ResultsStore, read_fold_predictions
from fairser.results.rows import evaluate_run, predictions_table
from fairser.run import PreparedData, RunSpec, plan_runs, prepare_data

__all__ = [
    "SOURCES",
    "ModelSource",
    "RefitModels",
    "RobustnessResult",
    "RunModel",
    "SavedModels",
    "evaluate_robustness",
    "model_source",
    "robustness_conditions",
]

CLEAN = "clean"
#: What ``source`` / ``--source`` accepts.
SOURCES = ("auto", "saved", "refit")


@dataclasses.dataclass
class RunModel:
    """A finished run's model as robustness applies it: the run's fold of the data, its split views
    (``views[split] = (dataset, meta)``, as the run built them), its label order, and ``predict_proba(dataset)``
    (class probabilities, N x C) for a dataset of the run's kind (a clean or degraded test view);
    ``clean_proba``: its clean test predictions, once checked against the stored ones."""

    prepared: PreparedData
    views: dict[str, Any]
    labels: tuple[str, ...]
    predict_proba: Callable[[Any], np.ndarray]
    clean_proba: np.ndarray | None = None


class ModelSource(Protocol):
    """Where the trained model of a finished run comes from; ``model`` must return a model whose clean test
    predictions equal the run's stored ones (else raise :class:`UserError`)."""

    #: ``saved`` or ``refit`` (recorded in ``robustness.json``).
    name: str

    def model(self, spec: RunSpec, prepared: PreparedData, config: BenchmarkConfig) -> RunModel: ...


def _stored_predictions(results_dir: Path, spec: RunSpec) -> tuple[Path, pd.DataFrame]:
    path = results_dir / "runs" / spec.run_id / "predictions.csv"
    if not path.is_file():
        raise UserError(f"run {spec.run_id} has no stored predictions", where=str(path),
                        fix="re-run `fairser benchmark` on this config to finish it")  # fmt: skip
    return path, read_fold_predictions(path)


def _mismatch(stored: pd.DataFrame, model: RunModel) -> str | None:
    """None when ``model`` predicts exactly the stored test predictions (ids in order, float32
    probabilities; kept as ``model.clean_proba``), else what differs."""
    test, meta = model.views["test"]
    if len(stored) != len(meta) or not np.array_equal(
        stored["id"].to_numpy(), meta["id"].astype(str).to_numpy()
    ):
        return f"{len(stored)} stored rows vs {len(meta)} test rows, or in another order"
    model.clean_proba = np.asarray(model.predict_proba(test))
    proba = model.clean_proba.astype(np.float32)
    prob = stored[[f"prob_{lab}" for lab in model.labels]].to_numpy(dtype=np.float64).astype(np.float32)
    if not np.array_equal(prob, proba):
        return f"probabilities differ by up to {float(np.abs(prob - proba).max()):.3g}"
    return None


class RefitModels:
    """Re-fit each run in this process, deterministically from its config and seed, and check its clean test
    predictions against the stored ``runs/<run_id>/predictions.csv`` exactly (labels and float32 probabilities).

    The benchmark trains in worker processes with one torch thread (or in the main process with the default
    thread count when it runs one job): both settings are tried, the one the config implies first. A
    backbone's re-fit checkpoints into a temporary folder, never into the results folder.
    """

    name = "refit"

    def __init__(self, results_dir: Path) -> None:
        self.results_dir = Path(results_dir)

    def model(self, spec: RunSpec, prepared: PreparedData, config: BenchmarkConfig) -> RunModel:
        import torch

        from fairser.run.execute import fit_run

        path, stored = _stored_predictions(self.results_dir, spec)
        default_threads = torch.get_num_threads()
        worst = ""
        try:
            # the benchmark's pool (n_jobs > 1) trains with one thread; n_jobs: 1 trains in its main process
            order = (1, default_threads) if config.n_jobs > 1 else (default_threads, 1)
            for threads in dict.fromkeys(order):
                torch.set_num_threads(threads)
                with contextlib.ExitStack() as stack:
                    cfg = config
                    if config.backbone is not None:  # its checkpoints and stage files go to a scratch folder
                        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="fairser-refit-"))
                        cfg = config.model_copy(update={"output_dir": Path(scratch)})
                    fitted = fit_run(spec, prepared, cfg)
                trainer, net = fitted.trainer, fitted.result.model
                model = RunModel(prepared=fitted.prepared, views=fitted.views, labels=fitted.labels,
                                 predict_proba=lambda data, t=trainer, m=net: t.predict_proba(m, data))  # fmt: skip
                mismatch = _mismatch(stored, model)
                if mismatch is None:
                    return model
                worst = mismatch
        finally:
            torch.set_num_threads(default_threads)
        raise UserError(
            f"re-fitting run {spec.run_id} does not reproduce its stored test predictions ({worst})",
            where=str(path),
            fix="the code, data or features changed since the benchmark ran: re-run `fairser benchmark` with this "
            "checkout, then `fairser robustness` (or train with `train.save_model: true` and use --source saved)",
        )


class SavedModels:
    """Load each run's saved model (``runs/<run_id>/model/``, written by ``train.save_model``) with the loaders
    of ``fairser predict`` (:func:`fairser.run.predict.load_predictor`: weights checked against their sha256, a
    backbone's base model against its recorded identity), apply it to the run's own test view, and check its
    clean test predictions against the stored ``predictions.csv`` exactly. Nothing is trained."""

    name = "saved"

    def __init__(self, results_dir: Path) -> None:
        self.results_dir = Path(results_dir)

    def has_model(self, spec: RunSpec) -> bool:
        """Whether the run saved a model folder."""
        from fairser.run.saved import model_dir

        try:
            model_dir(self.results_dir / "runs" / spec.run_id)
        except UserError:
            return False
        return True

    def model(self, spec: RunSpec, prepared: PreparedData, config: BenchmarkConfig) -> RunModel:
        from fairser.run.execute import run_views
        from fairser.run.predict import load_predictor

        path, stored = _stored_predictions(self.results_dir, spec)
        run_dir = self.results_dir / "runs" / spec.run_id
        predictor = load_predictor(run_dir, n_jobs=config.features.n_jobs)
        where = str(run_dir / "model")
        if predictor.identity["run_id"] != spec.run_id:
            raise UserError(f"the model folder of run {spec.run_id} holds run {predictor.identity['run_id']}",
                            where=where, fix="restore the run's own model folder, or use --source refit")  # fmt: skip
        cell = run_views(spec, prepared, config)
        labels = tuple(cell.prepared.labels)
        if tuple(predictor.labels) != labels:
            raise UserError(f"the saved model's labels {list(predictor.labels)} are not the config's {list(labels)}",
                            where=where, fix="use the results folder the model was trained in")  # fmt: skip
        model = RunModel(prepared=cell.prepared, views=cell.views, labels=labels,
                         predict_proba=predictor.predict_dataset)  # fmt: skip
        mismatch = _mismatch(stored, model)
        if mismatch is not None:
            raise UserError(
                f"the saved model of run {spec.run_id} does not reproduce its stored test predictions ({mismatch})",
                where=str(path),
                fix="the data, features or model folder changed since the benchmark ran: re-run `fairser benchmark` "
                "with this checkout (or try --source refit)",
            )
        return model


def model_source(
    source: str | ModelSource | None, *, results_dir: Path, runs: Sequence[RunSpec]
) -> tuple[ModelSource, str]:
    """The model source ``source`` names (``auto``/None: saved models when every run in ``runs`` has one, else
    re-fitting), and why it was chosen."""
    if source is not None and not isinstance(source, str):
        return source, "given"
    source = source or "auto"
    if source not in SOURCES:
        raise UserError(
            f"unknown model source {source!r}", where="--source", fix=f"one of {', '.join(SOURCES)}"
        )
    saved = SavedModels(results_dir)
    missing = [r.run_id for r in runs if not saved.has_model(r)]
    if source == "refit":
        return RefitModels(results_dir), "asked for"
    if source == "saved":
        if missing:
            raise UserError(
                f"{len(missing)} of {len(runs)} finished run(s) have no saved model (e.g. {missing[0]})",
                where=str(results_dir / "runs" / missing[0]),
                fix="use --source refit, or set `train.save_model: true` and run the benchmark again into a fresh "
                "output_dir",
            )
        return saved, "asked for"
    if missing:
        return RefitModels(results_dir), f"{len(missing)} of {len(runs)} run(s) saved no model"
    return saved, f"all {len(runs)} run(s) saved their model"


@dataclasses.dataclass
class RobustnessResult:
    """What :func:`evaluate_robustness` wrote: the tables as frames and the files."""

    table: pd.DataFrame
    per_class: pd.DataFrame
    conditions: pd.DataFrame
    runs: pd.DataFrame
    files: list[Path]
    timings: dict[str, float]
    source: str = ""


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


# -- degraded test inputs: features for heads, waveforms for backbones ----------------------------------------
def _condition_row(label: str, condition: Any, res: Any, *, n_files: int) -> dict[str, Any]:
    """A row of ``robustness_conditions.csv``: counts and the measures (mean, min, max over the files)."""
    from fairser.degrade import MEASURES

    row = {"condition": label, "name": condition.name, "params": json.dumps(condition.config(), default=str),
           "n_files": n_files, "n_failed": len(res.failures), "n_extracted": res.n_extracted,
           "n_cached": res.n_cached}  # fmt: skip
    for m in MEASURES:
        v = res.measure(m)[res.ok]
        v = v[np.isfinite(v)]
        row[f"{m}_mean"] = float(v.mean()) if v.size else np.nan
        row[f"{m}_min"] = float(v.min()) if v.size else np.nan
        row[f"{m}_max"] = float(v.max()) if v.size else np.nan
    return row


def _warn_failures(console: Console, label: str, res: Any) -> None:
    if res.failures:
        console.print(f"[yellow]warning:[/] {label}: {len(res.failures)} test file(s) could not be degraded "
                      f"and are left out of this condition's comparison (e.g. {res.failures[0]})")  # fmt: skip


class _DegradedFeatures:
    """Heads on cached features: the degraded features of every test row per condition (cached), normalised
    with each run's clean training statistics when applied."""

    kind = "features"

    def __init__(self, built, prepared: PreparedData, config: BenchmarkConfig, *, test_rows: np.ndarray,
                 seed: int, progress: bool, console: Console) -> None:  # fmt: skip
        from fairser.degrade import extract_degraded_features
        from fairser.features import FeatureCache, build_audio_encoder

        self.config, self.labels = config, [label for label, _ in built]
        encoder = build_audio_encoder(config.features.audio, **config.features.audio_options)
        cache = FeatureCache(config.features.cache_dir)
        n = len(prepared.manifest)
        self.raw: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        rows = []
        for label, condition in built:
            res = extract_degraded_features(
                paths=[prepared.paths[i] for i in test_rows], condition=condition, encoder=encoder, cache=cache,
                seed=seed, n_jobs=config.features.n_jobs, progress=progress, description=f"{label} features",
            )  # fmt: skip
            feats = np.full((n, res.features.shape[1]), np.nan, dtype=np.float32)
            ok = np.zeros(n, dtype=bool)
            feats[test_rows], ok[test_rows] = res.features, res.ok
            self.raw[label] = (feats, ok)
            rows.append(_condition_row(label, condition, res, n_files=len(test_rows)))
            _warn_failures(console, label, res)
        self.conditions = pd.DataFrame(rows)

    def test_sets(self, model: RunModel) -> Iterator[tuple[str, Any, np.ndarray]]:
        """(condition, degraded test set, which rows were degraded) per condition."""
        from fairser.run.prepare import normaliser

        test, meta = model.views["test"]
        normalise = normaliser(model.prepared, self.config)
        rows = meta["row"].to_numpy()
        for label in self.labels:
            feats, ok = self.raw[label]
            yield (
                label,
                dataclasses.replace(test, audio=normalise(np.nan_to_num(feats[rows]), rows)),
                ok[rows],
            )


class _DegradedWaveforms:
    """Raw-audio backbones: every test file degraded per condition and written once into the feature cache
    (float WAV at the backbone's rate); a run's degraded test set is its own test view reading those files."""

    kind = "waveforms"

    def __init__(self, built, prepared: PreparedData, config: BenchmarkConfig, *, test_rows: np.ndarray,
                 seed: int, progress: bool, console: Console) -> None:  # fmt: skip
        from fairser.degrade import extract_degraded_audio
        from fairser.features import FeatureCache
        from fairser.features.audio import DEFAULT_SAMPLE_RATE

        self.labels = [label for label, _ in built]
        self.sample_rate = DEFAULT_SAMPLE_RATE  # what AudioDataset reads files at
        cache = FeatureCache(config.features.cache_dir)
        n = len(prepared.manifest)
        self.files: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        rows = []
        for label, condition in built:
            res = extract_degraded_audio(
                paths=[prepared.paths[i] for i in test_rows], condition=condition, cache=cache, seed=seed,
                sample_rate=self.sample_rate, n_jobs=config.features.n_jobs, progress=progress,
                description=f"{label} audio",
            )  # fmt: skip
            files = np.full(n, None, dtype=object)
            ok = np.zeros(n, dtype=bool)
            files[test_rows] = [None if f is None else str(f) for f in res.files]
            ok[test_rows] = res.ok
            self.files[label] = (files, ok)
            rows.append(_condition_row(label, condition, res, n_files=len(test_rows)))
            _warn_failures(console, label, res)
        self.conditions = pd.DataFrame(rows)

    def test_sets(self, model: RunModel) -> Iterator[tuple[str, Any, np.ndarray]]:
        """(condition, degraded test set, which rows were degraded) per condition. Only the audio changes (an
        ``audio+text`` row keeps its transcript); a row whose file failed keeps its clean file (its prediction
        is left out of the comparison)."""
        test, meta = model.views["test"]
        if test.sample_rate != self.sample_rate:
            raise RuntimeError(
                f"the run reads audio at {test.sample_rate} Hz, degraded at {self.sample_rate} Hz"
            )
        rows = meta["row"].to_numpy()
        for label in self.labels:
            files, ok = self.files[label]
            audio = [files[r] if ok[r] else clean for r, clean in zip(rows, test.audio, strict=True)]
            yield label, dataclasses.replace(test, audio=audio), ok[rows]


def evaluate_robustness(
    results_dir: str | Path,
    *,
    conditions: Sequence[str] | None = None,
    source: str | ModelSource | None = None,
    n_boot: int | None = None,
    n_perm: int | None = None,
    keep_previous: bool = True,
    progress: bool = True,
    console: Console | None = None,
) -> RobustnessResult:
    """Test the finished runs of ``results_dir`` under degraded test audio; writes ``robustness.csv`` /
    ``.md``, ``robustness_per_class.csv``, ``robustness_conditions.csv``, ``robustness_runs.csv`` and the
    figures into ``results_dir``. ``source``: ``auto`` (default), ``saved``, ``refit`` or a
    :class:`ModelSource`. ``n_boot`` / ``n_perm`` default to the benchmark's ``evaluation``.

    ``keep_previous``: the conditions an earlier call wrote into ``results_dir`` with the same settings (seed,
    resamples, inputs, finished runs) stay in the tables beside this call's (a condition tested again is
    replaced), so conditions can be added one command at a time; with other settings they are replaced, and
    the console says so."""
    console = console or Console()
    results_dir = Path(results_dir)
    cfg_path = results_dir / "config.yaml"
    if not cfg_path.is_file():
        raise UserError("not a benchmark results folder (no config.yaml)", where=str(results_dir),
                        fix="give the output_dir of a finished `fairser benchmark`")  # fmt: skip
    config = load_config(cfg_path)
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
    source, why = model_source(source, results_dir=results_dir, runs=runs)
    console.print(f"model source: {source.name} ({why})")

    # 1. degraded inputs of every test row, once per condition (cached): features for heads, waveforms for
    # raw-audio backbones
    t0 = time.perf_counter()
    test_rows = (
        np.flatnonzero((prepared.manifest["split"] == "test").to_numpy())
        if config.protocol == "holdout"
        else np.arange(len(prepared.manifest))
    )
    inputs_cls = _DegradedFeatures if config.backbone is None else _DegradedWaveforms
    inputs = inputs_cls(built, prepared, config, test_rows=test_rows, seed=rob.seed, progress=progress,
                        console=console)  # fmt: skip
    timings[f"degraded_{inputs.kind}"] = time.perf_counter() - t0
    conditions_frame = inputs.conditions

    # 2. each run: its model (checked against its stored predictions), clean and degraded test predictions
    t0 = time.perf_counter()
    preds: dict[tuple[str, str], list[pd.DataFrame]] = {}  # (cell id, condition) -> folds' tables
    cell_of: dict[str, RunSpec] = {}
    for i, spec in enumerate(runs):
        console.print(
            f"[{i + 1}/{len(runs)}] {spec.run_id}: model ({source.name}), then {len(built)} condition(s)"
        )
        model = source.model(spec, prepared, config)
        test, meta = model.views["test"]
        cell = spec.pool_id or spec.run_id
        cell_of[cell] = spec

        def table(data, *, meta=meta, model=model, spec=spec) -> pd.DataFrame:
            return predictions_table(meta=meta, proba=model.predict_proba(data), labels=model.labels, spec=spec,
                                     sensitive=config.sensitive)  # fmt: skip

        clean = model.predict_proba(test) if model.clean_proba is None else model.clean_proba
        tables = {CLEAN: predictions_table(meta=meta, proba=clean, labels=model.labels, spec=spec,
                                           sensitive=config.sensitive)}  # fmt: skip
        for label, degraded, ok in inputs.test_sets(model):
            tables[label] = table(degraded)
            tables[label]["degraded_ok"] = ok
        for label, frame in tables.items():
            preds.setdefault((cell, label), []).append(frame)
        del model
    timings["models_and_predictions"] = time.perf_counter() - t0

    # 3. evaluate per cell (folds pooled) and condition
    t0 = time.perf_counter()
    ev = config.evaluation
    n_boot = ev.n_boot if n_boot is None else n_boot
    n_perm = ev.n_perm if n_perm is None else n_perm
    table, per_class, runs_frame = _evaluate(preds, cell_of=cell_of, conditions=[label for label, _ in built],
                                             config=config, labels=list(prepared.labels), n_boot=n_boot,
                                             n_perm=n_perm)  # fmt: skip
    timings["evaluation"] = time.perf_counter() - t0
    if not conditions_frame.empty:
        table = table.merge(
            conditions_frame[["condition", "name", "bitrate_kbps_mean", "snr_db_mean"]].rename(
                columns={"name": "family"}
            ),
            on="condition",
            how="left",
        )
    settings = {"seed": rob.seed, "n_boot": n_boot, "n_perm": n_perm, "inputs": inputs.kind,
                "runs": sorted(r.run_id for r in runs)}  # fmt: skip
    frames = {"table": table, "per_class": per_class, "conditions": conditions_frame, "runs": runs_frame}
    kept: list[dict] = []
    if keep_previous:
        frames, kept = _with_previous(results_dir, frames, new=[label for label, _ in built], settings=settings,
                                      console=console)  # fmt: skip
    # every pooled cell's clean and degraded test predictions, e.g. to compare two results folders by speaker
    predictions = pd.concat([pd.concat(parts, ignore_index=True).assign(condition=label, cell=cell)
                             for (cell, label), parts in preds.items()], ignore_index=True)  # fmt: skip
    pred_file = results_dir / "robustness_predictions.csv.gz"
    earlier = set(frames["table"]["condition"]) - {label for label, _ in built} if kept else set()
    if earlier and pred_file.is_file():
        old_preds = pd.read_csv(pred_file)
        predictions = pd.concat(
            [old_preds[old_preds["condition"].isin(earlier)], predictions], ignore_index=True
        )
    predictions.to_csv(pred_file, index=False)
    files = _write(results_dir, table=frames["table"], per_class=frames["per_class"], conditions=frames["conditions"],
                   runs=frames["runs"], config=config, prepared=prepared, ci=ev.ci)  # fmt: skip
    (results_dir / "robustness.json").write_text(json.dumps({
        "conditions": kept + [{**s.model_dump(mode="json"), "table_label": label}
                                      for s, (label, _) in zip(specs, built, strict=True)], "settings": settings,
        "seed": rob.seed, "n_boot": n_boot, "n_perm": n_perm, "model_source": source.name,
        "model_source_reason": why, "inputs": inputs.kind, "n_runs": len(runs), "timings_s": timings,
    }, indent=2))  # fmt: skip
    table, per_class, conditions_frame, runs_frame = (
        frames[k] for k in ("table", "per_class", "conditions", "runs")
    )
    return RobustnessResult(table=table, per_class=per_class, conditions=conditions_frame, runs=runs_frame,
                            files=files, timings=timings, source=source.name)  # fmt: skip


_FRAMES = {"table": "robustness.csv", "per_class": "robustness_per_class.csv",
           "conditions": "robustness_conditions.csv", "runs": "robustness_runs.csv"}  # fmt: skip


def _with_previous(
    results_dir: Path,
    frames: dict[str, pd.DataFrame],
    *,
    new: Sequence[str],
    settings: dict,
    console: Console,
) -> tuple[dict[str, pd.DataFrame], list[dict]]:
    """``frames`` with the rows of the conditions an earlier ``fairser robustness`` wrote into ``results_dir``
    under the same ``settings`` put first (those of ``new`` conditions dropped: they are re-tested), and the
    earlier condition specs kept."""
    record = results_dir / "robustness.json"
    if not record.is_file() or not all((results_dir / f).is_file() for f in _FRAMES.values()):
        return frames, []
    try:
        old = json.loads(record.read_text())
    except json.JSONDecodeError:
        old = {}
    old_settings = old.get("settings")
    if old_settings != json.loads(json.dumps(settings)):
        console.print(f"[yellow]note:[/] the earlier robustness results in {results_dir} were made with other "
                      "settings (seed, resamples, inputs or finished runs) and are replaced")  # fmt: skip
        return frames, []
    previous = {k: pd.read_csv(results_dir / f) for k, f in _FRAMES.items()}
    if previous["table"].empty or "condition" not in previous["table"]:
        return frames, []
    gone = set(new)
    kept_labels = [c for c in dict.fromkeys(previous["table"]["condition"]) if c not in gone]
    if not kept_labels:
        return frames, []
    out = {}
    for key, frame in frames.items():
        before = previous[key]
        if "condition" in before:
            before = before[before["condition"].isin(kept_labels)]
        if key == "runs":  # the clean rows are re-evaluated by this call
            before = before[before["condition"] != CLEAN]
        out[key] = pd.concat([before, frame], ignore_index=True)
    specs = [c for c in old.get("conditions", []) if c.get("table_label") in kept_labels]
    console.print(f"kept the earlier conditions {', '.join(kept_labels)} (same settings); "
                  "`--fresh` starts the tables anew")  # fmt: skip
    return out, specs


def _evaluate(
    preds: dict[tuple[str, str], list[pd.DataFrame]],
    *,
    cell_of: dict[str, RunSpec],
    conditions: Sequence[str],
    config: BenchmarkConfig,
    labels: list[str],
    n_boot: int,
    n_perm: int,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The paired-change table, the per-class table and the per-run evaluation of clean and degraded
    predictions (``preds[(cell, condition)]``: the cell's folds' prediction tables; degraded ones carry
    ``degraded_ok``), whatever model kind made them."""
    from fairser.metrics.paired import paired_delta

    ev = config.evaluation
    evaluation = ev.model_copy(update={"n_boot": n_boot, "n_perm": n_perm})
    sensitive = config.sensitive[0] if len(config.sensitive) == 1 else None
    if sensitive is None:
        raise UserError("fairser robustness measures gaps of one sensitive column",
                        where=f"sensitive: {list(config.sensitive)}", fix="use sensitive: [gender]")  # fmt: skip
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
    values = ("male", "female") if sensitive == "gender" else None
    for (objective, setting), cells in groups.items():
        for label in conditions:
            clean_all = [pooled[(c, CLEAN)] for c in cells]
            deg_all = [pooled[(c, label)] for c in cells]
            for (lang, modality), _ in clean_all[0].groupby(["language", "modality"], sort=False):
                keep = deg_all[0]["degraded_ok"].to_numpy()
                c_parts = [_domain(f, lang=lang, modality=modality, keep=keep) for f in clean_all]
                d_parts = [
                    _domain(f, lang=lang, modality=modality, keep=keep).drop(columns="degraded_ok")
                    for f in deg_all
                ]
                vals = values or tuple(sorted(set(c_parts[0][sensitive]) - {"unknown"}))
                res = paired_delta(clean=c_parts, degraded=d_parts, labels=labels, sensitive=sensitive, values=vals,
                                   n_boot=n_boot, n_perm=n_perm, ci=ev.ci, seed=config.robustness.seed)  # fmt: skip
                key = {"condition": label, "objective": objective, "setting": setting, "language": lang,
                       "modality": modality, "n_seeds": len(cells)}  # fmt: skip
                out = dict(key)
                for _, r in res.summary.iterrows():
                    m = r["metric"]
                    out.update({f"{m}_clean": r["clean"], f"{m}_degraded": r["degraded"], f"delta_{m}": r["delta"],
                                f"delta_{m}_ci_low": r["ci_low"], f"delta_{m}_ci_high": r["ci_high"],
                                f"delta_{m}_p": r["p_value"]})  # fmt: skip
                    out["n_speakers"], out["n"] = r["n_speakers"], r["n"]
                if len(vals) == 2:
                    out["signed_gap_of"] = f"{vals[1]} − {vals[0]}"
                table_rows.append(out)
                for _, r in res.per_class.iterrows():
                    class_rows.append({**key, **r.to_dict()})
    return pd.DataFrame(table_rows), pd.DataFrame(class_rows), pd.DataFrame(run_rows)


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
    from fairser.report.robustness import signed_gap_label

    pct = int(round(ci * 100))
    lines = [("**SYNTHETIC DATA** — " if synthetic else "") + f"Robustness: {source}", "",
             f"Change against clean test audio, degraded − clean, in percentage points, with the paired speaker-level "
             f"bootstrap {pct}% CI and the paired permutation p-value (seeds averaged). Gap: |W-F1(female) − "
             "W-F1(male)|; a positive Δgap means the condition widened it. Δ(W-F1 female − male) is the change of "
             "W-F1(female) − W-F1(male): negative when the condition cost women more, positive when it cost men more "
             "(its p shuffles gender among speakers, as Δgap's).", ""]  # fmt: skip
    for (objective, setting), sub in table.groupby(["objective", "setting"], sort=False):
        lines += [f"### {objective}, setting {setting} ({int(sub['n_seeds'].iloc[0])} seed(s))", "",
                  "| condition | language | modality | W-F1 clean → degraded | ΔW-F1 | p | gap clean → degraded | Δgap | p "
                  f"| Δ(W-F1 {signed_gap_label(sub)}) | p |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for _, r in sub.iterrows():
            lines.append(
                f"| {r['condition']} | {r['language']} | {r['modality']} | "
                f"{r['weighted_f1_clean'] * 100:.1f} → {r['weighted_f1_degraded'] * 100:.1f} | "
                f"{_fmt_ci(r['delta_weighted_f1'], r['delta_weighted_f1_ci_low'], r['delta_weighted_f1_ci_high'])} | "
                f"{r['delta_weighted_f1_p']:.3f} | "
                f"{r['weighted_f1_gap_clean'] * 100:.1f} → {r['weighted_f1_gap_degraded'] * 100:.1f} | "
                f"{_fmt_ci(r['delta_weighted_f1_gap'], r['delta_weighted_f1_gap_ci_low'], r['delta_weighted_f1_gap_ci_high'])} | "
                f"{r['delta_weighted_f1_gap_p']:.3f} | "
                + (
                    f"{_fmt_ci(r['delta_weighted_f1_signed_gap'], r['delta_weighted_f1_signed_gap_ci_low'], r['delta_weighted_f1_signed_gap_ci_high'])} | "
                    f"{r['delta_weighted_f1_signed_gap_p']:.3f} |"
                    if "delta_weighted_f1_signed_gap" in r
                    else "— | — |"
                )
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
    from fairser.report.robustness import (
        plot_degradation_curves,
        plot_per_class_heatmap,
        render_class_changes,
    )

    md = render_robustness(table, conditions, synthetic=prepared.synthetic, source=prepared.source, ci=ci)
    (results_dir / "robustness.md").write_text(md + "\n" + render_class_changes(per_class, ci=ci))
    files.append(results_dir / "robustness.md")

    fig_dir = results_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    for name, fig in (("robustness_curves.png", plot_degradation_curves(table, per_class, synthetic=prepared.synthetic)),
                      ("robustness_per_class.png", plot_per_class_heatmap(per_class, synthetic=prepared.synthetic))):  # fmt: skip
        fig.savefig(fig_dir / name, dpi=110)
        files.append(fig_dir / name)
    return files

"""The ``fairser`` command: thin wrappers that parse options, call the library and print.

Stages (each can be run alone; ``benchmark`` runs them all):

  fairser data synth       build the built-in multilingual synthetic corpus (eSpeak NG)
  fairser data import      turn a corpus as distributed (EmoDB, RAVDESS, CREMA-D, MELD, MELD-ST) into a manifest
  fairser data validate    check a manifest and summarise it
  fairser features         extract and cache audio / transcript embeddings for a config
  fairser train            train and evaluate every run of a config's grid (resumes)
  fairser table            print the paper-style table from a results folder
  fairser power            minimum detectable gap of a predictions table or a planned design; speakers needed
  fairser predict          apply a saved run (train.save_model) to an audio file, a folder or a manifest
  fairser robustness       finished runs on degraded test audio (codecs, telephone, noise): accuracy and gap change
  fairser benchmark        all of the above, end to end
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from fairser.errors import UserError

#: Exit codes (README, ``fairser --help``): 0 done; 1 some runs failed (a table names them) or an unexpected
#: error (a bug: traceback shown); 2 a user error (one message: what, where, fix); 130 interrupted (Ctrl-C).
EXIT_RUNS_FAILED = 1
EXIT_USER_ERROR = 2


def user_error(exc: BaseException) -> UserError | None:
    """``exc`` as a :class:`UserError` when it is one a user caused (a bad file, path, value), else None.

    Besides :class:`UserError` itself (``ManifestError``, config errors, ...): an unreadable or corrupt audio
    file (:class:`fairser.features.audio.AudioError`) and a missing path (``FileNotFoundError`` and kin
    naming a file)."""
    if isinstance(exc, UserError):
        return exc
    from fairser.features.audio import AudioError

    if isinstance(exc, AudioError):
        return UserError(
            exc.reason, where=str(exc.path), fix="replace or remove that file (or its manifest row)"
        )
    if isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError) and exc.filename:
        what = {
            FileNotFoundError: "no such file or folder",
            IsADirectoryError: "is a folder where a file is expected",
            NotADirectoryError: "is not a folder",
        }[type(exc)]
        return UserError(what, where=str(exc.filename), fix="check the path")
    return None


class _Fairser(TyperGroup):
    """The ``fairser`` group: every user error of any command is one message on stderr and exit code 2,
    without a traceback (``fairser --debug`` re-raises it, traceback and all)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as exc:
            error = user_error(exc)
            if error is None or ctx.meta.get("fairser.debug"):
                raise
            print_user_error(error)
            raise typer.Exit(EXIT_USER_ERROR) from None


app = typer.Typer(
    cls=_Fairser,
    help=(
        "fairser: measure and reduce gender bias in speech emotion recognition across languages and "
        "modalities (the ERM-MinMaxGAP benchmark, Pang et al. 2026). Start with `fairser benchmark`.\n\n"
        "Errors: a mistake in your input (config, manifest, paths, audio) is one message naming what is "
        "wrong, where (file:line, row id, config key) and the fix. Exit codes: 0 done; 1 some runs failed (a "
        "table names them) or an unexpected error (a bug: traceback shown); 2 a user error; 130 interrupted. "
        "`fairser --debug COMMAND` shows the traceback of a user error too."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Corpora and manifests: synthesise, import, validate.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _main(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of a user error (exit code 2 otherwise).")
    ] = False,
) -> None:
    ctx.meta["fairser.debug"] = debug


def print_user_error(error: UserError) -> None:
    """One user error on stderr: ``error: where: what`` and its fix, markup-safe."""
    err_console.print(f"[red]error[/]: {escape(error.message)}", soft_wrap=True, highlight=False)


ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML benchmark config (see configs/); defaults are used when omitted."
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def _config(path: Path | None, **overrides):
    from fairser.config import load_config
    from fairser.run.plan import check_objectives

    config = load_config(path, **overrides)
    check_objectives(config)  # (the config layer sits below the objectives' registry)
    return config


@data_app.command("synth")
def data_synth(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (manifest.csv, audio/, corpus.json).")
    ] = Path("data/synthetic"),
    config: ConfigOpt = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (overrides the config).")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Synthesise the built-in English/German/Japanese emotional speech corpus with eSpeak NG.

    Parallel dialogue lines in the 7 MELD emotions, emotion carried by prosody and (with a set reliability) by
    wording, speaker-disjoint splits and a known gender-emotion skew in the training split. SYNTHETIC data.
    """
    from fairser.data.synth import SynthConfig, generate_corpus

    cfg = _config(config)
    synth = dict(cfg.corpus.synth)
    if seed is not None:
        synth["seed"] = seed
    manifest = generate_corpus(config=SynthConfig(**synth), out_dir=out, progress=not quiet)
    _print_summary(manifest)
    _print_risk(manifest, sensitive=["gender"])
    console.print(f"wrote {len(manifest)} utterances to {out}/manifest.csv [bold](synthetic)[/]")


@data_app.command("import")
def data_import(
    corpus: Annotated[
        str,
        typer.Argument(
            help="Corpus name: emodb, ravdess, crema_d, meld, meld_st, or generic (any other corpus: a table"
            " file, a folder with manifest.csv / one *.csv / *.jsonl, an audformat database, a Hugging Face"
            " dataset saved to disk or as parquet)."
        ),
    ],
    path: Annotated[
        Path, typer.Argument(help="The corpus folder as distributed (generic: a folder or a file).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Manifest CSV to write.")] = Path("manifest.csv"),
    target: Annotated[
        str, typer.Option(help="Target label set: meld7 (7 MELD emotions), core4, or original (as written).")
    ] = "meld7",
    split: Annotated[
        str,
        typer.Option(
            help="auto (official split where the corpus has one, else speaker), official, or speaker"
            " (speaker-independent, gender-stratified; a language too small for that is split by utterance,"
            " with a warning)."
        ),
    ] = "auto",
    gender_table: Annotated[
        Path | None, typer.Option(help="CSV speaker,gender for speakers not shipped.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for speaker-independent splits.")] = 0,
    columns: Annotated[
        str | None,
        typer.Option(
            "--columns",
            help="generic: file columns paired with manifest columns, e.g. 'path=audio_path,text=transcript'"
            " (either way round; a constant: 'language=ja'). Common names (path/file/wav, text, label, sex,"
            " lang, spk, ...) are found without it. YAML: options: {columns: {audio_path: path}}.",
        ),
    ] = None,
    label_map: Annotated[
        str | None,
        typer.Option(
            "--label-map",
            help="Corpus label -> target label, e.g. 'colere=anger,calm=neutral'; empty right side drops"
            " ('calm='). Extends the built-in synonyms (angry/anger, happy/joy, sad, fearful, surprised,"
            " disgusted, ...). YAML: options: {label_map: {calm: neutral}}.",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="generic: corpus name (default: the corpus folder's name). YAML: options: {corpus: NAME}.",
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            help="--no-strict drops and counts rows whose audio is missing or unreadable instead of refusing."
            " YAML: options: {strict: false}."
        ),
    ] = True,
    allow_drop: Annotated[
        bool,
        typer.Option(
            "--allow-drop",
            help="Accept losing more than --max-drop of the utterances (unmapped labels, unusable files)."
            " YAML: options: {allow_drop: true}.",
        ),
    ] = False,
    max_drop: Annotated[
        float, typer.Option(help="Largest fraction of utterances that may be dropped without --allow-drop.")
    ] = 0.2,
) -> None:
    """Read a corpus as distributed, map its labels onto a target set and write a validated manifest.

    Every dropped utterance is listed (label, count, why); more than --max-drop of them is refused unless --allow-drop. Gender spellings (M/F/male/Female/w/...) are normalised, other values become unknown and are counted; language tags are lower-cased (UR -> ur).

    Example: fairser data import generic mycorpus/ --columns language=ja --label-map colere=anger
    """
    from fairser.data.corpora import import_corpus
    from fairser.data.corpora.generic import parse_pairs
    from fairser.data.manifest import write_manifest

    options = {}
    if columns:
        options["columns"] = parse_pairs(columns, option="--columns")
    if name:
        options["corpus"] = name
    user_map = {k: (v or None) for k, v in parse_pairs(label_map, option="--label-map").items()}
    res = import_corpus(
        corpus,
        path,
        target=target,
        split=split,
        gender_table=gender_table,
        seed=seed,
        label_map=user_map or None,
        strict=strict,
        allow_drop=allow_drop,
        max_drop=max_drop,
        **options,
    )
    write_manifest(res.manifest, out)
    console.print(res.summary_text(), markup=False, highlight=False, soft_wrap=True)
    for note in res.notes:
        if "split by utterance" in note or "gaps are undefined" in note or "read as unknown" in note:
            console.print(f"[yellow]warning:[/] {note}", soft_wrap=True, highlight=False)
    _print_risk(res.manifest, sensitive=["gender"])
    console.print(f"wrote {len(res.manifest)} utterances to {out}")


@data_app.command("validate")
def data_validate(
    manifest: Annotated[Path, typer.Argument(help="Manifest CSV.")],
    check_files: Annotated[bool, typer.Option(help="Check that every audio file exists.")] = True,
    sensitive: Annotated[
        list[str] | None,
        typer.Option(
            "--sensitive",
            help="Sensitive attribute of the training-data bias risk table (default: gender); repeat it (or "
            "give COL,COL) for an intersection.",
        ),
    ] = None,
) -> None:
    """Validate a manifest (columns, values, files), print utterances per language x gender x emotion and the
    training-data bias risk: per language, each gender's emotion distribution in the training split and their
    Jensen-Shannon divergence (METHODS.md §5). A malformed manifest (with its file:line) exits with code 2."""
    from fairser.data.manifest import read_manifest

    df = read_manifest(manifest, check_files=check_files)
    _print_summary(df)
    columns = [c.strip() for v in sensitive or ["gender"] for c in v.split(",") if c.strip()]
    if not _print_risk(df, sensitive=columns):
        raise typer.Exit(2)


def _print_summary(df) -> None:
    table = df.pivot_table(
        index=["language", "gender"], columns="emotion", values="id", aggfunc="count", fill_value=0
    )
    console.print(table.to_string())
    console.print(df.groupby("split")["speaker"].nunique().rename("speakers per split").to_string())


def _print_risk(df, *, sensitive: list[str]) -> bool:
    """Print the training-data bias risk table (fairser.data.risk); False (and a message) for a bad column."""
    from fairser.data.risk import training_data_risk

    try:
        risk = training_data_risk(df, sensitive=sensitive)
    except KeyError as e:
        from rich.markup import escape

        console.print(
            f"[red]cannot compute the training-data bias risk[/]: {escape(str(e.args[0]))}", soft_wrap=True
        )
        return False
    console.print("")
    console.print(risk.to_text(), markup=False, highlight=False, soft_wrap=True)
    return True


@app.command("features")
def features(config: ConfigOpt = None, quiet: QuietOpt = False) -> None:
    """Corpus + feature stages only: extract (or reuse from the cache) audio and transcript embeddings."""
    from fairser.bench.runner import prepare_data

    cfg = _config(config)
    prepared = prepare_data(cfg, progress=not quiet, console=console)
    console.print(
        f"{len(prepared.manifest)} utterances; audio features {prepared.audio.shape}; text features "
        f"{None if prepared.text is None else prepared.text.shape}; timings {prepared.timings}"
    )


@app.command("train")
def train(config: ConfigOpt = None, quiet: QuietOpt = False) -> None:
    """Train and evaluate every run of the grid (finished runs are skipped), then print the table.

    Exits with code 1 and a table of the failed runs (run id, error) when any run failed."""
    benchmark(config=config, quiet=quiet)


@app.command("table")
def table(
    results: Annotated[Path, typer.Argument(help="A benchmark output folder (holds results.jsonl).")],
) -> None:
    """Print the paper-style table from a results folder, then the gaps with their CI, p-value and minimum
    detectable gap (from the folder's mdg.csv).

    Refuses a folder holding rows of different configs (exit code 2). A cell with fewer finished runs than the
    config's seeds says so ("(n=2)"); failed runs and unreadable lines of results.jsonl are listed on stderr."""
    import json

    import yaml

    from fairser.results import finished_rows, gaps_table, paper_table, read_mdg, render_table

    found = finished_rows(results)
    rows = found.rows
    for warning in found.warnings():
        err_console.print(f"[yellow]warning[/]: {escape(warning)}", soft_wrap=True, highlight=False)
    if found.failed:
        err_console.print(f"[yellow]{len(found.failed)} failed run(s) are left out of the table[/]")
    meta = (
        json.loads((results / "benchmark.json").read_text()) if (results / "benchmark.json").is_file() else {}
    )
    config = results / "config.yaml"
    seeds = (yaml.safe_load(config.read_text()) or {}).get("seeds") if config.is_file() else None
    baseline = rows[0]["objective_label"]
    for r in rows:
        if r["objective"] == "erm":
            baseline = r["objective_label"]
            break
    t = paper_table(rows, baseline=baseline)
    typer.echo(
        render_table(
            t,
            synthetic=meta.get("synthetic", False),
            source=meta.get("source", str(results)),
            n_seeds=len(seeds) if seeds else len({r["seed"] for r in rows}),
            gaps=gaps_table(rows, baseline=baseline, mdg=read_mdg(results)),
        )
    )


@app.command("benchmark")
def benchmark(
    config: ConfigOpt = None,
    quiet: QuietOpt = False,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", "-o", help="Override the output folder.")
    ] = None,
) -> None:
    """Run the ERM-MinMaxGAP benchmark end to end: corpus, features, training grid, evaluation, table.

    Defaults: the built-in synthetic corpus; languages en, de, ja; modalities audio and audio+text; ERM and
    ERM-MinMaxGAP; 3 seeds. Results go to the config's output_dir (results.jsonl, runs/*/predictions.csv,
    table.md); re-running resumes and skips finished runs. Before any training the grid is checked (every
    split of every language trained has rows; group objectives see both values of the sensitive attribute in
    every training domain): a problem is one message and exit code 2. Exits with code 1 and a table of the
    failed runs (run id, error) when any run failed.
    """
    from fairser.bench.runner import run_benchmark

    cfg = _config(config, output_dir=str(output_dir) if output_dir else None)
    table = run_benchmark(cfg, progress=not quiet, console=console)
    _exit_on_failures(table.attrs.get("failures", []), out_dir=cfg.output_dir)


def _exit_on_failures(failures: list[tuple[str, str]], *, out_dir) -> None:
    """Some runs failed: a table of them (run id, error) on stderr and exit code 1."""
    if not failures:
        return
    from rich.table import Table

    t = Table(title=f"{len(failures)} run(s) failed (their rows in {out_dir}/results.jsonl say why)")
    t.add_column("run id", overflow="fold")
    t.add_column("error", overflow="fold")
    for run_id, error in failures:
        t.add_row(run_id, error)
    err_console.print(t)
    err_console.print(
        "[red]the results table leaves these runs out[/]; fix the cause and re-run the same command: finished "
        "runs are kept, failed ones are retried"
    )
    raise typer.Exit(EXIT_RUNS_FAILED)


@app.command("audit")
def audit(
    predictions: Annotated[
        list[Path],
        typer.Argument(
            help="Predictions CSV(s): one row per utterance with y_true, y_pred (or prob_<label> columns), the "
            "sensitive and domain columns, ideally speaker and id. A benchmark output folder reads all its "
            "runs/*/predictions.csv."
        ),
    ],
    labels: Annotated[
        str | None, typer.Option(help="Label set: comma-separated, or meld7 / core4 (default: inferred).")
    ] = None,
    sensitive: Annotated[
        list[str] | None,
        typer.Option(
            "--sensitive",
            help="Sensitive attribute: a column of the table with any number of values (default: gender). "
            "Repeat it (or give COL,COL) for an intersection: --sensitive gender --sensitive age_band audits "
            "gender × age_band.",
        ),
    ] = None,
    marginals: Annotated[
        bool,
        typer.Option(help="With several --sensitive columns, also audit each column on its own."),
    ] = False,
    domain_cols: Annotated[
        str, typer.Option("--domain-cols", help="Columns whose combination is a domain ('' for none).")
    ] = "language,modality",
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            help="Columns identifying a run, each audited separately (default: those of objective, setting, "
            "seed, run_id, split present; '' for one run).",
        ),
    ] = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples (0: no CIs).")] = 1000,
    n_perm: Annotated[int, typer.Option(help="Permutations for the gap p-values (0: none).")] = 1000,
    ci: Annotated[float, typer.Option(help="Confidence level of the percentile CIs.")] = 0.95,
    min_samples: Annotated[int, typer.Option(help="Smallest group or domain with defined metrics.")] = 10,
    resample: Annotated[
        str, typer.Option(help="speaker (cluster bootstrap, default) or utterance.")
    ] = "speaker",
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and permutations.")] = 0,
    power: Annotated[
        bool,
        typer.Option(help="Minimum detectable W-F1 gap (80% power, alpha 0.05) per domain, by simulation."),
    ] = True,
    power_sims: Annotated[
        int, typer.Option(help="Simulated test sets per power evaluation (Monte-Carlo SE ~ 1/sqrt).")
    ] = 300,
    relevant_gap: Annotated[
        float,
        typer.Option(help="The W-F1 gap that matters, in points: the audit says where it is not detectable."),
    ] = 5.0,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Output folder (default: <file>_audit beside the file, or <folder>/audit)."
        ),
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Fairness audit of any model's predictions: metrics, gaps, parity, CIs, p-values (METHODS.md §2).

    Per run, domain and value of the sensitive attribute (gender by default; any column, or an intersection),
    with per-class TPR/FPR gaps and confusion matrices per value. A gap is max - min over the values; the
    signed gap exists only with two values (gender: female - male). Beside each domain's W-F1 gap: the
    minimum detectable gap (MDG) of the between-speaker permutation test (`fairser power` for more). Writes tidy CSVs, undefined.csv (every
    NaN with its reason) and audit.json to --out; render them with `fairser report OUT`.
    """
    from fairser.audit import AuditInputError, audit_predictions, print_audit

    def cols(text: str | None) -> list[str] | None:
        return None if text is None else [c.strip() for c in text.split(",") if c.strip()]

    try:
        result = audit_predictions(
            predictions,
            labels=labels,
            sensitive=[c.strip() for v in sensitive or ["gender"] for c in v.split(",") if c.strip()],
            marginals=marginals,
            domain_cols=cols(domain_cols),
            by=cols(by),
            n_boot=n_boot,
            n_perm=n_perm,
            ci=ci,
            min_samples=min_samples,
            resample=resample,
            seed=seed,
            power=power,
            power_sims=power_sims,
            relevant_gap=relevant_gap / 100,
            progress=not quiet,
        )
    except (AuditInputError, ValueError) as e:
        from rich.markup import escape

        where = escape(", ".join(map(str, predictions)))
        console.print(f"[red]cannot audit[/] {where}: {escape(str(e))}", soft_wrap=True)
        raise typer.Exit(2) from e
    if out is None:
        first = predictions[0]
        out = first / "audit" if first.is_dir() else first.with_name(f"{first.stem}_audit")
    print_audit(result, console=console)
    paths = result.write(out)
    console.print(
        f"wrote the audit ({len(result)} run × attribute frame(s)) to {out}/: "
        + ", ".join(p.name for p in paths.values())
    )


@app.command("power")
def power_cmd(
    predictions: Annotated[
        list[Path] | None,
        typer.Argument(
            help="One run's predictions CSV (as for `fairser audit`); omit it and give --speakers, "
            "--utterances and --spread for a planned design."
        ),
    ] = None,
    gap: Annotated[
        float | None,
        typer.Option(help="Target gap in points (3 = 3 W-F1 points): its power and the speakers needed."),
    ] = None,
    metric: Annotated[str, typer.Option(help="weighted_f1, accuracy, uar or macro_f1.")] = "weighted_f1",
    speakers: Annotated[
        int | None, typer.Option(help="Planned design: test speakers per value (e.g. per gender).")
    ] = None,
    utterances: Annotated[
        int | None, typer.Option(help="Planned design: test utterances per speaker.")
    ] = None,
    spread: Annotated[
        float | None,
        typer.Option(help="Planned design: between-speaker SD of speaker-level accuracy (0-1, e.g. 0.08)."),
    ] = None,
    accuracy: Annotated[float, typer.Option(help="Planned design: mean accuracy (0-1).")] = 0.7,
    classes: Annotated[int, typer.Option(help="Planned design: number of (balanced) classes.")] = 7,
    sensitive: Annotated[
        str, typer.Option(help="Sensitive column(s) of the table (COL or COL,COL for an intersection).")
    ] = "gender",
    domain_cols: Annotated[
        str, typer.Option("--domain-cols", help="Columns whose combination is a domain ('' for none).")
    ] = "language,modality",
    labels: Annotated[str | None, typer.Option(help="Label set (default: inferred).")] = None,
    target_power: Annotated[float, typer.Option("--power", help="Power to reach.")] = 0.8,
    alpha: Annotated[float, typer.Option(help="Significance level of the permutation test.")] = 0.05,
    sims: Annotated[int, typer.Option(help="Simulated test sets per power evaluation.")] = 500,
    perms: Annotated[int, typer.Option(help="Permutations per simulated test.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the simulation.")] = 0,
    quiet: QuietOpt = False,
) -> None:
    """Minimum detectable gap (MDG) of the between-speaker permutation test, and the speakers per value
    needed to detect a target gap, by simulation from the speaker-level variance (METHODS.md §2, "Power").

    `fairser power PREDICTIONS.csv --gap 3`: per domain, the MDG of the current test set and the speakers per
    gender needed for a 3-point W-F1 gap (variance estimated from the table). `fairser power --speakers 6
    --utterances 40 --spread 0.08 [--accuracy 0.7 --classes 7] --gap 3`: the same for a planned design.
    """
    from rich.markup import escape

    from fairser.metrics.power import design_mdg, design_power, planned_design, speakers_needed

    target = None if gap is None else gap / 100
    kw = dict(metric=metric, alpha=alpha, n_sim=sims, n_perm=perms, seed=seed)
    planned = [speakers, utterances, spread]
    try:
        if predictions and any(v is not None for v in planned):
            raise ValueError("give either a predictions table or a planned design (--speakers ...), not both")
        if not predictions:
            if any(v is None for v in planned):
                raise ValueError(
                    "give a predictions CSV, or a planned design with all of --speakers, --utterances, --spread"
                )
            design = planned_design(
                speakers_per_group=speakers,
                utterances_per_speaker=utterances,
                spread=spread,
                accuracy=accuracy,
                n_classes=classes,
            )
            from contextlib import nullcontext

            busy = nullcontext() if quiet else console.status("simulating the permutation test")
            with busy:
                res = design_mdg(design, power=target_power, **kw)
                at = design_power(design, gap=target, **kw)[0] if target else None
                need = speakers_needed(design, gap=target, power=target_power, **kw) if target else None
            _print_power_design(design, res, target=target, at=at, need=need)
            return
        _power_of_table(
            predictions,
            target=target,
            sensitive=sensitive,
            domain_cols=domain_cols,
            labels=labels,
            target_power=target_power,
            quiet=quiet,
            **kw,
        )
    except ValueError as e:
        console.print(f"[red]cannot compute the power[/]: {escape(str(e))}", soft_wrap=True)
        raise typer.Exit(2) from e


def _points(x) -> str:
    import math

    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * float(x):.1f}"


def _print_power_design(design, res, *, target, at, need) -> None:
    name = res.metric
    console.print(
        f"planned design: {design.speakers_per_group[0]} speakers per value × {int(design.utterances[0])} "
        f"utterances, {design.n_classes} balanced classes, accuracy {design.accuracy:.2f}, between-speaker SD "
        f"of accuracy {design.spread:.3f}"
    )
    if res.reason:
        console.print(f"[yellow]MDG undefined[/]: {res.reason}")
    else:
        console.print(
            f"minimum detectable {name} gap ({res.power:.0%} power, alpha {res.alpha:g}): "
            f"[bold]{_points(res.mdg)} points[/] (± {_points(res.mdg_se)} Monte-Carlo SE; "
            f"{res.n_sim} simulations × {res.n_perm} permutations)"
        )
    if target is not None:
        console.print(f"power to detect a {_points(target)}-point gap with this design: {at:.0%}")
        if need.speakers is None:
            console.print(f"[yellow]speakers needed[/]: {need.reason}")
        else:
            console.print(
                f"speakers per value needed for a {_points(target)}-point gap: [bold]{need.speakers}[/] "
                f"(simulated power {need.power:.0%}; ~10% fewer give {need.below:.0%})"
            )


def _power_of_table(
    predictions, *, target, sensitive, domain_cols, labels, target_power, quiet, **kw
) -> None:
    from rich.table import Table

    from fairser.audit import AuditInputError, read_predictions, resolve_labels, run_label, split_runs
    from fairser.audit.table import check_predictions
    from fairser.metrics.power import minimum_detectable_gap

    columns = [c.strip() for c in sensitive.split(",") if c.strip()]
    domains = [c.strip() for c in domain_cols.split(",") if c.strip()]
    try:
        table = read_predictions(predictions)
        df, label_list, _, _ = check_predictions(
            table, labels=resolve_labels(labels), sensitive=columns, domain_cols=domains, by=[]
        )
        by, runs = split_runs(df)
    except AuditInputError as e:
        raise ValueError(str(e)) from None
    if len(runs) > 1:
        shown = "; ".join(run_label(r) for r, _ in runs[:3])
        raise ValueError(
            f"the table holds {len(runs)} runs (by {by}: {shown}, ...); the power analysis needs one run's "
            "predictions (e.g. results/<benchmark>/runs/<run>/predictions.csv)"
        )
    out = minimum_detectable_gap(
        df,
        target_gap=target,
        labels=label_list,
        sensitive=columns,
        domain_cols=domains,
        power=target_power,
        progress=not quiet,
        **kw,
    )
    metric = kw["metric"]
    t = Table(
        title=f"Minimum detectable {metric} gap ({target_power:.0%} power, alpha {kw['alpha']:g}), in points"
    )
    cols = [
        "domain",
        "speakers per value",
        "utt. per speaker",
        "accuracy",
        "speaker SD of accuracy",
        "MDG (± MC SE)",
    ]
    if target is not None:
        cols += [f"power for {_points(target)} points", f"speakers per value for {_points(target)} points"]
    cols.append("note")
    for c in cols:
        t.add_column(c, overflow="fold")
    for rec in out.to_dict(orient="records"):
        cells = [
            " / ".join(str(rec[c]) for c in domains) or "all",
            rec["speakers_per_group"] or "–",
            "–"
            if rec["utterances_per_speaker"] != rec["utterances_per_speaker"]
            else f"{rec['utterances_per_speaker']:.0f}",
            "–" if rec["accuracy"] != rec["accuracy"] else f"{rec['accuracy']:.3f}",
            "–" if rec["spread"] != rec["spread"] else f"{rec['spread']:.3f}",
            f"{_points(rec['mdg'])} ± {_points(rec['mdg_se'])}",
        ]
        if target is not None:
            p = rec["power_at_target"]
            cells += [
                "–" if p != p else f"{p:.0%}",
                "–"
                if rec["speakers_needed"] is None or str(rec["speakers_needed"]) == "<NA>"
                else str(rec["speakers_needed"]),
            ]
        cells.append(str(rec["reason"] or ""))
        t.add_row(*cells)
    console.print(t)
    console.print(
        f"Simulated from each domain's speakers (utterance counts, per-class recall, errors, between-speaker "
        f"spread estimated within values); {kw['n_sim']} simulated test sets × {kw['n_perm']} permutations per "
        "evaluation. Speakers needed keep the mean utterances per speaker (METHODS.md §2, 'Power')."
    )


@app.command("report")
def report(
    source: Annotated[
        Path,
        typer.Argument(help="A benchmark output folder (results.jsonl) or an audit folder (audit.json)."),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default: SOURCE/report).")
    ] = None,
    n_boot: Annotated[
        int, typer.Option(help="Bootstrap resamples for the per-class CIs of a benchmark folder.")
    ] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of that bootstrap.")] = 0,
    quiet: QuietOpt = False,
) -> None:
    """Self-contained HTML report (figures embedded, no network needed), PNG figures and a Markdown table.

    Figures: language x modality heatmap of the W-F1 gender gap per objective; W-F1 against worst-domain gap
    per objective (error bars); per-class TPR gaps with CIs; for ERM-MinMaxGAP runs, lambda_t and R_t per
    epoch, one panel per variant, with the permutation null R_null where it was logged. Plus the paper-style
    table and every undefined number with its reason.
    """
    from fairser.report import build_report

    try:
        result = build_report(source, out_dir=out, n_boot=n_boot, seed=seed, progress=not quiet)
    except (FileNotFoundError, ValueError) as e:
        from rich.markup import escape

        console.print(f"[red]cannot build a report[/] from {escape(str(source))}: {escape(str(e))}")
        raise typer.Exit(2) from e
    if result.data is not None and result.data.synthetic:
        console.print("[bold reverse] SYNTHETIC DATA [/] the report says so on every page and figure")
    console.print(f"report: {result.html}")
    console.print(
        f"markdown: {result.markdown}  table: {result.table}  undefined numbers: {result.undefined}"
    )
    console.print("figures: " + ", ".join(str(p) for p in result.figures.values()))


@app.command("predict")
def predict_cmd(
    run_dir: Annotated[
        Path,
        typer.Argument(
            help="A saved run: <output_dir>/runs/<run_id> of a benchmark trained with train.save_model: true "
            "(or its model/ folder); or a benchmark config (.yaml) with backbone.zero_shot: true, to score an "
            "audio LLM zero-shot."
        ),
    ],
    inputs: Annotated[
        Path,
        typer.Argument(
            help="An audio file, a folder (searched recursively for .wav .flac .ogg .opus .mp3) or a manifest CSV "
            "(id, audio_path; transcript, emotion, gender, language, speaker, corpus, split where present)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Predictions CSV to write.")] = Path(
        "predictions.csv"
    ),
    split: Annotated[
        str | None, typer.Option(help="Predict only the manifest rows of this split (e.g. test).")
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1, help="Rows per forward pass (default: 4096 for a head, eval_batch_size for a backbone)."
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Feature cache (default: the run's features.cache_dir, as recorded in the model)."),
    ] = None,
    n_jobs: Annotated[int, typer.Option(min=1, help="Processes extracting audio features.")] = 1,
    backbone_path: Annotated[
        Path | None,
        typer.Option(help="A backbone run's base model folder, if it moved (it must be the same model)."),
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Apply a saved run (or a zero-shot audio LLM) to new audio and write its predictions table (the format
    `fairser audit` reads).

    Features go through the run's encoders and the feature cache and are standardised as in training (a
    per-speaker model needs a manifest with corpus and speaker columns). Unreadable audio files are left out,
    counted and listed in <out>_unreadable.csv; the others are predicted. With truth and gender in a manifest,
    `fairser audit OUT` audits the predictions as they are.
    """
    from rich.markup import escape

    from fairser.run.predict import load_predictor, load_zero_shot_predictor, predict, read_input

    if run_dir.suffix.lower() in (".yaml", ".yml"):  # an audio LLM scored zero-shot, as the config says
        predictor = load_zero_shot_predictor(run_dir, backbone_path=backbone_path)
    else:
        predictor = load_predictor(run_dir, cache_dir=cache_dir, n_jobs=n_jobs, backbone_path=backbone_path)
    data = read_input(inputs, labels=predictor.labels, split=split)
    result = predict(predictor, data, batch_size=batch_size, progress=not quiet)
    out.parent.mkdir(parents=True, exist_ok=True)
    result.table.to_csv(out, index=False)
    for note in result.notes:
        console.print(f"note: {escape(note)}", soft_wrap=True)
    if result.failures:
        import pandas as pd

        listing = out.with_name(f"{out.stem}_unreadable.csv")
        pd.DataFrame(result.failures, columns=["audio_path", "reason"]).to_csv(listing, index=False)
        shown = "; ".join(f"{p}: {r}" for p, r in result.failures[:10])
        more = f" (and {len(result.failures) - 10} more)" if len(result.failures) > 10 else ""
        console.print(
            f"[yellow]warning:[/] {len(result.failures)} unreadable audio file(s) left out: {escape(shown)}{more}; "
            f"all listed in {escape(str(listing))}",
            soft_wrap=True,
        )
    n_files = result.table["id"].nunique()
    console.print(
        f"wrote {len(result.table)} prediction(s) of {n_files} file(s) by run "
        f"{escape(predictor.identity['run_id'])} to {escape(str(out))}",
        soft_wrap=True,
    )


@app.command("plan")
def plan(
    backbone: Annotated[
        str,
        typer.Option(
            help="Preset name (qwen2-audio-7b, desta2.5-audio) or a local model folder (Qwen2-Audio, or "
            "DeSTA2.5 in the released layout with llm/ and whisper/)."
        ),
    ] = "qwen2-audio-7b",
    batch: Annotated[
        list[int] | None,
        typer.Option("--batch", "-b", help="Per-device batch size (repeatable; default 1, 4, 8)."),
    ] = None,
    audio_seconds: Annotated[float, typer.Option(help="Audio length per sample in seconds.")] = 30.0,
    text_tokens: Annotated[int, typer.Option(help="Prompt + transcript tokens per sample.")] = 64,
    precision: Annotated[str, typer.Option(help="bf16, fp16 or fp32.")] = "bf16",
    mode: Annotated[str, typer.Option(help="label_tokens or head.")] = "label_tokens",
    lora_r: Annotated[int, typer.Option(help="LoRA rank (0 = no adapters).")] = 8,
    gradient_checkpointing: Annotated[
        bool, typer.Option(help="Recompute activations in the backward pass.")
    ] = False,
    gpus: Annotated[
        list[float] | None,
        typer.Option("--gpu", help="GPU memory sizes in GB to check (repeatable; default 24, 40, 80)."),
    ] = None,
) -> None:
    """Estimate parameters, trainable parameters, and weight / gradient / optimizer / activation memory of a
    speech-LLM fine-tuning setup, and whether it fits a given GPU -- before renting hardware."""
    from fairser.models.plan import format_plan_table, plan_memory

    batch = batch or [1, 4, 8]
    gpus = gpus or [24.0, 40.0, 80.0]
    plans = [
        plan_memory(
            backbone=backbone,
            batch=b,
            audio_seconds=audio_seconds,
            text_tokens=text_tokens,
            precision=precision,
            mode=mode,
            lora_r=lora_r,
            gradient_checkpointing=gradient_checkpointing,
        )
        for b in batch
    ]
    typer.echo(format_plan_table(plans, gpus=tuple(gpus)))


# -- robustness (issue 15) ---------------------------------------------------------------------------------
@app.command("robustness")
def robustness(
    results: Annotated[
        Path, typer.Argument(help="A finished benchmark's output folder (config.yaml, results.jsonl, runs/).")
    ],
    conditions: Annotated[
        list[str] | None,
        typer.Option(
            "--conditions",
            help="Degradation conditions, each name:key=value,... (e.g. mp3:bitrate_kbps=16, opus:bitrate_kbps=6, "
            "aac:bitrate_kbps=16, amr_nb:bitrate_kbps=4.75, vorbis:quality=0, gsm, telephone:codec=mulaw, "
            "bandlimit:high_hz=4000, resample:rate=8000, noise:kind=babble,snr_db=5, neural_codec:path=DIR) or a "
            "preset (smoke, legacy_low, legacy, noise); repeat the option. Default: the config's robustness.conditions.",
        ),
    ] = None,
    n_boot: Annotated[
        int | None, typer.Option(help="Bootstrap resamples (default: the benchmark's).")
    ] = None,
    n_perm: Annotated[int | None, typer.Option(help="Permutations (default: the benchmark's).")] = None,
    source: Annotated[
        str,
        typer.Option(
            help="Where each run's model comes from: saved (the model folder `train.save_model: true` wrote), "
            "refit (re-train the run in this process from its config and seed), or auto (saved when every "
            "finished run has one, else refit).",
        ),
    ] = "auto",
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh",
            help="Start the robustness tables anew. By default the conditions an earlier call wrote into this "
            "folder with the same settings stay beside the new ones (one re-tested is replaced).",
        ),
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Test the finished runs of a results folder on degraded test audio (codecs, telephone, noise, neural
    codecs): per condition x language x modality, W-F1, UAR and the gender gap, and their change against clean
    audio with a paired speaker-level CI and p-value; per-class recall change per gender. Works for heads on
    cached features (degraded features, cached) and raw-audio backbones: SSL encoders, audio LLMs with LoRA,
    zero-shot audio LLMs (degraded waveforms, cached in the feature cache). Each run's model is loaded from its
    saved model folder or re-fitted (--source) and must reproduce its stored predictions exactly. Writes
    robustness.csv/.md, robustness_per_class.csv, robustness_conditions.csv, robustness_runs.csv,
    robustness.json and figures/robustness_*.png."""
    from fairser.bench.robustness import evaluate_robustness

    res = evaluate_robustness(
        results,
        conditions=conditions,
        source=source,
        n_boot=n_boot,
        n_perm=n_perm,
        keep_previous=not fresh,
        progress=not quiet,
        console=console,
    )
    typer.echo((results / "robustness.md").read_text())
    console.print("wrote " + ", ".join(str(f) for f in res.files))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()

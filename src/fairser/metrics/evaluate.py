"""Evaluate a predictions table: metrics per domain and value of the sensitive attribute, gaps, parity, CIs,
p-values (METHODS.md §2).

The public input is the *predictions table* (one row per utterance): ``y_true``, ``y_pred`` (label strings),
the sensitive attribute (one column, ``gender`` by default, or several whose intersection is the attribute),
the domain columns (by default ``language`` and ``modality``), ``speaker``, optionally ``id`` and anything
else (ignored). A model trained elsewhere can be audited from such a table alone.

Everything is computed from confusion matrices of *strata* = (domain, value of the sensitive attribute,
including ``unknown``), so one speaker-level bootstrap per stratum serves every metric, group, domain and
the overall row, and one permutation draw per domain serves every gap (see
:mod:`fairser.metrics.resampling`). The result is a :class:`~fairser.metrics.frame.MetricFrame`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from fairser.grouping import INTERSECTION_SEP, UNKNOWN, sensitive_values, value_names
from fairser.metrics.classification import METRICS, encode_labels
from fairser.metrics.fairness import (
    FAIRNESS_GAPS,
    false_positive_rate_from_confusion,
    group_gap,
    selection_rate_from_confusion,
    true_positive_rate_from_confusion,
)
from fairser.metrics.frame import GAP_METRICS, TABLES, MetricFrame
from fairser.metrics.resampling import (
    bootstrap_confusion,
    cluster_confusion,
    percentile_ci,
    permutation_confusion,
    permutation_p_value,
)

__all__ = ["evaluate_predictions"]

_UNKNOWN = UNKNOWN
_RESERVED = {
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "n",
    "n_speakers",
    "reason",
    "gap",
    "signed_gap",
    "class",
}


# ----------------------------------------------------------------------------------------------- validation


def _check_args(predictions, sensitive, domain_cols, n_boot, n_perm, ci, min_samples, resample) -> None:
    if not isinstance(predictions, pd.DataFrame):
        raise TypeError(f"predictions must be a pandas DataFrame; got {type(predictions).__name__}")
    if not sensitive or len(set(sensitive)) != len(sensitive):
        raise ValueError(f"sensitive needs one or more distinct columns; got {list(sensitive)}")
    needed = ["y_true", "y_pred", *sensitive, *domain_cols]
    missing = [c for c in needed if c not in predictions.columns]
    if missing:
        hint = (
            " (pass domain_cols=... to choose other domain columns, or () for none)"
            if set(missing) & set(domain_cols)
            else ""
        )
        raise ValueError(
            f"predictions table lacks column(s) {missing}; it has {list(predictions.columns)}{hint}"
        )
    both = [c for c in sensitive if c in domain_cols]
    if both:
        raise ValueError(f"the sensitive column(s) {both} cannot also be domain columns")
    name = INTERSECTION_SEP.join(sensitive)
    if len(sensitive) > 1 and name in predictions.columns:
        raise ValueError(f"column {name!r} (the name of the intersection) exists already; rename it")
    clash = (set(domain_cols) | {name}) & _RESERVED
    if clash:
        raise ValueError(f"column name(s) {sorted(clash)} are reserved for result tables; rename them")
    if len(set(domain_cols)) != len(domain_cols):
        raise ValueError(f"domain_cols has duplicates: {list(domain_cols)}")
    for name, value in (("n_boot", n_boot), ("n_perm", n_perm)):
        if not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0; got {value!r}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1); got {ci!r}")
    if not isinstance(min_samples, int | np.integer) or min_samples < 1:
        raise ValueError(f"min_samples must be an integer >= 1; got {min_samples!r}")
    if resample not in ("speaker", "utterance"):
        raise ValueError(f"resample must be 'speaker' or 'utterance'; got {resample!r}")
    if len(predictions) == 0:
        raise ValueError("predictions table is empty")


def _encode(df: pd.DataFrame, column: str, labels: list[str]) -> np.ndarray:
    values = df[column].to_numpy(dtype=object)
    try:
        return encode_labels(values, labels=labels, name=column)
    except ValueError as err:
        bad = ~pd.Series(values).isin(labels).to_numpy()
        ids = (
            df["id"].to_numpy()[bad][:5].tolist() if "id" in df.columns else np.flatnonzero(bad)[:5].tolist()
        )
        raise ValueError(f"{err}; e.g. rows with id {ids}") from None


def _is_missing(series: pd.Series) -> np.ndarray:
    text = series.astype(str).str.strip()
    return (series.isna() | text.eq("") | text.str.lower().isin(["nan", "none", "<na>"])).to_numpy()


def _domain_label(key: tuple) -> str:
    return " / ".join(map(str, key)) if key else "all"


# ----------------------------------------------------------------------------------------------- main


def evaluate_predictions(
    predictions: pd.DataFrame,
    *,
    labels: Sequence[str] | None = None,
    sensitive: str | Sequence[str] = "gender",
    domain_cols: Sequence[str] = ("language", "modality"),
    n_boot: int = 1000,
    n_perm: int = 1000,
    ci: float = 0.95,
    min_samples: int = 10,
    resample: Literal["speaker", "utterance"] = "speaker",
    speaker_col: str = "speaker",
    seed: int | np.random.Generator | None = 0,
    progress: bool = False,
) -> MetricFrame:
    """Metrics, gaps and parity per domain for one sensitive attribute, with bootstrap CIs and permutation
    p-values.

    Parameters
    ----------
    predictions : DataFrame
        The predictions table: ``y_true``, ``y_pred``, the ``sensitive`` column(s), ``domain_cols``;
        ``speaker_col`` and ``id`` are used when present.
    labels : sequence of str, optional
        The label set, in the order of the confusion matrices. Default: sorted union of ``y_true`` and
        ``y_pred`` (said so in ``notes``). A label outside it is an error naming the rows.
    sensitive : str or sequence of str
        Column of the sensitive attribute, any number of values; several columns = their intersection (values
        and name joined by ``" × "``: ``gender × age_band``). ``NaN``, ``""`` and ``"unknown"`` (in any part)
        mean unknown: such rows count in ``overall`` and ``by_domain`` but in no group. Values are ordered by
        :func:`fairser.grouping.sensitive_values` (gender: male, female, then others). A gap is ``max - min``
        over the values; the signed gap ``M(second) - M(first)`` exists only with exactly two values.
    domain_cols : sequence of str
        Columns whose combinations are the domains (METHODS.md §1); ``()`` = one domain.
    n_boot : int
        Bootstrap resamples (0 = no CIs).
    n_perm : int
        Permutations for the gap p-values (0 = no p-values).
    ci : float
        Confidence level of the percentile intervals.
    min_samples : int
        A group (or domain) with fewer rows gets ``NaN`` and a ``reason``; a gap needs two such groups.
    resample : ``"speaker"`` or ``"utterance"``
        Unit of the bootstrap and the permutation test. ``"speaker"`` (default, cluster bootstrap) falls back
        to utterances when ``speaker_col`` is absent or empty, and says so in ``notes``.
    speaker_col : str
        Column of speaker ids.
    seed : int or numpy Generator
        Same seed, same numbers.
    progress : bool
        Show a progress bar over domains.

    Returns
    -------
    MetricFrame
    """
    domain_cols = list(domain_cols)
    columns = [sensitive] if isinstance(sensitive, str) else list(sensitive)
    _check_args(predictions, columns, domain_cols, n_boot, n_perm, ci, min_samples, resample)
    sensitive = INTERSECTION_SEP.join(columns)  # the attribute's name, also its column in the tables
    df = predictions.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    notes: list[str] = []

    if labels is None:
        labels = sorted(set(df["y_true"].astype(str)) | set(df["y_pred"].astype(str)))
        notes.append(f"labels inferred from the data (sorted union of y_true and y_pred): {labels}")
    labels = [str(x) for x in labels]
    n_classes = len(labels)
    if n_classes < 2:
        raise ValueError(f"need at least 2 labels; got {labels}")
    true_idx, pred_idx = _encode(df, "y_true", labels), _encode(df, "y_pred", labels)

    # Sensitive attribute: unknown stays unknown (never guessed).
    sens = value_names(df, columns)
    levels = list(sensitive_values(df, columns))
    n_unknown = int((sens == _UNKNOWN).sum())
    if n_unknown:
        notes.append(
            f"{n_unknown} row(s) with unknown {sensitive} count in overall and per-domain metrics only"
        )
    if len(levels) > 2:
        notes.append(
            f"{len(levels)} values of {sensitive} ({', '.join(levels)}): every gap is max - min over them, "
            "and there is no signed gap"
        )
    reference = levels[0] if len(levels) == 2 else None
    if reference is not None:
        notes.append(f"signed_gap = M({levels[1]}) - M({levels[0]})")

    # Domains: a missing domain value is its own domain, named 'unknown'.
    dom = pd.DataFrame(index=df.index)
    for col in domain_cols:
        missing = _is_missing(df[col])
        if missing.any():
            notes.append(f"{int(missing.sum())} row(s) with missing {col!r} form the domain value 'unknown'")
        dom[col] = np.where(missing, _UNKNOWN, df[col].astype(str).to_numpy())
    dom_keys = [tuple(r) for r in dom.itertuples(index=False, name=None)] if domain_cols else [()] * len(df)
    domains = sorted(set(dom_keys))
    dom_code = pd.Series(dom_keys, dtype=object).map({k: i for i, k in enumerate(domains)}).to_numpy()

    if "id" in df.columns:
        dup = df.assign(**{c: dom[c] for c in domain_cols}).duplicated([*domain_cols, "id"], keep=False)
        if dup.any():
            raise ValueError(
                f"{int(dup.sum())} rows share an id within a domain (e.g. id {df.loc[dup, 'id'].iloc[0]!r}): "
                "is this several runs (seeds, objectives) in one table? Evaluate each run separately."
            )

    # Clusters: speakers, or single utterances.
    row_ids = df["id"].astype(str).to_numpy() if "id" in df.columns else np.arange(len(df)).astype(str)
    has_speaker = (
        ~_is_missing(df[speaker_col]) if speaker_col in df.columns else np.zeros(len(df), dtype=bool)
    )
    speakers = (
        np.where(has_speaker, df[speaker_col].astype(str).to_numpy(), "").astype(object)
        if speaker_col in df.columns
        else np.full(len(df), "", dtype=object)
    )
    resample_used = resample
    if resample == "speaker" and not has_speaker.any():
        resample_used = "utterance"
        notes.append(
            f"utterance-level resampling used because speaker ids are missing (no {speaker_col!r} values); "
            "CIs and p-values ignore the correlation of utterances within a speaker and are too narrow"
        )
    elif resample == "speaker" and not has_speaker.all():
        notes.append(
            f"{int((~has_speaker).sum())} row(s) without a speaker id are resampled as single-utterance clusters"
        )
    elif resample == "utterance":
        notes.append("utterance-level resampling (requested): CIs ignore within-speaker correlation")
    if resample_used == "speaker":
        clusters = np.where(has_speaker, "spk:" + speakers, "utt:" + row_ids.astype(object))
        mixed = (
            pd.DataFrame({"d": dom_code[has_speaker], "s": speakers[has_speaker], "g": sens[has_speaker]})
            .groupby(["d", "s"])["g"]
            .nunique()
        )
        if (mixed > 1).any():
            notes.append(
                f"{int((mixed > 1).sum())} speaker(s) carry more than one {sensitive} value in a domain; each "
                "(speaker, value) pair is resampled as its own cluster"
            )
    else:
        clusters = "utt:" + row_ids.astype(object)

    if n_boot:
        notes.append(
            "CIs of absolute gaps (gap, dsp/deo/eodds, summary) are percentile intervals of resampled absolute "
            "values, biased upward when the true gap is near 0 (the interval can sit above a small observed "
            "gap); whether a gap is real is shown by "
            + ("signed_ci_low/high (excludes 0?) and p_value" if reference is not None else "its p_value")
        )
    iterator = range(len(domains))
    if progress:
        from rich.progress import track

        iterator = track(iterator, description="evaluating domains")

    ctx = _Context(
        labels=labels,
        levels=levels,
        sensitive=sensitive,
        domain_cols=domain_cols,
        n_boot=n_boot,
        n_perm=n_perm,
        ci=ci,
        min_samples=min_samples,
        unit="speaker" if resample_used == "speaker" else "utterance",
    )
    strata_levels = [*levels, _UNKNOWN]
    results = []
    for d in iterator:
        in_d = dom_code == d
        strata = []
        for level in strata_levels:
            rows = in_d & (sens == level)
            unit_cm, _ = cluster_confusion(
                true_idx[rows], pred_idx[rows], clusters[rows], n_classes=n_classes
            )
            boot = bootstrap_confusion(unit_cm, n_boot=n_boot, rng=rng) if n_boot else None
            n_spk = len(set(speakers[rows & has_speaker])) if has_speaker.any() else None
            strata.append(_Stratum(level, int(rows.sum()), n_spk, unit_cm, boot))
        n_spk_dom = len(set(speakers[in_d & has_speaker])) if has_speaker.any() else None
        results.append(_evaluate_domain(domains[d], strata, n_spk_dom, ctx, rng))

    overall_cm = sum(r.cm for r in results)
    overall_boot = sum(r.boot for r in results) if n_boot else None
    n_speakers_all = len(set(speakers[has_speaker])) if has_speaker.any() else None
    overall = pd.DataFrame(_metric_rows(overall_cm, overall_boot, len(df), n_speakers_all, None, ctx, None))

    frames = {
        name: pd.concat([getattr(r, name) for r in results], ignore_index=True) for name in _DOMAIN_TABLES
    }
    frames["overall"] = overall
    for frame in (overall, frames["by_domain"], frames["by_group"]):
        frame["n"] = frame["n"].astype("int64")
        frame["n_speakers"] = frame["n_speakers"].astype("Int64")  # <NA> when speaker ids are missing
    summary = _summary(results, domains, ctx)
    settings = {
        "labels": labels,
        "sensitive": sensitive,
        "sensitive_columns": columns,
        "groups": levels,
        "reference": reference,
        "domain_cols": domain_cols,
        "n_boot": int(n_boot),
        "n_perm": int(n_perm),
        "ci": float(ci),
        "min_samples": int(min_samples),
        "resample": resample,
        "resample_used": resample_used,
        "seed": int(seed) if isinstance(seed, int | np.integer) else (None if seed is None else "Generator"),
        "n_rows": len(df),
        "n_unknown": n_unknown,
        "n_domains": len(domains),
    }
    frames["summary"] = summary
    return MetricFrame(tables={name: frames[name] for name in TABLES}, notes=notes, settings=settings)


# ----------------------------------------------------------------------------------------------- internals

_DOMAIN_TABLES = ("by_domain", "by_group", "gaps", "per_class", "confusion")
_METRIC_COLUMNS = ("metric", "value", "ci_low", "ci_high", "n", "n_speakers", "reason")
_GAP_COLUMNS = (
    "metric",
    "gap",
    "signed_gap",
    "ci_low",
    "ci_high",
    "signed_ci_low",
    "signed_ci_high",
    "p_value",
    "reason",
)


@dataclass
class _Context:
    labels: list[str]
    levels: list[str]
    sensitive: str
    domain_cols: list[str]
    n_boot: int
    n_perm: int
    ci: float
    min_samples: int
    unit: str


@dataclass
class _Stratum:
    level: str
    n: int
    n_speakers: int | None
    unit_cm: np.ndarray  # (K, C, C)
    boot: np.ndarray | None  # (B, C, C)

    @property
    def cm(self) -> np.ndarray:
        return self.unit_cm.sum(axis=0)


@dataclass
class _DomainResult:
    key: tuple
    cm: np.ndarray
    boot: np.ndarray | None
    by_domain: pd.DataFrame
    by_group: pd.DataFrame
    gaps: pd.DataFrame
    per_class: pd.DataFrame
    confusion: pd.DataFrame
    gap_obs: dict[str, float]
    gap_boot: dict[str, np.ndarray]
    gap_perm: dict[str, np.ndarray]


def _ci(samples: np.ndarray | None, ctx: _Context) -> tuple[float, float]:
    if samples is None:
        return math.nan, math.nan
    low, high = percentile_ci(samples, ci=ctx.ci, axis=0)
    return float(low), float(high)


def _metric_rows(cm, boot, n, n_speakers, n_clusters, ctx: _Context, prefix: dict | None) -> list[dict]:
    """Rows ``metric, value, ci_low, ci_high, n, n_speakers, reason`` for one confusion matrix."""
    rows = []
    too_small = n < ctx.min_samples
    no_ci = n_clusters is not None and n_clusters < 2 and not too_small
    for name, fn in METRICS.items():
        row = dict(prefix or {})
        row["metric"] = name
        if too_small:
            value, (low, high) = math.nan, (math.nan, math.nan)
            reason = "no rows" if n == 0 else f"n={n} < min_samples={ctx.min_samples}"
        else:
            value = float(fn(cm))
            low, high = _ci(fn(boot) if boot is not None else None, ctx)
            reason = f"CI undefined: only {n_clusters} {ctx.unit}" if no_ci else ""
            if no_ci:
                low = high = math.nan
        row.update(value=value, ci_low=low, ci_high=high, n=n, n_speakers=n_speakers, reason=reason)
        rows.append(row)
    return rows


def _evaluate_domain(
    key: tuple, strata: list[_Stratum], n_spk_dom: int | None, ctx: _Context, rng: np.random.Generator
) -> _DomainResult:
    prefix = dict(zip(ctx.domain_cols, key, strict=True))
    sens = ctx.sensitive
    labels, c = ctx.labels, len(ctx.labels)
    cm = sum(s.cm for s in strata)
    boot = sum(s.boot for s in strata) if ctx.n_boot else None
    n_dom = sum(s.n for s in strata)
    by_domain = pd.DataFrame(_metric_rows(cm, boot, n_dom, n_spk_dom, None, ctx, prefix))

    groups = [s for s in strata if s.level != _UNKNOWN]
    by_group = []
    for s in groups:
        n_clusters = s.unit_cm.shape[0]
        by_group += _metric_rows(s.cm, s.boot, s.n, s.n_speakers, n_clusters, ctx, {**prefix, sens: s.level})

    confusion = [
        {**prefix, sens: s.level, "true": labels[t], "pred": labels[p], "count": float(s.cm[t, p])}
        for s in strata
        if s.n > 0 or s.level != _UNKNOWN
        for t in range(c)
        for p in range(c)
    ]

    # Which groups take part in the gaps, and why not.
    eligible = [s for s in groups if s.n >= ctx.min_samples]
    present = [s for s in groups if s.n > 0]
    reason = ""
    if n_dom < ctx.min_samples:
        reason = f"domain has n={n_dom} < min_samples={ctx.min_samples}"
    elif len(present) < 2:
        only = present[0].level if present else "none"
        reason = f"one {sens} only ({only}): no gap"
    elif len(eligible) < 2:
        small = ", ".join(f"{s.level} n={s.n}" for s in present if s.n < ctx.min_samples)
        reason = f"{small} < min_samples={ctx.min_samples}: no gap"
    excluded = [s for s in present if s.n < ctx.min_samples]
    if not reason and excluded:
        reason = "excluded from the gap: " + ", ".join(
            f"{s.level} n={s.n} < min_samples={ctx.min_samples}" for s in excluded
        )
    few_clusters = [s for s in eligible if s.unit_cm.shape[0] < 2]
    ci_reason = (
        "CI undefined: " + ", ".join(f"{s.level} has {s.unit_cm.shape[0]} {ctx.unit}" for s in few_clusters)
        if few_clusters
        else ""
    )

    gap_obs: dict[str, float] = {}
    gap_boot: dict[str, np.ndarray] = {}
    gap_perm: dict[str, np.ndarray] = {}
    gaps, per_class = [], []
    if len(eligible) >= 2 and n_dom >= ctx.min_samples:
        g_cm = np.stack([s.cm for s in eligible])  # (G, C, C)
        g_boot = np.stack([s.boot for s in eligible], axis=1) if ctx.n_boot and not few_clusters else None
        g_perm = None
        if ctx.n_perm:
            unit_cm = np.concatenate([s.unit_cm for s in eligible])
            unit_group = np.repeat(np.arange(len(eligible)), [s.unit_cm.shape[0] for s in eligible])
            g_perm = permutation_confusion(
                unit_cm, unit_group, n_groups=len(eligible), n_perm=ctx.n_perm, rng=rng
            )
        signed = len(eligible) == 2 and len(ctx.levels) == 2
        stats = {name: _metric_gap_fn(fn) for name, fn in METRICS.items()} | {
            name: (fn, None) for name, fn in FAIRNESS_GAPS.items()
        }
        for name, (gap_fn, signed_fn) in stats.items():
            obs = float(gap_fn(g_cm))
            b = gap_fn(g_boot) if g_boot is not None else None
            p = gap_fn(g_perm) if g_perm is not None else None
            low, high = _ci(b, ctx)
            s_obs, s_low, s_high = math.nan, math.nan, math.nan
            if signed and signed_fn is not None:
                s_obs = float(signed_fn(g_cm))
                s_low, s_high = _ci(signed_fn(g_boot) if g_boot is not None else None, ctx)
            pval = float(permutation_p_value(obs, p)) if p is not None else math.nan
            row_reason = "; ".join(r for r in (reason, ci_reason) if r)
            if math.isnan(obs):
                row_reason = "; ".join(
                    r for r in (row_reason, "undefined (a rate is 0/0 in every class)") if r
                )
            gaps.append(
                {
                    **prefix,
                    "metric": name,
                    "gap": obs,
                    "signed_gap": s_obs,
                    "ci_low": low,
                    "ci_high": high,
                    "signed_ci_low": s_low,
                    "signed_ci_high": s_high,
                    "p_value": pval,
                    "reason": row_reason,
                }
            )
            gap_obs[name] = obs
            gap_boot[name] = b if b is not None else np.full(max(ctx.n_boot, 1), np.nan)
            gap_perm[name] = p if p is not None else np.full(max(ctx.n_perm, 1), np.nan)
        per_class = _per_class_rows(
            prefix, eligible, g_cm, g_boot, ctx, "; ".join(r for r in (reason, ci_reason) if r)
        )
    else:
        for name in GAP_METRICS:
            gaps.append(
                {
                    **prefix,
                    "metric": name,
                    "gap": math.nan,
                    "signed_gap": math.nan,
                    "ci_low": math.nan,
                    "ci_high": math.nan,
                    "signed_ci_low": math.nan,
                    "signed_ci_high": math.nan,
                    "p_value": math.nan,
                    "reason": reason,
                }
            )
        per_class = _per_class_rows(prefix, [], None, None, ctx, reason)

    return _DomainResult(
        key=key,
        cm=cm,
        boot=boot,
        by_domain=by_domain,
        by_group=pd.DataFrame(by_group, columns=[*ctx.domain_cols, sens, *_METRIC_COLUMNS]),
        gaps=pd.DataFrame(gaps, columns=[*ctx.domain_cols, *_GAP_COLUMNS]),
        per_class=pd.DataFrame(per_class),
        confusion=pd.DataFrame(confusion),
        gap_obs=gap_obs,
        gap_boot=gap_boot,
        gap_perm=gap_perm,
    )


def _metric_gap_fn(fn):
    """(gap, signed gap) functions of (..., G, C, C) arrays for a metric of (..., C, C) arrays."""
    return (lambda g: group_gap(fn(g), axis=-1)), (lambda g: fn(g[..., 1, :, :]) - fn(g[..., 0, :, :]))


def _per_class_rows(prefix, eligible, g_cm, g_boot, ctx: _Context, reason: str) -> list[dict]:
    rows = []
    names = {"tpr": true_positive_rate_from_confusion, "fpr": false_positive_rate_from_confusion}
    names["sp"] = selection_rate_from_confusion
    obs = {k: fn(g_cm) for k, fn in names.items()} if g_cm is not None else {}  # (G, C)
    gaps = {k: group_gap(v, axis=-2) for k, v in obs.items()}  # (C,)
    boot_gaps = {}
    if g_boot is not None:
        boot_gaps = {k: group_gap(fn(g_boot), axis=-2) for k, fn in names.items()}  # (B, C)
    if gaps:
        gaps["eodds"] = np.maximum(gaps["tpr"], gaps["fpr"])
        if boot_gaps:
            boot_gaps["eodds"] = np.maximum(boot_gaps["tpr"], boot_gaps["fpr"])
    for ci_, label in enumerate(ctx.labels):
        row = {**prefix, "class": label}
        for gi, s in enumerate(eligible):
            row[f"n_{s.level}"] = float(g_cm[gi, ci_].sum())
            for k in names:
                row[f"{k}_{s.level}"] = float(obs[k][gi, ci_])
        undefined = []
        for k in ("tpr", "fpr", "sp", "eodds"):
            value = float(gaps[k][ci_]) if gaps else math.nan
            low, high = _ci(boot_gaps[k][:, ci_] if boot_gaps else None, ctx)
            row.update({f"{k}_gap": value, f"{k}_gap_ci_low": low, f"{k}_gap_ci_high": high})
            if gaps and math.isnan(value) and k != "eodds":
                undefined.append(k)
        extra = (
            f"{'/'.join(undefined)} undefined: a group has no sample of the needed kind" if undefined else ""
        )
        row["reason"] = "; ".join(r for r in (reason, extra) if r)
        rows.append(row)
    return rows


def _summary(results: list[_DomainResult], domains: list[tuple], ctx: _Context) -> pd.DataFrame:
    rows = []
    for name in GAP_METRICS:
        valid = [r for r in results if not math.isnan(r.gap_obs.get(name, math.nan))]
        row: dict[str, Any] = {"metric": name, "n_domains": len(valid), "n_domains_total": len(domains)}
        if not valid:
            row.update(
                {k: math.nan for k in _SUMMARY_VALUES},
                worst_domain=None,
                reason="no domain has a defined gap",
            )
            rows.append(row)
            continue
        obs = np.array([r.gap_obs[name] for r in valid])
        boot = np.stack([r.gap_boot[name] for r in valid], axis=-1)  # (B, D)
        perm = np.stack([r.gap_perm[name] for r in valid], axis=-1)  # (P, D)
        worst = int(np.argmax(obs))
        for kind, agg in (("mean", np.mean), ("worst", np.max)):
            low, high = _ci(agg(boot, axis=-1) if ctx.n_boot else None, ctx)
            value = float(agg(obs))
            pval = float(permutation_p_value(value, agg(perm, axis=-1))) if ctx.n_perm else math.nan
            row.update(
                {
                    f"{kind}_gap": value,
                    f"{kind}_gap_ci_low": low,
                    f"{kind}_gap_ci_high": high,
                    f"{kind}_gap_p_value": pval,
                }
            )
        row["worst_domain"] = _domain_label(valid[worst].key)
        skipped = len(domains) - len(valid)
        row["reason"] = f"{skipped} domain(s) without a defined gap left out" if skipped else ""
        rows.append(row)
    columns = ["metric", *_SUMMARY_VALUES[:4], "worst_domain", *_SUMMARY_VALUES[4:], "n_domains"]
    return pd.DataFrame(rows)[[*columns, "n_domains_total", "reason"]]


_SUMMARY_VALUES = tuple(
    f"{kind}_gap{suffix}" for kind in ("mean", "worst") for suffix in ("", "_ci_low", "_ci_high", "_p_value")
)

"""Bias risk of the training data, before training: how differently emotions are distributed across the values
of the sensitive attribute (gender by default) in the training split (METHODS.md §5, "Training-data bias
risk").

Lin, Wu, Chou, Lee & Lee (2024, "Emo-bias", Interspeech) trained SSL-based SER models at scale and found that
gender-wise differences in the training data's emotion distribution affect the resulting gender bias more than
the upstream encoder does. This module measures that difference, per language (and per corpus where a
language pools several): for each value ``v`` of the attribute, the emotion distribution ``P_v(y)`` of the
training rows, and the **Jensen-Shannon divergence** between them,

    JSD(P, Q) = ½ KL(P ‖ M) + ½ KL(Q ‖ M),  M = ½ (P + Q),  in bits (base 2), so 0 ≤ JSD ≤ 1,

computed as ``scipy.spatial.distance.jensenshannon(P, Q, base=2) ** 2`` (scipy returns the JS *distance*, the
square root of the divergence). With more than two values the table reports the **largest pairwise JSD** and
the pair that gives it **(our choice)**: it stays in [0, 1] whatever the number of values, so it reads like the
two-value case, and it names the pair (the generalised JSD over k values grows up to log2 k).

The numbers are descriptive only: counts, shares and divergences, no threshold and no verdict. Rows whose
value is unknown (missing, ``unknown``, or unknown in any part of an intersection; :mod:`fairser.grouping`)
are left out of the distributions and counted in ``n_unknown``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon

from fairser.data.labels import CORE4, MELD_EMOTIONS
from fairser.grouping import INTERSECTION_SEP, UNKNOWN, sensitive_values, value_names

__all__ = ["JS_BASE", "DataRisk", "js_divergence", "read_data_risk", "training_data_risk"]

#: Logarithm base of the Jensen-Shannon divergence (bits: the divergence lies in [0, 1]).
JS_BASE = 2
_SCOPE_COLUMNS = ["language", "corpus", "scope"]


def js_divergence(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon divergence of two distributions (counts or shares; each is normalised), base 2.

    ``scipy.spatial.distance.jensenshannon(p, q, base=2) ** 2``: 0 for equal distributions, 1 for disjoint ones.
    """
    return float(jensenshannon(np.asarray(p, dtype=float), np.asarray(q, dtype=float), base=JS_BASE) ** 2)


def _label_order(labels: Sequence[str] | None, present: set[str]) -> tuple[str, ...]:
    """The emotions the distributions run over: ``labels`` (plus any other present, sorted), else a known
    label set's order when it covers every present label, else the present labels sorted."""
    if labels is not None:
        labels = tuple(labels)
        return labels + tuple(sorted(present - set(labels)))
    for known in (MELD_EMOTIONS, CORE4):
        if present <= set(known):
            return tuple(known)
    return tuple(sorted(present))


@dataclass(frozen=True)
class DataRisk:
    """The gender-wise (or any attribute's) emotion distributions of a training split and their JS divergence.

    ``table`` has one row per (scope, value): ``language, corpus, scope`` (``language``: every corpus of the
    language pooled, their names joined by ``+``; ``corpus``: one corpus of a language that has several),
    ``attribute, value, split, n, n_speakers``, one ``n_<emotion>`` count and one ``share_<emotion>`` share
    (of the value's ``n``; NaN when ``n == 0``) per emotion, then, repeated on every row of the scope,
    ``n_unknown`` (rows of the scope whose value is unknown, left out), ``js_divergence`` (base 2; the largest
    pairwise one with more than two values), ``js_pair`` (the two values it compares) and ``reason`` (why the
    divergence is undefined, else empty).
    """

    attribute: str
    values: tuple[str, ...]
    labels: tuple[str, ...]
    split: str | None
    table: pd.DataFrame

    # ------------------------------------------------------------------------------------------ views
    def scopes(self) -> pd.DataFrame:
        """One row per scope: ``language, corpus, scope, n_<value>…, n_unknown, js_divergence, js_pair,
        reason``."""
        if self.table.empty:
            return pd.DataFrame(columns=[*_SCOPE_COLUMNS, "n_unknown", "js_divergence", "js_pair", "reason"])
        counts = self.table.pivot_table(
            index=_SCOPE_COLUMNS, columns="value", values="n", aggfunc="sum", sort=False
        )
        counts = counts[[v for v in self.values if v in counts.columns]].add_prefix("n_").reset_index()
        counts.columns.name = None
        first = self.table.drop_duplicates(_SCOPE_COLUMNS)[
            [*_SCOPE_COLUMNS, "n_unknown", "js_divergence", "js_pair", "reason"]
        ]
        return counts.merge(first, on=_SCOPE_COLUMNS, how="left")

    def per_language(self) -> pd.DataFrame:
        """The scopes that pool each language (one row per language)."""
        s = self.scopes()
        return s[s["scope"] == "language"].reset_index(drop=True)

    def to_text(self) -> str:
        """A compact plain-text table per scope: n per value, the emotion distributions in %, JS divergence."""
        what = "all rows" if self.split is None else f"split {self.split!r}"
        head = (
            f"Training-data bias risk ({what}; {self.attribute}): emotion distribution (%) per value\n"
            f"and their Jensen-Shannon divergence (base {JS_BASE}: 0 = same distribution, 1 = disjoint"
            + ("; the largest pairwise one" if len(self.values) > 2 else "")
            + "); unknown values left out and counted."
        )
        if self.table.empty:
            return head + f"\n  no rows in {what}: nothing to compare"
        lines = [head]
        for _, sub in self.table.groupby(_SCOPE_COLUMNS, sort=False):
            r0 = sub.iloc[0]
            js = r0["js_divergence"]
            js_text = f"{js:.4f}" if np.isfinite(js) else f"undefined ({r0['reason']})"
            pair = f" ({r0['js_pair']})" if len(self.values) > 2 and r0["js_pair"] else ""
            where = f"language {r0['language']}" + (
                f", corpus {r0['corpus']}" if r0["scope"] == "corpus" else f" ({r0['corpus']})"
            )
            lines.append("")
            lines.append(
                f"{where}: JS divergence {js_text}{pair}; {int(r0['n_unknown'])} utterance(s) of unknown "
                f"{self.attribute} left out"
            )
            shown = pd.DataFrame(
                {
                    self.attribute: sub["value"].to_numpy(),
                    "n": sub["n"].astype(int).to_numpy(),
                    "speakers": sub["n_speakers"].astype(int).to_numpy(),
                    **{
                        e: ["–" if not np.isfinite(x) else f"{100 * x:.1f}" for x in sub[f"share_{e}"]]
                        for e in self.labels
                    },
                }
            )
            lines += ["  " + line for line in shown.to_string(index=False).splitlines()]
        return "\n".join(lines)

    def write(self, path: str | Path) -> Path:
        """Write :attr:`table` as CSV (``data_risk.csv`` in a benchmark folder)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.table.to_csv(path, index=False)
        return path


def read_data_risk(path: str | Path) -> DataRisk:
    """Read a table written by :meth:`DataRisk.write`."""
    text = ("language", "corpus", "scope", "attribute", "value", "split", "js_pair", "reason")
    table = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=dict.fromkeys(text, str))
    for col in text:
        table[col] = table[col].fillna("").astype(str)
    labels = tuple(c[len("share_") :] for c in table.columns if c.startswith("share_"))
    split = str(table["split"].iloc[0]) if len(table) else "all"
    return DataRisk(
        attribute=str(table["attribute"].iloc[0]) if len(table) else "",
        values=tuple(dict.fromkeys(table["value"])),
        labels=labels,
        split=None if split == "all" else split,
        table=table,
    )


def _scope_rows(
    rows: pd.DataFrame,
    names: np.ndarray,
    *,
    values: tuple[str, ...],
    labels: tuple[str, ...],
    base: dict[str, object],
) -> list[dict[str, object]]:
    """The per-value rows of one scope (``rows`` its training rows, ``names`` their attribute values)."""
    emotion = rows["emotion"].astype(str).to_numpy()
    speaker = rows["speaker"].astype(str).to_numpy()
    counts = {v: np.array([np.sum((names == v) & (emotion == e)) for e in labels], dtype=int) for v in values}
    present = [v for v in values if counts[v].sum() > 0]
    js, pair, reason = float("nan"), "", ""
    if len(present) < 2:
        reason = f"{'only ' + repr(present[0]) if present else 'no known value'} in the training rows"
    else:
        pairs = [(a, b, js_divergence(counts[a], counts[b])) for a, b in combinations(present, 2)]
        a, b, js = max(pairs, key=lambda t: t[2])
        pair = f"{a} vs {b}"
    out = []
    for v in values:
        n = int(counts[v].sum())
        rec: dict[str, object] = {
            **base,
            "value": v,
            "n": n,
            "n_speakers": int(len(set(speaker[names == v]))),
        }
        rec.update({f"n_{e}": int(c) for e, c in zip(labels, counts[v], strict=True)})
        rec.update(
            {f"share_{e}": (c / n if n else float("nan")) for e, c in zip(labels, counts[v], strict=True)}
        )
        rec.update(
            {
                "n_unknown": int(np.sum(names == UNKNOWN)),
                "js_divergence": js,
                "js_pair": pair,
                "reason": reason,
            }
        )
        out.append(rec)
    return out


def training_data_risk(
    manifest: pd.DataFrame,
    *,
    sensitive: Sequence[str] = ("gender",),
    split: str | None = "train",
    labels: Sequence[str] | None = None,
) -> DataRisk:
    """Per language (and per corpus where a language has several): the emotion distribution of each value of
    the sensitive attribute in the ``split`` rows, and their Jensen-Shannon divergence (base 2).

    Parameters
    ----------
    manifest : DataFrame
        A manifest (columns ``emotion, language, corpus, speaker, split`` and the ``sensitive`` columns).
    sensitive : sequence of str
        The attribute's column(s); two or more = their intersection (:mod:`fairser.grouping`).
    split : str or None
        The rows the model trains on (``"train"``); ``None`` = every row (e.g. cross-validation, where every
        speaker trains in some fold).
    labels : sequence of str, optional
        The emotions, in order (default: the known label set covering the manifest, else sorted).

    Returns
    -------
    DataRisk
        The values are those of the whole manifest in :func:`fairser.grouping.sensitive_values` order, so every
        scope lists the same values (a value absent from a scope has ``n = 0``).
    """
    sensitive = tuple(sensitive)
    attribute = INTERSECTION_SEP.join(sensitive)
    values = sensitive_values(manifest, sensitive)
    lab = _label_order(labels, set(manifest["emotion"].astype(str)))
    rows = manifest if split is None else manifest[manifest["split"].astype(str) == split]
    names = value_names(rows, sensitive)
    recs: list[dict[str, object]] = []
    language = rows["language"].astype(str).to_numpy()
    corpus = rows["corpus"].astype(str).to_numpy()
    split_name = "all" if split is None else split
    for lang in sorted(set(language)):
        in_lang = language == lang
        corpora = sorted(set(corpus[in_lang]))
        scopes = [("language", "+".join(corpora), in_lang)]
        if len(corpora) > 1:
            scopes += [("corpus", c, in_lang & (corpus == c)) for c in corpora]
        for scope, name, mask in scopes:
            base = {
                "language": lang,
                "corpus": name,
                "scope": scope,
                "attribute": attribute,
                "split": split_name,
            }
            recs += _scope_rows(rows[mask], names[mask], values=values, labels=lab, base=base)
    columns = [
        *_SCOPE_COLUMNS,
        "attribute",
        "value",
        "split",
        "n",
        "n_speakers",
        *(f"n_{e}" for e in lab),
        *(f"share_{e}" for e in lab),
        "n_unknown",
        "js_divergence",
        "js_pair",
        "reason",
    ]
    return DataRisk(
        attribute=attribute, values=values, labels=lab, split=split, table=pd.DataFrame(recs, columns=columns)
    )

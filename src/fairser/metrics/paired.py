"""The change of a metric and of its gender gap between two conditions of the *same* test set (clean vs
degraded audio), with a paired speaker-level bootstrap CI and a paired permutation p-value (METHODS.md §6).

Both conditions score the same utterances of the same speakers, so the change is estimated pairwise:

* **Paired cluster bootstrap** (Field & Welsh 2007): draw speakers with replacement within each gender
  stratum and take *both* conditions' confusion matrices of the drawn speakers, so each resample's change
  compares like with like. With several seeds (models) on one test set, each resample averages the change
  over the seeds.
* **Paired permutation test** (Good 2005): under H0 the condition does not matter, so swapping a speaker's
  clean and degraded predictions leaves the distribution unchanged; ``p`` counts swaps (all seeds of a
  speaker at once) whose change is at least as large in absolute value as the observed one (never 0).
  That is the null of a metric's change (W-F1, UAR, one gender's W-F1). For the change of a **gap** the
  question is whether the condition hurts the groups *alike* (no interaction), not whether it matters at
  all: a large main effect makes clean/degraded swaps shift the groups unevenly, which would drown any
  interaction. So a gap's null shuffles the speakers' group labels instead (each speaker's clean and
  degraded predictions, all seeds, stay together), keeping the main effect.

Everything is a function of per-speaker confusion matrices, so all resamples are one matrix product.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fairser.metrics.classification import (
    encode_labels,
    recall_from_confusion,
    uar_from_confusion,
    weighted_f1_from_confusion,
)
from fairser.metrics.fairness import group_gap
from fairser.metrics.resampling import cluster_confusion, percentile_ci, permutation_p_value

__all__ = ["PairedDelta", "paired_delta"]


class PairedDelta:
    """Result of :func:`paired_delta`: ``summary`` (one row per metric) and ``per_class`` (recall per class
    and group: clean, degraded, change and its CI)."""

    def __init__(self, summary: pd.DataFrame, per_class: pd.DataFrame) -> None:
        self.summary, self.per_class = summary, per_class

    def row(self, metric: str) -> dict:
        return self.summary.set_index("metric").loc[metric].to_dict()


def _speaker_cms(frames, *, labels, speakers):
    """(S, K, C, C) per-seed, per-speaker confusion matrices in the order of ``speakers``."""
    c = len(labels)
    out = np.zeros((len(frames), len(speakers), c, c))
    index = {s: i for i, s in enumerate(speakers)}
    for s, f in enumerate(frames):
        cm, keys = cluster_confusion(
            encode_labels(f["y_true"], labels=labels), encode_labels(f["y_pred"], labels=labels),
            f["speaker"].astype(str).to_numpy(), n_classes=c,
        )  # fmt: skip
        out[s, [index[k] for k in keys]] = cm
    return out


def paired_delta(
    *,
    clean: Sequence[pd.DataFrame],
    degraded: Sequence[pd.DataFrame],
    labels: Sequence[str],
    sensitive: str = "gender",
    values: Sequence[str] = ("male", "female"),
    n_boot: int = 1000,
    n_perm: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> PairedDelta:
    """Change (degraded - clean) of W-F1, UAR and their gender gaps on one test set, paired by speaker.

    Parameters
    ----------
    clean, degraded : sequences of predictions tables
        One pair per model (seed); every table has ``y_true, y_pred, speaker`` and the ``sensitive`` column,
        and the two tables of a pair hold the same utterances (checked by ``id`` where present).
    labels : the classes.
    sensitive, values : the column whose ``values`` form the gap's groups (other values, e.g. ``unknown``,
        count in the overall metrics and in no group).
    n_boot, n_perm, ci, seed : resampling settings.

    Returns
    -------
    PairedDelta
        ``summary``: metric (``weighted_f1``, ``uar``, ``weighted_f1_gap``, ``uar_gap``, for two groups
        ``weighted_f1_signed_gap`` (W-F1 of ``values[1]`` minus ``values[0]``; its change tests, with the
        shuffled-group null, whether the condition costs one group more), ``weighted_f1_<value>``
        per value), clean, degraded,
        delta, ci_low, ci_high, p_value, n_speakers, n; ``per_class``: label, group, recall_clean,
        recall_degraded, delta, ci_low, ci_high, n and, for two groups, ``delta_vs_other`` (this group's recall
        change minus the other group's: the class x condition x group interaction) with its CI and p-value
        (group labels shuffled among speakers, as for the gaps).
    """
    if len(clean) != len(degraded) or not clean:
        raise ValueError("paired_delta: give one degraded table per clean table (at least one)")
    for a, b in zip(clean, degraded, strict=True):
        if len(a) != len(b) or ("id" in a and not np.array_equal(a["id"].to_numpy(), b["id"].to_numpy())):
            raise ValueError("paired_delta: a clean and a degraded table hold different utterances")
        if not np.array_equal(a["speaker"].astype(str).to_numpy(), b["speaker"].astype(str).to_numpy()):
            raise ValueError("paired_delta: a clean and a degraded table hold different speakers")
    labels, values = list(labels), [str(v) for v in values]
    first = clean[0]
    speakers = np.array(sorted(set(first["speaker"].astype(str))))
    gender_of = first.groupby(first["speaker"].astype(str))[sensitive].first()
    spk_group = np.array([list(values).index(g) if g in values else -1 for g in gender_of.loc[speakers]])
    cm_c = _speaker_cms(clean, labels=labels, speakers=speakers)  # (S, K, C, C)
    cm_d = _speaker_cms(degraded, labels=labels, speakers=speakers)
    n_seeds, k, c = cm_c.shape[0], len(speakers), len(labels)
    n_groups = len(values)
    rng = np.random.default_rng(seed)
    # bootstrap weights (B, K): speakers drawn with replacement within each gender stratum
    counts = np.zeros((n_boot, k))
    for g in np.unique(spk_group):
        members = np.flatnonzero(spk_group == g)
        counts[:, members] = rng.multinomial(
            members.size, np.full(members.size, 1 / members.size), size=n_boot
        )
    member = (spk_group[None, :] == np.arange(n_groups)[:, None]).astype(float)  # (G, K)

    flat_c = cm_c.reshape(n_seeds, k, c * c)
    flat_d = cm_d.reshape(n_seeds, k, c * c)

    def metrics(w_clean: np.ndarray, w_degraded: np.ndarray) -> dict[str, np.ndarray]:
        """Metrics (R, ...) of the confusion ``w_clean @ clean + w_degraded @ degraded`` per speaker weights
        (R, K), averaged over seeds."""
        total = np.einsum("rk,skx->rsx", w_clean, flat_c) + np.einsum("rk,skx->rsx", w_degraded, flat_d)
        groups = np.einsum("rk,gk,skx->rsgx", w_clean, member, flat_c) + np.einsum(
            "rk,gk,skx->rsgx", w_degraded, member, flat_d
        )
        total = total.reshape(-1, n_seeds, c, c)
        groups = groups.reshape(-1, n_seeds, n_groups, c, c)
        with np.errstate(invalid="ignore", divide="ignore"):
            return {
                "weighted_f1": weighted_f1_from_confusion(total).mean(1),
                "uar": uar_from_confusion(total).mean(1),
                "weighted_f1_gap": group_gap(weighted_f1_from_confusion(groups)).mean(1),
                **_signed(weighted_f1_from_confusion(groups), n_groups),
                "uar_gap": group_gap(uar_from_confusion(groups)).mean(1),
                "recall": recall_from_confusion(groups).mean(1),  # (R, G, C)
                **{
                    f"weighted_f1_{v}": weighted_f1_from_confusion(groups[:, :, g]).mean(1)
                    for g, v in enumerate(values)
                },
            }

    ones, zeros = np.ones((1, k)), np.zeros((1, k))
    obs_c, obs_d = metrics(ones, zeros), metrics(zeros, ones)
    no = np.zeros_like(counts)
    boot_c, boot_d = metrics(counts, no), metrics(no, counts)
    # paired permutation: each speaker's clean and degraded predictions swap sides with probability 1/2
    flips = rng.integers(0, 2, size=(n_perm, k)).astype(float)
    perm_c, perm_d = metrics(1 - flips, flips), metrics(flips, 1 - flips)
    # the gaps' null: group labels shuffled among the speakers that have one (no interaction)
    known = np.flatnonzero(spk_group >= 0)
    shuffled_member = np.zeros((n_perm, n_groups, k))
    for r in range(n_perm):
        shuffled = spk_group.copy()
        shuffled[known] = rng.permutation(spk_group[known])
        shuffled_member[r] = shuffled[None, :] == np.arange(n_groups)[:, None]
    gap_null = _group_changes(shuffled_member, flat_c=flat_c, flat_d=flat_d, shape=(n_seeds, n_groups, c))
    recall_null = gap_null.pop("recall")
    rows = []
    signed = ("weighted_f1_signed_gap",) if n_groups == 2 else ()
    for metric in (
        "weighted_f1",
        "uar",
        "weighted_f1_gap",
        "uar_gap",
        *signed,
        *(f"weighted_f1_{v}" for v in values),
    ):
        delta = float(obs_d[metric][0] - obs_c[metric][0])
        low, high = percentile_ci(boot_d[metric] - boot_c[metric], ci=ci)
        null = gap_null[metric] if metric in gap_null else perm_d[metric] - perm_c[metric]
        rows.append({
            "metric": metric, "clean": float(obs_c[metric][0]), "degraded": float(obs_d[metric][0]),
            "delta": delta, "ci_low": float(low), "ci_high": float(high),
            "p_value": float(permutation_p_value(np.array(delta), null)) if n_perm else float("nan"),
            "n_speakers": k, "n": len(first),
        })  # fmt: skip
    rec_c, rec_d = obs_c["recall"][0], obs_d["recall"][0]  # (G, C)
    low, high = percentile_ci(boot_d["recall"] - boot_c["recall"], ci=ci)
    # two groups: a class's recall change of one group minus the other's (the class x condition x group
    # interaction), its CI from the same resamples, its p from the shuffled group labels
    inter = inter_low = inter_high = inter_p = np.full((n_groups, c), np.nan)
    if n_groups == 2:
        boot_delta = boot_d["recall"] - boot_c["recall"]  # (B, G, C)
        obs = (rec_d - rec_c) - (rec_d - rec_c)[::-1]
        inter = obs
        inter_low, inter_high = percentile_ci(boot_delta - boot_delta[:, ::-1], ci=ci)
        null = recall_null - recall_null[:, ::-1]  # (R, G, C)
        inter_p = np.array([[permutation_p_value(np.array(obs[g, j]), null[:, g, j]) if n_perm else np.nan
                             for j in range(c)] for g in range(n_groups)])  # fmt: skip
    per_class = []
    true_idx = encode_labels(first["y_true"], labels=labels)
    group_of_row = first[sensitive].to_numpy()
    for g, value in enumerate(values):
        for j, lab in enumerate(labels):
            per_class.append({
                "label": lab, "group": value, "recall_clean": rec_c[g, j], "recall_degraded": rec_d[g, j],
                "delta": rec_d[g, j] - rec_c[g, j], "ci_low": low[g, j], "ci_high": high[g, j],
                "n": int(((true_idx == j) & (group_of_row == value)).sum()),
                "delta_vs_other": inter[g, j], "delta_vs_other_ci_low": inter_low[g, j],
                "delta_vs_other_ci_high": inter_high[g, j], "delta_vs_other_p": float(inter_p[g, j]),
            })  # fmt: skip
    return PairedDelta(pd.DataFrame(rows), pd.DataFrame(per_class))


def _group_changes(
    member: np.ndarray, *, flat_c: np.ndarray, flat_d: np.ndarray, shape: tuple[int, int, int]
) -> dict[str, np.ndarray]:
    """Change (degraded − clean) of the W-F1 and UAR gaps (R,) and of the recall per group and class
    (``recall``: R, G, C) for each group assignment ``member`` (R, G, K), averaged over seeds; ``flat_*`` are
    the per-speaker confusion matrices (S, K, C·C)."""
    n_seeds, n_groups, c = shape
    with np.errstate(invalid="ignore", divide="ignore"):
        cm_c = np.einsum("rgk,skx->rsgx", member, flat_c).reshape(-1, n_seeds, n_groups, c, c)
        cm_d = np.einsum("rgk,skx->rsgx", member, flat_d).reshape(-1, n_seeds, n_groups, c, c)
        out = {
            f"{name}_gap": group_gap(score(cm_d)).mean(1) - group_gap(score(cm_c)).mean(1)
            for name, score in (("weighted_f1", weighted_f1_from_confusion), ("uar", uar_from_confusion))
        }
        out["recall"] = (recall_from_confusion(cm_d) - recall_from_confusion(cm_c)).mean(1)
        out.update({
            k: v - _signed(weighted_f1_from_confusion(cm_c), n_groups)[k]
            for k, v in _signed(weighted_f1_from_confusion(cm_d), n_groups).items()
        })  # fmt: skip
        return out


def _signed(per_group: np.ndarray, n_groups: int) -> dict[str, np.ndarray]:
    """``weighted_f1_signed_gap``: the second group's W-F1 minus the first's (female − male), seeds averaged,
    for two groups; its change is the condition × gender interaction with its sign (which gender lost more)."""
    if n_groups != 2:
        return {}
    return {"weighted_f1_signed_gap": (per_group[..., 1] - per_group[..., 0]).mean(1)}

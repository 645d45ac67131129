"""Benchmark: bootstrap CIs of per-group accuracy and UAR, ours (vectorised) vs fairlearn's MetricFrame.

Run from the repository root::

    .venv/bin/python benchmarks/bench_audit.py                 # 10,000 predictions, 1,000 resamples
    .venv/bin/python benchmarks/bench_audit.py --n-boot 200    # quicker

Data: N random predictions (7 MELD classes, ~65% correct), 6 domains (3 languages x 2 modalities) x 2
genders = 12 groups, 200 speakers (100 per gender). Both contenders compute the 95% percentile CI of
accuracy and UAR (balanced accuracy = mean per-class recall) in each of the 12 groups from ``--n-boot``
utterance-level resamples (fairlearn has no cluster bootstrap; its resamples are drawn from the whole table,
ours within each group, so group sizes differ slightly between the two and the CIs agree only up to Monte
Carlo noise). Timed, in one process, one after the other:

* ``fairlearn``: ``MetricFrame(metrics={accuracy_score, balanced_accuracy_score}, sensitive_features=[domain,
  gender], n_boot=N, ci_quantiles=[0.025, 0.975])``.
* ``ours (same quantities)``: per-group cluster confusion matrices -> ``bootstrap_confusion`` -> metrics.
* ``ours (full audit)``: ``evaluate_predictions(resample="utterance", n_perm=0)``: 4 metrics per group,
  domain and overall, 10 gaps per domain, per-class TPR/FPR/SP gaps, all with CIs.
* ``ours (full audit, speaker bootstrap + 1000 permutations)``: the default ``evaluate_predictions``.

Prints wall and CPU seconds of each, the largest CI-endpoint difference between fairlearn and ours, and the
speed ratio (fairlearn CPU time / ours) last. CPU time is the fairer clock on a shared machine.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from fairser.data.labels import MELD_EMOTIONS
from fairser.metrics import (
    METRICS,
    bootstrap_confusion,
    cluster_confusion,
    encode_labels,
    evaluate_predictions,
    percentile_ci,
)


def make_predictions(n: int, *, n_speakers: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = np.array(MELD_EMOTIONS)
    speaker = rng.integers(0, n_speakers, n)
    gender = np.where(speaker < n_speakers // 2, "male", "female")
    skill = rng.uniform(0.5, 0.8, n_speakers)[speaker]  # speakers differ: utterances of one are correlated
    y_true = rng.integers(0, len(labels), n)
    y_pred = np.where(rng.random(n) < skill, y_true, rng.integers(0, len(labels), n))
    return pd.DataFrame(
        {
            "id": [f"utt{i:05d}" for i in range(n)],
            "y_true": labels[y_true],
            "y_pred": labels[y_pred],
            "gender": gender,
            "language": rng.choice(["en", "de", "ja"], n),
            "modality": rng.choice(["audio", "audio+text"], n),
            "speaker": [f"spk{s:03d}" for s in speaker],
        }
    )


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def fairlearn_cis(df: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # balanced_accuracy warns on resamples lacking a class
        mf = MetricFrame(
            metrics={"accuracy": accuracy_score, "uar": balanced_accuracy_score},
            y_true=df["y_true"],
            y_pred=df["y_pred"],
            sensitive_features=df[["language", "modality", "gender"]],
            n_boot=n_boot,
            ci_quantiles=[0.025, 0.975],
            random_state=seed,
        )
    low, high = mf.by_group_ci
    out = pd.concat({"value": mf.by_group, "ci_low": low, "ci_high": high}, axis=1)
    return out.stack(future_stack=True).rename_axis(["language", "modality", "gender", "metric"])


def our_cis(df: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """The same quantities from the building blocks: one vectorised bootstrap per group, no loop per resample."""
    labels = list(MELD_EMOTIONS)
    t = encode_labels(df["y_true"].to_numpy(), labels=labels)
    p = encode_labels(df["y_pred"].to_numpy(), labels=labels)
    rng = np.random.default_rng(seed)
    rows = []
    for key, idx in df.groupby(["language", "modality", "gender"]).indices.items():
        unit_cm, _ = cluster_confusion(t[idx], p[idx], idx, n_classes=len(labels))  # utterance-level units
        boot = bootstrap_confusion(unit_cm, n_boot=n_boot, rng=rng)
        for name in ("accuracy", "uar"):
            low, high = percentile_ci(METRICS[name](boot))
            rows.append((*key, name, float(METRICS[name](unit_cm.sum(0))), float(low), float(high)))
    cols = ["language", "modality", "gender", "metric", "value", "ci_low", "ci_high"]
    return pd.DataFrame(rows, columns=cols).set_index(cols[:4])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="predictions")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    df = make_predictions(args.n, seed=args.seed)
    n_groups = df.groupby(["language", "modality", "gender"]).ngroups
    print(
        f"{len(df)} predictions, {n_groups} groups, {df.speaker.nunique()} speakers, {args.n_boot} resamples"
    )

    ours, ours_wall, ours_cpu = timed(lambda: our_cis(df, args.n_boot, args.seed))
    print(f"ours (same quantities):            wall {ours_wall:8.3f} s   cpu {ours_cpu:8.3f} s")
    full_kw = dict(labels=list(MELD_EMOTIONS), n_boot=args.n_boot, seed=args.seed)
    _, full_wall, full_cpu = timed(
        lambda: evaluate_predictions(df, resample="utterance", n_perm=0, **full_kw)
    )
    print(f"ours (full audit, utterance):      wall {full_wall:8.3f} s   cpu {full_cpu:8.3f} s")
    _, spk_wall, spk_cpu = timed(lambda: evaluate_predictions(df, n_perm=1000, **full_kw))
    print(f"ours (full audit, speaker + perm): wall {spk_wall:8.3f} s   cpu {spk_cpu:8.3f} s")
    theirs, fl_wall, fl_cpu = timed(lambda: fairlearn_cis(df, args.n_boot, args.seed))
    print(f"fairlearn MetricFrame(n_boot):     wall {fl_wall:8.3f} s   cpu {fl_cpu:8.3f} s")

    joined = ours.merge(theirs, left_index=True, right_index=True, suffixes=("_ours", "_fairlearn"))
    assert len(joined) == 2 * n_groups and joined.notna().all().all(), (
        "the two tables do not cover the same groups"
    )
    value_diff = (joined.value_ours - joined.value_fairlearn).abs().max()
    ci_diff = max((joined[f"{e}_ours"] - joined[f"{e}_fairlearn"]).abs().max() for e in ("ci_low", "ci_high"))
    width = (joined.ci_high_ours - joined.ci_low_ours).mean()
    agree = value_diff < 1e-12 and ci_diff < 0.25 * width
    print(f"point estimates: max |ours - fairlearn| = {value_diff:.2e}")
    print(
        f"95% CI endpoints: max |ours - fairlearn| = {ci_diff:.4f} (mean CI width {width:.4f}); "
        f"agree within a quarter width: {'yes' if agree else 'NO'}"
    )
    print(f"speed ratio, full audit (fairlearn cpu / ours cpu): {fl_cpu / full_cpu:.1f}x")
    print(f"speed ratio, same quantities (fairlearn cpu / ours cpu): {fl_cpu / ours_cpu:.1f}x")


if __name__ == "__main__":
    main()

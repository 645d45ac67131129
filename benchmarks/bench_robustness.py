"""Benchmark: the degraded-feature stage of ``fairser robustness`` against a plain loop over the same library
calls, cold and warm, in one run.

Run from the repository root::

    .venv/bin/python benchmarks/bench_robustness.py                       # 60 EmoDB files, 5 rounds
    .venv/bin/python benchmarks/bench_robustness.py --files 20 --rounds 3  # quicker
    .venv/bin/python benchmarks/bench_robustness.py --jobs 2               # process pools on both sides

For each condition of the smoke config (MP3 16 kbps through PyAV, the G.711 telephone channel through
libsndfile, white noise at 10 dB) the same files are encoded with eGeMAPS in one process (``--jobs N``: N
worker processes on both sides), four ways:

* **plain loop**: ``sha256_file`` (the file's generator is seeded by its content) -> ``load_audio`` ->
  ``condition.apply`` -> ``encode_signal``, features and measures collected in memory and written once at
  the end (two ``np.save``), nothing else (``--jobs N``: the same per file in a ``multiprocessing.Pool(N)``
  whose workers build openSMILE once, ``Pool.map`` over the files);
* **stage, cold (empty cache)**: :func:`fairser.degrade.extract_degraded_features` into an empty cache: it
  hashes the files (and memoises the hashes), degrades, encodes, writes features and measures per file;
* **stage, cold (hashes memoised)**: the same into a cache whose file-hash memo already knows the files, as
  in ``fairser robustness`` after ``fairser benchmark`` extracted the clean features into the same cache;
* **stage, warm**: the same call again on a filled cache: it must extract 0 files.

The stage's features and measures must equal the plain loop's. Plain and the two cold stages run in
``--rounds`` rounds, their order rotated each round (the machine is shared: load drifts); per round the
ratio plain / stage is taken between runs made seconds apart, and the table gives the **median ratio over
rounds with its range**, for wall time and for process CPU time. Goal: >= 0.9 (the stage's caching and
bookkeeping cost at most 10 %).

To tell bookkeeping from noise, the condition and the encoder are wrapped in timers (used alike by both
sides): *other ms/file* = (wall - time inside ``condition.apply`` - time inside ``encode_signal``) / files,
i.e. decoding plus everything that is not the library's work (hashing, cache reads and writes, results);
``stage - plain`` of it is the stage's own overhead, far less noisy than the ratio of two totals (one
process only: with ``--jobs`` the library time is spent in the workers). CPU time is the process's plus its
reaped children's (the pool workers).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
from _common import REPO, load_avg, machine_line, package_line

from fairser.degrade import MEASURES, build_condition, extract_degraded_features, file_rng
from fairser.features import FeatureCache, build_audio_encoder, load_audio, sha256_file

CONDITIONS = [("mp3", {"bitrate_kbps": 16}), ("telephone", {}), ("noise", {"kind": "white", "snr_db": 10})]
SIDES = ("plain", "cold", "cold_memo")


class _TimedCondition:
    """A condition whose ``apply`` adds its wall time to ``seconds`` (same config, so the same cache keys)."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.seconds = inner, inner.name, 0.0

    def config(self):
        return self.inner.config()

    def label(self) -> str:
        return self.inner.label()

    def apply(self, signal, *, sample_rate, rng):
        t0 = time.perf_counter()
        try:
            return self.inner.apply(signal, sample_rate=sample_rate, rng=rng)
        finally:
            self.seconds += time.perf_counter() - t0


class _TimedEncoder:
    """An audio encoder whose ``encode_signal`` adds its wall time to ``seconds``."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.seconds = inner, inner.name, 0.0
        self.sample_rate, self.dim = inner.sample_rate, inner.dim

    @property
    def smile(self):
        return self.inner.smile

    def config(self):
        return self.inner.config()

    def encode_signal(self, signal, *, sample_rate):
        t0 = time.perf_counter()
        try:
            return self.inner.encode_signal(signal, sample_rate=sample_rate)
        finally:
            self.seconds += time.perf_counter() - t0


def _files(n: int) -> list[Path]:
    root = REPO.parent / "shared" / "data" / "emodb"
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".wav", ".flac"))
    if not files:
        raise SystemExit(f"no EmoDB audio under {root}")
    return files[:n]


def _plain(files, condition, encoder, seed: int, out: Path) -> tuple[np.ndarray, np.ndarray]:
    """The loop a user would write by hand: decode, degrade, encode, keep the results, save them once."""
    features, measures = [], []
    for path in files:
        rng = file_rng(seed=seed, content_hash=sha256_file(path))
        signal = load_audio(path, sample_rate=encoder.sample_rate)
        degraded, measured = condition.apply(signal, sample_rate=encoder.sample_rate, rng=rng)
        features.append(encoder.encode_signal(degraded, sample_rate=encoder.sample_rate))
        measures.append([measured.get(k, np.nan) for k in MEASURES])
    features = np.asarray(features, dtype=np.float32)
    measures = np.asarray(measures, dtype=np.float32)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "features.npy", features)
    np.save(out / "measures.npy", measures)
    return features, measures


_W: dict = {}


def _plain_init(condition, encoder) -> None:
    _W.update(condition=condition, encoder=encoder)
    getattr(encoder, "smile", None)  # openSMILE built once per worker


def _plain_one(path: Path, *, seed: int) -> tuple[np.ndarray, list[float]]:
    condition, encoder = _W["condition"], _W["encoder"]
    rng = file_rng(seed=seed, content_hash=sha256_file(path))
    signal = load_audio(path, sample_rate=encoder.sample_rate)
    degraded, measured = condition.apply(signal, sample_rate=encoder.sample_rate, rng=rng)
    vector = encoder.encode_signal(degraded, sample_rate=encoder.sample_rate)
    return vector, [measured.get(k, np.nan) for k in MEASURES]


def _plain_pool(files, condition, encoder, seed: int, out: Path, jobs: int) -> tuple[np.ndarray, np.ndarray]:
    """The same loop in a process pool, as a user would write it."""
    ctx = multiprocessing.get_context()
    with ctx.Pool(jobs, initializer=_plain_init, initargs=(condition, encoder)) as pool:
        results = pool.map(partial(_plain_one, seed=seed), files)
    features = np.asarray([f for f, _ in results], dtype=np.float32)
    measures = np.asarray([m for _, m in results], dtype=np.float32)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "features.npy", features)
    np.save(out / "measures.npy", measures)
    return features, measures


def _stage(files, condition, encoder, cache: FeatureCache, jobs: int = 1):
    return extract_degraded_features(paths=files, condition=condition, encoder=encoder, cache=cache, seed=0,
                                     n_jobs=jobs, progress=False)  # fmt: skip


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _timed(fn, condition: _TimedCondition, encoder: _TimedEncoder, n_files: int) -> tuple[object, dict]:
    condition.seconds = encoder.seconds = 0.0
    w0, c0 = time.perf_counter(), _cpu()
    result = fn()
    wall, cpu = time.perf_counter() - w0, _cpu() - c0
    other = (wall - condition.seconds - encoder.seconds) / n_files * 1000
    return result, {"wall": wall, "cpu": cpu, "other_ms": other}


def _ratio(num: list[float], den: list[float]) -> str:
    r = np.asarray(num) / np.asarray(den)
    return f"**{np.median(r):.2f}x** [{r.min():.2f}, {r.max():.2f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=5, help="rounds of plain + cold stages (order rotated)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (1: all in this process)")
    args = ap.parse_args()
    print(machine_line())
    print(package_line())
    files = _files(args.files)
    n = len(files)
    encoder = _TimedEncoder(build_audio_encoder("egemaps"))
    encoder.encode_signal(np.zeros(16000, np.float32) + 1e-3, sample_rate=16000)  # build openSMILE once
    where = "one process" if args.jobs == 1 else f"{args.jobs} worker processes"
    print(
        f"{n} EmoDB files, eGeMAPS, {where}, seed 0, {args.rounds} rounds; load average at start {load_avg()}"
    )
    rows = []
    for name, params in CONDITIONS:
        condition = _TimedCondition(build_condition(name, **params))
        with tempfile.TemporaryDirectory(prefix="bench_robust_") as tmp:  # imports, codec init, first writes
            _stage(files[:2], condition, encoder, FeatureCache(Path(tmp) / "c"))
            _plain(files[:2], condition, encoder, 0, Path(tmp) / "p")
        runs: dict[str, list[dict]] = {side: [] for side in SIDES}
        warm: list[dict] = []
        warm_extracted = []
        for r in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="bench_robust_") as tmp:
                empty = FeatureCache(Path(tmp) / "empty")
                memo = FeatureCache(Path(tmp) / "memo")
                memo.file_hashes(files)  # what the clean feature stage left in the shared cache
                plain = (
                    partial(_plain, files, condition, encoder, 0, Path(tmp) / "plain")
                    if args.jobs == 1
                    else partial(_plain_pool, files, condition, encoder, 0, Path(tmp) / "plain", args.jobs)
                )
                jobs = {
                    "plain": plain,
                    "cold": partial(_stage, files, condition, encoder, empty, args.jobs),
                    "cold_memo": partial(_stage, files, condition, encoder, memo, args.jobs),
                }
                results = {}
                for side in SIDES[r % 3 :] + SIDES[: r % 3]:
                    results[side], t = _timed(jobs[side], condition, encoder, n)
                    runs[side].append(t)
                feats, meas = results["plain"]
                for side in ("cold", "cold_memo"):
                    np.testing.assert_array_equal(results[side].features, feats)  # the same features
                    np.testing.assert_array_equal(results[side].measures, meas)  # and measures
                    assert results[side].n_extracted == n and not results[side].failures
                res, t = _timed(
                    partial(_stage, files, condition, encoder, memo, args.jobs), condition, encoder, n
                )
                warm.append(t)
                warm_extracted.append(res.n_extracted)
        wall = {side: [t["wall"] for t in runs[side]] for side in SIDES}
        cpu = {side: [t["cpu"] for t in runs[side]] for side in SIDES}
        other = {side: float(np.median([t["other_ms"] for t in runs[side]])) for side in SIDES}
        per_file_ms = np.median(wall["plain"]) / n * 1000
        other_text = (
            " / ".join(f"{other[side]:.2f}" for side in SIDES)
            + f" ({(other['cold'] - other['plain']) / per_file_ms:+.1%} / "
            + f"{(other['cold_memo'] - other['plain']) / per_file_ms:+.1%})"
            if args.jobs == 1
            else "-"
        )
        warm_wall = float(np.median([t["wall"] for t in warm]))
        rows.append(
            f"| {condition.label()} | {np.median(wall['plain']):.2f} "
            f"| {np.median(wall['cold']):.2f} | {_ratio(wall['plain'], wall['cold'])} | {_ratio(cpu['plain'], cpu['cold'])} "
            f"| {np.median(wall['cold_memo']):.2f} | {_ratio(wall['plain'], wall['cold_memo'])} "
            f"| {_ratio(cpu['plain'], cpu['cold_memo'])} "
            f"| {other_text} "
            f"| {warm_wall:.3f} ({np.median(wall['plain']) / warm_wall:.0f}x faster) | {max(warm_extracted)} |"
        )
        print(f"  {condition.label()} done; load average {load_avg()}", flush=True)
    print()
    print("Median over rounds [min, max]; ratio = plain / stage (>= 0.9 wanted); other = wall outside")
    print(
        "condition.apply and encode_signal, ms per file (decoding + hashing + cache + results); in brackets"
    )
    print("the stage's extra 'other' time (cold / memoised) as a share of the plain loop's time per file.")
    print()
    print(
        "| condition | plain s | stage cold s | ratio wall | ratio CPU | stage cold, hashes memoised s "
        "| ratio wall | ratio CPU | other ms/file plain / cold / memoised (stage overhead) | stage warm s | warm extracted |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"load average at end {load_avg()}")


if __name__ == "__main__":
    main()

"""Benchmark: the degraded-feature stage of ``fairser robustness`` against a plain loop over the same library
calls, cold and warm, in one run.

Run from the repository root::

    .venv/bin/python benchmarks/bench_robustness.py                 # 60 EmoDB files (../shared/data/emodb)
    .venv/bin/python benchmarks/bench_robustness.py --files 20      # fewer

For each condition (MP3 16 kbps through PyAV, the G.711 telephone channel through libsndfile, white noise at
10 dB) the same files are encoded with eGeMAPS (one process) three ways, interleaved twice (the best of two
is kept, the machine is shared):

* **stage, cold**: :func:`fairser.degrade.extract_degraded_features` into an empty cache (hashes the files,
  degrades, encodes, writes the features and the measures to the cache);
* **plain loop**: ``load_audio`` -> ``condition.apply`` (the same per-file generator) -> ``encode_signal``,
  nothing else; its features must equal the stage's;
* **stage, warm**: the same call again: it must extract 0 files.

Prints per condition the wall times and the ratio plain / stage-cold (goal >= 0.9: the caching costs at most
10 %), and the warm time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import REPO, load_avg, machine_line, package_line

from fairser.degrade import build_condition, extract_degraded_features, file_rng
from fairser.features import FeatureCache, build_audio_encoder, load_audio, sha256_file

CONDITIONS = [("mp3", {"bitrate_kbps": 16}), ("telephone", {}), ("noise", {"kind": "white", "snr_db": 10})]


def _files(n: int) -> list[Path]:
    root = REPO.parent / "shared" / "data" / "emodb"
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".wav", ".flac"))
    if not files:
        raise SystemExit(f"no EmoDB audio under {root}")
    return files[:n]


def _plain(files, condition, encoder, seed: int) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    out = []
    for path in files:
        signal = load_audio(path, sample_rate=encoder.sample_rate)
        rng = file_rng(seed=seed, content_hash=sha256_file(path))
        degraded, _ = condition.apply(signal, sample_rate=encoder.sample_rate, rng=rng)
        out.append(encoder.encode_signal(degraded, sample_rate=encoder.sample_rate))
    return np.asarray(out, dtype=np.float32), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=60)
    args = ap.parse_args()
    print(machine_line())
    print(package_line())
    files = _files(args.files)
    encoder = build_audio_encoder("egemaps")
    encoder.encode_signal(np.zeros(16000, np.float32) + 1e-3, sample_rate=16000)  # build openSMILE once
    print(f"{len(files)} EmoDB files, eGeMAPS, one process, seed 0; load average at start {load_avg()}")
    print("| condition | plain loop s | stage cold s | ratio plain/stage | stage warm s | warm extracted |")
    print("|---|---|---|---|---|---|")
    for name, params in CONDITIONS:
        condition = build_condition(name, **params)
        warmup = 0.1 * np.random.default_rng(0).standard_normal(8000).astype(np.float32)
        condition.apply(
            warmup, sample_rate=16000, rng=file_rng(seed=0, content_hash="00" * 32)
        )  # imports, codec init
        plain_t, cold_t, warm_t, warm_extracted = [], [], [], []
        for _ in range(2):
            with tempfile.TemporaryDirectory(prefix="bench_robust_") as tmp:
                cache = FeatureCache(Path(tmp) / "cache")
                t0 = time.perf_counter()
                cold = extract_degraded_features(paths=files, condition=condition, encoder=encoder, cache=cache,
                                                 seed=0, n_jobs=1, progress=False)  # fmt: skip
                cold_t.append(time.perf_counter() - t0)
                plain, t = _plain(files, condition, encoder, 0)
                plain_t.append(t)
                np.testing.assert_array_equal(plain, cold.features)  # the same features
                t0 = time.perf_counter()
                warm = extract_degraded_features(paths=files, condition=condition, encoder=encoder, cache=cache,
                                                 seed=0, n_jobs=1, progress=False)  # fmt: skip
                warm_t.append(time.perf_counter() - t0)
                warm_extracted.append(warm.n_extracted)
        p, c = min(plain_t), min(cold_t)
        print(
            f"| {condition.label()} | {p:.2f} | {c:.2f} | {p / c:.2f}x | {min(warm_t):.3f} | {max(warm_extracted)} |"
        )
    print(f"load average at end {load_avg()}")


if __name__ == "__main__":
    main()

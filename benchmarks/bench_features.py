"""Benchmark: our cached eGeMAPS stage vs a plain openSMILE loop over a 2-process pool, same files, one run.

Run from the repository root::

    .venv/bin/python benchmarks/bench_features.py            # 500 files, 2 processes
    .venv/bin/python benchmarks/bench_features.py --n-files 100 --repeats 3

Files: the first N RAVDESS FLACs (sorted) under ../shared/data/ravdess/audio when present, otherwise N
synthetic noise + tone WAVs written to a temporary folder. Both contenders run with a cold feature cache
(ours) in the same process, alternating their order over ``--repeats`` rounds; the OS page cache is
warmed first so neither pays for disk reads the other does not. Prints median-wall files/s of each, the
ratio per CPU-second (robust to other load on a shared machine), then the files/s ratio (ours / plain)
last among the cold-run lines; then a warm run (0 files extracted) and cold vs warm wall time.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import opensmile
import soundfile as sf

from fairser.features import FeatureCache, build_audio_encoder, extract_audio_features

SHARED_RAVDESS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ravdess" / "audio"

_smile: opensmile.Smile | None = None


def _plain_init() -> None:
    global _smile
    _smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals
    )


def _plain_one(path: str) -> np.ndarray:
    return _smile.process_file(path).to_numpy(dtype=np.float32)[0]


def plain_opensmile(paths: list[str], n_jobs: int) -> np.ndarray:
    """The reference: one openSMILE per worker, ``process_file`` per file, ``Pool.map``."""
    with multiprocessing.Pool(n_jobs, initializer=_plain_init) as pool:
        return np.stack(pool.map(_plain_one, paths))


def cpu_seconds() -> float:
    """CPU time of this process plus its finished children (pool workers are joined before we read it)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def synth_files(folder: Path, n: int, *, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        dur = rng.uniform(2.0, 4.0)
        t = np.arange(int(dur * 16000)) / 16000
        f0 = rng.uniform(90, 300) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(1, 5) * t))
        x = 0.3 * np.sin(2 * np.pi * np.cumsum(f0) / 16000) + 0.05 * rng.standard_normal(t.size)
        p = folder / f"synth_{i:04d}.wav"
        sf.write(p, x.astype(np.float32), 16000, subtype="PCM_16")
        paths.append(str(p))
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-files", type=int, default=500)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="alternating cold runs of each; medians reported")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_features_") as tmp:
        tmp = Path(tmp)
        if SHARED_RAVDESS.is_dir():
            paths = [str(p) for p in sorted(SHARED_RAVDESS.rglob("*.flac"))[: args.n_files]]
            source = f"RAVDESS FLACs from {SHARED_RAVDESS}"
        else:
            paths = synth_files(tmp, args.n_files)
            source = "synthetic noise+tone WAVs"
        n = len(paths)
        print(f"{n} files ({source}), {args.n_jobs} processes, {args.repeats} repeat(s)")
        for p in paths:  # warm the page cache for both contenders
            Path(p).read_bytes()

        encoder = build_audio_encoder("egemaps")
        wall = {"plain": [], "ours": []}
        cpu = {"plain": [], "ours": []}
        reference = None
        ours = None

        def run(which: str, r: int) -> None:
            nonlocal reference, ours
            t0, c0 = time.perf_counter(), cpu_seconds()
            if which == "plain":
                reference = plain_opensmile(paths, args.n_jobs)
            else:
                ours = extract_audio_features(
                    paths=paths,
                    encoder=encoder,
                    cache=FeatureCache(tmp / f"cache_{r}"),
                    n_jobs=args.n_jobs,
                    progress=False,
                )
                assert ours.n_extracted == n and not ours.failures, ours.failures[:3]
            wall[which].append(time.perf_counter() - t0)
            cpu[which].append(cpu_seconds() - c0)

        # Alternate the order so that drifting load from other processes hits both contenders alike.
        for r in range(args.repeats):
            for which in ("plain", "ours") if r % 2 == 0 else ("ours", "plain"):
                run(which, r)
            max_diff = float(np.nanmax(np.abs(ours.features - reference)))
            print(
                f"  repeat {r}: plain {wall['plain'][-1]:.2f} s wall / {cpu['plain'][-1]:.2f} s CPU, "
                f"ours {wall['ours'][-1]:.2f} s wall / {cpu['ours'][-1]:.2f} s CPU, "
                f"max |ours - plain| = {max_diff:.3g}"
            )

        plain_fps = n / statistics.median(wall["plain"])
        ours_fps = n / statistics.median(wall["ours"])
        cpu_ratio = statistics.median(cpu["plain"]) / statistics.median(cpu["ours"])
        print(f"plain opensmile pool               : {plain_fps:7.1f} files/s (median wall)")
        print(f"extract_audio_features (cold cache): {ours_fps:7.1f} files/s (median wall)")
        print(f"ratio ours/plain per CPU-second: {cpu_ratio:.3f}")
        print(f"ratio ours/plain files/s: {ours_fps / plain_fps:.3f}")

        t0 = time.perf_counter()
        warm = extract_audio_features(
            paths=paths,
            encoder=encoder,
            cache=FeatureCache(tmp / "cache_0"),
            n_jobs=args.n_jobs,
            progress=False,
        )
        warm_time = time.perf_counter() - t0
        print(f"warm run: {warm.n_extracted} files extracted, {warm.n_cached} from cache")
        cold_time = statistics.median(wall["ours"])
        print(f"cold {cold_time:.2f} s vs warm {warm_time:.3f} s ({cold_time / warm_time:.0f}x faster)")


if __name__ == "__main__":
    main()

"""Benchmark: the default benchmark's corpus + feature stage cold (empty cache) then warm, in one run.

Run from the repository root (after ``make setup``)::

    .venv/bin/python benchmarks/bench_cache.py            # the default corpus (~3,300 utterances)
    .venv/bin/python benchmarks/bench_cache.py --quick    # utterances_per_emotion=1 (~1/5 of it)

``configs/default.yaml`` with ``corpus.path`` and ``features.cache_dir`` pointed at a fresh temporary
folder; ``fairser.bench.runner.prepare_data`` runs twice in this process. The cold run synthesises the
corpus, extracts eGeMAPS for every file (2 processes) and embeds the transcripts with e5; the warm run finds
the corpus complete and every feature vector in the content-addressed cache (sha256 of the file bytes x
encoder fingerprint), so it must extract 0 files and write 0 cache entries. Prints, for each run, the stage
wall times (from ``PreparedData.timings``), the files extracted and the cache entries written, then the cold
vs warm wall time of the feature stage (audio + text) and their ratio last.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import DEFAULT_CONFIG, load_avg, machine_line, package_line, parse_sets, write_config

from fairser.bench.runner import prepare_data
from fairser.config import load_config


def _entries(cache: Path) -> int:
    return sum(1 for _ in cache.rglob("*.npy")) if cache.is_dir() else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="corpus.synth.utterances_per_emotion=1 (~1/5 size)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="nested config override")
    args = ap.parse_args()
    overrides = parse_sets(args.set)
    if args.quick:
        overrides.setdefault("corpus.synth.utterances_per_emotion", 1)

    print(machine_line())
    print(package_line())
    with tempfile.TemporaryDirectory(prefix="bench_cache_") as tmp:
        work = Path(tmp)
        config = load_config(write_config(work / "config.yaml", work=work, overrides=overrides))
        cache = Path(config.features.cache_dir)
        print(
            f"config: {DEFAULT_CONFIG} with corpus in {config.corpus.path}, cache in {cache}"
            + (f", overrides {overrides}" if overrides else "")
        )
        rows = {}
        for which in ("cold", "warm"):
            load = load_avg()
            before = _entries(cache)
            t0 = time.perf_counter()
            prepared = prepare_data(config, progress=False)
            wall = time.perf_counter() - t0
            t = prepared.timings
            rows[which] = {
                "wall": wall,
                "corpus": t["corpus"],
                "audio": t["features_audio"],
                "text": t.get("features_text", 0.0),
                "extracted": int(t["features_audio_extracted"]),
                "written": _entries(cache) - before,
                "n": len(prepared.manifest),
                "load": load,
            }
            r = rows[which]
            print(
                f"{which}: {r['n']} utterances; corpus {r['corpus']:.2f} s, audio features {r['audio']:.2f} s "
                f"({r['extracted']} files extracted), text features {r['text']:.2f} s; "
                f"{r['written']} cache entries written; whole prepare_data {r['wall']:.2f} s "
                f"(load average at start {r['load']})"
            )
    cold, warm = rows["cold"], rows["warm"]
    feat_cold, feat_warm = cold["audio"] + cold["text"], warm["audio"] + warm["text"]
    print(
        f"warm run extracted {warm['extracted']} files and wrote {warm['written']} cache entries "
        + ("(as required: 0)" if warm["extracted"] == 0 and warm["written"] == 0 else "(EXPECTED 0)")
    )
    print(
        f"feature stage (audio + text): cold {feat_cold:.2f} s vs warm {feat_warm:.3f} s; "
        f"corpus + features: cold {cold['wall']:.2f} s vs warm {warm['wall']:.3f} s"
    )
    print(f"ratio cold/warm (feature stage): {feat_cold / feat_warm:.0f}x")


if __name__ == "__main__":
    main()

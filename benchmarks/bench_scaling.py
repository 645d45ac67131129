"""Benchmark: the default `fairser benchmark` at 1x, 2x and 4x the default corpus size; time per utterance.

Run from the repository root (after ``make setup``)::

    .venv/bin/python benchmarks/bench_scaling.py                  # 1x, 2x, 4x: ~7,200 / 14,400 / 28,700 utt.
    .venv/bin/python benchmarks/bench_scaling.py --sizes 1,2      # cheaper
    .venv/bin/python benchmarks/bench_scaling.py --quick          # 1/3-size base corpus, one seed

Each size is a separate, cold ``fairser benchmark`` (empty corpus folder, empty feature cache, fresh output
folder) measured as in ``bench_end_to_end.py`` (``benchmarks/_common.py``). The corpus grows by speakers: the
generator's defaults (:class:`fairser.data.synth.SynthConfig`, or the base config's ``corpus.synth``) times
size for ``speakers_per_gender``, the speaker splits (train/valid/test = 12/4/36 per gender and language in
generator version 4) and the extra test speakers (en 4, ja 16), so every speaker keeps its utterances per
emotion and the bias knobs apply as before (they are fractions of the training split; ``--by utterances``
scales ``utterances_per_emotion`` instead). The grid (2 objectives x 3 seeds x 2 modality settings, 40 epochs
with early stopping, 1000 bootstrap + 1000 permutation resamples) is the default one. ``--quick`` uses
``utterances_per_emotion=1`` as the base size (a third of the default 3) and one seed (4 runs).

Prints, per size, wall and CPU milliseconds per utterance of each stage and overall, then the per-utterance
ratio of the largest to the smallest size last (1.0 = linear cost; wall is inflated by other users' load on
a shared machine, the CPU ratio is the steadier one). Expected time of the full 1,2,4 run on 2 idle cores:
about 7x the end-to-end benchmark (~30 min); on a loaded machine proportionally more.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import yaml
from _common import (
    DEFAULT_CONFIG,
    STAGES,
    CliRun,
    machine_line,
    package_line,
    parse_sets,
    run_cli_benchmark,
    write_config,
)


def _overrides(size: int, *, by: str, quick: bool, extra: dict) -> dict:
    from fairser.data.synth import SynthConfig

    base = yaml.safe_load(DEFAULT_CONFIG.read_text()) or {}
    synth = SynthConfig.model_validate((base.get("corpus") or {}).get("synth") or {})
    upe = 1 if quick else synth.utterances_per_emotion
    out: dict = {}
    if by == "speakers":
        out["corpus.synth.speakers_per_gender"] = size * synth.speakers_per_gender
        out["corpus.synth.split_speakers"] = {
            k: size * v for k, v in synth.split_speakers.model_dump().items()
        }
        out["corpus.synth.extra_test_speakers"] = {k: size * v for k, v in synth.extra_test_speakers.items()}
        out["corpus.synth.utterances_per_emotion"] = upe
    else:
        out["corpus.synth.utterances_per_emotion"] = size * upe
    if quick:
        out["seeds"] = [0]
    out.update(extra)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,2,4", help="comma-separated multiples of the default corpus size")
    ap.add_argument("--by", choices=("speakers", "utterances"), default="speakers", help="what grows")
    ap.add_argument(
        "--quick", action="store_true", help="1/3-size base corpus (utterances_per_emotion=1), seed 0"
    )
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="nested config override")
    args = ap.parse_args()
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        raise SystemExit(f"--sizes must be comma-separated positive integers, got {args.sizes!r}") from None
    if not sizes or sizes[0] < 1:
        raise SystemExit(f"--sizes must be comma-separated positive integers, got {args.sizes!r}")
    extra = parse_sets(args.set)

    print(machine_line())
    print(package_line())
    runs: dict[int, CliRun] = {}
    for size in sizes:
        overrides = _overrides(size, by=args.by, quick=args.quick, extra=extra)
        work = Path(tempfile.mkdtemp(prefix=f"bench_scaling_{size}x_"))
        try:
            config = write_config(work / "config.yaml", work=work, overrides=overrides)
            print(f"\n{size}x: overrides {overrides}", flush=True)
            run = run_cli_benchmark(config, work=work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        runs[size] = run
        print(
            f"{size}x: {run.n_utterances} utterances, wall {run.wall_s:.1f} s, CPU {run.cpu_s:.1f} s, peak PSS "
            f"{run.peak_pss / 2**30:.2f} GiB, load average before {run.load_before}, after {run.load_after}",
            flush=True,
        )

    cols = [*STAGES, "overall"]
    print("\nmilliseconds per utterance, wall (CPU of the process tree in brackets)")
    print(f"{'size':>5s} {'utt.':>6s} " + " ".join(f"{c[:23]:>24s}" for c in cols))
    per_utt: dict[int, dict[str, tuple[float, float]]] = {}
    for size, run in runs.items():
        n = run.n_utterances
        row = {}
        for stage in STAGES:
            st = run.stages.get(stage)
            row[stage] = (1e3 * st["wall_s"] / n, 1e3 * st["cpu_s"] / n) if st else (float("nan"),) * 2
        row["overall"] = (1e3 * run.wall_s / n, 1e3 * run.cpu_s / n)
        per_utt[size] = row
        print(f"{size:4d}x {n:6d} " + " ".join(f"{row[c][0]:11.2f} ({row[c][1]:9.2f})" for c in cols))
    lo, hi = sizes[0], sizes[-1]
    if hi == lo:
        print("one size only: no ratio")
        return
    print(f"\nper-utterance ratio {hi}x/{lo}x by stage (wall / CPU):")
    for c in cols:
        (w0, c0), (w1, c1) = per_utt[lo][c], per_utt[hi][c]
        print(f"  {c:26s} {w1 / w0:6.2f} / {c1 / c0:6.2f}")
    (w0, c0), (w1, c1) = per_utt[lo]["overall"], per_utt[hi]["overall"]
    print(f"per-utterance ratio {hi}x/{lo}x overall (1.0 = linear): wall {w1 / w0:.2f}, CPU {c1 / c0:.2f}")


if __name__ == "__main__":
    main()

"""Benchmark: the default `fairser benchmark` end to end from an empty corpus folder and an empty feature cache.

Run from the repository root (after ``make setup``)::

    .venv/bin/python benchmarks/bench_end_to_end.py
    .venv/bin/python benchmarks/bench_end_to_end.py --set corpus.synth.utterances_per_emotion=1  # ~1/5 size

``configs/default.yaml`` is copied with ``corpus.path``, ``features.cache_dir`` and ``output_dir`` pointed
into a fresh temporary folder, and ``fairser benchmark --config <copy> --quiet`` runs as a child process
(corpus synthesis -> eGeMAPS + e5 features -> 12 training runs in a 2-process pool -> bootstrap evaluation ->
table). Measured from outside (see ``benchmarks/_common.py``): wall time per stage (from ``benchmark.json``),
CPU seconds of the whole process tree (``wait4``), CPU cores used per stage and how many processes were
busy at once (psutil sampling every 0.25 s), peak memory of the process tree (summed PSS, sampled; also the
summed RSS upper bound and the largest single process's max RSS). The goal comparison (<= 5 min and
<= 2 GB on 2 cores) is printed last. On a shared machine wall times grow with the load average, which is
printed before and after; the "idle-machine estimate" divides each stage's CPU seconds by the number of its
processes that were busy at once (at most the core count), i.e. what the stage would take with the cores to
itself, assuming it is CPU-bound.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from _common import (
    DEFAULT_CONFIG,
    fairser_executable,
    machine_line,
    package_line,
    parse_sets,
    run_cli_benchmark,
    write_config,
)

GOAL_WALL_S = 300.0
GOAL_MEM_BYTES = 2 * 2**30


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="base config (default: %(default)s)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="nested override")
    ap.add_argument(
        "--workdir", type=Path, default=None, help="use (and keep) this folder instead of a temp one"
    )
    args = ap.parse_args()
    overrides = parse_sets(args.set)

    cores = len(os.sched_getaffinity(0))
    print(machine_line())
    print(package_line())
    tmp = None
    if args.workdir is None:
        tmp = tempfile.mkdtemp(prefix="bench_e2e_")
        work = Path(tmp)
    else:
        work = args.workdir.resolve()
        if work.exists() and any(work.iterdir()):
            raise SystemExit(f"--workdir {work} is not empty; the benchmark must start from an empty cache")
        work.mkdir(parents=True, exist_ok=True)
    try:
        config = write_config(work / "config.yaml", work=work, base=args.config, overrides=overrides)
        print(
            f"config: {args.config} with corpus/cache/output in {work}"
            + (f", overrides {overrides}" if overrides else "")
        )
        print(f"command: {' '.join(fairser_executable())} benchmark --config {config} --quiet")
        run = run_cli_benchmark(config, work=work)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    n = run.n_utterances
    print(f"\n{n} utterances, {run.meta.get('n_finished')} of {run.meta.get('n_runs')} runs finished")
    print(
        f"load average before {run.load_before}, after {run.load_after}; all cores busy (any process) "
        f"{100 * run.machine_busy:.0f}% of the run"
    )
    head = f"{'stage':30s} {'wall s':>8s} {'share':>6s} {'CPU s':>8s} {'cores':>6s} {'busy procs':>10s} {'procs':>6s} {'peak PSS':>10s} {'idle est s':>10s}"
    print(head)
    print("-" * len(head))
    idle_total = 0.0
    for name, st in run.stages.items():
        busy = st["mean_busy"]
        parallel = min(max(busy if busy == busy else 1.0, 1.0), cores)
        idle = st["cpu_s"] / parallel if st["cpu_s"] > 0.05 * st["wall_s"] else st["wall_s"]
        idle_total += idle
        print(
            f"{name:30s} {st['wall_s']:8.1f} {100 * st['wall_s'] / run.wall_s:5.1f}% {st['cpu_s']:8.1f} "
            f"{st['cores_used']:6.2f} {busy:10.2f} {st['max_procs']:6d} {_gib(st['peak_pss']):>10s} {idle:10.1f}"
        )
    print(
        f"{'whole run (child process)':30s} {run.wall_s:8.1f} {'100%':>6s} {run.cpu_s:8.1f} {run.cpu_s / run.wall_s:6.2f}"
    )
    util = run.cpu_s / run.wall_s / cores
    print(
        f"\nCPU utilisation of the process tree: {run.cpu_s:.1f} CPU s / {run.wall_s:.1f} s wall / {cores} cores = {100 * util:.0f}%"
    )
    tr = run.stages["training_and_evaluation"]
    both = tr["mean_busy"] >= 1.5 and tr["max_procs"] >= 3
    print(
        f"training grid: {tr['max_procs']} processes (main + workers), {tr['mean_busy']:.2f} busy at once on "
        f"average, {tr['cores_used']:.2f} cores used -> independent runs "
        + ("DO run on both cores" if both else "do NOT keep both cores busy")
        + " (cores used < busy processes means other users' load took the rest)"
    )
    print(
        f"memory: peak summed PSS of the tree {_gib(run.peak_pss)} (sampled every 0.25 s); summed RSS "
        f"{_gib(run.peak_rss_sum)} (upper bound, counts shared pages once per process); largest single "
        f"process max RSS {_gib(run.max_rss_single)} (wait4 ru_maxrss)"
    )
    print(f"stage timings from benchmark.json: { {k: round(v, 2) for k, v in run.timings.items()} }")
    print("\ngoal comparison (2 cores):")
    print(
        f"  wall time  {run.wall_s:7.1f} s vs goal <= {GOAL_WALL_S:.0f} s: "
        f"{'MET' if run.wall_s <= GOAL_WALL_S else 'NOT MET'} at load average {run.load_before} "
        f"(idle-machine estimate {idle_total:.0f} s: {'MET' if idle_total <= GOAL_WALL_S else 'NOT MET'})"
    )
    print(
        f"  memory     {_gib(run.peak_pss):>9s} vs goal <= {_gib(GOAL_MEM_BYTES)}: "
        f"{'MET' if run.peak_pss <= GOAL_MEM_BYTES else 'NOT MET'} (summed RSS upper bound {_gib(run.peak_rss_sum)})"
    )
    print(
        f"  ratio wall / goal: {run.wall_s / GOAL_WALL_S:.2f}; peak PSS / goal: {run.peak_pss / GOAL_MEM_BYTES:.2f}"
    )


if __name__ == "__main__":
    main()

"""Shared helpers of the benchmark scripts: machine description, config overrides, a measured CLI run.

``run_cli_benchmark`` runs ``fairser benchmark --config <file> --quiet`` as a child process and measures it
from outside:

* wall time per stage from the ``benchmark.json`` the run writes (``timings_s``);
* CPU time of the whole process tree from ``os.wait4`` (``ru_utime + ru_stime`` of the child and every
  descendant it reaped: eSpeak and openSMILE workers, training workers);
* memory and per-stage CPU use from a psutil sampler (every ``interval`` s) over the live process tree:
  the sum of PSS (proportional set size: a page shared by k processes counts 1/k in each, so forked workers
  are not double counted), the sum of RSS (an upper bound), and the largest single-process RSS
  (``ru_maxrss`` of ``wait4``, exact);
* how many processes of the tree were busy at once during each stage (a process is busy in a sampling
  interval when it used more than 10 % of a core in it).

Stages are placed on the clock from the end: ``benchmark.json`` is written when the ``total`` timer stops,
so its modification time minus ``total`` is when the timed part began.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

__all__ = [
    "REPO",
    "DEFAULT_CONFIG",
    "STAGES",
    "CliRun",
    "TreeSampler",
    "cpu_model",
    "fairser_executable",
    "load_avg",
    "machine_line",
    "package_line",
    "parse_sets",
    "run_cli_benchmark",
    "write_config",
]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "configs" / "default.yaml"
#: Timed stages of ``run_benchmark`` in the order they run (``benchmark.json`` ``timings_s`` keys).
STAGES = ("corpus", "features_audio", "features_text", "training_and_evaluation", "report")
_BUSY = 0.1  # share of one core above which a process counts as busy in a sampling interval


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_avg() -> str:
    """The 1/5/15-minute load averages, formatted."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def machine_line() -> str:
    """One line naming the machine: CPU model, usable cores, memory, load average."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = psutil.virtual_memory().total / 2**30
    return (
        f"machine: {cpu_model()}, {cores} usable cores ({os.cpu_count()} logical), {mem:.1f} GiB RAM, "
        f"Python {platform.python_version()}; load average (1/5/15 min) {load_avg()}"
    )


def package_line() -> str:
    """Which fairser is measured: its source folder, and the git commit (plus local changes) if a checkout."""
    import fairser

    src = Path(fairser.__file__).resolve().parents[1]
    git = ["git", "-C", str(src)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return f"fairser from {src} (not a git checkout)"
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "."], capture_output=True, text=True)
    changes = len(dirty.stdout.splitlines())
    return f"fairser from {src} at commit {head.stdout.strip()}" + (
        f" with {changes} uncommitted change(s) under it" if changes else " (clean)"
    )


def fairser_executable() -> list[str]:
    """The command that runs the ``fairser`` CLI of this interpreter's environment."""
    exe = Path(sys.executable).parent / "fairser"
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("fairser")
    if found:
        return [found]
    raise FileNotFoundError(f"no `fairser` executable beside {sys.executable} or on PATH; run `make setup`")


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[0]"]`` -> ``{"a.b": 1, "c": [0]}`` (values parsed as YAML) for :func:`write_config`."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(
                f"--set expects KEY=VALUE (e.g. corpus.synth.utterances_per_emotion=1), got {item!r}"
            )
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def write_config(
    path: Path, *, work: Path, base: Path = DEFAULT_CONFIG, overrides: dict[str, Any] | None = None
) -> Path:
    """Write ``base`` with corpus, cache and output redirected into ``work`` (plus nested ``overrides``).

    Returns ``path``. The result is validated with ``fairser.config.load_config`` so a bad override fails
    here, naming the field, rather than in the child process.
    """
    from fairser.config import load_config

    data = yaml.safe_load(base.read_text()) or {}
    data.setdefault("corpus", {})["path"] = str(work / "corpus")
    data.setdefault("features", {})["cache_dir"] = str(work / "cache")
    data["output_dir"] = str(work / "out")
    for key, value in (overrides or {}).items():
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    load_config(path)
    return path


@dataclass
class _Sample:
    t: float  # epoch seconds
    cpu: float  # cumulative CPU seconds of the tree
    rss: int  # summed RSS, bytes
    pss: int | None  # summed PSS, bytes (None when this tick did not read it)
    n_procs: int
    n_busy: int


class TreeSampler(threading.Thread):
    """Samples CPU and memory of process ``pid`` and all its descendants until :meth:`stop`.

    Cumulative tree CPU = sum over live processes of ``user + system + children_user + children_system``
    (the ``children_*`` terms hold descendants already reaped), kept monotone.
    """

    def __init__(self, pid: int, *, interval: float = 0.25, pss_every: int = 2) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.interval = interval
        self.pss_every = pss_every
        self.samples: list[_Sample] = []
        self._halt = threading.Event()
        self._last_cpu: dict[int, float] = {}

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def run(self) -> None:
        tick = 0
        last_t = time.time()
        while not self._halt.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                break
            cpu = rss = pss = n = busy = 0
            now = time.time()
            dt = max(now - last_t, 1e-3)
            with_pss = tick % self.pss_every == 0
            seen: dict[int, float] = {}
            for p in procs:
                try:
                    with p.oneshot():
                        ct = p.cpu_times()
                        own = ct.user + ct.system
                        cpu += own + ct.children_user + ct.children_system
                        rss += p.memory_info().rss
                        if with_pss:
                            pss += p.memory_full_info().pss
                except psutil.Error:
                    continue  # exited between listing and reading
                n += 1
                seen[p.pid] = own
                if own - self._last_cpu.get(p.pid, own) > _BUSY * dt:
                    busy += 1
            self._last_cpu = seen
            prev = self.samples[-1].cpu if self.samples else 0.0
            self.samples.append(_Sample(now, max(cpu, prev), rss, pss if with_pss else None, n, busy))
            last_t = now
            tick += 1
            self._halt.wait(self.interval)

    # -- summaries ---------------------------------------------------------------------------------
    def cpu_at(self, t: float) -> float:
        """Cumulative tree CPU seconds at epoch time ``t`` (linear between samples)."""
        s = self.samples
        if not s or t <= s[0].t:
            return s[0].cpu if s else 0.0
        for a, b in zip(s, s[1:], strict=False):
            if a.t <= t <= b.t:
                return a.cpu + (b.cpu - a.cpu) * (t - a.t) / max(b.t - a.t, 1e-9)
        return s[-1].cpu

    def window(self, t0: float, t1: float) -> dict[str, float]:
        """CPU seconds, peak summed PSS/RSS, mean busy processes and max live processes in [t0, t1]."""
        inside = [x for x in self.samples if t0 <= x.t <= t1]
        pss = [x.pss for x in inside if x.pss is not None]
        return {
            "cpu_s": self.cpu_at(t1) - self.cpu_at(t0),
            "peak_pss": max(pss, default=0),
            "peak_rss_sum": max((x.rss for x in inside), default=0),
            "mean_busy": sum(x.n_busy for x in inside) / len(inside) if inside else float("nan"),
            "max_procs": max((x.n_procs for x in inside), default=0),
        }


@dataclass
class CliRun:
    """What :func:`run_cli_benchmark` measured."""

    wall_s: float
    timings: dict[str, float]
    cpu_s: float  # whole tree, from wait4
    max_rss_single: int  # bytes, largest single process of the tree (wait4 ru_maxrss)
    peak_pss: int  # bytes, summed over the live tree (sampled)
    peak_rss_sum: int  # bytes, summed over the live tree (sampled)
    stages: dict[str, dict[str, float]]  # stage -> wall_s, cpu_s, cores_used, mean_busy, max_procs, peak_pss
    n_utterances: int
    meta: dict[str, Any] = field(default_factory=dict)
    load_before: str = ""
    load_after: str = ""
    machine_busy: float = float("nan")  # share of all cores busy (any process) during the run


def run_cli_benchmark(config: Path, *, work: Path, log: Path | None = None, interval: float = 0.25) -> CliRun:
    """Run ``fairser benchmark --config config --quiet`` in a child process and measure it (module doc)."""
    cfg = yaml.safe_load(config.read_text())
    out_dir = Path(cfg["output_dir"])
    log = log or work / "fairser_benchmark.log"
    load_before = load_avg()
    sys_before = psutil.cpu_times()
    with open(log, "w") as fh:
        t0 = time.time()
        proc = subprocess.Popen(
            [*fairser_executable(), "benchmark", "--config", str(config), "--quiet"],
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        sampler = TreeSampler(proc.pid, interval=interval)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        t_end = time.time()
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop()
    sys_after = psutil.cpu_times()
    busy_before = sys_before.user + sys_before.system + sys_before.nice
    busy_after = sys_after.user + sys_after.system + sys_after.nice
    machine_busy = (busy_after - busy_before) / ((t_end - t0) * (os.cpu_count() or 1))
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-30:])
        raise RuntimeError(f"fairser benchmark --config {config} exited with {proc.returncode}:\n{tail}")
    meta_path = out_dir / "benchmark.json"
    meta = json.loads(meta_path.read_text())
    timings = {k: float(v) for k, v in meta["timings_s"].items()}
    if meta.get("failures"):
        raise RuntimeError(f"{len(meta['failures'])} run(s) failed: {meta['failures'][:3]}")

    # Place the stages on the clock (see the module doc), then read the sampler in each window.
    t_total_end = meta_path.stat().st_mtime
    bounds: dict[str, tuple[float, float]] = {
        "startup (imports, config)": (t0, t_total_end - timings["total"])
    }
    cursor = t_total_end - timings["total"]
    for stage in ("corpus", "features_audio", "features_text"):
        if stage in timings:
            bounds[stage] = (cursor, cursor + timings[stage])
            cursor += timings[stage]
    report_start = t_total_end - timings.get("report", 0.0)
    train_start = report_start - timings["training_and_evaluation"]
    if train_start - cursor > 0.05:
        bounds["other (planning, resume check)"] = (cursor, train_start)
    bounds["training_and_evaluation"] = (train_start, report_start)
    bounds["report"] = (report_start, t_total_end)
    bounds["shutdown"] = (t_total_end, t_end)
    stages = {}
    for name, (a, b) in bounds.items():
        w = sampler.window(a, b)
        wall = max(b - a, 1e-9)
        stages[name] = {**w, "wall_s": b - a, "cores_used": w["cpu_s"] / wall}
    manifest = Path(cfg["corpus"]["path"]) / "manifest.csv"
    n_utt = sum(1 for _ in open(manifest)) - 1 if manifest.is_file() else -1
    pss = [s.pss for s in sampler.samples if s.pss is not None]
    return CliRun(
        wall_s=t_end - t0,
        timings=timings,
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_rss_single=usage.ru_maxrss * 1024,
        peak_pss=max(pss, default=0),
        peak_rss_sum=max((s.rss for s in sampler.samples), default=0),
        stages=stages,
        n_utterances=n_utt,
        meta=meta,
        load_before=load_before,
        load_after=load_avg(),
        machine_busy=machine_busy,
    )

"""``python -m fairser.scale benchmark --config CONFIG``: the benchmark grid of a ``backbone:`` config,
on one process or on several under ``accelerate launch`` (each run trained by all processes together).

One process: the same as ``fairser benchmark --config CONFIG``. Several processes: the main process runs
:func:`fairser.bench.runner.run_benchmark` (it alone writes results, predictions and the table) while the
others follow the same list of unfinished runs and take part in each run's training and prediction.
Runs go one after another (``n_jobs`` is set to 1: the processes already share the work of each run).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main", "run_distributed_benchmark"]


def run_distributed_benchmark(config, *, progress: bool = True):
    """Run the grid of ``config`` (which must have a ``backbone`` section) on every launched process.

    Returns the paper table on the main process, ``None`` on the others.
    """
    from accelerate import PartialState
    from rich.console import Console

    from fairser.bench.runner import run_benchmark
    from fairser.results import ResultsStore
    from fairser.run import execute_run, plan_runs, prepare_data
    from fairser.run.preflight import check_grid
    from fairser.scale.loop import launched_on_cpu

    if config.backbone is None:
        raise ValueError("this config has no backbone section; run it with `fairser benchmark`")
    config = config.model_copy(update={"n_jobs": 1})
    state = PartialState(cpu=True) if launched_on_cpu() else PartialState()
    if state.num_processes == 1:
        return run_benchmark(config, progress=progress)
    quiet = Console(quiet=True)
    with state.main_process_first():  # the main process builds the corpus, the others then read it
        prepared = prepare_data(config, progress=False, console=quiet)
    if state.is_main_process:
        return run_benchmark(config, progress=progress)
    # no run can finish before every process has read the store: each run needs all processes
    done = ResultsStore(Path(config.output_dir) / "results.jsonl").finished()
    todo = [spec for spec in plan_runs(config) if spec.run_id not in done]
    check_grid(todo, prepared, config)  # as the main process does: all refuse the grid together
    for spec in todo:
        try:
            execute_run(spec, prepared, config)
        except Exception:  # noqa: BLE001 - the main process records the failure; follow it to the next run
            continue
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fairser.scale", description=__doc__.splitlines()[0].strip("`: ")
    )
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("benchmark", help="run the benchmark grid of a config with a backbone section")
    bench.add_argument("--config", "-c", type=Path, required=True, help="YAML benchmark config")
    bench.add_argument("--output-dir", "-o", type=Path, default=None, help="override the output folder")
    bench.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    from fairser.config import load_config
    from fairser.errors import UserError

    try:
        cfg = load_config(args.config, output_dir=str(args.output_dir) if args.output_dir else None)
        table = run_distributed_benchmark(cfg, progress=not args.quiet)
    except UserError as e:  # one message, exit code 2 (as the fairser command)
        print(f"error: {e}", file=sys.stderr)
        return 2
    failures = [] if table is None else table.attrs.get("failures", [])
    for run_id, error in failures:
        print(f"run failed: {run_id}: {error}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

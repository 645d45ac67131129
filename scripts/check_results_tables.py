"""Re-render a finished benchmark folder's table.md / comparison.md (and their CSVs) with fairser.results
and say whether they are byte-identical to the files the benchmark wrote.

    python scripts/check_results_tables.py results/default

Rows are taken in grid order (as ``run_benchmark`` does); baseline, seeds, data source and objective order
come from the folder's ``config.yaml`` and ``benchmark.json``. Exit status 1 when a file differs.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from fairser.bench.runner import plan_runs
from fairser.config import load_config
from fairser.results import ResultsStore, comparison_table, paper_table, render_comparison, render_table


def main(folder: Path) -> int:
    config = load_config(folder / "config.yaml")
    meta = json.loads((folder / "benchmark.json").read_text())
    planned = {s.run_id: i for i, s in enumerate(plan_runs(config))}
    rows = sorted(
        (
            r
            for r in ResultsStore(folder / "results.jsonl").rows()
            if r["run_id"] in planned and r.get("status") == "ok"
        ),
        key=lambda r: planned[r["run_id"]],
    )
    baseline = config.objectives[0].display
    table = paper_table(rows, baseline=baseline)
    out = {
        "table.md": render_table(
            table, synthetic=meta["synthetic"], source=meta["source"], n_seeds=len(config.seeds)
        ),
        "table.csv": _csv(table),
    }
    if len(config.objectives) > 1 and rows:
        comparison = comparison_table(rows, baseline=baseline, order=[o.display for o in config.objectives])
        out["comparison.md"] = render_comparison(
            comparison, synthetic=meta["synthetic"], source=meta["source"], baseline=baseline
        )
        out["comparison.csv"] = _csv(comparison)
    failed = 0
    for name, text in out.items():
        same = (folder / name).read_text() == text
        failed += not same
        print(f"{name}: {'byte-identical' if same else 'DIFFERENT'} ({len(rows)} runs)")
    return 1 if failed else 0


def _csv(frame) -> str:
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    return buf.getvalue()


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))

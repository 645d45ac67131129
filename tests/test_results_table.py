import math

from fairser.bench.results import ResultsStore
from fairser.bench.table import paper_table, render_table


def _row(obj, seed, gaps, wf1s, setting="audio"):
    return {
        "run_id": f"{setting}-{obj}-{seed}",
        "status": "ok",
        "setting": setting,
        "objective": obj.lower(),
        "objective_label": obj,
        "seed": seed,
        "overall_weighted_f1": sum(wf1s) / len(wf1s),
        "domains": [
            {
                "language": lang,
                "modality": setting,
                "weighted_f1": w,
                "weighted_f1_gap": g,
                "weighted_f1_signed_gap": -g,
            }
            for lang, w, g in zip(["en", "de"], wf1s, gaps, strict=False)
        ],
    }


def test_store_appends_skips_and_removes(tmp_path):
    store = ResultsStore(tmp_path / "r.jsonl")
    store.append({"run_id": "a", "status": "ok", "x": float("nan")})
    store.append({"run_id": "b", "status": "failed"})
    with open(store.path, "a") as f:
        f.write('{"run_id": "c", "sta')  # a line cut by a crash
    assert store.finished() == {"a"}
    assert store.rows()[0]["x"] is None  # NaN stored as null, not as invalid JSON
    assert store.remove("a") == 1
    assert store.finished() == set()


def test_paper_table_means_stds_and_deltas():
    rows = [
        _row("ERM", 0, gaps=[0.10, 0.20], wf1s=[0.6, 0.5]),
        _row("ERM", 1, gaps=[0.20, 0.40], wf1s=[0.7, 0.5]),
        _row("MMG", 0, gaps=[0.05, 0.10], wf1s=[0.6, 0.4]),
        _row("MMG", 1, gaps=[0.05, 0.10], wf1s=[0.6, 0.4]),
    ]
    t = paper_table(rows, baseline="ERM")
    en = t[(t.language == "en")].iloc[0]
    assert math.isclose(en["ERM W-F1"], 0.65)
    assert math.isclose(en["ERM gap"], 0.15)
    assert math.isclose(en["MMG Δ gap"], 0.05 - 0.15)
    worst = t[t.language == "Worst domain"].iloc[0]
    assert math.isclose(worst["ERM gap"], (0.20 + 0.40) / 2)
    overall = t[t.language == "Overall"].iloc[0]
    assert math.isclose(overall["ERM gap"], (0.15 + 0.30) / 2)
    text = render_table(t, synthetic=True, source="x", n_seeds=2)
    assert "SYNTHETIC" in text and "| en | audio | 65.0 ± 7.1 | 15.0 ± 7.1 |" in text

"""A reduced version of configs/real_emodb_ravdess.yaml on the shared real corpora (issue: real corpora).

The corpora are read as distributed; to keep CI fast the test links all of EmoDB and 10 of the 24 RAVDESS
actors into a temporary folder (symlinks, nothing copied into the repository) and trains for a few epochs.
"""

from pathlib import Path

import pandas as pd
import pytest

from fairser.bench.runner import run_benchmark
from fairser.config import BenchmarkConfig, load_config
from fairser.results import ResultsStore, headline_rows

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

RAVDESS_ACTORS = range(1, 11)  # odd actor = male: 5 per gender, like EmoDB


def _subset(tmp_path: Path) -> tuple[Path, Path]:
    if not (SHARED / "emodb").is_dir() or not (SHARED / "ravdess").is_dir():
        pytest.skip(f"shared real corpora not found at {SHARED} (EmoDB, RAVDESS)")
    emodb = tmp_path / "emodb" / "audio"
    emodb.mkdir(parents=True)
    for f in (SHARED / "emodb" / "audio").iterdir():
        (emodb / f.name).symlink_to(f)
    ravdess = tmp_path / "ravdess" / "audio"
    for actor in RAVDESS_ACTORS:
        src = SHARED / "ravdess" / "audio" / f"Actor_{actor:02d}"
        dst = ravdess / src.name
        dst.mkdir(parents=True)
        for f in src.iterdir():
            (dst / f.name).symlink_to(f)
    return tmp_path / "emodb", tmp_path / "ravdess"


def test_real_config_is_the_reduced_one(tmp_path):
    """The shipped config and this test differ only in size (corpus subset, seeds, epochs, resamples)."""
    full = load_config(REPO / "configs" / "real_emodb_ravdess.yaml")
    assert [s.name for s in full.corpus.sources] == ["emodb", "ravdess"]
    assert full.corpus.split == "speaker" and full.languages == ("de", "en")
    assert full.protocol == "kfold" and full.folds == 5  # every speaker tested once, out-of-fold pooled


def test_reduced_real_benchmark_cross_validates_and_pools_with_cis(tmp_path):
    emodb, ravdess = _subset(tmp_path)
    full = load_config(REPO / "configs" / "real_emodb_ravdess.yaml").model_dump(mode="json")
    full.update(
        output_dir=str(tmp_path / "out"),
        modalities=["audio"],
        seeds=[0],
        n_jobs=1,
        train={**full["train"], "epochs": 8, "patience": 8},
        evaluation={**full["evaluation"], "n_boot": 200, "n_perm": 200},
        features={**full["features"], "cache_dir": str(tmp_path / "cache")},
    )
    full["corpus"]["sources"] = [
        {"name": "emodb", "path": str(emodb)},
        {"name": "ravdess", "path": str(ravdess)},
    ]
    cfg = BenchmarkConfig.model_validate(full)
    run_benchmark(cfg, progress=False)
    out = tmp_path / "out"
    all_rows = ResultsStore(out / "results.jsonl").rows()
    assert all(r["status"] == "ok" for r in all_rows)
    assert sum(isinstance(r.get("fold"), int) for r in all_rows) == 2 * 5  # 2 objectives x 5 folds
    rows = headline_rows(all_rows)
    assert len(rows) == 2 and {r["objective_label"] for r in rows} == {"ERM", "ERM-MinMaxGAP"}
    for r in rows:
        assert r["fold"] == "pooled" and r["n_folds"] == 5
        langs = {d["language"] for d in r["domains"]}
        assert langs == {"de", "en"}
        for d in r["domains"]:
            # speaker-level CI around the W-F1 gap, and the gap itself inside it (or a stated reason)
            assert d.get("weighted_f1_gap") is not None, d
            assert d["weighted_f1_ci_low"] <= d["weighted_f1_ci_high"]
            assert 0.0 <= d["weighted_f1_p_value"] <= 1.0
        pred = pd.read_csv(out / "runs" / r["run_id"] / "predictions.csv")
        # pooled out-of-fold: all 5 speakers per gender and corpus, each tested in exactly one fold
        assert (pred.groupby(["language", "gender"])["speaker"].nunique() == 5).all()
        assert (pred.groupby("speaker")["fold"].nunique() == 1).all() and pred["fold"].nunique() == 5
    text = (out / "table.md").read_text()
    assert "| de | audio |" in text and "| en | audio |" in text and "SYNTHETIC" not in text

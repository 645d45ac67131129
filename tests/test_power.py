"""Power analysis (METHODS.md §2, "Power"): the minimum detectable gap of the between-speaker permutation
test, its calibration by independent simulations, the speaker-level variance estimate, the CLI and audit."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import special
from typer.testing import CliRunner

from fairser.audit import Audit, audit_predictions
from fairser.cli import app
from fairser.metrics import permutation_confusion
from fairser.metrics.power import (
    POWER_COLUMNS,
    design_from_predictions,
    design_mdg,
    design_power,
    minimum_detectable_gap,
    planned_design,
    population_gap,
    speakers_needed,
)

# A small design keeps every simulation fast: 5 speakers per gender, 12 utterances each, 4 classes.
SMALL = dict(speakers_per_group=5, utterances_per_speaker=12, spread=0.08, accuracy=0.7, n_classes=4)
SIM = dict(n_sim=400, n_perm=100)


def test_batched_permutation_confusion_keeps_the_single_data_set_stream():
    rng = np.random.default_rng(3)
    unit_cm = rng.integers(0, 4, size=(6, 3, 3)).astype(float)
    group = np.array([0, 0, 0, 1, 1, 1])
    got = permutation_confusion(unit_cm, group, n_groups=2, n_perm=50, rng=np.random.default_rng(0))
    # The formula before batching: one (P, K) label matrix, one product per group.
    permuted = np.random.default_rng(0).permuted(np.tile(group, (50, 1)), axis=1)
    flat = unit_cm.reshape(6, 9)
    want = np.stack([(permuted == g).astype(float) @ flat for g in range(2)], axis=1).reshape(50, 2, 3, 3)
    np.testing.assert_array_equal(got, want)
    batch = rng.integers(0, 4, size=(7, 6, 3, 3)).astype(float)
    out = permutation_confusion(batch, group, n_groups=2, n_perm=20, rng=rng)
    assert out.shape == (7, 20, 2, 3, 3)
    np.testing.assert_array_equal(out.sum(axis=2), np.broadcast_to(batch.sum(axis=1)[:, None], (7, 20, 3, 3)))


def test_population_gap_is_zero_without_shift_and_exact_for_accuracy_without_spread():
    design = planned_design(**{**SMALL, "spread": 0.0})
    assert population_gap(design, shift=0.0) == pytest.approx(0.0, abs=1e-12)
    mu = special.logit(0.7)
    want = special.expit(mu + 0.5) - special.expit(mu - 0.5)
    assert population_gap(design, shift=1.0, metric="accuracy") == pytest.approx(want, rel=1e-6)
    gaps = [population_gap(design, shift=s) for s in (0.2, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(gaps, gaps[1:], strict=False))


def test_planted_gap_at_the_mdg_is_detected_80_percent_of_the_time():
    design = planned_design(**SMALL)
    res = design_mdg(design, seed=0, **SIM)
    assert res.reason == "" and 0 < res.mdg < 0.6
    # Independent simulations (another seed): the power at the MDG is 0.8 within Monte-Carlo error of both
    # this check and the search.
    n_val = 1000
    power, _ = design_power(design, gap=res.mdg, seed=12345, n_sim=n_val, n_perm=SIM["n_perm"])
    tol = 3 * math.sqrt(0.16 / n_val + 0.16 / SIM["n_sim"])
    assert abs(power - 0.8) <= tol, (power, res)
    # Far above the MDG: nearly always; no gap: at about alpha (the test is valid).
    above, _ = design_power(design, gap=2 * res.mdg, seed=7, **SIM)
    assert above >= 0.97
    null, _ = design_power(design, gap=0.0, seed=8, n_sim=n_val, n_perm=SIM["n_perm"])
    assert null <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / n_val)
    assert null >= 0.01


def test_mdg_shrinks_with_more_speakers_and_speakers_needed_reach_the_power():
    small = design_mdg(planned_design(**SMALL), **SIM).mdg
    large = design_mdg(planned_design(**{**SMALL, "speakers_per_group": 12}), **SIM).mdg
    assert large < small
    need = speakers_needed(planned_design(**SMALL), gap=large, **SIM)
    assert need.speakers is not None and need.power >= 0.8
    assert 7 <= need.speakers <= 20  # the 12 speakers that give this MDG, within the search's ~10% steps


def test_too_few_speakers_cannot_reach_significance():
    res = design_mdg(planned_design(**{**SMALL, "speakers_per_group": 3}), **SIM)
    assert math.isnan(res.mdg) and "cannot reach p < 0.05" in res.reason


def _table(*, n_spk, utts, spread, seed=0, classes=("a", "b", "c", "d"), domains=("en", "de"), recall=0.7):
    """A predictions table from the generative model with a known between-speaker SD of accuracy."""
    rng = np.random.default_rng(seed)
    rows = []
    for lang in domains:
        for gender in ("male", "female"):
            for k in range(n_spk):
                acc = float(np.clip(recall + spread * rng.standard_normal(), 0.01, 0.99))
                for i in range(utts):
                    y = classes[rng.integers(len(classes))]
                    wrong = [c for c in classes if c != y]
                    pred = y if rng.random() < acc else wrong[rng.integers(len(wrong))]
                    rows.append(
                        {
                            "id": f"{lang}_{gender}{k}_{i}",
                            "y_true": y,
                            "y_pred": pred,
                            "gender": gender,
                            "language": lang,
                            "modality": "audio",
                            "speaker": f"{lang}_{gender}{k}",
                        }
                    )
    return pd.DataFrame(rows)


def test_speaker_spread_estimate_recovers_the_truth():
    table = _table(n_spk=150, utts=30, spread=0.1, domains=("en",))
    ((_, design, reason),) = design_from_predictions(table)
    assert reason == ""
    assert design.spread == pytest.approx(0.1, abs=0.015)
    assert design.accuracy == pytest.approx(0.7, abs=0.02)
    assert list(design.speakers_per_group) == [150, 150]
    none = _table(n_spk=150, utts=30, spread=0.0, domains=("en",), seed=1)
    assert design_from_predictions(none)[0][1].spread < 0.03


def test_minimum_detectable_gap_per_domain_of_a_table():
    table = _table(n_spk=5, utts=12, spread=0.05)
    one_gender = table[(table.language == "de") & (table.gender == "male")].assign(language="ja")
    table = pd.concat([table, one_gender], ignore_index=True)
    out = minimum_detectable_gap(table, target_gap=0.5, **SIM)
    assert list(out.columns) == ["language", "modality", *POWER_COLUMNS]
    by = out.set_index("language")
    assert set(by.index) == {"de", "en", "ja"}
    for lang in ("de", "en"):
        assert 0 < by.loc[lang, "mdg"] < 0.6 and by.loc[lang, "speakers_per_group"] == "5/5"
        assert by.loc[lang, "power_at_target"] > 0.5 and by.loc[lang, "speakers_needed"] <= 5
    assert math.isnan(by.loc["ja", "mdg"]) and "no gap to test" in by.loc["ja", "reason"]
    with pytest.raises(ValueError, match="unknown metric"):
        minimum_detectable_gap(table, metric="f2", **SIM)


def test_audit_writes_and_reads_the_mdg_column(tmp_path):
    table = _table(n_spk=5, utts=12, spread=0.05)
    audit = audit_predictions(table, n_boot=0, n_perm=100, power=True, power_sims=100, power_perms=50)
    gaps = audit.table("gaps")
    w = gaps[gaps.metric == "weighted_f1"]
    assert w["mdg"].notna().all() and (w["mdg"] > w["mdg_se"]).all()
    assert gaps.loc[gaps.metric != "weighted_f1", "mdg"].isna().all()
    audit.write(tmp_path)
    back = Audit.load(tmp_path).table("gaps")
    np.testing.assert_allclose(back["mdg"].to_numpy(), gaps["mdg"].to_numpy())
    assert (back["mdg_reason"] == "").all()


def test_cli_power_planned_design_and_errors():
    result = CliRunner().invoke(
        app,
        [
            "power",
            "--speakers",
            "5",
            "--utterances",
            "12",
            "--spread",
            "0.08",
            "--classes",
            "4",
            "--sims",
            "100",
        ]
        + ["--perms", "50", "-q"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "minimum detectable weighted_f1 gap" in result.output and "points" in result.output
    bad = CliRunner().invoke(app, ["power", "--speakers", "5"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output and "--utterances" in bad.output


def test_cli_power_and_audit_on_a_table(tmp_path, monkeypatch):
    from rich.console import Console

    monkeypatch.setattr("fairser.cli.console", Console(width=250, force_terminal=False))  # no wrapped cells
    path = tmp_path / "predictions.csv"
    _table(n_spk=5, utts=12, spread=0.05, domains=("en",)).to_csv(path, index=False)
    result = CliRunner().invoke(
        app,
        ["power", str(path), "--gap", "40", "--sims", "100", "--perms", "50", "-q"],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 0, result.output
    assert "en / audio" in result.output and "5/5" in result.output
    audit = CliRunner().invoke(
        app,
        ["audit", str(path), "--n-boot", "0", "--n-perm", "50", "--power-sims", "100", "-q"]
        + ["--relevant-gap", "5", "--out", str(tmp_path / "a")],
        env={"COLUMNS": "250"},
    )
    assert audit.exit_code == 0, audit.output
    assert "MDG" in audit.output and "cannot be detected" in audit.output

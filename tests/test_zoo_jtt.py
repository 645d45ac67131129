"""JTT: the second stage up-weights exactly the training errors of the first (ERM, T epochs) model.

The identification stage is written once (:meth:`JTT.prepare`) and runs through either backend's trainer:
a head on cached features, and a raw-audio backbone (with its error set saved for a resumed run, and the
identification model freed before the main model is built).
"""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest
import torch

from assets.offline import single_thread  # noqa: F401  (fixture)
from fairser.config import TrainConfig
from fairser.models import build_head
from fairser.objectives import GroupBatch, build_objective
from fairser.objectives.jtt import JTT
from fairser.objectives.stages import StageContext
from fairser.run import fit_staged
from fairser.run.backends import HeadTrainer
from fairser.train import ArrayDataset, fit, predict_proba

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("single_thread")


def noisy_data(n: int, *, seed: int) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    audio = rng.normal(size=(n, 6)).astype(np.float32)
    audio[np.arange(n), y] += 1.0  # learnable, but with errors left after a few epochs
    return ArrayDataset(audio=audio, y=y, domain=rng.integers(0, 2, n), sensitive=rng.integers(0, 2, n))


def test_jtt_upweights_exactly_the_errors_of_the_first_stage() -> None:
    train, valid = noisy_data(240, seed=0), noisy_data(90, seed=1)
    cfg = TrainConfig(epochs=3, batch_size=32, sampler="random", hidden=16)

    # the identification model, trained independently: ERM for T epochs from the main model's initial weights
    torch.manual_seed(5)
    ident = build_head(use_text=False, audio_dim=6, text_dim=0, n_classes=3, hidden=16, dropout=cfg.dropout)
    reference = fit(
        model=ident,
        objective=build_objective("erm", n_domains=2, n_classes=3),
        train=train,
        valid=valid,
        config=cfg.model_copy(update={"epochs": 2}),
        seed=5,
        keep="last",
    )
    errors = predict_proba(reference.model, train).argmax(1) != train.y
    assert 0 < errors.sum() < len(errors)  # a non-trivial error set

    jtt = build_objective("jtt", n_domains=2, n_classes=3, first_epochs=2, lambda_up=4.0)
    trainer = HeadTrainer(config=cfg, seed=5, use_text=False, audio_dim=6, text_dim=0, n_classes=3)
    context = StageContext(trainer=trainer, train=train, valid=valid, seed=5)
    result = fit_staged(objective=jtt, context=context)
    np.testing.assert_array_equal(jtt.errors, errors)
    expected = np.where(errors, 4.0, 1.0)
    np.testing.assert_allclose(jtt.weights.numpy(), expected / expected.mean(), rtol=1e-6)
    assert context.stages == [
        {
            "stage": "jtt_identification",
            "epochs": 2,
            "jtt_error_set_size": int(errors.sum()),
            "jtt_error_rate": pytest.approx(errors.mean()),
        }
    ]
    assert jtt.summary()["jtt_error_rate"] == pytest.approx(errors.mean())
    assert all(0 <= s["error_frac"] <= 1 for s in result.step_logs)
    assert (
        len(result.history) >= 1 and result.model is context.model
    )  # the main model trained after the stage

    # the second-stage loss on a batch: weighted per-sample losses, error rows lambda_up times the others
    losses = torch.rand(6, requires_grad=True)
    index = torch.as_tensor(np.r_[np.flatnonzero(errors)[:3], np.flatnonzero(~errors)[:3]])
    out = jtt(
        GroupBatch(
            losses=losses,
            domain=torch.zeros(6, dtype=torch.long),
            sensitive=torch.zeros(6, dtype=torch.long),
            index=index,
        )
    )
    w = torch.tensor([4.0] * 3 + [1.0] * 3) / float(expected.mean())
    torch.testing.assert_close(out.loss, (w * losses).mean())
    assert out.logs["error_frac"] == 0.5


def test_jtt_before_identification_is_erm_and_checks_its_inputs() -> None:
    jtt = JTT(n_domains=1, n_classes=2)
    losses = torch.tensor([1.0, 3.0])
    batch = GroupBatch(losses=losses, domain=torch.zeros(2, dtype=torch.long), sensitive=torch.tensor([0, 1]))
    assert float(jtt(batch).loss) == 2.0  # stage one: plain ERM
    jtt.set_errors(np.array([True, False, False]))
    batch.index = torch.tensor([0, 3])
    with pytest.raises(ValueError, match=r"batch.index must lie in \[0, 3\)"):
        jtt(batch)
    with pytest.raises(ValueError, match="lambda_up"):
        JTT(n_domains=1, n_classes=2, lambda_up=0.5)
    with pytest.raises(ValueError, match="bool array"):
        jtt.set_errors(np.array([1, 0]))


def test_jtt_stage_with_a_backbone_saves_its_error_set_and_frees_its_model(tmp_path):
    # the same stage through the backbone trainer: the identification model is a backbone built with the
    # run's seed (the main model's initial weights), freed before the main model exists; its error set is
    # saved in the run folder and a resumed run reuses it; a mismatched file is refused
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    import yaml

    from assets.tiny_models import save_tiny_qwen2_audio
    from fairser.config import BenchmarkConfig
    from fairser.data.labels import MELD_EMOTIONS
    from fairser.models.qwen2_audio import Qwen2AudioClassifier
    from fairser.run import execute_run, plan_runs, prepare_data
    from fairser.run.backbone import BackboneBackend
    from fairser.run.views import run_grouper, split_views

    model_dir = save_tiny_qwen2_audio(tmp_path / "tiny-qwen2-audio", words=MELD_EMOTIONS)
    data = yaml.safe_load((ROOT / "configs" / "tiny_qwen2_audio.yaml").read_text())
    data.update(output_dir=str(tmp_path / "out"), modalities=["audio"])
    data["corpus"]["path"] = str(tmp_path / "corpus")
    data["corpus"]["synth"]["utterances_per_emotion"] = 1
    data["features"] = {"cache_dir": str(tmp_path / "cache"), "n_jobs": 1}
    data["backbone"] = {**data["backbone"], "path": str(model_dir), "epochs": 1, "lr": 3e-2}
    data["evaluation"] = {"n_boot": 20, "n_perm": 20, "min_samples": 3}
    data["objectives"] = [{"name": "jtt", "params": {"first_epochs": 2, "lambda_up": 4.0}}]
    cfg = BenchmarkConfig.model_validate(data)
    prepared = prepare_data(cfg, progress=False)
    (spec,) = plan_runs(cfg)
    row, pred, _ = execute_run(spec, prepared, cfg)
    assert row["stages"][0]["stage"] == "jtt_identification" and row["stages"][0]["epochs"] == 2
    assert len(pred) == int((prepared.manifest["split"] == "test").sum())
    saved = tmp_path / "out" / "runs" / spec.run_id / "jtt_errors.npy"
    assert row["method"]["jtt_error_set_size"] == int(np.load(saved).sum())

    # the stage by hand, through the backbone's trainer
    backend = BackboneBackend(prepared, cfg)
    grouper = run_grouper(prepared.manifest, setting="audio", config=cfg)
    views = split_views(
        prepared.manifest,
        setting="audio",
        config=cfg,
        grouper=grouper,
        labels=prepared.labels,
        make=backend.dataset,
    )
    train, valid = views["train"][0], views["valid"][0]

    def stage(stage_dir):
        jtt = build_objective(
            "jtt", n_domains=grouper.n_domains, n_classes=len(MELD_EMOTIONS), first_epochs=2, lambda_up=4.0
        )
        context = StageContext(
            trainer=backend.trainer(spec=spec, train=train),
            train=train,
            valid=valid,
            seed=0,
            stage_dir=stage_dir,
        )
        jtt.prepare(context=context)
        return jtt, context

    def live_models() -> int:  # without collecting: what is still allocated right now
        return sum(isinstance(o, Qwen2AudioClassifier) for o in gc.get_objects())

    gc.collect()
    before = live_models()
    fresh, context = stage(tmp_path / "fresh")
    assert live_models() == before and not context.has_model  # identification model gone, no main model yet
    np.testing.assert_array_equal(np.load(tmp_path / "fresh" / "jtt_errors.npy"), fresh.errors)
    np.testing.assert_array_equal(fresh.errors, np.load(saved))  # the run's stage: the same error set
    assert 0 < fresh.errors.sum() < len(train)  # a tiny random model gets some rows right and some wrong
    w = fresh.weights.numpy()
    np.testing.assert_allclose(w[fresh.errors], 4.0 * w[~fresh.errors][0], rtol=1e-6)  # lambda_up
    assert w.mean() == pytest.approx(1.0)

    reused, context = stage(tmp_path / "fresh")  # a resumed run: the saved set, no training
    assert context.stages[0]["reused"] == str(tmp_path / "fresh" / "jtt_errors.npy")
    np.testing.assert_array_equal(reused.errors, fresh.errors)
    np.save(tmp_path / "fresh" / "jtt_errors.npy", fresh.errors[:-1])
    with pytest.raises(ValueError, match="not the error set"):
        stage(tmp_path / "fresh")

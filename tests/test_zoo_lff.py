"""LfF: relative-difficulty weights (EMA, class-wise max as in the authors' code) are high where the
biased model fails."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from assets.offline import single_thread  # noqa: F401  (fixture)
from fairser.config import TrainConfig
from fairser.objectives import GroupBatch, build_objective
from fairser.objectives.lff import LearningFromFailure, relative_difficulty
from fairser.objectives.stages import StageContext, gce_loss
from fairser.run import fit_staged
from fairser.run.backends import HeadTrainer
from fairser.train import ArrayDataset

pytestmark = pytest.mark.usefixtures("single_thread")


def test_relative_difficulty_and_gce() -> None:
    w = relative_difficulty(torch.tensor([3.0, 1.0, 0.0]), torch.tensor([1.0, 3.0, 2.0]))
    torch.testing.assert_close(w, torch.tensor([0.75, 0.25, 0.0]))
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    p = torch.softmax(logits, 1)[:, 0]
    torch.testing.assert_close(
        gce_loss(logits, torch.tensor([0, -1]), q=0.7),
        torch.stack([(1 - p[0] ** 0.7) / 0.7, torch.tensor(0.0)]),
    )


def test_weights_follow_the_paper_ema_and_classwise_normalisation() -> None:
    lff = LearningFromFailure(n_domains=1, n_classes=2, embed_dim=3, ema=0.7, biased="embedding")
    with torch.no_grad():  # a biased classifier with constant logits: l_b = log 2 for every sample
        for p in lff.biased_head.parameters():
            p.zero_()
    y = torch.tensor([0, 0, 1, 1])
    batch = GroupBatch(
        losses=torch.tensor([1.0, 2.0, 4.0, 1.0]),
        domain=torch.zeros(4, dtype=torch.long),
        sensitive=torch.tensor([0, 1, 0, 1]),
        y=y,
        index=torch.arange(4),
        embedding=torch.randn(4, 3),
    )
    out = lff(batch)
    # first sight: EMA = value; each loss divided by the max over its class (b: all 1; d: [.5, 1, 1, .25])
    ld = torch.tensor([0.5, 1.0, 1.0, 0.25])
    expected = 1.0 / (1.0 + ld)
    torch.testing.assert_close(lff.sample_weights(), expected)
    assert out.logs["weighted"] == pytest.approx(float((expected * batch.losses).mean()))
    assert out.logs["gce_biased"] == pytest.approx((1 - 0.5**0.7) / 0.7)

    batch.losses = torch.tensor([3.0, 2.0, 4.0, 1.0])
    lff(batch)
    ema_d = torch.tensor([0.7 * 1 + 0.3 * 3, 2.0, 4.0, 1.0])
    ld = ema_d / torch.tensor([ema_d[:2].max(), ema_d[:2].max(), 4.0, 4.0])
    torch.testing.assert_close(lff.sample_weights(), 1.0 / (1.0 + ld))
    lff.eval()  # no EMA update outside training
    lff(batch)
    torch.testing.assert_close(lff.sample_weights(), 1.0 / (1.0 + ld))


def spurious_data(n: int, *, seed: int, conflicting: float = 0.1) -> tuple[ArrayDataset, np.ndarray]:
    """A clean, easy spurious cue agreeing with the label on 90% of samples, and a noisy core cue."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    sign = 2.0 * y - 1.0
    conflict = rng.random(n) < conflicting
    audio = rng.normal(size=(n, 4)).astype(np.float32) * 0.3
    audio[:, 0] = np.where(conflict, -sign, sign) * 2.0 + 0.1 * rng.normal(size=n)
    audio[:, 1] = sign * 0.8 + rng.normal(size=n)
    return ArrayDataset(audio=audio, y=y, domain=np.zeros(n, int), sensitive=rng.integers(0, 2, n)), conflict


def test_weights_are_high_where_the_biased_network_fails() -> None:
    train, conflict = spurious_data(600, seed=0)
    valid, _ = spurious_data(200, seed=1)
    cfg = TrainConfig(epochs=10, batch_size=64, lr=5e-3, sampler="random", hidden=16, patience=10)
    trainer = HeadTrainer(config=cfg, seed=0, use_text=False, audio_dim=4, text_dim=0, n_classes=2)
    context = StageContext(trainer=trainer, train=train, valid=valid, seed=0)
    assert context.model is not None  # the main head first, then the objective's own layers (as a run does)
    lff = build_objective("lff", n_domains=1, n_classes=2, embed_dim=16)
    result = fit_staged(objective=lff, context=context)
    assert lff.biased_network is not None and result.step_logs[-1]["biased_net"] == 1.0
    assert context.stages[0]["stage"] == "lff_biased_network"

    weights = lff.sample_weights().numpy()
    assert np.isfinite(weights).all()
    lff.biased_network.eval()
    with torch.no_grad():
        b = train.tensors()
        biased_wrong = (lff.biased_network(b["audio"]).logits.argmax(1) != b["y"]).numpy()
    assert 0 < biased_wrong.sum() < len(train)
    assert weights[biased_wrong].mean() > weights[~biased_wrong].mean() + 0.3
    # the biased network follows the spurious cue, so the bias-conflicting samples carry the weight
    assert weights[conflict].mean() > weights[~conflict].mean() + 0.3
    assert math.isclose(lff.summary()["lff_mean_weight"], float(weights.mean()), rel_tol=1e-6)


def test_network_variant_needs_the_run_to_attach_it() -> None:
    lff = LearningFromFailure(n_domains=1, n_classes=2, embed_dim=3, biased="network")
    batch = GroupBatch(
        losses=torch.ones(2),
        domain=torch.zeros(2, dtype=torch.long),
        sensitive=torch.tensor([0, 1]),
        y=torch.tensor([0, 1]),
        index=torch.arange(2),
        embedding=torch.zeros(2, 3),
    )
    with pytest.raises(RuntimeError, match="attached by the run pipeline"):
        lff(batch)

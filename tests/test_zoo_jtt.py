"""JTT: the second stage up-weights exactly the training errors of the first (ERM, T epochs) model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from assets.offline import single_thread  # noqa: F401  (fixture)
from fairser.config import TrainConfig
from fairser.models import build_head
from fairser.objectives import GroupBatch, build_objective
from fairser.objectives.jtt import JTT
from fairser.train import ArrayDataset, fit, predict_proba

pytestmark = pytest.mark.usefixtures("single_thread")


def noisy_data(n: int, *, seed: int) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    audio = rng.normal(size=(n, 6)).astype(np.float32)
    audio[np.arange(n), y] += 1.0  # learnable, but with errors left after a few epochs
    return ArrayDataset(audio=audio, y=y, domain=rng.integers(0, 2, n), gender=rng.integers(0, 2, n))


def test_jtt_upweights_exactly_the_errors_of_the_first_stage() -> None:
    train, valid = noisy_data(240, seed=0), noisy_data(90, seed=1)
    cfg = TrainConfig(epochs=3, batch_size=32, sampler="random", hidden=16)
    torch.manual_seed(0)
    model = build_head(use_text=False, audio_dim=6, text_dim=0, n_classes=3, hidden=16)

    # the identification model, trained independently: ERM for T epochs from the same initial weights
    reference = fit(
        model=copy.deepcopy(model),
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
    result = fit(model=model, objective=jtt, train=train, valid=valid, config=cfg, seed=5)
    np.testing.assert_array_equal(jtt.errors, errors)
    expected = np.where(errors, 4.0, 1.0)
    np.testing.assert_allclose(jtt.weights.numpy(), expected / expected.mean(), rtol=1e-6)
    assert result.stages[0]["stage"] == "jtt_identification"
    assert result.stages[0]["jtt_error_set_size"] == int(errors.sum())
    assert jtt.summary()["jtt_error_rate"] == pytest.approx(errors.mean())
    assert all(0 <= s["error_frac"] <= 1 for s in result.step_logs)

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

import numpy as np
import torch

from fairser.config import TrainConfig
from fairser.models import build_head
from fairser.objectives import build_objective
from fairser.train import ArrayDataset, fit, predict_proba


def _data(n, *, seed, text=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    domain = rng.integers(0, 2, n)
    gender = rng.integers(0, 2, n)
    audio = rng.normal(size=(n, 8)).astype(np.float32)
    audio[np.arange(n), y] += 2.5  # a learnable signal
    t = rng.normal(size=(n, 4)).astype(np.float32) if text else None
    return ArrayDataset(
        audio=audio,
        y=y,
        domain=domain,
        sensitive=gender,
        text=t,
        text_mask=(rng.random(n) < 0.5) if text else None,
    )


def test_fit_learns_and_selects_on_validation():
    train, valid = _data(300, seed=0), _data(120, seed=1)
    cfg = TrainConfig(epochs=15, batch_size=32, sampler="random", patience=15)
    model = build_head(use_text=False, audio_dim=8, text_dim=0, n_classes=3, hidden=16)
    res = fit(
        model=model,
        objective=build_objective("erm", n_domains=2, n_classes=3),
        train=train,
        valid=valid,
        config=cfg,
        seed=0,
    )
    acc = (predict_proba(res.model, valid).argmax(1) == valid.y).mean()
    assert acc > 0.8
    assert res.best_score == max(h["valid_weighted_f1"] for h in res.history)
    assert res.step_logs and "erm" in res.step_logs[0]


def test_fit_is_deterministic_for_a_seed():
    train, valid = _data(200, seed=0, text=True), _data(80, seed=1, text=True)
    cfg = TrainConfig(epochs=3, batch_size=32, sampler="random")
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = build_head(use_text=True, audio_dim=8, text_dim=4, n_classes=3, hidden=16)
        res = fit(
            model=model,
            objective=build_objective("erm", n_domains=2, n_classes=3),
            train=train,
            valid=valid,
            config=cfg,
            seed=7,
        )
        outs.append(predict_proba(res.model, valid))
    np.testing.assert_allclose(outs[0], outs[1])


def test_fusion_head_masks_text():
    model = build_head(use_text=True, audio_dim=8, text_dim=4, n_classes=3, hidden=16).eval()
    audio = torch.randn(2, 8)
    text = torch.randn(2, 4)
    masked = model(audio, text, torch.tensor([False, False])).logits
    other_text = model(audio, torch.randn(2, 4), torch.tensor([False, False])).logits
    torch.testing.assert_close(masked, other_text)  # masked transcripts have no influence
    seen = model(audio, text, torch.tensor([True, True])).logits
    assert not torch.allclose(seen, masked)


def test_dataset_rejects_misaligned_columns():
    import pytest

    with pytest.raises(ValueError, match="y has 2 rows"):
        ArrayDataset(audio=np.zeros((3, 2)), y=np.zeros(2), domain=np.zeros(3), sensitive=np.zeros(3))


def test_keep_last_returns_the_last_epoch_without_early_stopping():
    train, valid = _data(120, seed=0), _data(60, seed=1)
    cfg = TrainConfig(epochs=4, batch_size=32, sampler="random", patience=1)
    model = build_head(use_text=False, audio_dim=8, text_dim=0, n_classes=3, hidden=8)
    res = fit(
        model=model,
        objective=build_objective("erm", n_domains=2, n_classes=3),
        train=train,
        valid=valid,
        config=cfg,
        seed=0,
        keep="last",
    )
    assert len(res.history) == 4 and res.best_epoch == 3
    assert res.best_score == res.history[-1]["valid_weighted_f1"]


def test_unlabelled_rows_carry_zero_loss_and_balanced_sampler_trains():
    from fairser.objectives import Objective, ObjectiveOutput
    from fairser.objectives.stages import UNLABELED

    seen = []

    class Recorder(Objective):
        name = "recorder"

        def forward(self, batch):
            seen.append((batch.y.clone(), batch.losses.detach().clone()))
            return ObjectiveOutput(loss=batch.losses.mean())

    train = _data(96, seed=0)
    train.y = np.where(np.arange(96) % 4 == 0, UNLABELED, train.y)
    for sampler in ("random", "balanced"):
        seen.clear()
        fit(
            model=build_head(use_text=False, audio_dim=8, text_dim=0, n_classes=3, hidden=8),
            objective=Recorder(n_domains=2, n_classes=3),
            train=train,
            valid=_data(30, seed=1),
            config=TrainConfig(epochs=1, batch_size=16, sampler=sampler),
            seed=0,
        )
        y = torch.cat([s[0] for s in seen])
        losses = torch.cat([s[1] for s in seen])
        assert (y == UNLABELED).any() and (losses[y == UNLABELED] == 0).all() and (losses[y >= 0] > 0).all()


def test_subset_and_concat_keep_columns_aligned():
    a, b = _data(5, seed=0, text=True), _data(3, seed=1, text=True)
    both = a.concat(b.subset(np.array([2, 0])))
    assert len(both) == 7
    np.testing.assert_array_equal(both.y[5:], b.y[[2, 0]])
    np.testing.assert_array_equal(both.text_mask[5:], b.text_mask[[2, 0]])
    import pytest

    with pytest.raises(ValueError, match="text is present in one dataset only"):
        a.concat(_data(2, seed=2))

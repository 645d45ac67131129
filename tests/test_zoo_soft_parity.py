"""Soft ΔSP / ΔEO penalties: hand computations, the hard-prediction limit, and that minimising them closes
the gaps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fairser.objectives import GroupBatch
from fairser.objectives.soft_parity import SoftDEO, SoftDSP

# domain 0: two male rows, one female row; domain 1: a male row only (no gap defined there)
PROBS = np.array([[0.7, 0.2, 0.1], [0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
DOMAIN = [0, 0, 0, 1]
GENDER = [0, 0, 1, 0]


def make(probs=PROBS, domain=DOMAIN, gender=GENDER, y=None, logits=None) -> GroupBatch:
    logits = torch.log(torch.tensor(probs)) if logits is None else logits  # softmax(log p) = p
    n = logits.shape[0]
    return GroupBatch(
        losses=torch.zeros(n, dtype=logits.dtype),
        domain=torch.tensor(domain),
        sensitive=torch.tensor(gender),
        logits=logits,
        y=None if y is None else torch.tensor(y),
    )


def test_soft_dsp_by_hand() -> None:
    gap = np.abs(PROBS[:2].mean(0) - PROBS[2])  # [0.4, 0.25, 0.15]
    assert SoftDSP(n_domains=2, n_classes=3).penalty(make()).item() == pytest.approx(gap.mean())
    assert SoftDSP(n_domains=2, n_classes=3, reduce="max").penalty(make()).item() == pytest.approx(0.4)


def test_soft_deo_by_hand() -> None:
    # y = [0, 1, 0, 2]: class 0 has a male (p=0.7) and a female (p=0.2) sample in domain 0; class 1 only male
    penalty = SoftDEO(n_domains=2, n_classes=3).penalty(make(y=[0, 1, 0, 2]))
    assert penalty.item() == pytest.approx(0.5)


def test_hard_prediction_limit_equals_the_metric() -> None:
    rng = np.random.default_rng(0)
    n = 60
    pred = rng.integers(0, 3, n)
    y = rng.integers(0, 3, n)
    domain = rng.integers(0, 2, n)
    gender = rng.integers(0, 2, n)
    logits = torch.nn.functional.one_hot(torch.tensor(pred), 3).double() * 60.0  # softmax ~ one-hot
    batch = make(domain=domain.tolist(), gender=gender.tolist(), y=y.tolist(), logits=logits)
    dsp, deo = [], []
    for d in range(2):
        m, f = (domain == d) & (gender == 0), (domain == d) & (gender == 1)
        dsp.append(np.mean([abs((pred[m] == c).mean() - (pred[f] == c).mean()) for c in range(3)]))
        deo.append(
            np.mean(
                [abs((pred[m & (y == c)] == c).mean() - (pred[f & (y == c)] == c).mean()) for c in range(3)]
            )
        )
    assert SoftDSP(n_domains=2, n_classes=3).penalty(batch).item() == pytest.approx(np.mean(dsp), abs=1e-9)
    assert SoftDEO(n_domains=2, n_classes=3).penalty(batch).item() == pytest.approx(np.mean(deo), abs=1e-9)


@pytest.mark.parametrize("cls", [SoftDSP, SoftDEO])
def test_minimising_the_penalty_closes_the_gap(cls) -> None:
    gen = torch.Generator().manual_seed(0)
    n = 40
    logits = torch.randn(n, 3, generator=gen, dtype=torch.float64).mul(2).requires_grad_()
    domain = torch.arange(n) % 2
    gender = (torch.arange(n) // 2) % 2
    y = torch.randint(0, 3, (n,), generator=gen)
    objective = cls(n_domains=2, n_classes=3, beta=1.0)
    optimizer = torch.optim.SGD([logits], lr=20.0)

    def penalty():
        return objective.penalty(
            GroupBatch(losses=torch.zeros(n), domain=domain, sensitive=gender, logits=logits, y=y)
        )

    start = penalty().item()
    for _ in range(60):
        optimizer.zero_grad()
        penalty().backward()
        optimizer.step()
    assert start > 0.05 and penalty().item() < 0.1 * start


def test_missing_inputs_are_named() -> None:
    batch = make()
    with pytest.raises(ValueError, match="needs GroupBatch.y"):
        SoftDEO(n_domains=2, n_classes=3)(batch)
    batch.logits = None
    with pytest.raises(ValueError, match="needs GroupBatch.logits"):
        SoftDSP(n_domains=2, n_classes=3)(batch)
    with pytest.raises(ValueError, match="reduce"):
        SoftDSP(n_domains=2, n_classes=3, reduce="median")


# three values: domain 0 has v0 (two rows), v1, v2 and an unknown-valued row; domain 1 only v1 (undefined)
PROBS3 = np.array(
    [[0.7, 0.2, 0.1], [0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [0.9, 0.05, 0.05], [0.3, 0.3, 0.4]]
)
DOMAIN3 = [0, 0, 0, 0, 0, 1]
VALUE3 = [0, 0, 1, 2, -1, 1]


def make3(probs=PROBS3, y=None) -> GroupBatch:
    logits = torch.log(torch.tensor(probs))
    return GroupBatch(
        losses=torch.zeros(len(probs), dtype=logits.dtype),
        domain=torch.tensor(DOMAIN3),
        sensitive=torch.tensor(VALUE3),
        logits=logits,
        y=None if y is None else torch.tensor(y),
        n_values=3,
    )


def test_three_values_soft_dsp_is_max_minus_min_by_hand() -> None:
    # domain 0 rates: v0 [0.6, 0.25, 0.15], v1 [0.2, 0.5, 0.3], v2 [0.1, 0.1, 0.8]
    # per class max - min: 0.6 - 0.1 = 0.5, 0.5 - 0.1 = 0.4, 0.8 - 0.15 = 0.65; domain 1 has one value only
    mean = SoftDSP(n_domains=2, n_classes=3, n_values=3).penalty(make3())
    assert mean.item() == pytest.approx((0.5 + 0.4 + 0.65) / 3)
    assert SoftDSP(n_domains=2, n_classes=3, n_values=3, reduce="max").penalty(
        make3()
    ).item() == pytest.approx(0.65)
    other = PROBS3.copy()
    other[4] = [0.05, 0.05, 0.9]  # the unknown-valued row is in no rate
    assert SoftDSP(n_domains=2, n_classes=3, n_values=3).penalty(make3(other)).item() == pytest.approx(
        mean.item()
    )


def test_three_values_soft_deo_by_hand() -> None:
    # class 0 in domain 0: v0 (row 0, p 0.7), v1 (p 0.2), v2 (p 0.1) -> 0.6; class 1: v0 only -> undefined;
    # the unknown row (class 0, p 0.9) is in no rate; domain 1: one value -> undefined
    penalty = SoftDEO(n_domains=2, n_classes=3, n_values=3).penalty(make3(y=[0, 1, 0, 0, 0, 2]))
    assert penalty.item() == pytest.approx(0.6)

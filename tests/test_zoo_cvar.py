"""CVaR-DRO against hand computations."""

from __future__ import annotations

import pytest
import torch

from fairser.objectives import GroupBatch
from fairser.objectives.cvar import CVaR


def run(losses, alpha):
    b = GroupBatch(
        losses=torch.tensor(losses, dtype=torch.float64, requires_grad=True),
        domain=torch.zeros(len(losses), dtype=torch.long),
        sensitive=torch.full((len(losses),), -1),
    )
    out = CVaR(n_domains=1, n_classes=2, alpha=alpha)(b)
    (grad,) = torch.autograd.grad(out.loss, b.losses)
    return out.loss.item(), grad.tolist()


LOSSES = [1.0, 5.0, 3.0, 2.0, 4.0]


def test_integer_fraction_is_the_top_k_mean() -> None:
    value, grad = run(LOSSES, 0.4)  # k = 2: worst two are 5 and 4
    assert value == pytest.approx(4.5)
    assert grad == pytest.approx([0.0, 0.5, 0.0, 0.0, 0.5])


def test_fractional_sample_enters_partially() -> None:
    value, grad = run(LOSSES, 0.3)  # k = 1.5: 5 fully, 4 with weight 0.5
    assert value == pytest.approx((5.0 + 0.5 * 4.0) / 1.5)
    assert grad == pytest.approx([0.0, 1 / 1.5, 0.0, 0.0, 0.5 / 1.5])


def test_alpha_one_is_erm_and_tiny_alpha_is_the_max() -> None:
    assert run(LOSSES, 1.0)[0] == pytest.approx(3.0)
    assert run(LOSSES, 0.01)[0] == pytest.approx(5.0)  # k = 0.05: only the worst sample


def test_bad_alpha_is_named() -> None:
    for alpha in (0.0, 1.5):
        with pytest.raises(ValueError, match="alpha"):
            CVaR(n_domains=1, n_classes=2, alpha=alpha)

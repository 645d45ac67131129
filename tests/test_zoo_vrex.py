"""V-REx: the variance of the present groups' mean losses, by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fairser.objectives import GroupBatch
from fairser.objectives.vrex import VREx


def test_penalty_and_gradient_by_hand() -> None:
    # groups (2*d + s): 0 -> [1, 3] (mean 2), 1 -> [4], 3 -> [0.5, 1.5] (mean 1); group 2 absent; unknown 7
    losses = torch.tensor([1.0, 3.0, 4.0, 0.5, 1.5, 7.0], dtype=torch.float64, requires_grad=True)
    batch = GroupBatch(
        losses=losses, domain=torch.tensor([0, 0, 0, 1, 1, 1]), sensitive=torch.tensor([0, 0, 1, 1, 1, -1])
    )
    out = VREx(n_domains=2, n_classes=3, beta=2.0)(batch)
    group = np.array([2.0, 4.0, 1.0])
    variance = np.mean((group - group.mean()) ** 2)
    assert out.logs["variance"] == pytest.approx(variance)
    assert out.loss.item() == pytest.approx(losses.detach().mean().item() + 2.0 * variance)
    (grad,) = torch.autograd.grad(out.loss, losses)
    # dVar/dLbar_g = 2 (Lbar_g - mean) / n_groups; dLbar_g/dl_i = 1 / n_g
    dvar = 2 * (group - group.mean()) / 3
    expected = np.full(6, 1 / 6) + 2.0 * np.array(
        [dvar[0] / 2, dvar[0] / 2, dvar[1], dvar[2] / 2, dvar[2] / 2, 0.0]
    )
    np.testing.assert_allclose(grad.numpy(), expected)


def test_equal_group_losses_give_no_penalty() -> None:
    losses = torch.tensor([2.0, 2.0, 1.0, 3.0], requires_grad=True)
    batch = GroupBatch(losses=losses, domain=torch.tensor([0, 0, 1, 1]), sensitive=torch.tensor([0, 1, 0, 0]))
    out = VREx(n_domains=2, n_classes=3, beta=10.0)(batch)
    assert out.logs["variance"] == 0.0 and out.loss.item() == pytest.approx(2.0)


def test_three_values_variance_over_present_groups() -> None:
    # groups 3 * d + v: 0 -> [2], 1 -> [4], 2 -> [0, 2] (mean 1), 5 -> [3]; groups 3, 4 absent; unknown 9
    losses = torch.tensor([2.0, 4.0, 0.0, 2.0, 3.0, 9.0], dtype=torch.float64, requires_grad=True)
    batch = GroupBatch(
        losses=losses,
        domain=torch.tensor([0, 0, 0, 0, 1, 1]),
        sensitive=torch.tensor([0, 1, 2, 2, 2, -1]),
        n_values=3,
    )
    out = VREx(n_domains=2, n_classes=3, n_values=3, beta=1.0)(batch)
    # group means 2, 4, 1, 3: centre 2.5, variance (0.25 + 2.25 + 2.25 + 0.25) / 4 = 1.25
    assert out.logs["variance"] == pytest.approx(1.25)
    assert out.loss.item() == pytest.approx(20.0 / 6 + 1.25)

"""Group DRO: the exponentiated-gradient weights move to the worst group; exact update and loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fairser.objectives import GroupBatch
from fairser.objectives.groupdro import GroupDRO

# 2 domains x 2 genders; group ids 2*d + s: group 0 -> 1.0, 1 -> 2.0, 2 -> 4.0 (worst), 3 -> 0.5; unknown -> 9
LOSSES = [1.0, 1.0, 2.0, 4.0, 0.5, 9.0]
DOMAIN = [0, 0, 0, 1, 1, 1]
GENDER = [0, 0, 1, 0, 1, -1]


def batch(losses=LOSSES, domain=DOMAIN, gender=GENDER, y=None) -> GroupBatch:
    return GroupBatch(
        losses=torch.tensor(losses, dtype=torch.float64, requires_grad=True),
        domain=torch.tensor(domain),
        sensitive=torch.tensor(gender),
        y=None if y is None else torch.tensor(y),
    )


def test_one_step_matches_the_update_rule() -> None:
    obj = GroupDRO(n_domains=2, n_classes=3, eta=0.1)
    b = batch()
    out = obj(b)
    group_loss = np.array([1.0, 2.0, 4.0, 0.5])
    q = 0.25 * np.exp(0.1 * group_loss)
    q /= q.sum()
    np.testing.assert_allclose(obj.q.numpy(), q, rtol=1e-6)
    assert out.loss.item() == pytest.approx(float(q @ group_loss), rel=1e-6)
    (grad,) = torch.autograd.grad(out.loss, b.losses)
    # each sample of group g gets q_g / n_g; the unknown-gender sample gets nothing
    np.testing.assert_allclose(grad.numpy(), [q[0] / 2, q[0] / 2, q[1], q[2], q[3], 0.0], rtol=1e-6)


def test_weight_shifts_to_the_worst_group() -> None:
    obj = GroupDRO(n_domains=2, n_classes=3, eta=0.5)
    history = []
    for _ in range(30):
        obj(batch())
        history.append(obj.q.clone())
    assert int(obj.q.argmax()) == 2 and obj.q[2] > 0.99
    assert all(b[2] > a[2] for a, b in zip(history[:10], history[1:10], strict=False))
    assert all(b[2] >= a[2] for a, b in zip(history, history[1:], strict=False))  # until float saturation
    obj.eval()  # frozen outside training
    obj(batch())
    torch.testing.assert_close(obj.q, history[-1])


def test_absent_groups_keep_their_relative_weight() -> None:
    obj = GroupDRO(n_domains=2, n_classes=3, eta=0.3)
    obj.q.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
    out = obj(batch(losses=[1.0, 3.0], domain=[0, 0], gender=[0, 0]))  # only group 0 present
    q = np.array([0.1 * math.exp(0.3 * 2.0), 0.2, 0.3, 0.4])
    q /= q.sum()
    np.testing.assert_allclose(obj.q.numpy(), q, rtol=1e-6)
    assert out.loss.item() == pytest.approx(q[0] * 2.0, rel=1e-6)


def test_size_adjustment_and_label_groups() -> None:
    counts = np.array([100, 4, 25, 1] * 3).reshape(3, 4).T.reshape(-1)  # (d, s, y) order: group * 3 + y
    obj = GroupDRO(
        n_domains=2, n_classes=3, groups="domain_gender_label", eta=0.1, adjustment=2.0, group_counts=counts
    )
    b = batch(y=[0, 1, 2, 0, 0, 1])
    out = obj(b)
    # (d,s,y) groups present: 0*3+0, 0*3+1, 1*3+2, 2*3+0, 3*3+0 with losses 1, 1, 2, 4, 0.5
    ids = [0, 1, 5, 6, 9]
    adjusted = np.array([1.0, 1.0, 2.0, 4.0, 0.5]) + 2.0 / np.sqrt(counts[ids])
    q = np.full(12, 1 / 12)
    q[ids] *= np.exp(0.1 * adjusted)
    q /= q.sum()
    np.testing.assert_allclose(obj.q.numpy(), q, rtol=1e-6)
    assert out.loss.item() == pytest.approx(float(q[ids] @ adjusted), rel=1e-6)


def test_bad_configuration_is_named() -> None:
    with pytest.raises(ValueError, match="needs the training group sizes"):
        GroupDRO(n_domains=2, n_classes=3, adjustment=1.0)(batch())
    with pytest.raises(ValueError, match=r"expected \(4,\)"):
        GroupDRO(n_domains=2, n_classes=3, adjustment=1.0, group_counts=np.ones(3))
    with pytest.raises(ValueError, match="needs GroupBatch.y"):
        GroupDRO(n_domains=2, n_classes=3, groups="domain_gender_label")(batch())


def test_setup_counts_training_groups_for_the_adjustment() -> None:
    domain = torch.tensor([0] * 9 + [1] * 5)
    gender = torch.tensor([0] * 4 + [1] * 5 + [0] * 1 + [1] * 3 + [-1])  # sizes: 4, 5, 1, 3 (+1 unknown)
    obj = GroupDRO(n_domains=2, n_classes=3, adjustment=3.0, eta=0.1)
    obj.setup(domain=domain, sensitive=gender, y=torch.zeros(14, dtype=torch.long))
    given = GroupDRO(n_domains=2, n_classes=3, adjustment=3.0, eta=0.1, group_counts=np.array([4, 5, 1, 3]))
    torch.testing.assert_close(obj.adj, 3.0 / torch.tensor([4.0, 5.0, 1.0, 3.0]).sqrt())
    assert obj(batch()).loss.item() == pytest.approx(given(batch()).loss.item())


def test_three_values_groups_and_update_by_hand() -> None:
    # 1 domain x 3 values, group id 3 * d + v: v0 -> [1, 3] (mean 2), v1 absent, v2 -> [5]; unknown -> 7
    b = GroupBatch(
        losses=torch.tensor([1.0, 3.0, 5.0, 7.0], dtype=torch.float64, requires_grad=True),
        domain=torch.tensor([0, 0, 0, 0]),
        sensitive=torch.tensor([0, 0, 2, -1]),
        n_values=3,
    )
    obj = GroupDRO(n_domains=1, n_classes=3, n_values=3, eta=0.2)
    assert obj.q.shape == (3,)
    out = obj(b)
    q = np.array([math.exp(0.2 * 2.0), 1.0, math.exp(0.2 * 5.0)]) / 3
    q /= q.sum()  # v1 is absent: its weight only renormalises
    np.testing.assert_allclose(obj.q.numpy(), q, rtol=1e-6)
    assert out.loss.item() == pytest.approx(q[0] * 2.0 + q[2] * 5.0, rel=1e-6)
    (grad,) = torch.autograd.grad(out.loss, b.losses)
    np.testing.assert_allclose(grad.numpy(), [q[0] / 2, q[0] / 2, q[2], 0.0], rtol=1e-6)


def test_three_values_label_groups_and_setup_counts() -> None:
    # 2 domains x 3 values x 2 classes = 12 DRO groups, id (3 * d + v) * 2 + y
    domain = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    value = torch.tensor([0, 1, 2, 2, 2, -1, 1])
    y = torch.tensor([1, 0, 1, 0, 0, 1, 1])
    obj = GroupDRO(n_domains=2, n_classes=2, n_values=3, groups="domain_gender_label", adjustment=1.0)
    obj.setup(domain=domain, sensitive=value, y=y)
    counts = np.zeros(12)
    for i in (1, 2, 5, 10, 10, 9):  # (0,0,1), (0,1,0), (0,2,1), (1,2,0) twice, (1,1,1); the unknown row: none
        counts[i] += 1
    torch.testing.assert_close(
        obj.adj, torch.tensor(1.0 / np.sqrt(np.maximum(counts, 1.0)), dtype=torch.float32)
    )
    b = GroupBatch(losses=torch.ones(7), domain=domain, sensitive=value, y=y, n_values=3)
    np.testing.assert_array_equal(obj.group_ids(b).numpy(), [1, 2, 5, 10, 10, -1, 9])

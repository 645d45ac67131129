"""Gradient reversal: exact sign flip; the adversary learns gender while the embedding is pushed away."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from fairser.objectives import GroupBatch
from fairser.objectives.adversarial import SensitiveAdversary, grad_reverse


@pytest.mark.parametrize("coeff", [1.0, 0.5])
def test_reversal_layer_flips_the_gradient_exactly(coeff: float) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, generator=gen, requires_grad=True)
    upstream = torch.randn(5, 3, generator=gen)
    y = grad_reverse(x, coeff=coeff)
    assert torch.equal(y, x)
    (y * upstream).sum().backward()
    assert torch.equal(x.grad, -coeff * upstream)


def test_embedding_gets_the_reversed_adversary_gradient() -> None:
    torch.manual_seed(0)
    obj = SensitiveAdversary(n_domains=1, n_classes=3, embed_dim=4, alpha=0.7, warmup_steps=0)
    emb = torch.randn(6, 4, requires_grad=True)
    gender = torch.tensor([0, 1, 1, 0, -1, 1])
    batch = GroupBatch(
        losses=torch.zeros(6), domain=torch.zeros(6, dtype=torch.long), sensitive=gender, embedding=emb
    )
    out = obj(batch)
    out.loss.backward()
    known = gender >= 0
    # the adversary's own loss, without reversal
    emb2 = emb.detach().clone().requires_grad_()
    gender_loss = F.cross_entropy(obj.adversary(emb2)[known], gender[known])
    grads = torch.autograd.grad(0.7 * gender_loss, [emb2, *obj.adversary.parameters()])
    assert out.logs["sensitive_loss"] == pytest.approx(gender_loss.item())
    torch.testing.assert_close(emb.grad, -grads[0])  # encoder ascends the gender loss
    for p, g in zip(obj.adversary.parameters(), grads[1:], strict=True):
        torch.testing.assert_close(p.grad, g)  # adversary descends it
    assert emb.grad[4].abs().sum() == 0  # the unknown-gender sample carries no gender gradient


@pytest.mark.parametrize("schedule", ["dann", "linear"])
def test_alpha_warms_up_in_training_only(schedule: str) -> None:
    obj = SensitiveAdversary(
        n_domains=1, n_classes=3, embed_dim=2, alpha=2.0, warmup_steps=10, schedule=schedule
    )
    batch = GroupBatch(
        losses=torch.zeros(2),
        domain=torch.zeros(2, dtype=torch.long),
        sensitive=torch.tensor([0, 1]),
        embedding=torch.zeros(2, 2),
    )
    alphas = [obj(batch).logs["alpha"] for _ in range(12)]
    expected = [
        2.0 * ((2 / (1 + math.exp(-10 * min(1, t / 10))) - 1) if schedule == "dann" else min(1, t / 10))
        for t in range(12)
    ]
    assert alphas == pytest.approx(expected)
    assert alphas[0] == 0.0 and alphas[-1] == pytest.approx(2.0, rel=1e-4)
    obj.eval()  # no warm-up step outside training
    obj(batch)
    assert int(obj.step) == 12


def test_wrong_embedding_is_named() -> None:
    obj = SensitiveAdversary(n_domains=1, n_classes=3, embed_dim=4)
    batch = GroupBatch(
        losses=torch.zeros(2), domain=torch.zeros(2, dtype=torch.long), sensitive=torch.tensor([0, 1])
    )
    with pytest.raises(ValueError, match="needs GroupBatch.embedding"):
        obj(batch)
    batch.embedding = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"expected \(N, 4\)"):
        obj(batch)


def test_three_valued_adversary_is_a_three_way_head() -> None:
    torch.manual_seed(0)
    obj = SensitiveAdversary(n_domains=1, n_classes=3, n_values=3, embed_dim=4, alpha=1.0, warmup_steps=0)
    assert obj.adversary[-1].out_features == 3
    emb = torch.randn(7, 4, requires_grad=True)
    value = torch.tensor([0, 1, 2, 2, -1, 1, 0])
    batch = GroupBatch(
        losses=torch.zeros(7),
        domain=torch.zeros(7, dtype=torch.long),
        sensitive=value,
        embedding=emb,
        n_values=3,
    )
    out = obj(batch)
    out.loss.backward()
    known = value >= 0
    emb2 = emb.detach().clone().requires_grad_()
    loss = F.cross_entropy(obj.adversary(emb2)[known], value[known])  # 3-way cross-entropy, known rows only
    (grad,) = torch.autograd.grad(loss, emb2)
    assert out.logs["sensitive_loss"] == pytest.approx(loss.item())
    torch.testing.assert_close(emb.grad, -grad)
    assert emb.grad[4].abs().sum() == 0
    batch.sensitive = torch.tensor([0, 1, 3, 2, -1, 1, 0])
    with pytest.raises(ValueError, match="sensitive value 3 but the classifier has 3 outputs"):
        obj(batch)


def test_three_valued_adversary_learns_a_planted_attribute() -> None:
    torch.manual_seed(0)
    value = torch.arange(90) % 3
    emb = torch.nn.functional.one_hot(value, 3).float() * 2.0 + 0.3 * torch.randn(90, 3)
    emb = torch.cat([emb, torch.randn(90, 1)], dim=1)
    obj = SensitiveAdversary(n_domains=1, n_classes=3, n_values=3, embed_dim=4, hidden=8, warmup_steps=0)
    opt = torch.optim.Adam(obj.parameters(), lr=0.05)
    batch = GroupBatch(
        losses=torch.zeros(90),
        domain=torch.zeros(90, dtype=torch.long),
        sensitive=value,
        embedding=emb,
        n_values=3,
    )
    first = obj(batch).logs["sensitive_acc"]
    for _ in range(100):
        opt.zero_grad()
        obj(batch).loss.backward()
        opt.step()
    assert first < 0.7 and obj(batch).logs["sensitive_acc"] == 1.0

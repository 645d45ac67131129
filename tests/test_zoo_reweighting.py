"""Reweighing weights against a hand computation and AIF360's formula; the objective uses them by index."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fairser.objectives import GroupBatch
from fairser.objectives.reweighting import Reweighting, reweighing_weights


def aif360_reweighing(s: np.ndarray, y: np.ndarray) -> np.ndarray:
    """AIF360 ``Reweighing.fit``/``transform`` for one binary group (privileged s == 0) and binary labels
    (favourable y == 1), unit instance weights: e.g. ``w_p_fav = n_fav * n_p / (n * n_p_fav)``."""
    n = len(s)
    priv, fav = s == 0, y == 1
    n_p, n_up, n_fav, n_unfav = priv.sum(), (~priv).sum(), fav.sum(), (~fav).sum()
    w = np.empty(n)
    w[priv & fav] = n_fav * n_p / (n * (priv & fav).sum())
    w[priv & ~fav] = n_unfav * n_p / (n * (priv & ~fav).sum())
    w[~priv & fav] = n_fav * n_up / (n * (~priv & fav).sum())
    w[~priv & ~fav] = n_unfav * n_up / (n * (~priv & ~fav).sum())
    return w


def test_hand_computation() -> None:
    # one domain: male y = [0, 0, 0, 1], female y = [1, 1]
    w = reweighing_weights(
        domain=np.zeros(6, int), sensitive=np.array([0, 0, 0, 0, 1, 1]), y=np.array([0, 0, 0, 1, 1, 1])
    )
    # (male, 0): n_s=4, n_y=3, n=6, n_sy=3 -> 4*3/(6*3) = 2/3; (male, 1): 4*3/(6*1) = 2; (female, 1): 2*3/(6*2) = 1/2
    np.testing.assert_allclose(w, [2 / 3, 2 / 3, 2 / 3, 2.0, 0.5, 0.5])
    assert w.sum() == pytest.approx(6.0 - 2 * 3 / 6)  # the empty cell (female, 0) would have weighed 1


def test_equals_aif360_within_each_domain() -> None:
    rng = np.random.default_rng(0)
    domain = rng.integers(0, 3, 300)
    gender = rng.integers(0, 2, 300)
    y = (rng.random(300) < 0.3 + 0.4 * gender).astype(int)  # label depends on gender
    w = reweighing_weights(domain=domain, sensitive=gender, y=y)
    for d in range(3):
        m = domain == d
        np.testing.assert_allclose(w[m], aif360_reweighing(gender[m], y[m]))


def test_weighted_distribution_makes_gender_independent_of_label_per_domain() -> None:
    rng = np.random.default_rng(1)
    n = 2000
    domain = rng.choice(["en", "de"], n)
    gender = rng.choice([0, 1, -1], n, p=[0.5, 0.4, 0.1])
    female_y, other_y = rng.choice(4, n, p=[0.45, 0.45, 0.05, 0.05]), rng.integers(0, 4, n)
    y = np.where(gender == 1, female_y, other_y)  # strongly gender-dependent, every (s, y) cell occupied
    w = reweighing_weights(domain=domain, sensitive=gender, y=y)
    assert w.sum() == pytest.approx(n)
    for d in ("en", "de"):
        m = domain == d
        joint = np.array([[w[m & (gender == s) & (y == c)].sum() for c in range(4)] for s in (-1, 0, 1)])
        joint /= joint.sum()
        np.testing.assert_allclose(joint, np.outer(joint.sum(1), joint.sum(0)), atol=1e-12)
        # the domain's gender and label marginals are kept
        np.testing.assert_allclose(joint.sum(1), [np.mean(gender[m] == s) for s in (-1, 0, 1)])


def test_objective_weights_losses_by_index() -> None:
    weights = np.array([0.5, 2.0, 1.0, 4.0])
    losses = torch.tensor([1.0, 3.0], requires_grad=True)
    batch = GroupBatch(
        losses=losses,
        domain=torch.zeros(2, dtype=torch.long),
        sensitive=torch.tensor([0, 1]),
        index=torch.tensor([3, 0]),
    )
    out = Reweighting(n_domains=1, n_classes=2, weights=weights)(batch)
    assert out.loss.item() == pytest.approx((4.0 * 1.0 + 0.5 * 3.0) / 2)
    out = Reweighting(n_domains=1, n_classes=2, weights=weights, normalize=True)(batch)
    assert out.loss.item() == pytest.approx((4.0 * 1.0 + 0.5 * 3.0) / 4.5)


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match=r"weights\[1\]"):
        Reweighting(n_domains=1, n_classes=2, weights=[1.0, -1.0])
    obj = Reweighting(n_domains=1, n_classes=2, weights=[1.0, 1.0])
    batch = GroupBatch(
        losses=torch.ones(1),
        domain=torch.zeros(1, dtype=torch.long),
        sensitive=torch.zeros(1, dtype=torch.long),
    )
    with pytest.raises(ValueError, match="needs GroupBatch.index"):
        obj(batch)
    batch.index = torch.tensor([5])
    with pytest.raises(ValueError, match="batch.index must lie in"):
        obj(batch)
    with pytest.raises(ValueError, match="one length"):
        reweighing_weights(domain=[0, 0], sensitive=[0], y=[1, 1])


def test_setup_computes_the_training_sets_weights() -> None:
    rng = np.random.default_rng(2)
    domain, gender, y = rng.integers(0, 2, 40), rng.integers(-1, 2, 40), rng.integers(0, 3, 40)
    obj = Reweighting(n_domains=2, n_classes=3)
    with pytest.raises(ValueError, match="no weights"):
        obj(
            GroupBatch(
                losses=torch.ones(1),
                domain=torch.zeros(1, dtype=torch.long),
                sensitive=torch.zeros(1, dtype=torch.long),
                index=torch.tensor([0]),
            )
        )
    obj.setup(domain=torch.as_tensor(domain), sensitive=torch.as_tensor(gender), y=torch.as_tensor(y))
    expected = reweighing_weights(domain=domain, sensitive=gender, y=y)
    np.testing.assert_allclose(obj.weights.numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="3 weights were given but the training set has 40"):
        Reweighting(n_domains=2, n_classes=3, weights=[1.0, 1.0, 1.0]).setup(
            domain=torch.as_tensor(domain), sensitive=torch.as_tensor(gender), y=torch.as_tensor(y)
        )


def test_three_values_by_hand_and_through_setup() -> None:
    # one domain; values s = [0, 0, 1, 1, 1, 2], labels y = [0, 1, 0, 0, 1, 1]: n_s = (2, 3, 1), n_y = (3, 3)
    # w = n_s * n_y / (N * n_sy): (0,0) 2*3/6 = 1, (0,1) 1, (1,0) 3*3/(6*2) = 0.75 twice, (1,1) 9/6 = 1.5,
    # (2,1) 3/6 = 0.5 (the cell (2,0) is empty: its mass is missing, so the weights sum to 5.5, not 6)
    domain, value, y = np.zeros(6, int), np.array([0, 0, 1, 1, 1, 2]), np.array([0, 1, 0, 0, 1, 1])
    w = reweighing_weights(domain=domain, sensitive=value, y=y)
    np.testing.assert_allclose(w, [1.0, 1.0, 0.75, 0.75, 1.5, 0.5])
    obj = Reweighting(n_domains=1, n_classes=2, n_values=3)
    obj.setup(domain=torch.as_tensor(domain), sensitive=torch.as_tensor(value), y=torch.as_tensor(y))
    losses = torch.tensor([1.0, 2.0, 4.0], requires_grad=True)
    batch = GroupBatch(
        losses=losses,
        domain=torch.zeros(3, dtype=torch.long),
        sensitive=torch.tensor([1, 1, 2]),
        index=torch.tensor([3, 4, 5]),
        n_values=3,
    )
    out = obj(batch)
    assert out.loss.item() == pytest.approx((0.75 * 1.0 + 1.5 * 2.0 + 0.5 * 4.0) / 3)

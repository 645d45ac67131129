"""Resampling: BalancedGroupSampler draws gender independent of the label within each domain."""

from __future__ import annotations

import numpy as np
import pytest

from fairser.sampler import BalancedGroupSampler


def skewed(n: int = 3000, seed: int = 0):
    rng = np.random.default_rng(seed)
    domain = rng.integers(0, 2, n)
    gender = rng.integers(0, 2, n)
    y = np.where(gender == 0, rng.choice(3, n, p=[0.7, 0.2, 0.1]), rng.choice(3, n, p=[0.1, 0.2, 0.7]))
    return domain, gender, y


def test_draws_are_balanced_within_each_domain() -> None:
    domain, gender, y = skewed()
    sampler = BalancedGroupSampler(
        domain=domain, sensitive=gender, y=y, batch_size=100, seed=0, num_samples=60000
    )
    idx = np.concatenate(list(sampler))
    assert idx.size == 60000 and len(sampler) == 600
    for d in range(2):
        m = idx[domain[idx] == d]
        joint = np.array([[np.mean((gender[m] == s) & (y[m] == c)) for c in range(3)] for s in range(2)])
        np.testing.assert_allclose(joint, np.outer(joint.sum(1), joint.sum(0)), atol=0.01)
        # before resampling the label depended strongly on gender
        raw = np.array(
            [[np.mean((gender == s) & (y == c) & (domain == d)) for c in range(3)] for s in range(2)]
        )
        raw /= raw.sum()
        assert np.abs(raw - np.outer(raw.sum(1), raw.sum(0))).max() > 0.05


def test_deterministic_resumable_and_sized() -> None:
    domain, gender, y = skewed(n=500)
    a = BalancedGroupSampler(domain=domain, sensitive=gender, y=y, batch_size=64, seed=3)
    b = BalancedGroupSampler(domain=domain, sensitive=gender, y=y, batch_size=64, seed=3)
    assert list(a) == list(b)
    assert [len(x) for x in b.batches(0)] == [64] * 7 + [500 - 7 * 64]
    it = iter(b)
    head = [next(it) for _ in range(3)]
    resumed = BalancedGroupSampler(domain=domain, sensitive=gender, y=y, batch_size=64, seed=3)
    resumed.load_state_dict(b.state_dict())
    expected = [x.tolist() for x in a.batches(1)]
    assert head + list(resumed) == expected
    dropped = BalancedGroupSampler(
        domain=domain, sensitive=gender, y=y, batch_size=64, seed=3, drop_last=True
    )
    assert len(dropped) == 7 and all(len(x) == 64 for x in dropped)
    with pytest.raises(ValueError, match="num_samples"):
        BalancedGroupSampler(domain=domain, sensitive=gender, y=y, batch_size=64, seed=3, num_samples=0)


def test_three_values_are_balanced_within_each_domain() -> None:
    rng = np.random.default_rng(1)
    n = 4000
    domain = rng.integers(0, 2, n)
    value = rng.integers(0, 3, n)
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.6, 0.2], [0.1, 0.2, 0.7]])
    y = np.array([rng.choice(3, p=probs[v]) for v in value])  # the label depends strongly on the value
    sampler = BalancedGroupSampler(
        domain=domain, sensitive=value, y=y, batch_size=100, seed=0, num_samples=90000
    )
    idx = np.concatenate(list(sampler))
    for d in range(2):
        m = idx[domain[idx] == d]
        joint = np.array([[np.mean((value[m] == s) & (y[m] == c)) for c in range(3)] for s in range(3)])
        np.testing.assert_allclose(joint, np.outer(joint.sum(1), joint.sum(0)), atol=0.01)
        # the domain's value marginal is kept
        keep = domain == d
        np.testing.assert_allclose(
            joint.sum(1), np.bincount(value[keep], minlength=3) / keep.sum(), atol=0.01
        )

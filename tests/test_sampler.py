"""Group-stratified batch sampler: every cell in every batch, about once per epoch, deterministic, resumable."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from fairser.sampler import GroupStratifiedSampler, group_ids


def skewed_groups(n: int = 997, seed: int = 0) -> np.ndarray:
    """3 domains x 2 genders, very unequal cells (one of 4 samples), plus unknown-gender samples."""
    rng = np.random.default_rng(seed)
    domain = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])
    gender = rng.choice([0, 1, -1], size=n, p=[0.6, 0.3, 0.1])
    gender[np.flatnonzero((domain == 2) & (gender == 1))[4:]] = 0  # cell (2, female) keeps 4 samples
    return group_ids(domain=domain, sensitive=gender)


def test_group_ids() -> None:
    ids = group_ids(domain=np.array([0, 0, 1, 2, 2]), sensitive=np.array([0, 1, 1, -1, 0]))
    np.testing.assert_array_equal(ids, [0, 1, 3, -1, 4])
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\) or be -1 \(unknown\); found 2 at row 1"):
        group_ids(domain=np.array([0, 0]), sensitive=np.array([0, 2]))
    with pytest.raises(ValueError, match="shape"):
        group_ids(domain=np.array([0, 0]), sensitive=np.array([0]))


def test_group_ids_with_three_values() -> None:
    ids = group_ids(domain=np.array([0, 0, 0, 1, 1, 2]), sensitive=np.array([0, 1, 2, 2, -1, 1]), n_values=3)
    np.testing.assert_array_equal(ids, [0, 1, 2, 5, -1, 7])
    assert ids.dtype == np.int64
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\) or be -1 \(unknown\); found 3 at row 1"):
        group_ids(domain=np.array([0, 0]), sensitive=np.array([0, 3]), n_values=3)
    with pytest.raises(ValueError, match=r"found -2 at row 0"):
        group_ids(domain=np.array([0]), sensitive=np.array([-2]), n_values=3)
    with pytest.raises(ValueError, match="n_values=0"):
        group_ids(domain=np.array([0]), sensitive=np.array([0]), n_values=0)
    # one value: every known sample's group is its domain
    np.testing.assert_array_equal(
        group_ids(domain=np.array([0, 1, 2]), sensitive=np.array([0, -1, 0]), n_values=1), [0, -1, 2]
    )


@pytest.mark.parametrize("drop_last", [False, True])
def test_three_values_every_cell_in_every_batch(drop_last: bool) -> None:
    """2 domains x 3 values (6 cells, one of 3 samples) plus unknowns: every cell in every batch."""
    rng = np.random.default_rng(1)
    domain = rng.integers(0, 2, 500)
    value = rng.choice([0, 1, 2, -1], size=500, p=[0.5, 0.3, 0.15, 0.05])
    value[np.flatnonzero((domain == 1) & (value == 2))[3:]] = 0  # cell (1, v2) keeps 3 samples
    groups = group_ids(domain=domain, sensitive=value, n_values=3)
    sampler = GroupStratifiedSampler(groups=groups, batch_size=20, seed=0, drop_last=drop_last)
    batches = list(sampler)
    assert len(batches) == len(sampler) > 3
    for batch in batches:
        assert set(range(6)) <= set(groups[batch].tolist())
    with pytest.raises(ValueError, match="of the 6 \\(domain, sensitive value\\) cells; use batch_size > 6"):
        GroupStratifiedSampler(groups=groups, batch_size=6, seed=0)


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("batch_size", [16, 64])
def test_every_cell_in_every_batch_and_each_sample_about_once(drop_last: bool, batch_size: int) -> None:
    groups = skewed_groups()
    sampler = GroupStratifiedSampler(groups=groups, batch_size=batch_size, seed=3, drop_last=drop_last)
    batches = list(sampler)
    assert len(batches) == len(sampler) > 0
    cells = set(range(6))
    for batch in batches:
        assert cells <= set(groups[batch].tolist())
        assert len(batch) <= batch_size
        assert len(set(batch)) == len(batch)  # a sample never repeats inside a batch
    sizes = [len(b) for b in batches]
    assert (min(sizes) == max(sizes) == batch_size) if drop_last else (max(sizes) - min(sizes) <= 1)

    draws = np.bincount(np.concatenate(batches), minlength=groups.size)
    small_cells = [c for c in range(6) if (groups == c).sum() < len(sampler)]
    small = np.isin(groups, small_cells)
    assert small_cells
    assert (draws[~small] <= 1).all()  # never repeated unless the cell is too small to fill every batch
    for cell in small_cells:  # recycled cells: every member drawn, near-equally often
        cell_draws = draws[groups == cell]
        assert cell_draws.sum() == len(sampler) and cell_draws.max() - cell_draws.min() <= 1
    missed = (draws == 0).sum()
    assert missed == 0 if not drop_last else missed < batch_size
    assert draws[groups == -1].sum() > 0  # unknown-gender samples are sampled too


def test_batches_are_proportional_to_cell_size() -> None:
    groups = np.repeat([0, 1, 2, 3], [400, 200, 100, 100])
    sampler = GroupStratifiedSampler(groups=groups, batch_size=40, seed=0)
    counts = np.array([np.bincount(groups[b], minlength=4) for b in sampler])
    assert (np.abs(counts - np.array([20, 10, 5, 5])) <= 1).all()


def test_deterministic_for_seed_and_epoch() -> None:
    groups = skewed_groups()
    a = GroupStratifiedSampler(groups=groups, batch_size=32, seed=7)
    b = GroupStratifiedSampler(groups=groups, batch_size=32, seed=7)
    c = GroupStratifiedSampler(groups=groups, batch_size=32, seed=8)
    a.set_epoch(2)
    b.set_epoch(2)
    c.set_epoch(2)
    first, second, other = list(a), list(b), list(c)
    assert first == second
    assert first != other
    assert a.epoch == 3  # iterating to the end moves on to the next epoch
    b.set_epoch(3)
    assert list(a) == list(b) != first


def test_resume_mid_epoch() -> None:
    groups = skewed_groups()
    full = GroupStratifiedSampler(groups=groups, batch_size=32, seed=1)
    full.set_epoch(4)
    expected = list(full)

    sampler = GroupStratifiedSampler(groups=groups, batch_size=32, seed=1)
    sampler.set_epoch(4)
    it = iter(sampler)
    head = [next(it) for _ in range(5)]
    state = sampler.state_dict()
    assert state["epoch"] == 4 and state["position"] == 5

    resumed = GroupStratifiedSampler(groups=groups, batch_size=32, seed=1)
    resumed.load_state_dict(state)
    resumed.set_epoch(4)  # a trainer calling set_epoch for the resumed epoch keeps the position
    assert head + list(resumed) == expected

    with pytest.raises(ValueError, match="seed"):
        GroupStratifiedSampler(groups=groups, batch_size=32, seed=2).load_state_dict(state)
    with pytest.raises(ValueError, match="fingerprint"):
        GroupStratifiedSampler(groups=groups[::-1].copy(), batch_size=32, seed=1).load_state_dict(state)


def test_works_as_dataloader_batch_sampler() -> None:
    groups = np.repeat([0, 1, 2, 3], 10)
    dataset = TensorDataset(torch.arange(40), torch.as_tensor(groups))
    loader = DataLoader(dataset, batch_sampler=GroupStratifiedSampler(groups=groups, batch_size=8, seed=0))
    seen = []
    for idx, g in loader:
        assert set(g.tolist()) == {0, 1, 2, 3}
        seen.extend(idx.tolist())
    assert sorted(seen) == list(range(40))


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="batch_size=4 leaves no room"):
        GroupStratifiedSampler(groups=np.arange(4), batch_size=4, seed=0)
    with pytest.raises(ValueError, match="integers"):
        GroupStratifiedSampler(groups=np.array([0.5, 1.0]), batch_size=4, seed=0)
    with pytest.raises(ValueError, match="empty"):
        GroupStratifiedSampler(groups=np.array([], dtype=int), batch_size=4, seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        GroupStratifiedSampler(groups=np.arange(4), batch_size=0, seed=0)

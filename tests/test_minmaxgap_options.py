"""ERM-MinMaxGAP's issue-13 options on hand-computed toy batches: the permutation null (``noise``), the
class-balanced estimand (``group_loss``), no levelling down (``side``) and the held-out gap
(``heldout_folds``); each alone and together, values and gradients by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from fairser.objectives import GroupBatch
from fairser.objectives.minmaxgap import MinMaxGap

# the toy batch of tests/test_minmaxgap.py:
# domain 0: male [1, 3] (mean 2), female [1] (mean 1), one unknown-gender sample -> gap 1
# domain 1: male [0.5] (mean 0.5), female [1, 3] (mean 2)                          -> gap 1.5 (the worst)
LOSSES = [1.0, 3.0, 1.0, 2.0, 0.5, 1.0, 3.0]
DOMAIN = [0, 0, 0, 0, 1, 1, 1]
GENDER = [0, 0, 1, -1, 0, 1, 1]
N = len(LOSSES)


def batch(losses=LOSSES, domain=DOMAIN, gender=GENDER, y=None, index=None) -> GroupBatch:
    return GroupBatch(
        losses=torch.tensor(losses, dtype=torch.float64, requires_grad=True),
        domain=torch.tensor(domain),
        sensitive=torch.tensor(gender),
        y=None if y is None else torch.tensor(y),
        index=None if index is None else torch.tensor(index),
    )


def loss_and_grad(objective, b: GroupBatch):
    out = objective(b)
    (grad,) = torch.autograd.grad(out.loss, b.losses)
    return out, grad


def fixed(**kw) -> MinMaxGap:
    return MinMaxGap(n_domains=2, n_classes=4, weight="fixed", lam=1.0, **kw)


# -- side: worse_only -------------------------------------------------------------------------------------------
def test_worse_only_moves_only_the_worse_group() -> None:
    out, grad = loss_and_grad(fixed(side="worse_only"), batch())
    assert out.loss.item() == pytest.approx(sum(LOSSES) / N + 1.5)  # the value is the paper's
    expected = torch.full((N,), 1 / N, dtype=torch.float64)
    expected[5:] += 0.5  # d1 female (the worse group): +lambda / n; d1 male keeps 1/N (paper: 1/N - 1)
    torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize(
    ("gap", "max_", "weight", "group_loss", "noise"),
    list(
        itertools.product(
            ["abs", "squared"],
            ["hard", "smooth"],
            ["fixed", "dual", "ratio"],
            ["natural", "class_balanced"],
            ["none", "permutation"],
        )
    ),
)
def test_worse_only_never_gives_a_sample_negative_weight(gap, max_, weight, group_loss, noise) -> None:
    gen = torch.Generator().manual_seed(3)
    objective = MinMaxGap(
        n_domains=3,
        n_classes=4,
        gap=gap,
        max=max_,
        weight=weight,
        lam=5.0,
        eta=1.0,
        group_loss=group_loss,
        noise=noise,
        side="worse_only",
    )
    both = MinMaxGap(
        n_domains=3,
        n_classes=4,
        gap=gap,
        max=max_,
        weight=weight,
        lam=5.0,
        eta=1.0,
        group_loss=group_loss,
        noise=noise,
    )
    seen_negative_both = False
    for _ in range(30):
        n = 24
        b = GroupBatch(
            losses=torch.rand(n, generator=gen, dtype=torch.float64).mul(3).requires_grad_(),
            domain=torch.randint(0, 3, (n,), generator=gen),
            sensitive=torch.randint(-1, 2, (n,), generator=gen),
            y=torch.randint(0, 4, (n,), generator=gen),
        )
        _, grad = loss_and_grad(objective, b)
        assert (grad >= 1 / n - 1e-12).all(), grad  # at least the ERM weight, never negative
        b2 = GroupBatch(
            losses=b.losses.detach().clone().requires_grad_(), domain=b.domain, sensitive=b.sensitive, y=b.y
        )
        _, grad_both = loss_and_grad(both, b2)
        seen_negative_both |= bool((grad_both < 0).any())
    assert seen_negative_both  # the test can fail: side 'both' does give negative weights here


# -- group_loss: class_balanced ---------------------------------------------------------------------------------
def test_class_balanced_group_loss_by_hand() -> None:
    # one domain. male: y0 losses [1, 1, 1], y1 loss [4] -> natural 7/4, class-balanced (1 + 4) / 2 = 2.5
    #             female: y0 [2], y1 [2]                 -> natural 2,   class-balanced 2
    # natural: female worse by 0.25; class-balanced: male worse by 0.5
    losses = [1.0, 1.0, 1.0, 4.0, 2.0, 2.0]
    b = dict(losses=losses, domain=[0] * 6, gender=[0, 0, 0, 0, 1, 1], y=[0, 0, 0, 1, 0, 1])
    natural = fixed()(batch(**b))
    assert natural.logs["R"] == pytest.approx(0.25)
    out, grad = loss_and_grad(
        MinMaxGap(n_domains=1, n_classes=2, weight="fixed", lam=1.0, group_loss="class_balanced"), batch(**b)
    )
    assert out.logs["R"] == pytest.approx(0.5)
    assert out.loss.item() == pytest.approx(11 / 6 + 0.5)  # L_ERM stays the natural mean
    # d mean_male / d l_i = 1 / (|C| n_gc): y0 rows 1 / (2 * 3), the y1 row 1 / 2; female rows -1 / (2 * 1)
    expected = torch.tensor([1 / 6 + 1 / 6] * 3 + [1 / 6 + 1 / 2] + [1 / 6 - 1 / 2] * 2, dtype=torch.float64)
    torch.testing.assert_close(grad, expected)
    # worse_only: the female rows keep the ERM weight
    _, grad = loss_and_grad(
        MinMaxGap(
            n_domains=1, n_classes=2, weight="fixed", lam=1.0, group_loss="class_balanced", side="worse_only"
        ),
        batch(**b),
    )
    torch.testing.assert_close(grad[4:], torch.full((2,), 1 / 6, dtype=torch.float64))


def test_class_balanced_needs_labels() -> None:
    with pytest.raises(ValueError, match="GroupBatch.y"):
        fixed(group_loss="class_balanced")(batch())


# -- noise: permutation -----------------------------------------------------------------------------------------
def test_null_values_are_a_within_domain_permutation_and_r_null_is_their_gap() -> None:
    objective = fixed(noise="permutation", seed=5)
    domain = np.array(DOMAIN)
    value = np.array(GENDER)
    shuffled = objective.null_values(domain=domain, value=value, keep=np.ones(N, dtype=bool))
    assert (shuffled[value < 0] == -1).all()  # unknown rows stay unknown
    for d in (0, 1):  # the same values within each domain, reassigned
        assert sorted(shuffled[domain == d]) == sorted(value[domain == d])
    out = objective(batch())
    # R_null is the gap of the shuffled genders, computed here by hand from the permutation drawn at step 0
    losses = np.array(LOSSES)
    gaps = []
    for d in (0, 1):
        m = losses[(domain == d) & (shuffled == 0)]
        f = losses[(domain == d) & (shuffled == 1)]
        if len(m) and len(f):
            gaps.append(abs(m.mean() - f.mean()))
    assert out.logs["R_null"] == pytest.approx(max(gaps))
    assert out.logs["R_excess"] == pytest.approx(1.5 - max(gaps))
    # the draw is seeded by (seed, step): a fresh objective repeats it, the next step draws anew
    again = fixed(noise="permutation", seed=5)
    assert (again.null_values(domain=domain, value=value, keep=np.ones(N, dtype=bool)) == shuffled).all()


def test_paper_loss_and_gradient_are_unchanged_by_the_null() -> None:
    paper, noisy = fixed(), fixed(noise="permutation")
    out_a, grad_a = loss_and_grad(paper, batch())
    out_b, grad_b = loss_and_grad(noisy, batch())
    assert out_a.loss.item() == pytest.approx(out_b.loss.item())
    torch.testing.assert_close(grad_a, grad_b)


def random_batches(seed: int, *, n_batches: int, n: int = 64, gap: float = 0.0):
    """Losses ~ Exp(1), gender independent of them (``gap`` = extra loss of the d0 women)."""
    rng = np.random.default_rng(seed)
    for _ in range(n_batches):
        domain = rng.integers(0, 3, n)
        gender = rng.integers(0, 2, n)
        losses = rng.exponential(1.0, n) + gap * ((domain == 0) & (gender == 1))
        yield batch(losses=losses.tolist(), domain=domain.tolist(), gender=gender.tolist())


def test_null_baseline_has_expectation_zero_when_genders_are_shuffled() -> None:
    objective = MinMaxGap(n_domains=3, n_classes=4, weight="fixed", noise="permutation", seed=0)
    excess = np.array([objective(b).logs["R_excess"] for b in random_batches(0, n_batches=400)])
    r = np.array([objective(b).logs["R"] for b in random_batches(0, n_batches=50)])
    assert r.mean() > 0.3  # the batch gap alone is far from 0 (sampling noise)
    # mean(R - R_null) is 0 within 3 standard errors (fixed seed: a deterministic check)
    assert abs(excess.mean()) < 3 * excess.std(ddof=1) / np.sqrt(len(excess))
    # with a real gap of 1 nat in domain 0 the excess is clearly positive
    objective = MinMaxGap(n_domains=3, n_classes=4, weight="fixed", noise="permutation", seed=0)
    excess = np.array([objective(b).logs["R_excess"] for b in random_batches(1, n_batches=100, gap=1.0)])
    assert excess.mean() > 0.3


def test_noise_aware_lambda_falls_within_budget_and_rises_above_it() -> None:
    # every loss 1: R = R_null = 0 -> excess 0 < budget; one epoch of 4 steps: lambda = 1 + 0.5 * 4 * (0 - 0.05)
    objective = MinMaxGap(
        n_domains=2, n_classes=4, weight="dual", lam=1.0, eta=0.5, budget=0.05, noise="permutation"
    )
    flat = dict(losses=[1.0] * N)
    lams = [objective(batch(**flat)).logs["lambda"] for _ in range(4)]
    assert lams == [1.0] * 4  # constant within the epoch
    objective.on_epoch_end(0)
    assert objective.lam_t.item() == pytest.approx(0.9)
    for _ in range(10):  # 0.1 lower per epoch of 4 steps, projected onto lambda >= 0
        for _ in range(4):
            objective(batch(**flat))
        objective.on_epoch_end(0)
    assert objective.lam_t.item() == 0.0
    # men 0, women 2 in both domains: R = 2; a within-domain shuffle gives a gap of 1 or 2 in each domain
    # (R_null is 1 only when both shuffles mix the genders), so the excess is 0 or 1 per step; lambda rises
    objective = MinMaxGap(
        n_domains=2, n_classes=4, weight="dual", lam=1.0, eta=0.5, budget=0.05, noise="permutation"
    )
    gapped = dict(losses=[0.0, 0.0, 2.0, 1.0, 0.0, 2.0, 2.0])
    outs = [objective(batch(**gapped)).logs for _ in range(4)]
    objective.on_epoch_end(0)
    excess = np.mean([o["R"] - o["R_null"] for o in outs])
    assert objective.lam_t.item() == pytest.approx(1.0 + 0.5 * 4 * (excess - 0.05))
    assert set(o["R_null"] for o in outs) <= {1.0, 2.0} and excess > 0.05 and objective.lam_t.item() > 1.0
    # and in eval mode nothing moves
    objective.eval()
    objective(batch(**gapped))
    objective.on_epoch_end(1)
    assert objective.lam_t.item() == pytest.approx(1.0 + 0.5 * 4 * (excess - 0.05))


def test_paper_lambda_rises_on_noise_where_the_noise_aware_one_falls() -> None:
    paper = MinMaxGap(n_domains=3, n_classes=4, eta=0.01, budget=0.05)
    aware = MinMaxGap(n_domains=3, n_classes=4, eta=0.01, budget=0.05, noise="permutation")
    for epoch in range(10):
        for b in random_batches(epoch, n_batches=10):
            paper(b)
            aware(GroupBatch(losses=b.losses.detach(), domain=b.domain, sensitive=b.sensitive))
        paper.on_epoch_end(epoch)
        aware.on_epoch_end(epoch)
    assert paper.lam_t.item() > 1.5
    assert aware.lam_t.item() < 1.0


# -- heldout_folds ----------------------------------------------------------------------------------------------
def heldout_objective(**kw) -> MinMaxGap:
    objective = MinMaxGap(n_domains=1, n_classes=2, weight="fixed", lam=1.0, heldout_folds=2, **kw)
    # 8 training rows, 4 speakers: m1 m2 (male), f1 f2 (female), two rows each, all in domain 0
    objective.set_train_speakers(speakers=np.array(["m1", "m1", "m2", "m2", "f1", "f1", "f2", "f2"]))
    objective.setup(
        domain=torch.zeros(8, dtype=torch.long),
        sensitive=torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]),
        y=torch.tensor([0, 1] * 4),
    )
    return objective


def test_heldout_folds_split_each_cell_by_speaker() -> None:
    fold = heldout_objective()._row_fold
    assert fold[0] == fold[1] and fold[2] == fold[3] and fold[0] != fold[2]  # one male speaker per fold
    assert fold[4] == fold[5] and fold[6] == fold[7] and fold[4] != fold[6]


def test_heldout_gap_drives_the_gradient_of_the_training_rows_only() -> None:
    objective = heldout_objective()
    fold = objective._row_fold
    held = fold == 0  # epoch 0 holds out fold 0: one male and one female speaker
    # held-out rows: male loss 0, female loss 2 (women worse); training rows: male 3, female 1 (men worse)
    gender = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    losses = np.where(held, np.where(gender == 1, 2.0, 0.0), np.where(gender == 1, 1.0, 3.0))
    out, grad = loss_and_grad(
        objective, batch(losses=losses.tolist(), domain=[0] * 8, gender=gender.tolist(), index=list(range(8)))
    )
    assert out.logs["R"] == pytest.approx(2.0)  # the held-out gap
    assert out.logs["heldout_fold"] == 0
    expected = np.zeros(8)
    train = ~held
    expected[train] = 1 / 4  # ERM over the 4 training rows
    expected[train & (gender == 1)] += 1 / 2  # the held-out worse group (women) is pushed up
    expected[train & (gender == 0)] -= 1 / 2
    torch.testing.assert_close(grad, torch.tensor(expected))  # held-out rows: no gradient at all
    # the value: L_ERM(training rows) + lambda * (the training rows' gap along the held-out direction)
    assert out.loss.item() == pytest.approx(2.0 + (1.0 - 3.0))
    # the next epoch holds out fold 1 and uses fold 0's complete estimate
    objective.on_epoch_end(0)
    out2 = objective(batch(losses=[1.0] * 8, domain=[0] * 8, gender=gender.tolist(), index=list(range(8))))
    assert out2.logs["heldout_fold"] == 1 and out2.logs["R"] == pytest.approx(2.0)


def test_heldout_needs_speakers_and_index() -> None:
    objective = MinMaxGap(n_domains=1, n_classes=2, heldout_folds=2)
    with pytest.raises(ValueError, match="speaker of each"):
        objective.setup(
            domain=torch.zeros(4, dtype=torch.long),
            sensitive=torch.zeros(4, dtype=torch.long),
            y=torch.zeros(4, dtype=torch.long),
        )
    with pytest.raises(ValueError, match="heldout_folds needs setup"):
        objective(batch(losses=[1.0], domain=[0], gender=[0], index=[0]))
    with pytest.raises(ValueError, match="GroupBatch.index"):
        heldout_objective()(batch(losses=[1.0], domain=[0], gender=[0]))


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"noise": "bootstrap"}, "noise='bootstrap'"),
        ({"group_loss": "balanced"}, "group_loss"),
        ({"side": "worse"}, "side"),
        ({"heldout_folds": 1}, "heldout_folds"),
        ({"heldout_folds": 2.5}, "heldout_folds"),
        ({"noise": "permutation", "estimate": "ema"}, "estimate='ema'"),
        ({"heldout_folds": 3, "estimate": "ema"}, "estimate='ema'"),
    ],
)
def test_bad_new_options_are_named(kw, needle) -> None:
    with pytest.raises(ValueError, match=needle):
        MinMaxGap(n_domains=2, n_classes=4, **kw)


def test_extended_state_round_trip_and_summary() -> None:
    objective = fixed(noise="permutation")
    objective(batch())
    state = objective.state_dict()
    assert set(state) == {"lam_t", "ema", "ema_seen", "null_step", "epoch"}
    restored = fixed(noise="permutation")
    restored.load_state_dict(state)
    assert restored(batch()).logs == objective(batch()).logs  # the same null draw (step 1)
    assert set(fixed().state_dict()) == {"lam_t", "ema", "ema_seen"}  # the paper form's is unchanged
    logs = [
        {"epoch": 0, "lambda": 1.0, "R": 2.0, "R_null": 1.0},
        {"epoch": 1, "lambda": 0.5, "R": 1.0, "R_null": 0.5},
    ]
    assert objective.run_summary(logs) == {
        "final_lambda": 0.5,
        "mean_R_last_epoch": 1.0,
        "mean_R_null_last_epoch": 0.5,
    }

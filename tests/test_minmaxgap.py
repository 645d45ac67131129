"""ERM-MinMaxGAP on hand-computed toy batches: values, gradients, and the adaptive weight's dynamics, for
gender (two values) and for a three-valued attribute; with two values, today's code reproduces the branch
point of issue 11 bit for bit under every option combination."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from assets import branch_reference
from fairser.objectives import GroupBatch, build_objective, group_mean_losses
from fairser.objectives.minmaxgap import MinMaxGap

# domain 0: male [1, 3] (mean 2), female [1] (mean 1), one unknown-gender sample -> gap 1
# domain 1: male [0.5] (mean 0.5), female [1, 3] (mean 2)                          -> gap 1.5 (the worst)
LOSSES = [1.0, 3.0, 1.0, 2.0, 0.5, 1.0, 3.0]
DOMAIN = [0, 0, 0, 0, 1, 1, 1]
GENDER = [0, 0, 1, -1, 0, 1, 1]
N = len(LOSSES)
D0 = torch.tensor(DOMAIN) == 0


def toy(losses=LOSSES, domain=DOMAIN, gender=GENDER) -> GroupBatch:
    return GroupBatch(
        losses=torch.tensor(losses, dtype=torch.float64, requires_grad=True),
        domain=torch.tensor(domain),
        sensitive=torch.tensor(gender),
    )


def loss_and_grad(objective, batch: GroupBatch):
    out = objective(batch)
    (grad,) = torch.autograd.grad(out.loss, batch.losses)
    return out, grad


def fixed(**kw) -> MinMaxGap:
    return MinMaxGap(n_domains=2, n_classes=4, weight="fixed", lam=1.0, **kw)


def test_hard_abs_value_and_gradient_only_on_worst_domain() -> None:
    out, grad = loss_and_grad(fixed(), toy())
    erm = sum(LOSSES) / N
    assert out.loss.item() == pytest.approx(erm + 1.5)
    assert out.logs["R"] == pytest.approx(1.5)
    assert out.logs["worst_domain"] == 1
    assert out.logs["erm"] == pytest.approx(erm)
    assert out.logs["n_valid_domains"] == 2
    # R = mean(d1, female) - mean(d1, male): -1 on the d1 male sample, +1/2 on each d1 female sample
    expected = torch.full((N,), 1 / N, dtype=torch.float64)
    expected[4] += -1.0
    expected[5:] += 0.5
    torch.testing.assert_close(grad, expected)
    assert torch.equal(grad[D0], torch.full((4,), 1 / N, dtype=torch.float64))  # exactly the ERM part


def test_squared_gap_value_and_gradient() -> None:
    out, grad = loss_and_grad(fixed(gap="squared"), toy())
    assert out.logs["R"] == pytest.approx(1.5**2)
    expected = torch.full((N,), 1 / N, dtype=torch.float64)
    # d/dl (m - f)^2 = 2 (m - f) * dm/dl - 2 (m - f) * df/dl with m - f = -1.5
    expected[4] += 2 * -1.5
    expected[5:] += -2 * -1.5 * 0.5
    torch.testing.assert_close(grad, expected)


def test_smooth_max_is_logsumexp_and_spreads_gradient() -> None:
    tau = 0.5
    out, grad = loss_and_grad(fixed(max="smooth", tau=tau), toy())
    lse = tau * math.log(math.exp(1.0 / tau) + math.exp(1.5 / tau))
    assert out.logs["R"] == pytest.approx(lse)
    assert 1.5 <= out.logs["R"] <= 1.5 + tau * math.log(2)
    p0 = math.exp(1.0 / tau) / (math.exp(1.0 / tau) + math.exp(1.5 / tau))
    expected = torch.full((N,), 1 / N, dtype=torch.float64)
    expected[0:2] += p0 * 0.5  # gap_0 = mean(d0 male) - mean(d0 female) = 2 - 1 > 0
    expected[2] += -p0
    expected[4] += -(1 - p0)
    expected[5:] += (1 - p0) * 0.5
    torch.testing.assert_close(grad, expected)
    assert (grad[D0] != 1 / N).sum() == 3  # the non-worst domain's gendered samples get gradient too


def test_domain_missing_a_gender_contributes_nothing() -> None:
    # domain 1 has no female sample: only domain 0 (gap 1) is valid
    batch = toy(losses=[1.0, 3.0, 1.0, 2.0, 0.5], domain=[0, 0, 0, 0, 1], gender=[0, 0, 1, -1, 0])
    for kw in ({}, {"max": "smooth"}, {"gap": "squared"}):
        out, grad = loss_and_grad(fixed(**kw), batch)
        assert out.logs["R"] == pytest.approx(1.0)
        assert out.logs["worst_domain"] == 0
        assert grad[4].item() == pytest.approx(1 / 5)


@pytest.mark.parametrize(
    "kw", [{}, {"max": "smooth"}, {"gap": "squared"}, {"weight": "ratio"}, {"estimate": "ema"}]
)
def test_no_valid_domain_gives_zero_penalty_and_finite_gradient(kw) -> None:
    for gender in ([-1, -1, -1], [0, 0, -1], [1, -1, 1]):
        batch = toy(losses=[1.0, 2.0, 4.0], domain=[0, 1, 1], gender=gender)
        objective = MinMaxGap(n_domains=2, n_classes=4, **kw)
        out, grad = loss_and_grad(objective, batch)
        assert out.logs["R"] == 0.0 and out.logs["worst_domain"] == -1
        assert out.loss.item() == pytest.approx(7 / 3)
        torch.testing.assert_close(grad, torch.full((3,), 1 / 3, dtype=torch.float64))


def test_dual_weight_rises_above_budget_then_decays_to_zero() -> None:
    objective = MinMaxGap(n_domains=2, n_classes=4, weight="dual", lam=0.2, eta=0.1, budget=0.5)
    lams = []
    for _ in range(3):  # R = 1.5 > budget: lambda += 0.1 * (1.5 - 0.5) each step
        lams.append(objective(toy()).logs["lambda"])
    assert lams == pytest.approx([0.2, 0.3, 0.4])
    assert objective.state_dict()["lam_t"].item() == pytest.approx(0.5)

    small = toy(losses=[1.0, 1.0, 1.1, 2.0, 1.0, 1.0, 1.0])  # R = 0.1 < budget: lambda -= 0.1 * 0.4
    lams = [objective(small).logs["lambda"] for _ in range(16)]
    assert lams[:3] == pytest.approx([0.5, 0.46, 0.42])
    assert all(b <= a for a, b in zip(lams, lams[1:], strict=False))
    assert lams[-1] == 0.0 and objective.lam_t.item() == 0.0  # projected onto lambda >= 0

    restored = MinMaxGap(n_domains=2, n_classes=4, weight="dual", lam=0.2, eta=0.1, budget=0.5)
    restored.load_state_dict(objective.state_dict())
    assert restored(toy()).logs["lambda"] == 0.0


def test_dual_weight_used_in_loss_and_frozen_in_eval_mode() -> None:
    objective = MinMaxGap(n_domains=2, n_classes=4, weight="dual", lam=0.3, eta=0.1, budget=0.5)
    out, grad = loss_and_grad(objective, toy())
    assert out.loss.item() == pytest.approx(sum(LOSSES) / N + 0.3 * 1.5)
    assert grad[4].item() == pytest.approx(1 / N - 0.3)
    objective.eval()
    assert [objective(toy()).logs["lambda"] for _ in range(3)] == pytest.approx([0.4] * 3)


def test_ratio_weight_is_stopgrad_erm_over_r() -> None:
    objective = MinMaxGap(n_domains=2, n_classes=4, weight="ratio", lam=0.5)
    out, grad = loss_and_grad(objective, toy())
    erm = sum(LOSSES) / N
    lam = 0.5 * erm / (1.5 + 1e-8)
    assert out.logs["lambda"] == pytest.approx(lam)
    assert out.loss.item() == pytest.approx(erm + lam * 1.5)
    # gradient treats lambda as a constant: no term from d(erm / R)/dl
    expected = torch.full((N,), 1 / N, dtype=torch.float64)
    expected[4] += -lam
    expected[5:] += lam * 0.5
    torch.testing.assert_close(grad, expected)


def test_ema_estimate_blends_history_and_keeps_gradient_on_current_batch() -> None:
    beta = 0.75
    objective = MinMaxGap(n_domains=2, n_classes=4, weight="fixed", lam=1.0, estimate="ema", beta=beta)
    first = objective(toy())  # first sight of every group: estimates are the batch means
    assert first.logs["R"] == pytest.approx(1.5)
    torch.testing.assert_close(objective.ema, torch.tensor([2.0, 1.0, 0.5, 2.0], dtype=torch.float64))

    # second batch: domain 1 has only a male sample (loss 1.5); d1 female comes from the EMA alone
    batch = toy(losses=[2.0, 1.0, 1.5], domain=[0, 0, 1], gender=[0, 1, 0])
    out, grad = loss_and_grad(objective, batch)
    d0_m, d0_f = beta * 2.0 + (1 - beta) * 2.0, beta * 1.0 + (1 - beta) * 1.0
    d1_m, d1_f = beta * 0.5 + (1 - beta) * 1.5, 2.0
    assert out.logs["R"] == pytest.approx(abs(d1_m - d1_f))  # 1.25 > |d0_m - d0_f| = 1
    assert out.logs["worst_domain"] == 1
    # only the current term carries gradient, scaled by 1 - beta; the EMA-only female term carries none
    torch.testing.assert_close(grad, torch.tensor([1 / 3, 1 / 3, 1 / 3 - (1 - beta)], dtype=torch.float64))
    torch.testing.assert_close(objective.ema, torch.tensor([d0_m, d0_f, d1_m, d1_f], dtype=torch.float64))

    objective.eval()  # no update outside training
    objective(batch)
    torch.testing.assert_close(objective.ema, torch.tensor([d0_m, d0_f, d1_m, d1_f], dtype=torch.float64))


def test_logs_and_registry() -> None:
    objective = build_objective("minmaxgap", n_domains=2, n_classes=4)
    assert isinstance(objective, MinMaxGap)
    assert (objective.gap, objective.max, objective.estimate, objective.weight) == (
        "abs",
        "hard",
        "batch",
        "dual",
    )
    logs = objective(toy()).logs
    assert {"lambda", "R", "erm", "worst_domain"} <= set(logs)


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"gap": "l1"}, "gap='l1'"),
        ({"max": "soft"}, "max='soft'"),
        ({"tau": 0.0}, "tau"),
        ({"beta": 1.0}, "beta"),
        ({"weight": "adaptive"}, "weight"),
        ({"lam": -1.0}, "lam"),
        ({"eta": -0.1}, "eta"),
    ],
)
def test_bad_options_are_named(kw, needle) -> None:
    with pytest.raises(ValueError, match=needle):
        MinMaxGap(n_domains=2, n_classes=4, **kw)


def reference_loss(batch: GroupBatch, *, n_domains, n_values, gap, max, tau, estimate, beta, lam, ema, seen):
    """Plain-autograd ERM-MinMaxGAP on the shared ``group_mean_losses``: what the closed form must equal."""
    k = n_values
    means, counts = group_mean_losses(batch.losses, batch.group, k * n_domains)
    present = counts > 0
    if estimate == "ema":
        est = torch.where(present, torch.where(seen, beta * ema + (1 - beta) * means, means), ema)
        available = present | seen
    else:
        est, available = means, present
    table, ok = est.view(n_domains, k), available.view(n_domains, k)
    spread = table.masked_fill(~ok, -torch.inf).amax(1) - table.masked_fill(~ok, torch.inf).amin(1)
    valid = ok.sum(1) >= 2
    spread = torch.where(valid, spread, 0.0)
    gaps = spread if gap == "abs" else spread.square()
    if not valid.any():
        r = batch.losses.sum() * 0.0
    elif max == "hard":
        r = torch.where(valid, gaps, -torch.inf).max(dim=0).values
    else:
        r = tau * torch.logsumexp(torch.where(valid, gaps / tau, -torch.inf), dim=0)
    return batch.losses.mean() + lam * r, est.detach(), present


@pytest.mark.parametrize("n_values", [2, 3])
@pytest.mark.parametrize("estimate", ["batch", "ema"])
@pytest.mark.parametrize("max_", ["hard", "smooth"])
@pytest.mark.parametrize("gap", ["abs", "squared"])
@pytest.mark.parametrize("weight", ["fixed", "dual", "ratio"])
def test_closed_form_equals_autograd_reference(estimate, max_, gap, weight, n_values) -> None:
    gen = torch.Generator().manual_seed(0)
    n_domains, beta, tau, k = 3, 0.6, 0.3, n_values
    objective = MinMaxGap(
        n_domains=n_domains,
        n_classes=4,
        n_values=k,
        gap=gap,
        max=max_,
        tau=tau,
        estimate=estimate,
        beta=beta,
        weight=weight,
        lam=0.7,
        eta=0.5,
        budget=0.1,
    )
    ema = torch.zeros(k * n_domains, dtype=torch.float64)
    seen = torch.zeros(k * n_domains, dtype=torch.bool)
    for step in range(12):  # small batches: groups and whole domains are often missing
        n = 3 + step % 6
        batch = GroupBatch(
            losses=torch.rand(n, generator=gen, dtype=torch.float64).mul(3).requires_grad_(),
            domain=torch.randint(0, n_domains, (n,), generator=gen),
            sensitive=torch.randint(-1, k, (n,), generator=gen),
            n_values=k,
        )
        out, grad = loss_and_grad(objective, batch)
        lam = out.logs["lambda"]
        if weight == "ratio":
            assert lam == pytest.approx(0.7 * out.logs["erm"] / (out.logs["R"] + 1e-8))
        ref, est, present = reference_loss(
            batch,
            n_domains=n_domains,
            n_values=k,
            gap=gap,
            max=max_,
            tau=tau,
            estimate=estimate,
            beta=beta,
            lam=lam,
            ema=ema,
            seen=seen,
        )
        (ref_grad,) = torch.autograd.grad(ref, batch.losses)
        assert out.loss.item() == pytest.approx(ref.item(), rel=1e-9)
        torch.testing.assert_close(grad, ref_grad)
        ema = torch.where(present, est, ema)
        seen = seen | present
        if estimate == "ema":
            torch.testing.assert_close(objective.ema, ema)


def test_group_statistics_match_group_mean_losses() -> None:
    gen = torch.Generator().manual_seed(1)
    batch = GroupBatch(
        losses=torch.rand(50, generator=gen),
        domain=torch.randint(0, 4, (50,), generator=gen),
        sensitive=torch.randint(-1, 2, (50,), generator=gen),
    )
    means, counts, erm, _, _ = MinMaxGap(n_domains=4, n_classes=4).group_statistics(batch)
    ref_means, ref_counts = group_mean_losses(batch.losses, batch.group, 8)
    np.testing.assert_allclose(means, ref_means.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(counts, ref_counts.numpy())
    assert erm == pytest.approx(batch.losses.mean().item())


def test_bad_batches_are_named() -> None:
    objective = MinMaxGap(n_domains=2, n_classes=4)
    with pytest.raises(ValueError, match="n_domains=2"):
        objective(toy(domain=[0, 0, 0, 0, 1, 2, 1]))
    with pytest.raises(ValueError, match=">= 0"):
        objective(toy(domain=[0, 0, 0, 0, 1, -1, 1]))
    with pytest.raises(ValueError, match=r"sensitive values must be integers in \[0, 2\) or -1"):
        objective(toy(gender=[0, 0, 1, 2, 0, 1, 1]))
    with pytest.raises(ValueError, match=r"in \[0, 3\) or -1"):
        MinMaxGap(n_domains=2, n_classes=4, n_values=3)(
            GroupBatch(
                losses=torch.ones(2),
                domain=torch.zeros(2, dtype=torch.long),
                sensitive=torch.tensor([0, 3]),
                n_values=3,
            )
        )
    with pytest.raises(ValueError, match="n_values=2 sensitive values but the batch has n_values=3"):
        objective(
            GroupBatch(
                losses=torch.ones(1),
                domain=torch.zeros(1, dtype=torch.long),
                sensitive=torch.zeros(1, dtype=torch.long),
                n_values=3,
            )
        )
    with pytest.raises(ValueError, match="empty"):
        objective(toy(losses=[], domain=[], gender=[]))
    with pytest.raises(ValueError, match="sensitive values must be integers"):
        objective(
            GroupBatch(losses=torch.ones(2), domain=torch.zeros(2, dtype=torch.long), sensitive=torch.ones(2))
        )
    with pytest.raises(ValueError, match="domain ids must be integers"):
        objective(
            GroupBatch(losses=torch.ones(2), domain=torch.zeros(2), sensitive=torch.ones(2, dtype=torch.long))
        )
    with pytest.raises(ValueError, match="1-D of one length"):
        objective(toy(domain=[0, 0, 0, 0, 1, 1]))


def test_small_integer_dtypes_do_not_wrap_around() -> None:
    # 3 * 86 overflows uint8: the slots are computed in int64
    kw = {"n_domains": 100, "n_classes": 4, "weight": "fixed"}
    batch = GroupBatch(
        losses=torch.tensor([1.0, 3.0]), domain=torch.tensor([86, 86]), sensitive=torch.tensor([0, 1])
    )
    small = GroupBatch(batch.losses, batch.domain.to(torch.uint8), batch.sensitive.to(torch.int8))
    assert MinMaxGap(**kw)(small).logs == MinMaxGap(**kw)(batch).logs
    assert MinMaxGap(**kw)(small).logs["worst_domain"] == 86


def test_state_dict_round_trip_and_bad_state_are_named() -> None:
    objective = MinMaxGap(n_domains=2, n_classes=4, weight="dual", eta=0.5, estimate="ema")
    objective(toy())
    state = objective.state_dict()
    assert set(state) == {"lam_t", "ema", "ema_seen"}
    assert (
        state["lam_t"].dtype == state["ema"].dtype == torch.float64 and state["ema_seen"].dtype == torch.bool
    )
    assert state["lam_t"].item() == pytest.approx(1.0 + 0.5 * (1.5 - 0.05))  # one dual step from lam = 1
    restored = MinMaxGap(n_domains=2, n_classes=4, weight="dual", eta=0.5, estimate="ema")
    restored.load_state_dict(state)
    # the next step of the restored objective equals the original's, bit for bit (float64 state)
    a, b = objective(toy()), restored(toy())
    assert a.loss.item() == b.loss.item() and a.logs == b.logs
    assert torch.equal(objective.ema, restored.ema) and torch.equal(objective.ema_seen, restored.ema_seen)
    # the state is the objective's own: a module holding it loads and saves it under its prefix
    holder = torch.nn.ModuleDict({"objective": MinMaxGap(n_domains=2, n_classes=4)})
    holder.load_state_dict({f"objective.{k}": v for k, v in state.items()})
    assert holder["objective"].lam_t.item() == state["lam_t"].item()
    assert set(holder.state_dict()) == {"objective.lam_t", "objective.ema", "objective.ema_seen"}
    with pytest.raises(RuntimeError, match="Missing key.*ema_seen"):
        restored.load_state_dict({"lam_t": state["lam_t"], "ema": state["ema"]})
    with pytest.raises(RuntimeError, match="size mismatch for ema"):
        restored.load_state_dict({**state, "ema": torch.zeros(6)})
    with pytest.raises(RuntimeError, match="Unexpected key.*extra"):
        restored.load_state_dict({**state, "extra": torch.zeros(1)})


# Three values (e.g. an age band: 0 young, 1 middle, 2 old), two domains, one unknown-valued sample:
#   domain 0: v0 [1, 3] (mean 2), v1 [4] (mean 4), v2 [0.5, 1.5] (mean 1), unknown [2] -> gap 4 - 1 = 3
#   domain 1: v0 [2] (mean 2), v2 [1] (mean 1), v1 absent                            -> gap 2 - 1 = 1
# R = max(3, 1) = 3 (domain 0); ERM = 15 / 8 = 1.875.
LOSSES3 = [1.0, 3.0, 4.0, 0.5, 1.5, 2.0, 2.0, 1.0]
DOMAIN3 = [0, 0, 0, 0, 0, 0, 1, 1]
VALUE3 = [0, 0, 1, 2, 2, -1, 0, 2]


def toy3(losses=LOSSES3, domain=DOMAIN3, value=VALUE3) -> GroupBatch:
    return GroupBatch(
        losses=torch.tensor(losses, dtype=torch.float64, requires_grad=True),
        domain=torch.tensor(domain),
        sensitive=torch.tensor(value),
        n_values=3,
    )


def fixed3(**kw) -> MinMaxGap:
    return MinMaxGap(n_domains=2, n_classes=4, n_values=3, weight="fixed", lam=1.0, **kw)


def test_three_values_hard_abs_by_hand() -> None:
    out, grad = loss_and_grad(fixed3(), toy3())
    assert out.logs["R"] == 3.0
    assert out.logs["worst_domain"] == 0 and out.logs["n_valid_domains"] == 2
    assert out.logs["erm"] == 1.875
    assert out.loss.item() == pytest.approx(1.875 + 3.0)
    # dL/dl_i = 1/8, plus +1/n on the max-loss value of domain 0 (v1, one sample) and -1/n on its min-loss
    # value (v2, two samples); v0, the unknown sample and all of domain 1 keep 1/8
    expected = [0.125, 0.125, 1.125, -0.375, -0.375, 0.125, 0.125, 0.125]
    torch.testing.assert_close(grad, torch.tensor(expected, dtype=torch.float64))


def test_three_values_squared_and_smooth_by_hand() -> None:
    out, grad = loss_and_grad(fixed3(gap="squared"), toy3())
    assert out.logs["R"] == 9.0
    # d(gap^2) = 2 * 3 = 6 on v1 of domain 0 (n = 1), -6 / 2 = -3 on each v2 sample of domain 0
    expected = [0.125, 0.125, 6.125, -2.875, -2.875, 0.125, 0.125, 0.125]
    torch.testing.assert_close(grad, torch.tensor(expected, dtype=torch.float64))

    out, grad = loss_and_grad(fixed3(max="smooth", tau=1.0), toy3())
    assert out.logs["R"] == pytest.approx(math.log(math.exp(3.0) + math.exp(1.0)))  # 3.126928...
    p0 = 1.0 / (1.0 + math.exp(-2.0))  # softmax share of domain 0: 0.880797...
    p1 = 1.0 - p0  # of domain 1 (its max value v0: sample 6; its min value v2: sample 7)
    expected = [0.125, 0.125, 0.125 + p0, 0.125 - p0 / 2, 0.125 - p0 / 2, 0.125, 0.125 + p1, 0.125 - p1]
    torch.testing.assert_close(grad, torch.tensor(expected, dtype=torch.float64))


def test_three_values_ties_and_unknowns() -> None:
    # domain 0: v0 mean 2, v1 mean 2 (tied maxima: the first, v0, moves), v2 mean 1 -> gap 1
    out, grad = loss_and_grad(fixed3(), toy3(losses=[2.0, 2.0, 1.0], domain=[0, 0, 0], value=[0, 1, 2]))
    assert out.logs["R"] == 1.0
    torch.testing.assert_close(grad, torch.tensor([1 / 3 + 1, 1 / 3, 1 / 3 - 1], dtype=torch.float64))
    # every value of the domain ties: gap 0, no value moves
    out, grad = loss_and_grad(fixed3(), toy3(losses=[2.0, 2.0, 2.0], domain=[0, 0, 0], value=[0, 1, 2]))
    assert out.logs["R"] == 0.0 and out.logs["n_valid_domains"] == 1
    torch.testing.assert_close(grad, torch.full((3,), 1 / 3, dtype=torch.float64))
    # one value known per domain: no valid domain, R = 0
    out = fixed3()(toy3(losses=[1.0, 5.0, 9.0], domain=[0, 0, 1], value=[2, -1, 1]))
    assert out.logs["R"] == 0.0 and out.logs["worst_domain"] == -1
    # the unknown sample's loss enters ERM only: raising it by 8 raises L by exactly 8 / 8
    raised = list(LOSSES3)
    raised[5] += 8.0
    assert fixed3()(toy3(losses=raised)).loss.item() == pytest.approx(1.875 + 1.0 + 3.0)


def test_one_value_has_no_penalty() -> None:
    objective = MinMaxGap(n_domains=2, n_classes=4, n_values=1, weight="fixed")
    batch = GroupBatch(
        losses=torch.tensor([1.0, 3.0, 2.0], dtype=torch.float64, requires_grad=True),
        domain=torch.tensor([0, 0, 1]),
        sensitive=torch.tensor([0, 0, -1]),
        n_values=1,
    )
    out, grad = loss_and_grad(objective, batch)
    assert out.logs["R"] == 0.0 and out.loss.item() == pytest.approx(2.0)
    torch.testing.assert_close(grad, torch.full((3,), 1 / 3, dtype=torch.float64))


def test_ema_state_with_three_values() -> None:
    objective = fixed3(estimate="ema", beta=0.5)
    objective(toy3())
    torch.testing.assert_close(
        objective.ema, torch.tensor([2.0, 4.0, 1.0, 2.0, 0.0, 1.0], dtype=torch.float64)
    )
    assert objective.ema_seen.tolist() == [True, True, True, True, False, True]
    assert objective.state_dict()["ema"].shape == (6,)
    with pytest.raises(RuntimeError, match="size mismatch for ema"):
        MinMaxGap(n_domains=2, n_classes=4).load_state_dict(objective.state_dict())


@pytest.mark.parametrize("case", range(len(branch_reference.MINMAXGAP_OPTIONS)))
def test_two_values_reproduce_the_branch_point_bit_for_bit(case) -> None:
    """Every option combination (gap, max, estimate, weight), 12 steps of small random batches: the loss, its
    gradient, the logs and the final state (dual variable, EMA) equal the numbers recorded at the branch
    point of issue 11 (before the k-ary rewrite) exactly (assets/branch_reference.py)."""
    want = json.loads(branch_reference.PATH.read_text())["minmaxgap"][case]
    have = branch_reference.run_minmaxgap(want["options"], batch_type=GroupBatch)
    assert json.loads(json.dumps(have)) == {k: want[k] for k in ("steps", "state")}


def test_run_summary_is_the_last_lambda_and_the_last_epochs_mean_r() -> None:
    objective = MinMaxGap(n_domains=2, n_classes=4)
    logs = [
        {"step": 0, "epoch": 0, "lambda": 1.0, "R": 5.0},
        {"step": 1, "epoch": 0, "lambda": 1.5, "R": 7.0},
        {"step": 2, "epoch": 1, "lambda": 2.0, "R": 1.0},
        {"step": 3, "epoch": 1, "lambda": 2.5, "R": 2.0},
        {"step": 4, "epoch": 1, "erm": 0.3},  # a step without lambda / R
    ]
    assert objective.run_summary(logs) == {"final_lambda": 2.5, "mean_R_last_epoch": 1.5}
    assert objective.run_summary([]) == {"final_lambda": None, "mean_R_last_epoch": None}
    assert objective.run_summary([{"epoch": 0, "erm": 1.0}]) == {
        "final_lambda": None,
        "mean_R_last_epoch": None,
    }
    assert build_objective("erm", n_domains=2, n_classes=4).run_summary(logs) == {}

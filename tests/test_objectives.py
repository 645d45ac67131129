"""One smoke test over every registered objective (DomainBed habit): a new objective is covered the moment it
is registered. Objectives with required hyperparameters get them from ``REQUIRED_ARGS`` by parameter name;
an unknown required parameter fails the test, so whoever adds it must say how to build it here. Like the
trainer, the test calls ``setup`` with the training set's metadata before the first step."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from fairser.objectives import OBJECTIVES, GroupBatch, build_objective

N_TRAIN, N_FEATURES, EMBED_DIM, N_CLASSES, N_DOMAINS = 36, 5, 4, 3, 3

REQUIRED_ARGS = {
    "embed_dim": EMBED_DIM,
}


class TinyModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(N_FEATURES, EMBED_DIM)
        self.head = nn.Linear(EMBED_DIM, N_CLASSES)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.encoder(x)
        return embedding, self.head(torch.tanh(embedding))


def make_data(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    domain = torch.arange(N_TRAIN) % N_DOMAINS
    gender = (torch.arange(N_TRAIN) // N_DOMAINS) % 2  # every (domain, gender) cell has 6 samples
    return {
        "x": torch.randn(N_TRAIN, N_FEATURES, generator=gen),
        "y": torch.randint(0, N_CLASSES, (N_TRAIN,), generator=gen),
        "domain": domain,
        "gender": gender,
        "index": torch.arange(N_TRAIN),
    }


def make_batch(
    model: TinyModel, data: dict[str, torch.Tensor], rows: torch.Tensor, gender=None
) -> GroupBatch:
    embedding, logits = model(data["x"][rows])
    y = data["y"][rows]
    return GroupBatch(
        losses=F.cross_entropy(logits, y, reduction="none"),
        domain=data["domain"][rows],
        sensitive=data["gender"][rows] if gender is None else gender,
        logits=logits,
        y=y,
        index=data["index"][rows],
        embedding=embedding,
    )


def build(name: str):
    params = inspect.signature(OBJECTIVES[name].__init__).parameters
    required = [
        p.name
        for p in params.values()
        if p.kind is p.KEYWORD_ONLY and p.default is p.empty and p.name not in ("n_domains", "n_classes")
    ]
    missing = [p for p in required if p not in REQUIRED_ARGS]
    assert not missing, f"objective {name!r} requires {missing}: add a value to REQUIRED_ARGS"
    return build_objective(
        name, n_domains=N_DOMAINS, n_classes=N_CLASSES, **{p: REQUIRED_ARGS[p] for p in required}
    )


def assert_finite_step(objective, model, batch: GroupBatch) -> None:
    out = objective(batch)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss), out.loss
    params = [p for p in (*model.parameters(), *objective.parameters()) if p.requires_grad]
    grads = torch.autograd.grad(out.loss, params, allow_unused=True)
    for grad in grads:
        if grad is not None:
            assert torch.isfinite(grad).all()
    assert all(np.isfinite(v) for v in out.logs.values()), out.logs


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_objective_trains_and_survives_missing_groups(name: str) -> None:
    torch.manual_seed(0)
    data = make_data()
    model = TinyModel()
    objective = build(name)
    assert objective.name == name
    objective.setup(domain=data["domain"], sensitive=data["gender"], y=data["y"])  # as the trainer does
    optimizer = torch.optim.SGD([*model.parameters(), *objective.parameters()], lr=0.5)
    before = [p.detach().clone() for p in model.parameters()]
    rows = torch.arange(N_TRAIN)
    for _ in range(4):
        out = objective(make_batch(model, data, rows))
        assert torch.isfinite(out.loss)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))

    # one (domain, gender) group absent: domain 2, female
    no_group = rows[~((data["domain"] == 2) & (data["gender"] == 1))]
    assert_finite_step(objective, model, make_batch(model, data, no_group))
    # every gender unknown
    unknown = torch.full((N_TRAIN,), -1)
    assert_finite_step(objective, model, make_batch(model, data, rows, gender=unknown))
    # a single sample
    assert_finite_step(objective, model, make_batch(model, data, rows[:1]))

"""The objectives' numbers with two values (gender) at the branch point of issue 11, before the k-ary rewrite.

``branch_reference.json`` holds, for fixed random batches, every objective's loss, its gradient w.r.t. the
per-sample losses, logits and embedding, and its logs: ERM-MinMaxGAP under every option combination (12 steps
each, so the dual variable and the EMA evolve) and every registered objective under a few settings (3 steps
each). It was recorded by running this file on the code at the branch point (``python
tests/assets/branch_reference.py``); the tests replay the same batches through today's code and demand the same
numbers to the last bit. Do not re-record it: it pins the binary behaviour the k-ary code must keep.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import torch

from fairser.objectives import build_objective

PATH = Path(__file__).with_name("branch_reference.json")

# ERM-MinMaxGAP: every option combination, 3 domains, small batches (groups and domains often missing)
MINMAXGAP_OPTIONS = [
    {"gap": gap, "max": max_, "estimate": estimate, "weight": weight}
    for gap, max_, estimate, weight in itertools.product(
        ("abs", "squared"), ("hard", "smooth"), ("batch", "ema"), ("fixed", "dual", "ratio")
    )
]
MINMAXGAP_FIXED = {"tau": 0.3, "beta": 0.6, "lam": 0.7, "eta": 0.5, "budget": 0.1}
MINMAXGAP_DOMAINS, MINMAXGAP_STEPS = 3, 12

# every objective: a 40-row training set over 3 domains x (2 genders + unknown) x 3 classes
N_TRAIN, N_DOMAINS, N_CLASSES, EMBED_DIM, BATCH = 40, 3, 3, 4, 12
OBJECTIVE_SETTINGS = {
    "erm": [{}],
    "minmaxgap": [{}, {"max": "smooth", "estimate": "ema", "weight": "ratio"}],
    "groupdro": [{"eta": 0.5}, {"groups": "domain_gender_label", "eta": 0.5, "adjustment": 1.0}],
    "vrex": [{"beta": 2.0}],
    "cvar": [{"alpha": 0.3}],
    "soft_dsp": [{"beta": 1.5}, {"beta": 1.5, "reduce": "max"}],
    "soft_deo": [{"beta": 1.5}, {"beta": 1.5, "reduce": "max"}],
    "reweighting": [{}, {"normalize": True}],
    "adversarial": [{"hidden": 8, "warmup_steps": 2, "alpha": 0.8}],
    "cfa": [{"hidden": 8}],
    "lff": [{}],
    "jtt": [{}],
    "covada": [{}],
}


def minmaxgap_batches(seed: int = 0) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for step in range(MINMAXGAP_STEPS):
        n = 3 + step % 6
        out.append(
            {
                "losses": torch.rand(n, generator=gen, dtype=torch.float64).mul(3),
                "domain": torch.randint(0, MINMAXGAP_DOMAINS, (n,), generator=gen),
                "sensitive": torch.randint(-1, 2, (n,), generator=gen),
            }
        )
    return out


def training_set(seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "domain": torch.randint(0, N_DOMAINS, (N_TRAIN,), generator=gen),
        "sensitive": torch.randint(-1, 2, (N_TRAIN,), generator=gen),
        "y": torch.randint(0, N_CLASSES, (N_TRAIN,), generator=gen),
    }


def objective_batches(seed: int = 2, *, unlabelled: bool = False) -> list[dict[str, torch.Tensor]]:
    """Three batches of training rows with random losses, logits and embeddings (``unlabelled``: CFA's target
    rows, y = -1, in each batch)."""
    gen = torch.Generator().manual_seed(seed)
    train = training_set()
    out = []
    for _ in range(3):
        index = torch.randperm(N_TRAIN, generator=gen)[:BATCH]
        y = train["y"][index].clone()
        if unlabelled:
            y[::3] = -1
        out.append(
            {
                "losses": torch.rand(BATCH, generator=gen, dtype=torch.float32).mul(2),
                "logits": torch.randn(BATCH, N_CLASSES, generator=gen),
                "embedding": torch.randn(BATCH, EMBED_DIM, generator=gen),
                "domain": train["domain"][index],
                "sensitive": train["sensitive"][index],
                "y": y,
                "index": index,
            }
        )
    return out


def step_record(out, leaves: dict[str, torch.Tensor]) -> dict:
    names = [k for k, v in leaves.items() if v.requires_grad]
    grads = torch.autograd.grad(out.loss, [leaves[k] for k in names], allow_unused=True)
    return {
        "loss": out.loss.item(),
        "grad": {
            k: (None if g is None else g.reshape(-1).tolist()) for k, g in zip(names, grads, strict=True)
        },
        "logs": dict(out.logs),
    }


def run_minmaxgap(options: dict, *, batch_type, n_values: int = 2) -> dict:
    """Replay the MinMaxGAP batches; ``batch_type`` builds a GroupBatch from the fields (today's or the old
    field names). Returns the per-step records and the final state."""
    objective = build_objective(
        "minmaxgap",
        n_domains=MINMAXGAP_DOMAINS,
        n_classes=4,
        **({} if n_values == 2 else {"n_values": n_values}),
        **options,
        **MINMAXGAP_FIXED,
    )
    steps = []
    for fields in minmaxgap_batches():
        losses = fields["losses"].clone().requires_grad_()
        batch = batch_type(losses=losses, domain=fields["domain"], sensitive=fields["sensitive"])
        steps.append(step_record(objective(batch), {"losses": losses}))
    state = {k: v.reshape(-1).tolist() for k, v in objective.state_dict().items()}
    return {"steps": steps, "state": state}


def run_objective(name: str, params: dict, *, batch_type) -> list[dict]:
    torch.manual_seed(0)  # the adversaries' and LfF's initial weights
    objective = build_objective(
        name,
        n_domains=N_DOMAINS,
        n_classes=N_CLASSES,
        **({"embed_dim": EMBED_DIM} if name in ("adversarial", "cfa", "lff") else {}),
        **params,
    )
    train = training_set()
    objective.setup(domain=train["domain"], sensitive=train["sensitive"], y=train["y"])
    objective.train()
    records = []
    for fields in objective_batches(unlabelled=name == "cfa"):
        leaves = {k: fields[k].clone().requires_grad_() for k in ("losses", "logits", "embedding")}
        batch = batch_type(**leaves, **{k: fields[k] for k in ("domain", "sensitive", "y", "index")})
        records.append(step_record(objective(batch), leaves))
    return records


def record(batch_type) -> dict:
    return {
        "minmaxgap": [{"options": o, **run_minmaxgap(o, batch_type=batch_type)} for o in MINMAXGAP_OPTIONS],
        "objectives": {
            name: [{"params": p, "steps": run_objective(name, p, batch_type=batch_type)} for p in settings]
            for name, settings in OBJECTIVE_SETTINGS.items()
        },
    }


if __name__ == "__main__":
    from fairser.objectives import GroupBatch

    PATH.write_text(json.dumps(record(GroupBatch), indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {PATH} ({PATH.stat().st_size} bytes)")

"""Cost of one training step with ERM-MinMaxGAP (every weighting mode) relative to ERM, measured in one run.

Run: ``.venv/bin/python benchmarks/bench_objectives.py [--reps 2000] [--threads 1] [--objective-only]``

One step = forward of an MLP head (88 -> 256 -> 7) on random 88-dim eGeMAPS-sized features, per-sample
cross-entropy, the objective, backward, Adam step. Batch of 256 drawn over 3 languages x 2 genders (the
same fixed batch for every objective; no sampler is used). Steps of all objectives are interleaved in a
shuffled order each round, so machine noise hits them alike, and timed by this thread's CPU clock by
default; each ratio is median(objective) / median(ERM). A second, identical ERM shows the noise floor (its
ratio should be ~1). The goal (<= 1.1x ERM) is for every weighting mode of METHODS.md §3 (``weight``: fixed,
dual, ratio; hard max, batch estimate); the smooth-max and EMA-estimate variants and the issue-13 options
(``noise``, ``group_loss``, ``side``, ``heldout_folds``; the held-out folds over 24 speakers of the batch's
rows, which stand in for the training set) are printed beside them.
The last line is the worst ratio over the weighting modes. On a loaded machine each tiny op slows down far
more than the head's matmuls, so run it when the machine is quiet (the load average is printed).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

from fairser.objectives import GroupBatch, build_objective

N_FEATURES, HIDDEN, N_CLASSES, N_DOMAINS, BATCH = 88, 256, 7, 3, 256

VARIANTS: dict[str, tuple[str, dict]] = {
    "erm": ("erm", {}),
    "erm (2nd copy: noise check)": ("erm", {}),
    "minmaxgap weight=fixed": ("minmaxgap", {"weight": "fixed"}),
    "minmaxgap weight=dual": ("minmaxgap", {"weight": "dual"}),
    "minmaxgap weight=ratio": ("minmaxgap", {"weight": "ratio"}),
    "minmaxgap dual max=smooth": ("minmaxgap", {"max": "smooth"}),
    "minmaxgap dual estimate=ema": ("minmaxgap", {"estimate": "ema"}),
    # issue 13's options (METHODS.md §3 "Seeing the gap"), each alone and all together, with weight=dual
    "mmg noise=permutation": ("minmaxgap", {"noise": "permutation"}),
    "mmg group_loss=class_balanced": ("minmaxgap", {"group_loss": "class_balanced"}),
    "mmg side=worse_only": ("minmaxgap", {"side": "worse_only"}),
    "mmg heldout_folds=3": ("minmaxgap", {"heldout_folds": 3}),
    "mmg all four": (
        "minmaxgap",
        {"noise": "permutation", "group_loss": "class_balanced", "side": "worse_only", "heldout_folds": 3},
    ),
}
WEIGHTING_MODES = ("minmaxgap weight=fixed", "minmaxgap weight=dual", "minmaxgap weight=ratio")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2000, help="timed steps per objective")
    parser.add_argument("--warmup", type=int, default=50, help="untimed steps per objective first")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--clock",
        choices=("thread", "wall"),
        default="thread",
        help="thread: CPU time of this thread (robust on a shared machine); wall: perf_counter",
    )
    parser.add_argument(
        "--objective-only",
        action="store_true",
        help="time only the objective's forward + backward on fixed per-sample losses (no model, no optimizer)",
    )
    args = parser.parse_args()
    print(f"load average (1/5/15 min) before: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, N_FEATURES, generator=gen)
    y = torch.randint(0, N_CLASSES, (BATCH,), generator=gen)
    domain = torch.randint(0, N_DOMAINS, (BATCH,), generator=gen)
    gender = torch.randint(0, 2, (BATCH,), generator=gen)

    setups = {}
    for label, (name, hparams) in VARIANTS.items():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(N_FEATURES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, N_CLASSES))
        objective = build_objective(name, n_domains=N_DOMAINS, n_classes=N_CLASSES, **hparams)
        if hparams.get("heldout_folds"):  # the batch's rows stand in for a training set of 24 speakers
            objective.set_train_speakers(speakers=(torch.arange(BATCH) % 24).numpy())
            objective.setup(domain=domain, sensitive=gender, y=y)
        optimizer = torch.optim.Adam([*model.parameters(), *objective.parameters()], lr=1e-3)
        setups[label] = (model, objective, optimizer)

    index = torch.arange(BATCH)
    fixed_losses = F.cross_entropy(torch.randn(BATCH, N_CLASSES, generator=gen), y, reduction="none")

    clock = time.thread_time if args.clock == "thread" else time.perf_counter

    def step(model, objective, optimizer) -> tuple[float, ...]:
        """One step; its phases' durations (model + CE, objective, backward, optimizer)."""
        if args.objective_only:
            start = clock()
            losses = fixed_losses.clone().requires_grad_()
            objective(
                GroupBatch(losses=losses, domain=domain, sensitive=gender, y=y, index=index)
            ).loss.backward()
            return (clock() - start,)
        t0 = clock()
        logits = model(x)
        losses = F.cross_entropy(logits, y, reduction="none")
        t1 = clock()
        out = objective(
            GroupBatch(losses=losses, domain=domain, sensitive=gender, logits=logits, y=y, index=index)
        )
        t2 = clock()
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        t3 = clock()
        optimizer.step()
        return t1 - t0, t2 - t1, t3 - t2, clock() - t3

    name_of = {label: name for label, (name, _) in VARIANTS.items()}
    times: dict[str, list[float]] = {label: [] for label in setups}
    phases: dict[str, list[tuple[float, ...]]] = {label: [] for label in setups}
    order = list(setups)
    shuffler = random.Random(0)
    for rep in range(args.warmup + args.reps):
        shuffler.shuffle(order)  # no objective always runs right after the same one
        for label in order:
            durations = step(*setups[label])
            if rep >= args.warmup:
                times[label].append(sum(durations))
                phases[label].append(durations)

    what = "objective forward + backward only" if args.objective_only else "one training step"
    print(
        f"{what}, batch {BATCH}, MLP {N_FEATURES}-{HIDDEN}-{N_CLASSES}, {N_DOMAINS} languages x 2 "
        f"genders, {args.reps} interleaved reps, {args.threads} thread(s), "
        f"{args.clock} clock, sampler: none (fixed batch)"
    )
    print(f"load average (1/5/15 min) after: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    base = statistics.median(times["erm"])
    print(f"{'erm':<30} {base * 1e6:8.1f} us  1.000x")
    ratios = {}
    for label, ts in times.items():
        if label == "erm":
            continue
        med = statistics.median(ts)
        ratios[label] = med / base
        print(f"{label:<30} {med * 1e6:8.1f} us  {ratios[label]:.3f}x")
    if not args.objective_only:  # where the time goes: median of each phase (they need not sum to the step)
        print(f"\nphases (median us): {'model+CE':>9} {'objective':>9} {'backward':>9} {'optimizer':>9}")
        for label, rows in phases.items():
            cols = [statistics.median(col) * 1e6 for col in zip(*rows, strict=True)]
            print(f"{label:<30} " + " ".join(f"{v:9.1f}" for v in cols))
        print()
    variants = {label: r for label, r in ratios.items() if name_of[label] != "erm"}
    modes = {label: r for label, r in variants.items() if label in WEIGHTING_MODES}
    other = max(variants.items(), key=lambda kv: kv[1])
    print(f"worst ratio over all MinMaxGAP variants: {other[1]:.3f}x ({other[0]})")
    worst = max(modes.items(), key=lambda kv: kv[1])
    verdict = "met" if worst[1] <= 1.1 else "NOT met"
    if args.objective_only:  # the goal is for a whole training step; this is the objective alone
        verdict = "the goal is for a whole step, not checked here"
    print(
        f"worst ratio over the weighting modes vs erm: {worst[1]:.3f}x ({worst[0]}; goal <= 1.1x: {verdict})"
    )


if __name__ == "__main__":
    main()

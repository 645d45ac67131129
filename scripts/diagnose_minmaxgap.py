"""Why does (or doesn't) ERM-MinMaxGAP close the test gap? Group losses on train / valid / test.

Run:  .venv/bin/python scripts/diagnose_minmaxgap.py [--config configs/default.yaml] [--setting audio]

For ERM and ERM-MinMaxGAP (default options) trained as in the benchmark, prints the mean cross-entropy per
(language, gender) on each split and the male-female loss gap per language. MinMaxGAP can only act on the gap
it sees during training (per-batch training losses); if the training gap is small or mostly batch noise
while the held-out gap comes from unseen speakers' voices, the penalty cannot close the test gap.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from fairser.config import load_config
from fairser.models import build_head
from fairser.objectives import build_objective
from fairser.run import prepare_data
from fairser.run.backends import FeatureBackend
from fairser.run.views import run_grouper, split_views
from fairser.train import fit, predict_proba


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--setting", default="audio", choices=["audio", "audio+text"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfg = load_config(args.config)
    prepared = prepare_data(cfg, progress=False)
    views = split_views(
        prepared.manifest,
        setting=args.setting,
        config=cfg,
        grouper=run_grouper(prepared.manifest, setting=args.setting, config=cfg),
        labels=prepared.labels,
        make=FeatureBackend(prepared, cfg).dataset,
    )
    train = views["train"][0]
    for name in ("erm", "minmaxgap"):
        torch.manual_seed(args.seed)
        model = build_head(
            use_text=train.text is not None,
            audio_dim=train.audio.shape[1],
            text_dim=0 if train.text is None else train.text.shape[1],
            n_classes=len(prepared.labels),
            hidden=cfg.train.hidden,
            dropout=cfg.train.dropout,
        )
        objective = build_objective(name, n_domains=len(cfg.languages), n_classes=len(prepared.labels))
        res = fit(
            model=model,
            objective=objective,
            train=train,
            valid=views["valid"][0],
            config=cfg.train,
            seed=args.seed,
        )
        print(f"\n{name}: best epoch {res.best_epoch}, valid W-F1 {res.best_score:.3f}")
        print(
            f"{'split':6s} {'lang':4s} {'CE male':>8s} {'CE female':>10s} {'gap f-m':>8s} {'acc m':>6s} {'acc f':>6s}"
        )
        for split in ("train", "valid", "test"):
            data = views[split][0]
            p = predict_proba(res.model, data)
            ce = -np.log(p[np.arange(len(p)), data.y] + 1e-12)
            correct = p.argmax(1) == data.y
            for d, lang in enumerate(cfg.languages):
                m = (data.domain == d) & (data.sensitive == 0)
                f = (data.domain == d) & (data.sensitive == 1)
                print(
                    f"{split:6s} {lang:4s} {ce[m].mean():8.3f} {ce[f].mean():10.3f} {ce[f].mean() - ce[m].mean():+8.3f} "
                    f"{correct[m].mean():6.3f} {correct[f].mean():6.3f}"
                )
        lam = [s["lambda"] for s in res.step_logs if "lambda" in s]
        rr = [s["R"] for s in res.step_logs if "R" in s]
        if lam:
            print(
                f"lambda: start {lam[0]:.2f}, end {lam[-1]:.2f}; batch R: mean {np.mean(rr):.3f} (last epoch "
                f"{np.mean(rr[-len(rr) // max(1, len(res.history)) :]):.3f})"
            )


if __name__ == "__main__":
    main()

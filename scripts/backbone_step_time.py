"""CPU time of one optimizer step of the backbone loop (``fairser.scale.fit_backbone``), batch 4, tiny models.

Usage (from the repository root)::

    .venv/bin/python scripts/backbone_step_time.py [--threads 1] [--steps 12]
    .venv/bin/torchrun --standalone --nproc_per_node 2 scripts/backbone_step_time.py --per-device 2   # DDP, gloo

Each tiny random backbone of ``tests/assets/tiny_models.py`` (Qwen2-Audio in both classification modes and
both modalities, wav2vec2 and Whisper encoders fine-tuned by top layers or LoRA) is trained for
``steps + 2`` optimizer steps of 4 clips (0.5-1.25 s; ``per_device x processes`` under a launcher) with
ERM-MinMaxGAP; the first two steps are dropped
and the median and fastest of the rest printed (``step_time_s`` of the loop's step logs: forward, group
objective, backward, clipping, AdamW). The models are random and tiny, so this measures the loop's and the
wrappers' overhead (processor, prompt building, pooling), not a real model's cost.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from assets.tiny_models import TINY_LABELS, save_tiny_qwen2_audio, save_tiny_ssl, tone  # noqa: E402
from fairser.config import BackboneConfig  # noqa: E402
from fairser.models.qwen2_audio import Qwen2AudioClassifier  # noqa: E402
from fairser.models.ssl import SSLClassifier  # noqa: E402
from fairser.objectives import build_objective  # noqa: E402
from fairser.scale import AudioDataset, fit_backbone  # noqa: E402


def _data(n: int, *, modality: str) -> AudioDataset:
    return AudioDataset(
        audio=[tone(0.5 + 0.25 * (i % 4), freq=150.0 + 60 * (i % 4), seed=i) for i in range(n)],
        y=np.arange(n) % 4,
        domain=np.zeros(n, dtype=int),
        gender=np.arange(n) % 2,
        texts=["hello there", "okay yes", "I am fine thanks", "no"] * (n // 4),
        modalities=[modality] * n,
    )


def _time(model, config: BackboneConfig, *, modality: str, steps: int, world: int) -> tuple[float, float]:
    n = config.per_device_batch_size * world * (steps + 2)
    result = fit_backbone(
        model=model,
        objective=build_objective("minmaxgap", n_domains=1, n_classes=4),
        train=_data(n, modality=modality),
        valid=_data(4, modality=modality),
        config=config,
        seed=0,
        sampler="random",
        halt_after_steps=steps + 2,
    )
    times = [s["step_time_s"] for s in result.step_logs[2:]]
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--per-device", type=int, default=4, help="clips per process per step")
    args = parser.parse_args()
    world = int(os.environ.get("WORLD_SIZE", 1))
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # every folder before any training: under a launcher, transformers saves on the main process only
        # once the process group exists, and each process writes its own temporary folder
        qdir = save_tiny_qwen2_audio(root / "qwen")
        ssl_dirs = {kind: save_tiny_ssl(root / kind, kind=kind) for kind in ("wav2vec2", "whisper")}
        lora = {"r": 8, "alpha": 16, "dropout": 0.05}
        for mode in ("label_tokens", "head"):
            for modality in ("audio", "audio+text"):
                for mp, ckpt in (("no", False), ("bf16", False), ("no", True)):
                    torch.manual_seed(0)
                    model = Qwen2AudioClassifier.from_pretrained(
                        qdir, labels=TINY_LABELS, mode=mode, lora=lora, gradient_checkpointing=ckpt
                    )
                    cfg = BackboneConfig(
                        name="qwen2_audio",
                        path=qdir,
                        mode=mode,
                        per_device_batch_size=args.per_device,
                        mixed_precision=mp,
                        gradient_checkpointing=ckpt,
                    )
                    extra = (" bf16" if mp == "bf16" else "") + (" grad-ckpt" if ckpt else "")
                    name = f"qwen2-audio tiny {mode} {modality}{extra}"
                    rows.append((name, *_time(model, cfg, modality=modality, steps=args.steps, world=world)))
        for kind, path in ssl_dirs.items():
            for finetune in ("top_k", "lora"):
                torch.manual_seed(0)
                model = SSLClassifier.from_pretrained(path, n_classes=4, finetune=finetune, top_k=1)
                cfg = BackboneConfig(
                    name="ssl", path=path, finetune=finetune, top_k=1, per_device_batch_size=args.per_device
                )
                rows.append(
                    (
                        f"{kind} tiny {finetune}",
                        *_time(model, cfg, modality="audio", steps=args.steps, world=world),
                    )
                )
    if int(os.environ.get("RANK", 0)) != 0:
        return
    print(
        f"torch {torch.__version__}, {world} process(es) x {args.threads} thread(s), global batch "
        f"{args.per_device * world} ({args.per_device} per process), {args.steps} timed steps, fit_backbone"
    )
    width = max(len(r[0]) for r in rows)
    print(f"{'backbone / mode':<{width}}  median ms  best ms")
    for name, med, best in rows:
        print(f"{name:<{width}}  {1000 * med:9.1f}  {1000 * best:7.1f}")


if __name__ == "__main__":
    main()

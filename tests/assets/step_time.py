"""CPU step time (forward + backward + AdamW step, batch 4) of the tiny backbones built in tests/assets.

Run from the repository root: ``.venv/bin/python tests/assets/step_time.py [--threads 1] [--steps 20]``.
Prints the median and the fastest step per backbone and mode; the tiny models are random and tiny, so
these numbers measure the wrapper's overhead (processor, prompt building, pooling), not a real model's cost.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assets.tiny_models import TINY_LABELS, save_tiny_qwen2_audio, save_tiny_ssl, tone  # noqa: E402
from fairser.models.qwen2_audio import Qwen2AudioClassifier  # noqa: E402
from fairser.models.ssl import LayerWeightedHead, SSLClassifier, SSLEncoder, extract_layer_embeddings  # noqa: E402

AUDIOS = [tone(0.5 + 0.25 * i, freq=150.0 + 60 * i, seed=i) for i in range(4)]  # 0.5-1.25 s clips
TEXTS = ["hello there", "okay yes", "I am fine thanks", "no"]
Y = torch.tensor([0, 1, 2, 3])


def _time(step, *, steps: int) -> tuple[float, float]:
    step()  # warm-up
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def _trainer(model, forward):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def step():
        out = forward()
        opt.zero_grad()
        out.losses.mean().backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        qdir = save_tiny_qwen2_audio(root / "qwen")
        for mode in ("label_tokens", "head"):
            for modality, texts in (("audio", None), ("audio+text", TEXTS)):
                clf = Qwen2AudioClassifier.from_pretrained(
                    qdir, labels=TINY_LABELS, mode=mode, lora={"r": 8}
                ).train()
                step = _trainer(clf, lambda clf=clf, texts=texts: clf(audios=AUDIOS, texts=texts, labels=Y))
                rows.append((f"qwen2-audio tiny {mode} {modality}", *_time(step, steps=args.steps)))
        for kind in ("wav2vec2", "whisper"):
            path = save_tiny_ssl(root / kind, kind=kind)
            for finetune in ("top_k", "lora"):
                clf = SSLClassifier.from_pretrained(path, n_classes=4, finetune=finetune, top_k=1).train()
                step = _trainer(clf, lambda clf=clf: clf(audios=AUDIOS, labels=Y))
                rows.append((f"{kind} tiny {finetune}", *_time(step, steps=args.steps)))
            feats = torch.from_numpy(
                extract_layer_embeddings(SSLEncoder.from_pretrained(path), audios=AUDIOS)
            )
            head = LayerWeightedHead(n_layers=feats.shape[1], hidden_size=feats.shape[2], n_classes=4).train()
            step = _trainer(head, lambda head=head, feats=feats: head(feats, labels=Y))
            rows.append((f"{kind} tiny frozen (cached features, head only)", *_time(step, steps=args.steps)))
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch 4, {args.steps} timed steps")
    width = max(len(r[0]) for r in rows)
    print(f"{'backbone / mode':<{width}}  median ms  best ms")
    for name, med, best in rows:
        print(f"{name:<{width}}  {1000 * med:9.1f}  {1000 * best:7.1f}")


if __name__ == "__main__":
    main()

"""Write a tiny random DeSTA2.5-Audio folder in the released layout, for CPU pipeline checks.

Usage (from the repository root)::

    .venv/bin/python scripts/build_tiny_desta25.py models/tiny-desta25

The folder is laid out as the released DeSTA2.5-Audio checkpoint (config.json with model_type desta25,
model.safetensors holding the Q-Former adapter under its released ``perception.connector.*`` names) with the
LLM (a 2-layer Llama with a Llama-3-style chat template) in ``llm/`` and Whisper (4 encoder layers, 1 decoder
layer, 16 mels, 1-s window) in ``whisper/``; loaded by ``DeSTA25Classifier.from_pretrained`` exactly like the
real one. Random weights, so accuracies mean nothing. Nothing is downloaded. The builder is the test suite's
(``tests/assets/tiny_models.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from assets.tiny_models import save_tiny_desta25  # noqa: E402
from fairser.data.labels import MELD_EMOTIONS  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output folder (created)")
    parser.add_argument(
        "--labels",
        default=",".join(MELD_EMOTIONS),
        help="comma-separated label words made single tokens (default: the 7 MELD emotions)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    words = tuple(w.strip() for w in args.labels.split(",") if w.strip())
    if len(words) < 2:
        parser.error("--labels needs at least two words")
    path = save_tiny_desta25(args.out, words=words, seed=args.seed, vocab_size=520)
    print(f"tiny DeSTA2.5-Audio written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

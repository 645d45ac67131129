"""Write a tiny random Qwen2-Audio (model + tokenizer + feature extractor) to a folder, for CPU pipeline checks.

Usage (from the repository root)::

    .venv/bin/python scripts/build_tiny_qwen2_audio.py models/tiny-qwen2-audio

The folder is a complete local checkpoint as ``save_pretrained`` writes it (config.json, safetensors
weights, a byte-level BPE tokenizer trained on the fly with Qwen2-Audio's special tokens, a 16-mel, 1-s
Whisper feature extractor), loaded by ``Qwen2AudioClassifier.from_pretrained`` exactly like
Qwen2-Audio-7B-Instruct. 2 audio-encoder layers (d=32) and 2 decoder layers (hidden 64); random weights,
so accuracies mean nothing. The label words (default: the 7 MELD emotions of the built-in corpus) are single
tokens, as the ``label_tokens`` mode requires. Nothing is downloaded. The builder is the test suite's
(``tests/assets/tiny_models.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from assets.tiny_models import save_tiny_qwen2_audio  # noqa: E402
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
    path = save_tiny_qwen2_audio(args.out, words=words, seed=args.seed)
    print(f"tiny Qwen2-Audio written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

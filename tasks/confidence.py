"""How confident a research brief deserves to be, from three signals (docs/confidence.md).

1. The model's own rating, clamped to [0, 1]; a missing or unreadable one counts as 0.5.
2. The mean token log-probability of the answer, where the backend returns it: its
   exponential (the geometric-mean token probability, 1/perplexity) is blended with the
   rating as a weighted geometric mean, ``rating**0.6 * token_prob**0.4``.
3. Grounding: a brief that cites no source, or cites none of the notes it was shown, is
   capped at 0.4; one whose sources cannot be checked (no notes to check them against) at
   0.7; one that cites a note it was shown is not capped.

Each step can only lower the value when its signal worsens, so the result is monotone
in every signal and always in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

Grounding = Literal["verified", "unverified", "none"]

# A missing self-rating says nothing either way.
MISSING_RATING = 0.5
# The rating's weight in the geometric blend; the token probability has the rest.
RATING_WEIGHT = 0.6
# The most a brief may claim without a source it was given (below the default
# escalation threshold of 0.6, so an unsourced local brief always escalates).
NO_SOURCE_CAP = 0.4
# The most a brief may claim with sources nobody can check.
UNVERIFIED_CAP = 0.7
CAPS: dict[Grounding, float] = {
    "verified": 1.0,
    "unverified": UNVERIFIED_CAP,
    "none": NO_SOURCE_CAP,
}


@dataclass(frozen=True, slots=True)
class Confidence:
    """Every signal, what was made of it, and the final value."""

    self_rating: float | None
    rating: float
    sources: tuple[str, ...]
    cited_known: tuple[str, ...]
    grounding: Grounding
    cap: float
    logprob_mean: float | None
    token_prob: float | None
    blended: float
    value: float

    def to_dict(self) -> dict[str, Any]:
        """The signals as plain JSON, to store with the brief."""
        data = asdict(self)
        data["sources"] = list(self.sources)
        data["cited_known"] = list(self.cited_known)
        return data


def score(
    self_rating: float | None,
    sources: Sequence[str],
    logprob_mean: float | None,
    *,
    known_sources: Collection[str] | None = None,
) -> Confidence:
    """The brief's confidence.

    ``sources`` are what the brief cites; ``known_sources`` the note paths it was shown
    (``None`` when there are no notes to check against, so citations stay unverified).
    """
    rating = _rating(self_rating)
    cited = tuple(s for s in (str(x).strip() for x in sources) if s)
    known = _matching(cited, known_sources) if known_sources is not None else ()
    grounding: Grounding
    if not cited or (known_sources is not None and not known):
        grounding = "none"
    elif known_sources is None:
        grounding = "unverified"
    else:
        grounding = "verified"
    logprob = _logprob(logprob_mean)
    token_prob = None if logprob is None else math.exp(logprob)
    blended = rating if token_prob is None else _blend(rating, token_prob)
    cap = CAPS[grounding]
    return Confidence(
        self_rating=self_rating if _finite(self_rating) else None,
        rating=rating,
        sources=cited,
        cited_known=known,
        grounding=grounding,
        cap=cap,
        logprob_mean=logprob,
        token_prob=token_prob,
        blended=blended,
        value=min(blended, cap),
    )


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _rating(self_rating: Any) -> float:
    if not _finite(self_rating):
        return MISSING_RATING
    return min(1.0, max(0.0, float(self_rating)))


def _logprob(logprob_mean: Any) -> float | None:
    if not isinstance(logprob_mean, int | float) or isinstance(logprob_mean, bool):
        return None
    if math.isnan(logprob_mean):
        return None
    # A log-probability above 0 is a rounding error of a certain token.
    return min(0.0, float(logprob_mean))


def _blend(rating: float, token_prob: float) -> float:
    value = float(rating**RATING_WEIGHT * token_prob ** (1.0 - RATING_WEIGHT))
    return min(1.0, max(0.0, value))


def _key(path: str) -> str:
    return path.strip().replace("\\", "/").removeprefix("./").lower()


def _matching(cited: Sequence[str], known_sources: Collection[str]) -> tuple[str, ...]:
    """The cited sources that name a known note, by relative path or by file name."""
    paths = {_key(k) for k in known_sources}
    names = {p.rsplit("/", 1)[-1] for p in paths}
    found = []
    for source in cited:
        key = _key(source)
        if key in paths or key.rsplit("/", 1)[-1] in names:
            found.append(source)
    return tuple(found)

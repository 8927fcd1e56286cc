"""A research brief: the schema a model answers against, validation, and the repair ask.

The model answers one JSON object (``tasks.kinds.RESEARCH_SCHEMA``); ``parse_brief``
validates it with pydantic. An answer that does not validate gets one repair: the task
runs again as its next attempt, through the gate, with a prompt holding the problem and
the bad answer (``repair_prompt``), so the repair is reserved for and billed like any
call. A second invalid answer fails the task with both raw answers kept in the ledger.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from workers.structured import parse_answer

# How much of a bad answer the repair prompt quotes: enough to fix it, and a bound on
# what the repair's reservation must cover however long the answer was.
REPAIR_QUOTE_CHARS = 6000
MAX_FOLLOWUPS = 3

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class BriefAnswer(BaseModel):
    """What a research model must answer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    summary: Text
    key_points: list[Text] = Field(default_factory=list)
    confidence: float = Field(ge=0.0, le=1.0)
    follow_ups: list[Text] = Field(default_factory=list)
    sources: list[Text] = Field(default_factory=list)


class InvalidBrief(ValueError):
    """An answer that is not a valid brief; ``problem`` says why in one line."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def parse_brief(text: str, parsed: Any = None) -> BriefAnswer:
    """The brief in ``text`` (or its already-parsed JSON); InvalidBrief says what is wrong."""
    value = parsed
    if not isinstance(value, dict):
        value, problem = parse_answer(text, {"type": "object"})
        if problem:
            raise InvalidBrief(problem)
    try:
        return BriefAnswer.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the answer"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise InvalidBrief(f"{where}: {first['msg']}{more}") from None


def repair_prompt(topic: str, raw: str, problem: str) -> str:
    """The prompt of the one repair: the topic, what was wrong, and the answer to fix."""
    quoted = raw if len(raw) <= REPAIR_QUOTE_CHARS else raw[:REPAIR_QUOTE_CHARS] + " …"
    keys = "summary, key_points, confidence, follow_ups, sources"
    return (
        f"Your answer about the research topic below was not a valid brief: {problem}.\n"
        f"Rewrite it as one JSON object with exactly the keys {keys}, keeping its content. "
        "Answer with the JSON object only.\n\n"
        f"Topic: {topic}\n\nYour answer was:\n{quoted}"
    )


_SPACE = re.compile(r"\s+")
_TRAILING = re.compile(r"[\s.?!;:,…]+$")


def normalize(text: str) -> str:
    """A follow-up as it is stored: one line, single spaces, no trailing punctuation."""
    return _TRAILING.sub("", _SPACE.sub(" ", text).strip())


def text_key(text: str) -> str:
    """What two texts share when they are the same question up to case and punctuation."""
    return normalize(text).casefold()


def to_record(answer: BriefAnswer) -> dict[str, Any]:
    """The brief as the result record carries it (JSON)."""
    return json.loads(answer.model_dump_json())  # type: ignore[no-any-return]

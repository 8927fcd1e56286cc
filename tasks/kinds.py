"""The task kinds the studio runs, and validation of a job before anything is queued."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from arbiter.bound import input_bound
from arbiter.errors import InputError
from arbiter.settings import Settings


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of work: its default system prompt and output budget."""

    name: str
    system: str
    max_tokens: int
    structured: bool = False
    tool: bool = False  # no model call: the worker runs a tool (tasks/commit.py) instead


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("classify", "Classify the input. Answer with the label only.", 32),
        Kind("tag", "Return a short comma-separated list of tags for the input.", 64),
        Kind("summarize", "Summarize the input in a few sentences.", 256),
        Kind(
            "research",
            "Research the topic and answer with one JSON object: `summary` (a short brief), "
            "`key_points` (the claims it rests on), `confidence` (0 to 1: how sure you are), "
            "`follow_ups` (at most 3 questions worth researching next) and `sources` (the "
            "files or references the brief relies on; none if it relies on none).",
            768,
            structured=True,
        ),
        Kind("draft", "Write a first draft as asked.", 1024),
        Kind("code", "Write the code asked for. Answer with code and brief notes.", 1024),
        Kind("docs", "Write clear documentation for what is described.", 1024),
        Kind("strategy", "Think through the question and give a recommendation.", 2048),
        Kind("deep_research", "Research the question in depth, citing what you rely on.", 4096),
        # The prompt is the patch; extra holds repo, branch and message (tasks/commit.py).
        Kind("commit", "", 1, tool=True),
    )
}

# Research briefs come back as JSON (validated by tasks/brief.py) so follow-up topics can
# be queued and confidence judged without parsing prose.
RESEARCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "key_points": {"type": "array", "items": {"type": "string"}},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "follow_ups": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "sources": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["summary", "key_points", "confidence", "follow_ups", "sources"],
    "additionalProperties": False,
}

# Where a task came from (`task.source`): beat sends root research topics as "beat", the
# follow-up questions research queued as "followup", and a topic researched again because
# a local brief was unsure as "escalation".
SOURCES = frozenset({"api", "cli", "beat", "followup", "research", "approval", "escalation"})


@dataclass(frozen=True, slots=True)
class Job:
    """A validated unit of work, as it travels in the Celery message (JSON)."""

    job_id: str
    kind: str
    prompt: str
    system: str | None
    max_tokens: int
    confidential: bool
    tags: tuple[str, ...]
    source: str
    depth: int = 0
    topic_id: int | None = None
    priority: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def estimated_tokens(self) -> int:
        """The most input tokens a provider can bill for this job (see arbiter.bound)."""
        if KINDS[self.kind].tool:
            return 0  # no model reads it
        schema = RESEARCH_SCHEMA if KINDS[self.kind].structured else None
        return input_bound([self.system or "", self.prompt], schema)

    def to_message(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "kind": self.kind,
            "prompt": self.prompt,
            "system": self.system,
            "max_tokens": self.max_tokens,
            "confidential": self.confidential,
            "tags": list(self.tags),
            "source": self.source,
            "depth": self.depth,
            "topic_id": self.topic_id,
            "priority": self.priority,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_message(cls, data: Mapping[str, Any], settings: Settings) -> Job:
        """Rebuild (and re-validate) a job from a message, whoever published it."""
        return make_job(
            settings,
            kind=data.get("kind"),
            prompt=data.get("prompt"),
            job_id=data.get("job_id"),
            system=data.get("system"),
            max_tokens=data.get("max_tokens"),
            confidential=data.get("confidential", False),
            tags=data.get("tags") or (),
            source=data.get("source") or "api",
            depth=data.get("depth") or 0,
            topic_id=data.get("topic_id"),
            priority=data.get("priority") or 0,
            extra=data.get("extra") or {},
        )


def make_job(
    settings: Settings,
    *,
    kind: Any,
    prompt: Any,
    job_id: Any = None,
    system: Any = None,
    max_tokens: Any = None,
    confidential: Any = False,
    tags: Any = (),
    source: Any = "api",
    depth: Any = 0,
    topic_id: Any = None,
    priority: Any = 0,
    extra: Any = None,
) -> Job:
    """Validate a job; every mistake is one InputError sentence naming the fix."""
    if not isinstance(kind, str) or kind not in KINDS:
        known = ", ".join(sorted(KINDS))
        raise InputError(f"unknown task kind {kind!r}; use one of: {known}")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("the prompt is empty; give the text the task should work on")
    if not _valid_text(prompt) or (isinstance(system, str) and not _valid_text(system)):
        raise InputError(
            "the prompt is not valid UTF-8 text (it holds undecodable bytes); re-encode it as UTF-8"
        )
    if len(prompt) > settings.max_prompt_chars:
        raise InputError(
            f"the prompt has {len(prompt):,} characters, over the limit of "
            f"{settings.max_prompt_chars:,}; shorten it or raise SOVEREIGN_MAX_PROMPT_CHARS"
        )
    spec = KINDS[kind]
    if max_tokens is None:
        max_tokens = min(spec.max_tokens, settings.default_max_tokens)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InputError(f"max_tokens must be a positive whole number, not {max_tokens!r}")
    if max_tokens > settings.max_output_tokens:
        raise InputError(
            f"max_tokens {max_tokens:,} is above the limit of {settings.max_output_tokens:,}; "
            "ask for fewer or raise SOVEREIGN_MAX_OUTPUT_TOKENS"
        )
    if not isinstance(confidential, bool):
        raise InputError("confidential must be true or false")
    if isinstance(tags, str):
        tags = [t for t in (s.strip() for s in tags.split(",")) if t]
    if not all(isinstance(t, str) for t in tags):
        raise InputError("tags must be strings")
    if source not in SOURCES:
        raise InputError(
            f"unknown task source {source!r}; use one of: {', '.join(sorted(SOURCES))}"
        )
    if system is not None and not isinstance(system, str):
        raise InputError("the system prompt must be text")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise InputError("depth must be a whole number of at least 0")
    if kind == "commit":
        from tasks.commit import validate

        extra = validate(extra or {}, prompt)
    return Job(
        job_id=str(job_id) if job_id else uuid.uuid4().hex,
        kind=kind,
        prompt=prompt,
        system=system if system is not None else spec.system,
        max_tokens=max_tokens,
        confidential=confidential,
        tags=tuple(tags),
        source=source,
        depth=depth,
        topic_id=int(topic_id) if topic_id is not None else None,
        priority=int(priority),
        extra=dict(extra or {}),
    )


def _valid_text(text: str) -> bool:
    """False for text holding lone surrogates (undecodable bytes smuggled in by Python)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True

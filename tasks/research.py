"""The research task's worker side: the brief, its confidence, escalation and follow-ups.

After the call is settled (billed), the answer is validated as a brief
(``tasks.brief``). A valid brief is stored with its confidence and every signal it
rests on, whichever way the research was submitted (research without a topic gets one).
Then, in that order:

- **Escalation.** A brief written by a local model whose confidence is below the active
  policy's ``const ESCALATE_BELOW`` queues its topic again as an escalation: beat submits
  it through the gate with ``task.source == "escalation"`` and ``task.local_confidence``
  set, and the routing strategy decides where it runs. The threshold lives in the policy
  only (a policy without the constant never escalates), so one edit and one publish
  change it. An escalation never escalates again; it keeps the topic's confidentiality.
- **Follow-ups.** Normalized, then dropped when they repeat (same text up to case and
  punctuation, or the same meaning by ``tasks.similar``) a topic still in the backlog, a
  topic of the last 30 days, or each other; the rest join the backlog one level deeper,
  confidential when the research was. They reach a model only when beat submits them,
  through the gate, so ``task.depth`` and ``research.followups_today`` rules apply.

An invalid answer gets one repair (``RepairNeeded``: the task's next attempt, through
the gate); a second one fails the task with the raw answers kept.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from arbiter.errors import TaskFailed
from tasks.brief import (
    MAX_FOLLOWUPS,
    BriefAnswer,
    InvalidBrief,
    normalize,
    parse_brief,
    repair_prompt,
    text_key,
    to_record,
)

if TYPE_CHECKING:
    from arbiter.lang.policy import Policy
    from tasks.kinds import Job
    from tasks.runtime import Runtime

log = logging.getLogger("sovereign.research")

DEDUP_DAYS = 30
THRESHOLD_CONST = "ESCALATE_BELOW"


class RepairNeeded(Exception):
    """The answer was not a valid brief: run ``job`` (the repair) as the next attempt."""

    def __init__(self, job: Job, problem: str) -> None:
        super().__init__(problem)
        self.job = job
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Judged:
    """A brief's confidence and the signals it was computed from."""

    value: float
    signals: dict[str, Any]


def after_research(
    runtime: Runtime, job: Job, result: dict[str, Any], route: dict[str, Any]
) -> dict[str, Any]:
    """Store the brief of a settled research call; returns the result record with it."""
    text = str(result.get("text") or "")
    try:
        answer = parse_brief(text, result.get("json"))
    except InvalidBrief as bad:
        _invalid(runtime, job, int(result.get("attempt") or 1), text, bad.problem)
        raise  # _invalid always raises; this keeps the type checker sure of it
    notes = tuple(str(n) for n in job.extra.get("notes") or ())
    judged = judge(answer, notes, result.get("logprob_mean"))
    tier = str(route.get("tier") or "")
    threshold = escalate_below(runtime.policies.current())
    escalate = (
        tier == "local"
        and job.source != "escalation"
        and threshold is not None
        and judged.value < threshold
    )
    followups = fresh_followups(runtime, answer.follow_ups)
    stored = runtime.ledger.record_brief(
        topic_id=job.topic_id,
        topic_text=str(job.extra.get("topic") or job.prompt),
        task_id=job.job_id,
        depth=job.depth,
        confidential=job.confidential,
        summary=answer.summary,
        fields={
            "key_points": list(answer.key_points),
            "follow_ups": list(answer.follow_ups),
            "sources": list(answer.sources),
            "confidence": judged.value,
            "signals": judged.signals,
            "provider": str(route.get("provider") or result.get("provider") or ""),
            "model": str(route.get("model") or result.get("model") or ""),
            "tier": tier or None,
            "escalated_from": _int(job.extra.get("escalate_from")),
        },
        escalate_at=judged.value if escalate else None,
        followups=followups,
    )
    if escalate:
        log.info(
            "research %s: local confidence %.2f is below %.2f; topic %s queued as an escalation",
            job.job_id, judged.value, threshold, stored.topic_id,
        )  # fmt: skip
    if followups:
        log.info("research %s queued %d follow-up topic(s)", job.job_id, len(followups))
    return dict(
        result,
        brief=to_record(answer),
        brief_id=stored.brief_id,
        topic_id=stored.topic_id,
        confidence=judged.value,
        escalated=escalate,
        followups_queued=followups,
    )


def _invalid(runtime: Runtime, job: Job, attempt: int, text: str, problem: str) -> None:
    if not job.extra.get("repair_of"):
        topic = str(job.extra.get("topic") or job.prompt)
        extra = dict(job.extra, repair_of=problem, topic=topic)
        repair = replace(job, prompt=repair_prompt(topic, text, problem), extra=extra)
        log.warning(
            "research %s: not a valid brief (%s); asking once to repair it", job.job_id, problem
        )
        raise RepairNeeded(repair, problem)
    sentence = (
        f"research task {job.job_id} failed: the answer is not a valid brief even after one "
        f"repair ({problem}); both raw answers are kept in the ledger "
        f"(`sovereign status {job.job_id} --json`)"
    )
    runtime.ledger.fail_research(job.job_id, attempt, job.topic_id, sentence)
    raise TaskFailed(sentence)


def judge(answer: BriefAnswer, notes: Sequence[str], logprob_mean: Any) -> Judged:
    """The brief's confidence by ``tasks.confidence.score``, with every signal.

    Citations are checked against the note files the prompt carried; without notes
    there is nothing to check them against (``known_sources=None``).
    """
    from tasks.confidence import score

    mean = float(logprob_mean) if isinstance(logprob_mean, int | float) else None
    found = score(answer.confidence, list(answer.sources), mean, known_sources=list(notes) or None)
    signals = dict(found.to_dict(), notes_given=list(notes))
    return Judged(round(found.value, 4), signals)


def escalate_below(policy: Policy) -> float | None:
    """The active policy's ``const ESCALATE_BELOW``, or None when it declares none."""
    found = _THRESHOLDS.get(policy.version)
    if found is None:
        from arbiter.lang.checker import check_decls
        from arbiter.lang.sources import load_mapping

        loaded = load_mapping(policy.sources)
        checked, _ = check_decls(loaded.files, loaded.decls)
        value = checked.consts.get(THRESHOLD_CONST)
        number = (
            float(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool)
            else None
        )
        found = _THRESHOLDS[policy.version] = (number,)
    return found[0]


_THRESHOLDS: dict[str, tuple[float | None]] = {}


def fresh_followups(runtime: Runtime, proposed: Sequence[str]) -> list[str]:
    """The proposed follow-ups that repeat nothing known, normalized, at most three."""
    if not proposed:
        return []
    from tasks.similar import find_duplicate

    known = runtime.ledger.known_topic_texts(DEDUP_DAYS)
    keys = {text_key(t) for t in known}
    kept: list[str] = []
    for raw in proposed:
        text = normalize(raw)
        if not text or text_key(text) in keys:
            continue
        if find_duplicate(text, [*known, *kept]) is not None:
            continue
        kept.append(text)
        keys.add(text_key(text))
        if len(kept) == MAX_FOLLOWUPS:
            break
    return kept


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None

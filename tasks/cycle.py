"""Beat's research cycle: every ``SOVEREIGN_RESEARCH_INTERVAL_S``, submit the next topics.

One cycle claims up to ``SOVEREIGN_RESEARCH_BATCH`` topics that may run now (queued ones,
and waiting ones whose wait is over), highest priority first, then oldest, and submits a
``research`` task for each through the gate. Its prompt carries the best few passages of
the studio's notes for the topic; a task carrying them is confidential unless the notes
are declared shareable.

What happens to a topic the gate does not admit:

- **Denied by a rule that would admit it tomorrow** (a daily cap: the rule is evaluated
  again on the decision's own facts with today's counters at zero, so no list of cap
  rules is kept anywhere): it is ``waiting`` until the next local midnight, or until the
  first of next month when only a fresh month admits it. It is not submitted before then,
  so a capped topic writes one task row and one decision a day, not one a tick; the
  refusal is logged once per reason and day.
- **Denied otherwise** (a rule that tomorrow changes nothing for, such as a depth cap, or
  the gate's own refusals such as ``confidential``): ``denied``, with the reason.
- **Parked for approval**: ``waiting`` until a person decides.
- **Throttled**: admitted with a delay, so ``running``.
- **The kill switch is on** (scope ``all``): the cycle submits nothing. A halt of the
  topic's tier only: ``waiting`` for ten minutes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from arbiter.errors import SovereignError, TaskBlocked
from arbiter.ledger.windows import day_start, to_db

if TYPE_CHECKING:
    from celery import Celery

    from arbiter.lang.policy import Policy
    from arbiter.ledger.research import Topic
    from tasks.runtime import Runtime

log = logging.getLogger("sovereign.beat")

NOTES_IN_PROMPT = 3
# A topic refused by a halt (of its tier) is tried again after this.
HALT_RETRY = timedelta(minutes=10)
ADMITTED = ("proceed", "throttle", "approval")
# The counters a new day (or month) starts at zero.
DAILY = {
    "budget": ("daily_spend_usd", "daily_tokens", "daily_cloud_calls"),
    "research": ("cycles_today", "followups_today", "escalations_today"),
}
MONTHLY = {"budget": ("monthly_spend_usd",)}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one cycle did with one topic."""

    topic_id: int
    status: str  # running, waiting, denied, or queued (put back: the broker failed)
    task_id: str | None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Prepared:
    """A research prompt, and whether the notes in it make the task confidential."""

    prompt: str
    confidential: bool
    notes: tuple[str, ...]


def research_prompt(topic: str, passages: Sequence[Any]) -> str:
    """The topic, and the passages of the studio's notes to rely on and cite by file."""
    if not passages:
        return topic
    parts = [
        f"Research topic: {topic}",
        "Excerpts from the studio's own notes follow. Where the brief relies on one, name "
        "its file in `sources`.",
    ]
    parts += [f"[{p.path}]\n{str(p.text).strip()}" for p in passages]
    return "\n\n".join(parts)


def prepare(runtime: Runtime, topic: str, confidential: bool) -> Prepared:
    """The prompt of a topic's research, with the best passages of the notes."""
    settings = runtime.settings
    passages: list[Any] = []
    if settings.notes_dir is not None:
        from tasks.notes import search_notes

        passages = list(search_notes(runtime.ledger, topic, NOTES_IN_PROMPT))
    # The notes are the studio's own material: excerpts stay local unless declared shareable.
    secret = bool(passages) and not settings.notes_shareable
    return Prepared(
        research_prompt(topic, passages),
        confidential or secret,
        tuple(dict.fromkeys(str(p.path) for p in passages)),
    )


class ResearchCycle:
    """Runs cycles for one beat; remembers which refusals it has logged today."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._logged: set[tuple[str, str]] = set()

    def run(self) -> list[Outcome]:
        """One cycle: claim the next topics and submit each; returns what became of them."""
        runtime = self.app.sovereign_runtime.get()  # type: ignore[attr-defined]
        ledger = runtime.ledger
        try:
            if ledger.is_halted():
                self._note("halted", "the kill switch is on; no research is submitted")
                return []
            self._retries_refused(runtime)
            ledger.reconcile_topics()
            topics = ledger.claim_topics(runtime.settings.research_batch)
        except SovereignError as exc:
            log.error("beat could not read the research backlog: %s", exc)
            return []
        if not topics:
            log.debug("no research topic is due")
            return []
        self._sync_notes(runtime)
        return [self._submit(runtime, topic) for topic in topics]

    def _retries_refused(self, runtime: Runtime) -> None:
        """A retry or repair the gate denied by a daily cap: the topic waits for the day
        that lifts it (then runs as a new task); other refusals end it as denied."""
        ledger = runtime.ledger
        for topic_id, task_id in ledger.refused_topics():
            recorded = ledger.decisions(task_id)
            last = recorded[-1] if recorded else None
            if last is None or last.verdict != "deny":
                continue  # a rejected approval or a halt: reconcile ends it
            policy = runtime.policies.current()
            until = self._lifted_at(runtime, policy, task_id, last.decided_by)
            if until is not None:
                why = f"{last.verdict} by {last.decided_by}: {last.reason}"
                ledger.hold_topic(topic_id, "waiting", why, until)
                self._note(
                    why, f"research topic {topic_id} waits until {until:%Y-%m-%d %H:%M} UTC ({why})"
                )

    def _sync_notes(self, runtime: Runtime) -> None:
        """Bring the notes index in step with the folder before it is searched (a stat
        walk when nothing changed); a folder that cannot be read leaves the index as is."""
        folder = runtime.settings.notes_dir
        if folder is None:
            return
        from tasks.notes import sync_notes

        try:
            sync_notes(runtime.ledger, folder)
        except SovereignError as exc:
            self._note(str(exc), f"the notes were not indexed again: {exc}")

    def _submit(self, runtime: Runtime, topic: Topic) -> Outcome:
        from tasks.submit import submit

        ledger = runtime.ledger
        escalation = topic.local_confidence is not None
        job_id = uuid.uuid4().hex
        extra: dict[str, Any] = {"topic": topic.text}
        try:
            prepared = prepare(runtime, topic.text, topic.confidential)
            extra["notes"] = list(prepared.notes)
            if escalation:
                extra["local_confidence"] = topic.local_confidence
                extra["escalate_from"] = topic.escalate_from
            ledger.topic_task(topic.id, job_id)
            handle = submit(
                "research",
                prepared.prompt,
                job_id=job_id,
                source="escalation" if escalation else "followup" if topic.depth else "beat",
                depth=topic.depth,
                topic_id=topic.id,
                confidential=prepared.confidential,
                priority=topic.priority,
                tags=list(topic.tags),
                extra=extra,
                app=self.app,
            )
        except TaskBlocked as exc:
            return self._refused(runtime, topic, job_id, exc)
        except SovereignError as exc:
            ledger.unclaim_topic(topic.id)
            self._note(str(exc), f"research topic {topic.id} not queued ({exc}); it stays queued")
            return Outcome(topic.id, "queued", None, str(exc))
        if handle.parked:
            reason = f"task {job_id} waits for approval: {handle.decision.reason if handle.decision else ''}"
            ledger.hold_topic(topic.id, "waiting", reason, None)
            log.info("research topic %s: %s", topic.id, reason)
            return Outcome(topic.id, "waiting", job_id, reason)
        log.info("queued research topic %s as task %s", topic.id, job_id)
        return Outcome(topic.id, "running", job_id)

    def _refused(self, runtime: Runtime, topic: Topic, job_id: str, exc: TaskBlocked) -> Outcome:
        ledger = runtime.ledger
        decision = exc.decision
        if decision is None or decision.verdict == "halt":
            # A halt of the topic's tier: look again in a while, not every tick.
            ledger.hold_topic(topic.id, "waiting", str(exc), to_db(ledger.clock() + HALT_RETRY))
            self._note("halted", f"research topic {topic.id} waits: {exc}")
            return Outcome(topic.id, "waiting", job_id, str(exc))
        why = f"{decision.verdict} by {decision.decided_by}: {decision.reason}"
        until = self._lifted_at(runtime, runtime.policies.current(), job_id, decision.decided_by)
        if until is None:
            ledger.hold_topic(topic.id, "denied", why, None)
            self._note(why, f"research topic {topic.id} denied ({why})")
            return Outcome(topic.id, "denied", job_id, why)
        ledger.hold_topic(topic.id, "waiting", why, until)
        self._note(
            why,
            f"research topic {topic.id} waits until {until:%Y-%m-%d %H:%M} UTC ({why}); "
            "topics refused for the same reason today are not logged again",
        )
        return Outcome(topic.id, "waiting", job_id, why)

    def _lifted_at(
        self, runtime: Runtime, policy: Policy, task_id: str, rule: str | None
    ) -> datetime | None:
        """When the rule that denied the task would admit it (naive UTC), or None."""
        if rule is None or rule not in policy.rule_names:
            return None  # the gate's own refusals do not lift with time
        ledger = runtime.ledger
        recorded = ledger.decisions(task_id)
        if not recorded:
            return None
        facts = recorded[-1].facts
        now = ledger.clock()
        tomorrow = day_start(now, ledger.zone, -1)
        if _admits(policy, facts, DAILY):
            return tomorrow
        if _admits(policy, facts, {**DAILY, **MONTHLY}):
            local = now.astimezone(ledger.zone)
            first = (local.replace(day=28) + timedelta(days=4)).replace(
                day=1, hour=0, minute=0, second=0, microsecond=0
            )
            return to_db(first)
        return None

    def _note(self, reason: str, line: str) -> None:
        # One warning per reason and day; the rest at debug level.
        today = datetime.now(UTC).date().isoformat()
        key = (reason, today)
        if key in self._logged:
            log.debug("%s", line)
            return
        self._logged = {k for k in self._logged if k[1] == today} | {key}
        log.warning("%s", line)


def _admits(policy: Policy, facts: Mapping[str, Any], fresh: Mapping[str, Sequence[str]]) -> bool:
    """Whether the policy admits on ``facts`` with the ``fresh`` counters at zero."""
    again = {
        root: dict(value) if isinstance(value, Mapping) else value for root, value in facts.items()
    }
    for root, names in fresh.items():
        values = again.setdefault(root, {})
        for name in names:
            if name in values:
                values[name] = 0
    cost = (facts.get("route") or {}).get("estimated_cost_usd")
    again.pop("route", None)
    decision = policy.decide(again, enrich=lambda _route: {"estimated_cost_usd": cost})
    return decision.verdict in ADMITTED

"""The research loop: beat claims a topic from the backlog; results feed follow-ups back."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.kinds import Job
    from tasks.runtime import Runtime

log = logging.getLogger("sovereign.research")

MAX_FOLLOWUPS = 3


def after_research(runtime: Runtime, job: Job, result: dict[str, Any]) -> None:
    """Save the brief and queue its follow-up questions as new topics, one level deeper.

    Follow-ups are only added to the backlog here; they reach a model when beat claims
    them, through the gate like any other task, so the policy's depth and follow-up caps
    apply to them.
    """
    parsed = result.get("json") if isinstance(result.get("json"), dict) else None
    brief = str((parsed or {}).get("brief") or result.get("text") or "").strip()
    followups = [
        str(f).strip()
        for f in ((parsed or {}).get("followups") or [])
        if isinstance(f, str) and str(f).strip()
    ][:MAX_FOLLOWUPS]
    ledger = runtime.ledger
    if job.topic_id is not None:
        ledger.save_brief(job.topic_id, job.job_id, brief)
    for question in followups:
        # A follow-up repeats the matter of its research: confidential stays confidential.
        ledger.add_topic(
            question,
            depth=job.depth + 1,
            parent_id=job.topic_id,
            confidential=job.confidential,
            parent_task=job.job_id,
        )
    if followups:
        log.info("research %s queued %d follow-up topic(s)", job.job_id, len(followups))

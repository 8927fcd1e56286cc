"""Publishing again the tasks a halt set aside, once no halt covers them.

`sovereign resume` calls this right after it clears a scope, and the maintenance sweep
calls it on every round, so a resume made any other way (or a task set aside just as
the scope resumed) is still picked up. Each task is claimed in the ledger before it is
published, so two callers never publish it twice; it goes through the gate again as the
same attempt (no attempt is used up), so budgets, approvals and newer halts still apply.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from arbiter.errors import SovereignError
from arbiter.ledger import Ledger

log = logging.getLogger("sovereign.resume")


@dataclass
class Resumed:
    """What a resume published: task ids sent, refused by the gate, and put back."""

    sent: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def publish_resumable(app: Celery, ledger: Ledger) -> Resumed:
    """Publish every set-aside task whose tier no halt covers now."""
    done = Resumed()
    for task_id, attempt, tier, payload in ledger.claim_resumable():
        kwargs: dict[str, Any] = dict(payload.get("kwargs") or {})
        kwargs["attempt"] = attempt
        # The gate waives an approval only when the ledger holds a grant for the task.
        kwargs["approved"] = True
        kind = str((kwargs.get("job") or {}).get("kind") or "task")
        try:
            app.send_task(str(payload["task"]), kwargs=kwargs, task_id=task_id, shadow=kind)
        except SovereignError as exc:  # refused or parked by the gate: that is recorded
            log.warning("task %s was not resumed: %s", task_id, exc)
            done.refused.append(task_id)
        except Exception as exc:  # the broker did not take it: set it aside again
            log.warning("task %s could not be published again (%s); retrying later", task_id, exc)
            ledger.release(task_id, attempt, "the broker did not take the resumed task")
            ledger.unclaim_resumable(task_id, attempt, tier)
            done.failed.append(task_id)
        else:
            done.sent.append(task_id)
    return done

"""Maintenance work on the control queue: expiring reservations left by dead workers."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from tasks.names import EXPIRE_RESERVATIONS
from tasks.runtime import RuntimeSlot

log = logging.getLogger("sovereign.maintenance")


def register_maintenance(app: Celery, slot: RuntimeSlot) -> None:
    """Register the maintenance tasks on `app`."""

    @app.task(name=EXPIRE_RESERVATIONS, ignore_result=True)
    def expire_reservations() -> dict[str, Any]:
        runtime = slot.get()
        expired = runtime.ledger.expire_reservations()
        if expired:
            log.warning("expired %d reservation(s) held past their time to live", expired)
        return {"expired": expired}

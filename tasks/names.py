"""Every task name, key prefix and magic string of the Celery side, in one place."""

from __future__ import annotations

COMPLETE = "sovereign.complete"
EXPIRE_RESERVATIONS = "sovereign.expire_reservations"
RESEARCH_ENTRY = "sovereign.research"
MAINTENANCE_ENTRY = "sovereign.maintenance"
DAILY_SUMMARY = "sovereign.daily_summary"  # the daily cost summary to the alert webhook
SUMMARY_ENTRY = "sovereign.summary"

# Tasks that are plumbing, not AI work: the gate does not govern them.
CONTROL_TASKS = frozenset({EXPIRE_RESERVATIONS, DAILY_SUMMARY})

BEAT_LOCK_KEY = "sovereign:beat:lock"
BROKER_URL_FILE = "broker.url"

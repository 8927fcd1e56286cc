"""The one Celery app, built explicitly from settings."""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from arbiter.settings import Settings
from tasks.alerts import register_alerts, summary_entry
from tasks.broker import resolve_broker_url
from tasks.complete import register_complete
from tasks.maintenance import register_maintenance
from tasks.names import (
    COMPLETE,
    EXPIRE_RESERVATIONS,
    MAINTENANCE_ENTRY,
    RESEARCH_ENTRY,
    SUMMARY_ENTRY,
)
from tasks.router import GateRouter
from tasks.runtime import RuntimeSlot, build_runtime

# Margin of the broker's visibility timeout over the longest task: an unacknowledged
# message is handed to another worker only after this, so it must outlast any task.
VISIBILITY_MARGIN_S = 600.0


def create_app(settings: Settings, broker_url: str | None = None) -> Celery:
    """Build the Celery app: queues, JSON only, late acks, the gate as router, beat."""
    url = broker_url or resolve_broker_url(settings)
    slot = RuntimeSlot(lambda: build_runtime(settings, url))
    router = GateRouter(slot)
    app = Celery("sovereign", broker=url, backend=url, set_as_current=False)
    queues = [
        Queue(name, Exchange(name, type="direct"), routing_key=name)
        for name in (settings.queue_local, settings.queue_cloud, settings.queue_control)
    ]
    visibility = settings.task_time_limit_s + VISIBILITY_MARGIN_S
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        event_serializer="json",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_queues=queues,
        task_default_queue=settings.queue_control,
        # Never declare a queue on the fly: a task sent to a queue no worker consumes waits
        # forever, so an unknown queue is an error instead.
        task_create_missing_queues=False,
        task_routes=(router,),
        task_time_limit=settings.task_time_limit_s,
        # The soft limit lets the task charge its cut-short call before the hard one.
        task_soft_time_limit=settings.task_time_limit_s
        - min(30.0, settings.task_time_limit_s / 10),
        task_track_started=True,
        # No task-sent events: each would be a second publish per task. Flower shows a
        # task from the moment a worker receives it.
        task_send_sent_event=False,
        worker_send_task_events=True,
        result_expires=7 * 86400,
        result_extended=True,
        broker_transport_options={"visibility_timeout": visibility},
        result_backend_transport_options={
            "visibility_timeout": visibility,
            # Fail in a few seconds, not twenty, when the broker is gone.
            "retry_policy": {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5},
        },
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3.0,
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 1.0,
        },
        redis_socket_connect_timeout=3.0,
        redis_socket_timeout=10.0,
        timezone=settings.timezone,
        enable_utc=True,
        worker_hijack_root_logger=False,
        beat_scheduler="tasks.beat:GovernedScheduler",
        beat_schedule=beat_schedule(settings),
        beat_max_loop_interval=min(30.0, settings.research_interval_s),
    )
    app.sovereign_settings = settings  # type: ignore[attr-defined]
    app.sovereign_runtime = slot  # type: ignore[attr-defined]
    app.sovereign_router = router  # type: ignore[attr-defined]
    register_complete(app, slot)
    register_maintenance(app, slot)
    register_alerts(app, slot)
    return app


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Beat queues one research topic per interval and sweeps expired reservations."""
    schedule: dict[str, dict[str, Any]] = {
        RESEARCH_ENTRY: {"task": COMPLETE, "schedule": settings.research_interval_s},
        MAINTENANCE_ENTRY: {
            "task": EXPIRE_RESERVATIONS,
            "schedule": settings.maintenance_interval_s,
        },
    }
    # The daily cost summary, at SOVEREIGN_SUMMARY_HOUR, when a webhook is configured.
    summary = summary_entry(settings)
    if summary is not None:
        schedule[SUMMARY_ENTRY] = summary
    return schedule

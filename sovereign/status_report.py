"""What ``sovereign status`` (no task id) shows, gathered as one plain mapping.

Health of every part (broker, ledger, each worker, the local model, Flower), spend against
the caps the active policy enforces (read from its rules, ``arbiter.lang.caps``), tokens
in the last hour against the throttle, queue depths, held reservations, pending
approvals, poisoned tasks, the kill switch and the last refusals. Rendering is
``sovereign.commands.screen``; ``--json`` prints this mapping as it is. A part that does
not answer is reported down, with why, and the rest is still gathered.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from arbiter.errors import SovereignError
from arbiter.lang.caps import Cap, limit_of, policy_caps
from arbiter.settings import Settings

SPEND_VERDICTS = ("deny", "halt")
TOKEN_VERDICTS = ("throttle", "deny", "halt")


def gather(settings: Settings, *, timeout_s: float = 1.0, recent: int = 10) -> dict[str, Any]:
    """The status of the deployment ``settings`` describe, as JSON-ready values."""
    report: dict[str, Any] = {"generated_at": datetime.now(UTC).isoformat()}
    health: dict[str, Any] = {}
    report["health"] = health
    url, health["broker"] = _broker(settings, timeout_s)
    health["workers"] = _workers(settings, url, timeout_s) if health["broker"]["ok"] else []
    health["local_model"] = _local_model(settings)
    health["flower"] = _flower(settings, timeout_s)
    report["queues"] = _queues(settings, url, timeout_s) if url and health["broker"]["ok"] else {}
    secret = settings.alert_webhook
    if secret is None:
        report["webhook"] = {"configured": False, "where": None}
    else:
        from arbiter.alerts import where

        report["webhook"] = {"configured": True, "where": where(secret.get_secret_value())}
    ledger, health["database"] = _ledger(settings)
    if ledger is None:
        return report
    try:
        report.update(_from_ledger(settings, ledger, recent))
    finally:
        ledger.close()
    return report


def _broker(settings: Settings, timeout_s: float) -> tuple[str | None, dict[str, Any]]:
    from tasks.broker import redacted, resolve_broker_url

    try:
        url = resolve_broker_url(settings)
    except SovereignError as exc:
        return None, {"ok": False, "url": None, "detail": str(exc)}
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        client.ping()
        return url, {"ok": True, "url": redacted(url), "detail": "answers PING"}
    except Exception as exc:  # redis-py raises more than RedisError
        return url, {"ok": False, "url": redacted(url), "detail": f"no answer ({exc})"}
    finally:
        client.close()


def _workers(settings: Settings, url: str | None, timeout_s: float) -> list[dict[str, Any]]:
    from tasks.app import create_app

    app = create_app(settings, broker_url=url)
    try:
        replies = app.control.ping(timeout=timeout_s) or []
    except Exception:  # the broker went away between the two checks
        return []
    finally:
        app.close()
    names = sorted(name for reply in replies for name in reply)
    return [{"name": name, "ok": True} for name in names]


def _queues(settings: Settings, url: str, timeout_s: float) -> dict[str, int]:
    import redis

    names = (settings.queue_local, settings.queue_cloud, settings.queue_control)
    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.llen(name)
        return {name: int(n) for name, n in zip(names, pipe.execute(), strict=True)}
    except Exception:
        return {}
    finally:
        client.close()


def _local_model(settings: Settings) -> dict[str, Any]:
    from workers.probe import LocalProbe

    try:
        facts = LocalProbe(settings).facts()
    except Exception as exc:
        return {"ok": False, "backend": settings.local_backend, "models": [], "detail": str(exc)}
    return {
        "ok": facts.available,
        "backend": facts.backend,
        "models": list(facts.models),
        "detail": facts.detail,
    }


def _flower(settings: Settings, timeout_s: float) -> dict[str, Any]:
    host = settings.flower_address
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    url = f"http://{host}:{settings.flower_port}/"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return {"ok": True, "url": url, "detail": f"HTTP {response.status}"}
    except urllib.error.HTTPError as exc:  # 401 without credentials: it is up
        return {"ok": True, "url": url, "detail": f"HTTP {exc.code}"}
    except (OSError, ValueError) as exc:
        why = getattr(exc, "reason", None) or exc
        return {"ok": False, "url": url, "detail": f"not answering ({why})"}


def _ledger(settings: Settings) -> tuple[Any, dict[str, Any]]:
    from arbiter.ledger import Ledger
    from arbiter.ledger.db import describe, normalise_url

    try:
        ledger = Ledger.from_settings(settings)
        revision = ledger.revision()
    except SovereignError as exc:
        where = describe(normalise_url(settings.database_url))
        return None, {"ok": False, "url": where, "detail": str(exc)}
    return ledger, {"ok": True, "url": describe(ledger.url), "detail": f"revision {revision}"}


def _policy(settings: Settings, ledger: Any) -> tuple[dict[str, Any], list[Cap]]:
    from arbiter.policy_store import PolicyStore

    try:
        policy = PolicyStore(settings.policy_path, ledger).current()
    except SovereignError as exc:
        return {"version": None, "error": str(exc)}, []
    return {"version": policy.version, "error": None}, policy_caps(policy.sources)


def _against(used: float, cap: Cap | None) -> dict[str, Any]:
    return {
        "used": used,
        "cap": cap.limit if cap is not None else None,
        "rule": cap.rule if cap is not None else None,
        "tier": cap.tier if cap is not None else None,
        "share": used / cap.limit if cap is not None and cap.limit > 0 else None,
    }


def _from_ledger(settings: Settings, ledger: Any, recent: int) -> dict[str, Any]:
    policy, caps = _policy(settings, ledger)
    budget = ledger.budget_facts()
    state = ledger.status(recent)
    halt = ledger.halt_state()
    return {
        "policy": policy,
        "caps": [cap.to_dict() for cap in caps],
        "budget": budget,
        "spend": {
            "today_usd": _against(budget["daily_spend_usd"], limit_of(caps, "daily_spend_usd")),
            "month_usd": _against(budget["monthly_spend_usd"], limit_of(caps, "monthly_spend_usd")),
            "today_cloud_calls": _against(
                budget["daily_cloud_calls"], limit_of(caps, "daily_cloud_calls")
            ),
        },
        "tokens": {
            "last_hour": _against(
                budget["hourly_tokens"], limit_of(caps, "hourly_tokens", TOKEN_VERDICTS)
            ),
            "today": _against(budget["daily_tokens"], limit_of(caps, "daily_tokens")),
        },
        "reservations": {
            "held": state.held_count,
            "held_usd": state.held_usd,
            "held_usd_by_tier": state.held_by_tier,
        },
        "approvals": {
            "pending": state.pending_approvals,
            "tasks": [
                {
                    "task_id": a.task_id,
                    "kind": a.kind,
                    "reason": a.reason,
                    "requested_at": a.requested_at.isoformat(),
                }
                for a in ledger.approvals("pending")[:recent]
            ],
        },
        "poisoned": {
            "count": state.poisoned_count,
            "tasks": [
                {
                    "task_id": p.task_id,
                    "kind": p.kind,
                    "error": p.error,
                    "at": p.updated_at.isoformat(),
                }
                for p in state.poisoned
            ],
        },
        "kill_switch": {
            "halted": bool(halt.halted),
            "reason": halt.reason,
            "scopes": [
                {
                    "scope": scope.scope,
                    "reason": scope.reason,
                    "since": scope.since.isoformat() if scope.since else None,
                    "by": scope.halted_by,
                }
                for scope in halt.scopes
            ],
        },
        "blocked": [
            {
                "task_id": b.task_id,
                "attempt": b.attempt,
                "verdict": b.verdict,
                "decided_by": b.decided_by,
                "reason": b.reason,
                "at": b.created_at.isoformat(),
            }
            for b in state.blocked
        ],
    }

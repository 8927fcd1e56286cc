"""What one process needs to govern and run tasks, built once per process from settings.

Clients are created on first use and shared (arq's context shape). After a fork (Celery's
prefork pool) the child builds its own: database and socket connections do not survive a
fork.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from arbiter.gate import Gate
from arbiter.ledger import Ledger
from arbiter.ledger.prices import PriceTable
from arbiter.policy_store import PolicyStore
from arbiter.settings import Settings
from workers.probe import LocalProbe, cloud_providers
from workers.protocol import Backend
from workers.registry import build_backend

QUEUE_DEPTH_TTL_S = 1.0


@dataclass
class Runtime:
    """The per-process context: ledger, gate, policy, prices, backends and probes."""

    settings: Settings
    broker_url: str
    ledger: Ledger
    prices: PriceTable
    policies: PolicyStore
    gate: Gate
    probe: LocalProbe
    _backends: dict[tuple[str, str], Backend] = field(default_factory=dict)
    _depths: tuple[float, dict[str, int]] = (0.0, {})
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def served_queues(self) -> frozenset[str]:
        """The queues governed tasks may be published to: those the workers consume."""
        return frozenset({self.settings.queue_local, self.settings.queue_cloud})

    def backend(self, route: dict[str, Any]) -> Backend:
        key = (str(route.get("provider")), str(route.get("model")))
        with self._lock:
            found = self._backends.get(key)
            if found is None:
                found = build_backend(route, self.settings)
                self._backends[key] = found
            return found

    def queue_depths(self) -> dict[str, int]:
        """Messages waiting per queue, read from the broker at most once a second."""
        stamp, depths = self._depths
        now = time.monotonic()
        if now - stamp < QUEUE_DEPTH_TTL_S:
            return depths
        depths = _read_depths(
            self.broker_url, (self.settings.queue_local, self.settings.queue_cloud)
        )
        self._depths = (now, depths)
        return depths

    def host_facts(self) -> dict[str, dict[str, Any]]:
        """The `local` and `cloud` facts the gate cannot know by itself."""
        depths = self.queue_depths()
        probed = self.probe.facts()
        return {
            "local": {
                "available": probed.available,
                "models": list(probed.models),
                "queue_depth": depths.get(self.settings.queue_local, 0),
            },
            "cloud": {
                "providers": cloud_providers(self.settings),
                "queue_depth": depths.get(self.settings.queue_cloud, 0),
            },
        }


def _read_depths(url: str, queues: tuple[str, ...]) -> dict[str, int]:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        pipe = client.pipeline(transaction=False)
        for name in queues:
            pipe.llen(name)
        return {name: int(n) for name, n in zip(queues, pipe.execute(), strict=True)}
    except (redis.RedisError, OSError):
        return {}
    finally:
        client.close()


def build_runtime(settings: Settings, broker_url: str) -> Runtime:
    """Open the ledger (migrating it), load prices and the policy, and build the gate."""
    prices = PriceTable.load(settings.prices_path)
    ledger = Ledger(
        settings.database_url,
        timezone=settings.timezone,
        reservation_ttl_s=settings.reservation_ttl_s,
        prices=prices,
    )
    ledger.upgrade()
    policies = PolicyStore(settings.policy_path, ledger, prices=prices)
    probe = LocalProbe(settings)
    holder: dict[str, Runtime] = {}

    def host_facts() -> dict[str, dict[str, Any]]:
        return holder["rt"].host_facts()

    gate = Gate(
        ledger,
        policy_provider=policies.current,
        prices=prices,
        host_facts=host_facts,
        queues={"local": settings.queue_local, "cloud": settings.queue_cloud},
    )
    runtime = Runtime(
        settings=settings,
        broker_url=broker_url,
        ledger=ledger,
        prices=prices,
        policies=policies,
        gate=gate,
        probe=probe,
    )
    holder["rt"] = runtime
    return runtime


class RuntimeSlot:
    """Builds the runtime on first use in each process (again after a fork)."""

    def __init__(self, factory: Callable[[], Runtime]) -> None:
        self._factory = factory
        self._runtime: Runtime | None = None
        self._pid = -1
        self._lock = threading.Lock()

    def get(self) -> Runtime:
        pid = os.getpid()
        runtime = self._runtime
        if runtime is not None and self._pid == pid:
            return runtime
        with self._lock:
            if self._runtime is None or self._pid != pid:
                self._runtime = self._factory()
                self._pid = pid
            return self._runtime

    def reset(self) -> None:
        with self._lock:
            self._runtime = None
            self._pid = -1

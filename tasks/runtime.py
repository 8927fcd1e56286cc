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
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from arbiter.gate import Gate
from arbiter.ledger import Ledger
from arbiter.ledger.prices import PriceTable
from arbiter.policy_store import PolicyStore
from arbiter.settings import Settings
from workers.probe import LocalProbe, cloud_providers
from workers.registry import Backends

HOST_FACTS_TTL_S = 1.0


class HostFacts:
    """The `local` and `cloud` facts the gate cannot know by itself, cheaply cached.

    The gate asks for them on every publish; they are gathered at most once a second (the
    local probe keeps its own answer longer), with one broker client kept for the queue
    depths.
    """

    def __init__(self, settings: Settings, broker_url: str) -> None:
        self.settings = settings
        self.broker_url = broker_url
        self.probe = LocalProbe(settings)
        self._client: Any = None
        self._facts: tuple[float, dict[str, dict[str, Any]]] | None = None
        # Many threads may submit at once: one gathers the facts, the others wait for it.
        self._lock = threading.Lock()

    def queue_depths(self) -> dict[str, int]:
        """Messages waiting per queue, read from the broker; {} when it does not answer."""
        import redis

        queues = (self.settings.queue_local, self.settings.queue_cloud)
        if self._client is None:
            self._client = redis.Redis.from_url(
                self.broker_url, socket_timeout=1.0, socket_connect_timeout=1.0
            )
        try:
            pipe = self._client.pipeline(transaction=False)
            for name in queues:
                pipe.llen(name)
            return {name: int(n) for name, n in zip(queues, pipe.execute(), strict=True)}
        except Exception:  # a fact, not a failure: redis-py raises more than RedisError
            self.close()
            return {}

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def __call__(self) -> dict[str, dict[str, Any]]:
        cached = self._facts
        if cached is not None and time.monotonic() - cached[0] < HOST_FACTS_TTL_S:
            return cached[1]
        with self._lock:
            cached = self._facts
            if cached is not None and time.monotonic() - cached[0] < HOST_FACTS_TTL_S:
                return cached[1]
            return self._gather()

    def _gather(self) -> dict[str, dict[str, Any]]:
        now = time.monotonic()
        depths = self.queue_depths()
        probed = self.probe.facts()
        facts = {
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
        self._facts = (now, facts)
        return facts


@dataclass
class Runtime:
    """The per-process context: ledger, gate, policy, prices and backends."""

    settings: Settings
    ledger: Ledger
    policies: PolicyStore
    gate: Gate
    backends: Backends

    @cached_property
    def served_queues(self) -> frozenset[str]:
        """The queues governed tasks may be published to: those the workers consume."""
        return frozenset({self.settings.queue_local, self.settings.queue_cloud})


def build_runtime(settings: Settings, broker_url: str) -> Runtime:
    """Open the ledger (migrating it), load prices and the policy, and build the gate."""
    prices = PriceTable.load(settings.prices_path)
    ledger = Ledger(
        settings.database_url,
        timezone=settings.timezone,
        reservation_ttl_s=settings.reservation_ttl_s,
        prices=prices,
        lease_s=settings.lease_s,
    )
    ledger.upgrade()
    policies = PolicyStore(settings.policy_path, ledger, prices=prices)
    gate = Gate(
        ledger,
        policy_provider=policies.current,
        prices=prices,
        host_facts=HostFacts(settings, broker_url),
        queues={"local": settings.queue_local, "cloud": settings.queue_cloud},
    )
    return Runtime(settings, ledger, policies, gate, Backends(settings))


_INHERITED: list[Runtime] = []


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
                if self._runtime is not None:
                    # The parent's, inherited through fork: never let it be garbage collected
                    # here, where closing its connections would end the parent's sessions.
                    _INHERITED.append(self._runtime)
                self._runtime = self._factory()
                self._pid = pid
            return self._runtime

    def reset(self) -> None:
        with self._lock:
            self._runtime = None
            self._pid = -1

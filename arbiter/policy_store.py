"""The policy store: publish a checked policy, and hot-reload the active one.

The active policy is the newest one published to the ledger (so every machine of a
deployment runs the same one); with nothing published yet it is the files under the
policy path. A policy that does not check is never published, and a published one that
somehow fails to load leaves the running one in place.
"""

from __future__ import annotations

import getpass
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from arbiter import Policy, PolicyError, load_policy, load_policy_from_sources
from arbiter.errors import PriceMissing
from arbiter.ledger import Ledger
from arbiter.ledger.prices import PriceTable

log = logging.getLogger("sovereign.policy")

REFRESH_S = 2.0


class PolicyStore:
    """Hands the gate the active policy, re-reading the ledger every couple of seconds."""

    def __init__(
        self,
        path: Path,
        ledger: Ledger,
        *,
        prices: PriceTable | None = None,
        refresh_s: float = REFRESH_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.ledger = ledger
        self.prices = prices
        self.refresh_s = refresh_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._policy: Policy | None = None
        self._checked = float("-inf")

    def load_files(self) -> Policy:
        """Load and check the policy files; PolicyError names every file:line problem."""
        if not self.path.exists():
            raise PolicyError(
                [],
                f"the policy path {self.path} does not exist; create it or set "
                "SOVEREIGN_POLICY_PATH",
            )
        policy = load_policy([self.path])
        self._check_prices(policy)
        return policy

    def _check_prices(self, policy: Policy) -> None:
        if self.prices is None:
            return
        routes = [dict(c) for c in policy.route_candidates]
        missing = self.prices.missing(routes)
        if missing:
            raise PriceMissing(
                f"the policy routes to {', '.join(missing)} with no price; add "
                f"{'them' if len(missing) > 1 else 'it'} to {self.prices.path}"
            )

    def publish_files(self, published_by: str | None = None) -> str:
        """Check the files and publish them when they differ from the active policy."""
        policy = self.load_files()
        active = self.ledger.active_policy()
        if active is None or active.version != policy.version:
            self.ledger.publish_policy(policy.version, dict(policy.sources), published_by or _who())
            log.info("published policy %s from %s", policy.version, self.path)
        with self._lock:
            self._policy, self._checked = policy, self._monotonic()
        return str(policy.version)

    def current(self) -> Policy:
        """The active policy, reloaded when a new version was published."""
        now = self._monotonic()
        policy = self._policy
        if policy is not None and now - self._checked < self.refresh_s:
            return policy
        with self._lock:
            if self._policy is not None and now - self._checked < self.refresh_s:
                return self._policy
            self._policy = self._reload(self._policy)
            self._checked = now
            return self._policy

    def _reload(self, running: Policy | None) -> Policy:
        record = self.ledger.active_policy()
        if record is None:
            return running if running is not None else self.load_files()
        if running is not None and running.version == record.version:
            return running
        try:
            policy = load_policy_from_sources(record.sources)
        except PolicyError as exc:
            if running is None:
                raise
            log.error(
                "published policy %s does not load; keeping %s: %s",
                record.version,
                running.version,
                exc,
            )
            return running
        if running is not None:
            log.info("policy %s is now active (was %s)", policy.version, running.version)
        return policy


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"

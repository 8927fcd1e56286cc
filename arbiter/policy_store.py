"""The policy store: publish a checked policy, roll back to an earlier one, and
hot-reload the active one.

The active policy is the newest one published to the ledger (so every machine of a
deployment runs the same one); with nothing published yet it is the files under the
policy path. A policy that does not check is never published, and a published one that
somehow fails to load leaves the running one in place.

A rollback publishes the earlier version's sources again, as a new row: the history stays
an append-only log of who made which version active and when, so a rollback shows who did
it (flipping the old row's flag back would lose that). It checks the old sources against
today's vocabulary and prices first, exactly as ``publish`` checks files.
"""

from __future__ import annotations

import difflib
import getpass
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from arbiter import Policy, PolicyError, load_policy, load_policy_from_sources
from arbiter.errors import InputError, PriceMissing
from arbiter.ledger import Ledger, PolicyRecord
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

    def check_sources(self, sources: Mapping[str, str]) -> Policy:
        """Load and check a published policy's sources as ``publish`` checks files."""
        policy = load_policy_from_sources(sources)
        self._check_prices(policy)
        return policy

    def rollback(
        self, version: str | None = None, published_by: str | None = None
    ) -> tuple[PolicyRecord, PolicyRecord]:
        """Make an earlier version active again (by default the one before the active one);
        returns (the version now active, the one it replaced).

        The old sources must check against today's vocabulary and prices; when they do
        not, PolicyError or PriceMissing says so and the running version stays.
        """
        active = self.ledger.active_policy()
        if active is None:
            raise InputError(
                "no policy has been published yet, so there is nothing to roll back; "
                "publish one with `sovereign rules publish`"
            )
        target = resolve_version(self.ledger, version) if version else self.ledger.previous_policy()
        if target is None:
            raise InputError(
                f"policy {active.version} is the only version published, so there is nothing "
                "to roll back to; `sovereign rules history` lists what was published"
            )
        if target.version == active.version:
            raise InputError(f"policy {active.version} is already the active one")
        stays = f"policy {active.version} stays active"
        try:
            policy = self.check_sources(target.sources)
        except PolicyError as exc:
            raise PolicyError(
                exc.diagnostics,
                f"policy {target.version} no longer checks against today's vocabulary "
                f"({len(exc.diagnostics)} problem{'s' if len(exc.diagnostics) != 1 else ''} "
                f"above); {stays}",
            ) from None
        except PriceMissing as exc:
            raise PriceMissing(
                f"policy {target.version} no longer checks: {exc}; {stays}"
            ) from None
        self.ledger.publish_policy(target.version, dict(target.sources), published_by or _who())
        log.info("rolled back to policy %s (was %s)", target.version, active.version)
        with self._lock:
            self._policy, self._checked = policy, self._monotonic()
        now = self.ledger.active_policy()
        assert now is not None  # just published
        return now, active

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


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One publication: the record, a summary of its sources, and whether it published
    a version again (a rollback, or files put back as they were)."""

    record: PolicyRecord
    rules: int
    files: int
    first_published_at: datetime | None  # set when an earlier row published this version


def history(ledger: Ledger, limit: int = 20) -> list[HistoryEntry]:
    """The newest ``limit`` publications, newest first."""
    from arbiter.lang.excerpt import rule_sources

    entries = []
    for record in ledger.policy_history(limit):
        first = ledger.policy_record(record.version, first=True)
        again = first is not None and first.id != record.id
        entries.append(
            HistoryEntry(
                record,
                rules=len(rule_sources(record.sources)),
                files=len(record.sources),
                first_published_at=first.published_at if again and first else None,
            )
        )
    return entries


def resolve_version(ledger: Ledger, given: str) -> PolicyRecord:
    """The published version ``given`` names, in full or by a unique prefix."""
    found = ledger.policy_versions(given.strip()) if given.strip() else []
    if given in found:
        found = [given]
    if not found:
        raise InputError(
            f"no published policy version starts with {given!r}; "
            "`sovereign rules history` lists them"
        )
    if len(found) > 1:
        raise InputError(
            f"{given!r} could be any of {len(found)} policy versions "
            f"({', '.join(found[:5])}); give more of the version"
        )
    record = ledger.policy_record(found[0])
    assert record is not None  # the version was just listed
    return record


def diff_pair(
    ledger: Ledger, a: str | None = None, b: str | None = None
) -> tuple[PolicyRecord, PolicyRecord]:
    """The two versions ``rules diff`` compares: by default the one before the active one,
    and the active one; A alone is compared with the active one."""
    if b is None:
        active = ledger.active_policy()
        if active is None:
            raise InputError(
                "no policy has been published yet; publish one with `sovereign rules publish`"
            )
        later = active
    else:
        later = resolve_version(ledger, b)
    if a is not None:
        return resolve_version(ledger, a), later
    earlier = ledger.previous_policy()
    if earlier is None:
        raise InputError(
            f"policy {later.version} is the only version published; there is nothing to "
            "compare it with"
        )
    return earlier, later


def diff_lines(a: PolicyRecord, b: PolicyRecord) -> list[str]:
    """A unified diff of two versions' sources, file by file (empty when they are equal)."""
    out: list[str] = []
    for key in sorted(set(a.sources) | set(b.sources)):
        old, new = a.sources.get(key), b.sources.get(key)
        out += difflib.unified_diff(
            (old or "").splitlines(),
            (new or "").splitlines(),
            fromfile=f"{a.version}/{key}" if old is not None else "/dev/null",
            tofile=f"{b.version}/{key}" if new is not None else "/dev/null",
            lineterm="",
        )
    return out


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"

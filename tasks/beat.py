"""The beat producer: research cycles over the backlog (``tasks.cycle``), and maintenance.

Exactly one beat may run per deployment, or topics would be queued twice. A lock in the
broker (``SET NX`` with a time to live, refreshed every tick) enforces it: a second beat
refuses to start and says which one holds the lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from typing import Any

import redis
from celery.beat import PersistentScheduler, ScheduleEntry

from tasks.cycle import Outcome, ResearchCycle
from tasks.names import BEAT_LOCK_KEY, RESEARCH_ENTRY

log = logging.getLogger("sovereign.beat")

_REFRESH_LUA = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE_LUA = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class BeatLock:
    """A lease in the broker that only one beat holds at a time."""

    def __init__(self, url: str, ttl_s: float) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.ttl_ms = int(ttl_s * 1000)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._refresh = self.client.register_script(_REFRESH_LUA)
        self._release = self.client.register_script(_RELEASE_LUA)

    def acquire(self) -> None:
        if self.client.set(BEAT_LOCK_KEY, self.token, nx=True, px=self.ttl_ms):
            return
        holder = self.client.get(BEAT_LOCK_KEY)
        who = holder.decode() if isinstance(holder, bytes) else str(holder)
        if _dead_here(who):
            # Its beat died on this machine (a broker's log can keep the key past it).
            self._release(keys=[BEAT_LOCK_KEY], args=[who])
            if self.client.set(BEAT_LOCK_KEY, self.token, nx=True, px=self.ttl_ms):
                log.warning("took over the beat lock of %s, which is no longer running", who)
                return
        raise SystemExit(
            f"another beat is already running ({who}); run exactly one beat per deployment "
            f"(stop the other, or wait {self.ttl_ms // 1000}s if it died)"
        )

    def refresh(self) -> None:
        try:
            held = self._refresh(keys=[BEAT_LOCK_KEY], args=[self.token, self.ttl_ms])
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # The broker is restarting: the lease outlasts a few missed refreshes.
            log.warning("beat could not refresh its lock (%s); trying again next tick", exc)
            return
        if held:
            return
        # The key is gone (a broker restarted without it) or another beat holds it.
        if self.client.set(BEAT_LOCK_KEY, self.token, nx=True, px=self.ttl_ms):
            return
        raise SystemExit("this beat lost its lock to another beat; stopping so only one runs")

    def release(self) -> None:
        with contextlib.suppress(redis.RedisError):
            self._release(keys=[BEAT_LOCK_KEY], args=[self.token])


def _dead_here(holder: str) -> bool:
    """Whether a lock token names a process of this machine that no longer runs."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class GovernedScheduler(PersistentScheduler):
    """Celery's persistent scheduler, plus the beat lock and the research entry."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._lock: BeatLock | None = None
        self._cycle: ResearchCycle | None = None
        super().__init__(*args, **kwargs)

    def setup_schedule(self) -> None:
        ttl = max(60.0, 3 * float(self.max_interval or 30))
        self._lock = BeatLock(self.app.conf.broker_url, ttl)
        self._lock.acquire()
        super().setup_schedule()

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if self._lock is not None:
            self._lock.refresh()
        return float(super().tick(*args, **kwargs))

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._lock is not None:
                self._lock.release()

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        if entry.name == RESEARCH_ENTRY:
            try:
                self.queue_research()
            except Exception as exc:  # one bad cycle must not stop beat
                log.error("beat's research cycle failed: %s", exc)
            return
        try:
            self.apply_async(entry, producer=producer, advance=False)
        except Exception as exc:  # a broker outage must not stop beat
            log.error("beat could not queue %s: %s", entry.name, exc)

    def queue_research(self) -> list[Outcome]:
        """Run one research cycle (see ``tasks.cycle``)."""
        if self._cycle is None:
            self._cycle = ResearchCycle(self.app)
        return self._cycle.run()

"""The beat lock: one beat per deployment, taken over from a beat that died here."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import redis

from tasks.beat import BeatLock
from tasks.names import BEAT_LOCK_KEY


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_dead_beats_lock_is_taken_over_and_a_live_ones_is_not(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    host = socket.gethostname()
    client.set(BEAT_LOCK_KEY, f"{host}:{dead_pid()}:gone", px=60_000)
    lock = BeatLock(redis_url, 60)
    lock.acquire()
    assert client.get(BEAT_LOCK_KEY) == lock.token.encode()
    lock.release()

    client.set(BEAT_LOCK_KEY, f"{host}:{os.getpid()}:alive", px=60_000)
    with pytest.raises(SystemExit, match="another beat is already running"):
        BeatLock(redis_url, 60).acquire()


def test_a_lock_lost_with_the_brokers_data_is_taken_again(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    lock = BeatLock(redis_url, 60)
    lock.acquire()
    client.delete(BEAT_LOCK_KEY)  # a broker restarted without it
    lock.refresh()
    assert client.get(BEAT_LOCK_KEY) == lock.token.encode()
    client.set(BEAT_LOCK_KEY, "elsewhere:1:other")
    with pytest.raises(SystemExit, match="lost its lock"):
        lock.refresh()

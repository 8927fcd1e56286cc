"""Finding the broker: a configured Redis, or the embedded Valkey that `sovereign up` started.

The embedded one records its URL in ``var/broker.url`` of the deployment's home, so every
process of the deployment finds it from any current folder.
"""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

from arbiter.errors import BrokerUnavailable
from arbiter.settings import Settings
from tasks.names import BROKER_URL_FILE


def no_broker(settings: Settings) -> str:
    """The sentence for a deployment whose embedded broker is not running."""
    return (
        f"no broker is configured and the embedded one of the deployment at {settings.home} "
        "is not running; start the stack there with `sovereign up` (or `make up`), set "
        "SOVEREIGN_HOME to the folder the stack runs in, or set SOVEREIGN_BROKER_URL to a "
        "Redis URL"
    )


def broker_url_file(settings: Settings) -> Path:
    return settings.var_dir / BROKER_URL_FILE


def resolve_broker_url(settings: Settings) -> str:
    """The configured broker URL, else the one the embedded Valkey recorded under var/."""
    if settings.broker_url:
        return settings.broker_url
    try:
        url = broker_url_file(settings).read_text(encoding="utf-8").strip()
    except OSError:
        raise BrokerUnavailable(no_broker(settings)) from None
    if not url:
        raise BrokerUnavailable(no_broker(settings))
    return url


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def ping(url: str, timeout: float = 2.0) -> None:
    """Raise BrokerUnavailable with one sentence unless the broker answers PING."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        raise BrokerUnavailable(
            f"the broker at {redacted(url)} does not answer ({first_line(exc)}); start it, or fix "
            "SOVEREIGN_BROKER_URL (unset it to use the embedded Valkey of `sovereign up`)"
        ) from None
    finally:
        client.close()


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def first_line(exc: BaseException) -> str:
    """The error's first line without its full stop, to quote inside a sentence."""
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


def human_duration(seconds: float) -> str:
    """A duration for a sentence: "0.5 s", "42 s", "3 min 39 s", "2 h 5 min"."""
    if seconds < 10:
        return f"{round(seconds, 1):g} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        minutes, secs = divmod(whole, 60)
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, rest = divmod(round(seconds / 60), 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def wait_for_broker(settings: Settings, timeout_s: float = 30.0) -> str:
    """The broker URL once it answers; processes started together with the broker wait."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            url = resolve_broker_url(settings)
            ping(url, timeout=1.0)
            return url
        except BrokerUnavailable:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)

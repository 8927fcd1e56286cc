"""Admission with alerts: does a slow, hanging or failing webhook slow decisions down?

Every decision of the bench's policy fires an ``Alert`` action, so every admission queues
a webhook message: the worst case. Four modes of `submit()` in one process, interleaved in blocks,
against the machine's Redis (a database index of the bench's own, flushed after), each
on a fresh ledger of its own: no webhook; a webhook answering 204 at once; one that hangs (it holds every request
30 s); one that answers 500 (retried with backoff). The claim: the p50 and p99 of a
decision stay those of the run with no webhook, since sending happens on the outbox's
thread. Prints a table and writes bench/results/alert_bench.json.

    .venv/bin/python bench/alert_bench.py [--tasks 200] [--skip-postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import scratch_postgres, write_results  # noqa: E402
from tests.alerts.webhook_server import WebhookServer  # noqa: E402

REDIS = "redis://127.0.0.1:6379/4"
POLICY = """
strategy Routing returns Route {
    when { task.confidential == true } then Local { provider: "ollama", model: "bench-model" }
    else Local { provider: "ollama", model: "bench-model" }
}

rule EveryTask priority 60 {
    when { task.kind == "classify" }
    then Alert { message: "a task was admitted" }
}
"""
MODES = ("none", "ok", "hang", "fail")


def make_app(database_url: str, home: Path, webhook: str | None) -> Any:
    from arbiter.settings import load_settings
    from tasks.app import create_app

    (home / "rules").mkdir(parents=True, exist_ok=True)
    (home / "rules" / "bench.arb").write_text(POLICY, encoding="utf-8")
    env = {
        "SOVEREIGN_BROKER_URL": REDIS,
        "SOVEREIGN_DATABASE_URL": database_url,
        "SOVEREIGN_VAR_DIR": str(home / "var"),
        "SOVEREIGN_POLICY_PATH": str(home / "rules"),
        "SOVEREIGN_PRICES_PATH": str(ROOT / "rules" / "prices.toml"),
        "SOVEREIGN_LOCAL_BACKEND": "fake",
    }
    if webhook:
        env["SOVEREIGN_ALERT_WEBHOOK"] = webhook
    app = create_app(load_settings(env))
    app.sovereign_runtime.get().policies.publish_files("bench")
    return app


def run(apps: dict[str, Any], n: int, block: int = 50) -> dict[str, list[float]]:
    """Time ``n`` submits per mode, interleaved in blocks so drift hits every mode alike."""
    from tasks import submit
    from tasks.alerts import outbox_for

    prompt = "Label this support ticket: the invoice PDF will not open."
    for app in apps.values():
        for _ in range(20):  # warm: connections, imports, the policy and its caps
            submit("classify", prompt, app=app)
    samples: dict[str, list[float]] = {mode: [] for mode in apps}
    for start in range(0, n, block):
        for mode, app in apps.items():
            for _ in range(min(block, n - start)):
                t0 = time.perf_counter()
                submit("classify", prompt, app=app)
                samples[mode].append(time.perf_counter() - t0)
            if mode == "ok":
                # Its thread sends while its own block runs; let it finish before the next
                # mode's block, so that work is charged to this mode alone.
                outbox = outbox_for(app.sovereign_runtime.get())
                if outbox is not None:
                    outbox.flush(30)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(samples),
        "median_ms": statistics.median(samples) * 1000,
        "p99_ms": ordered[int(len(ordered) * 0.99) - 1] * 1000,
        "mean_ms": sum(samples) / len(samples) * 1000,
    }


def flush() -> None:
    import redis

    redis.Redis.from_url(REDIS).flushdb()


def runs(url_of: Any, home: Path, n: int) -> dict[str, Any]:
    """Every mode on ledgers of its own, interleaved."""
    from tasks.alerts import outbox_for

    hooks = {mode: WebhookServer("ok" if mode == "none" else mode).start() for mode in MODES}
    try:
        apps = {
            mode: make_app(url_of(mode), home / mode, None if mode == "none" else hooks[mode].url)
            for mode in MODES
        }
        samples = run(apps, n)
        results: dict[str, Any] = {}
        for mode, app in apps.items():
            runtime = app.sovereign_runtime.get()
            outbox = outbox_for(runtime)
            results[mode] = summary(samples[mode]) | {
                "webhook_requests": hooks[mode].requests,
                "alerts_sent": outbox.sent if outbox else 0,
                "alerts_dropped": outbox.dropped if outbox else 0,
            }
            runtime.ledger.close()
        return results
    finally:
        for hook in hooks.values():
            hook.stop()
        flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    # A hanging webhook logs its drops and retries; the table is what matters here.
    logging.getLogger("sovereign.alerts").setLevel(logging.CRITICAL)
    results: dict[str, Any] = {"tasks": args.tasks}
    flush()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        home = Path(tmp)
        ledgers = {"sqlite": lambda mode: f"sqlite:///{home / f'{mode}.db'}"}
        if not args.skip_postgres:
            ledgers["postgresql"] = lambda mode: stack.enter_context(scratch_postgres())
        for name, url_of in ledgers.items():
            results[name] = runs(url_of, home / name, args.tasks)

    print(f"admission of {args.tasks} tasks, each firing an Alert action (ms)")
    print(f"{'ledger':<11} {'webhook':<8} {'median':>8} {'p99':>8} {'vs none':>8}  sent/dropped")
    for name in ledgers:
        base = results[name]["none"]
        for mode in MODES:
            r = results[name][mode]
            r["median_vs_none"] = r["median_ms"] / base["median_ms"]
            r["p99_vs_none"] = r["p99_ms"] / base["p99_ms"]
            print(
                f"{name:<11} {mode:<8} {r['median_ms']:>8.3f} {r['p99_ms']:>8.3f} "
                f"{r['median_vs_none']:>7.2f}x  {r['alerts_sent']}/{r['alerts_dropped']}"
            )
    write_results("alert_bench", results)


if __name__ == "__main__":
    main()

"""Governed dispatch against a raw publish of the same task to the same Redis.

Governed: `submit()` — validation, the gate (facts, policy, price, reservation and
decision record in one serialized transaction), then the publish. Raw: `send_task` of the
same task and message with an empty router. Both run in one process, in one run, against
the machine's Redis (a database index of the bench's own, flushed after), on SQLite and on
PostgreSQL. Every admission's commit waits for the disk before the publish. The target:
at least 300 governed dispatches a second from one process on each database. Prints a
table and writes bench/results/dispatch_bench.json.

    .venv/bin/python bench/dispatch_bench.py [--tasks 5000] [--skip-postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import scratch_postgres, write_results  # noqa: E402

REDIS = "redis://127.0.0.1:6379/13"


def make_app(database_url: str, home: Path) -> Any:
    from arbiter.settings import load_settings
    from tasks.app import create_app

    env = {
        "SOVEREIGN_BROKER_URL": REDIS,
        "SOVEREIGN_DATABASE_URL": database_url,
        "SOVEREIGN_VAR_DIR": str(home / "var"),
        "SOVEREIGN_POLICY_PATH": str(ROOT / "rules"),
        "SOVEREIGN_PRICES_PATH": str(ROOT / "rules" / "prices.toml"),
        "SOVEREIGN_LOCAL_BACKEND": "fake",
    }
    settings = load_settings(env)
    app = create_app(settings)
    store = app.sovereign_runtime.get().policies
    store.publish_files("bench")
    return app


def run(app: Any, n: int) -> dict[str, Any]:
    from celery.app.routes import Router

    from tasks import submit
    from tasks.kinds import make_job

    settings = app.sovereign_settings
    raw_router = Router(routes=[], queues=app.amqp.queues, create_missing=False, app=app)
    prompt = "Label this support ticket: the invoice PDF will not open."
    # Warm both paths (connections, imports, the policy and price caches).
    for _ in range(50):
        submit("classify", prompt, app=app)
        job = make_job(settings, kind="classify", prompt=prompt)
        raw_send(app, job, raw_router)

    raw: list[float] = []
    governed: list[float] = []
    # Interleave in blocks so that drift on a shared machine hits both sides alike.
    block = 250
    for start in range(0, n, block):
        size = min(block, n - start)
        for _ in range(size):
            job = make_job(settings, kind="classify", prompt=prompt)
            t0 = time.perf_counter()
            raw_send(app, job, raw_router)
            raw.append(time.perf_counter() - t0)
        for _ in range(size):
            t0 = time.perf_counter()
            submit("classify", prompt, app=app)
            governed.append(time.perf_counter() - t0)
    return {"raw": summary(raw), "governed": summary(governed)}


def raw_send(app: Any, job: Any, router: Any) -> None:
    """The same message the governed path publishes, without the gate."""
    from tasks.names import COMPLETE
    from tasks.router import message_summary

    app.send_task(
        COMPLETE,
        kwargs={"job": job.to_message()},
        queue="local",
        router=router,
        argsrepr="()",
        kwargsrepr=message_summary(job),
    )


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    total = sum(samples)
    return {
        "n": len(samples),
        "per_s": len(samples) / total,
        "mean_ms": total / len(samples) * 1000,
        "median_ms": statistics.median(samples) * 1000,
        "p99_ms": ordered[int(len(ordered) * 0.99) - 1] * 1000,
    }


def flush() -> None:
    import redis

    redis.Redis.from_url(REDIS).flushdb()


TARGET_PER_S = 300


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {"tasks": args.tasks, "target_per_s": TARGET_PER_S}
    flush()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        home = Path(tmp)
        targets = {"sqlite": f"sqlite:///{home / 'bench.db'}"}
        if not args.skip_postgres:
            targets["postgresql"] = stack.enter_context(scratch_postgres())
        try:
            for name, url in targets.items():
                app = make_app(url, home / name)
                results[name] = run(app, args.tasks)
                app.sovereign_runtime.get().ledger.close()
                flush()
        finally:
            flush()

    print(f"dispatch of {args.tasks} tasks, one process (median and p99 in ms)")
    print(f"{'ledger':<11} {'path':<9} {'per s':>8} {'median':>8} {'p99':>8}  governed/raw")
    for name, r in results.items():
        if not isinstance(r, dict):
            continue
        ratio = r["governed"]["mean_ms"] / r["raw"]["mean_ms"]
        r["ratio"] = ratio
        r["meets_target"] = r["governed"]["per_s"] >= TARGET_PER_S
        for path in ("raw", "governed"):
            s = r[path]
            tail = f"  {ratio:.2f}x" if path == "governed" else ""
            print(
                f"{name:<11} {path:<9} {s['per_s']:>8.0f} {s['median_ms']:>8.3f} "
                f"{s['p99_ms']:>8.3f}{tail}"
            )
        verdict = "meets" if r["meets_target"] else "MISSES"
        print(
            f"{name}: {r['governed']['per_s']:.0f} governed/s {verdict} the {TARGET_PER_S}/s target"
        )
    write_results("dispatch_bench", results)


if __name__ == "__main__":
    main()

"""Ledger benchmark: decide + reserve + commit, against a bare one-row transaction.

For SQLite (a temporary file) and PostgreSQL (a database of the bench's own on
127.0.0.1:5432, dropped afterwards) it measures:

- ``bare``: BEGIN, insert one row, COMMIT — through the ledger's own write transaction —
  the ratio's base;
- ``admit x1``: ``Gate.admit`` from one process — one serialized transaction reading the
  budget, running a real ``.arb`` policy, pricing the route, holding the reservation and
  writing the task row and the decision record. In steady state a worker settles each
  task soon after: the bench settles the admission 32 places back (outside the timing), so
  held reservations stay few and settled calls accumulate as in production;
- ``admit full``: the same on a ledger holding 1,000,000 recorded model calls (over the
  last 30 days) and 100,000 queued tasks with their reservations held;
- ``admit x8``: 8 processes race 250 admissions each against a cap written in a rule; the
  run then replays every decision in lock order to show the cap held exactly (nothing
  admitted past it, nothing refused while it had room).

Targets: admission p50 at most 2.5x the bare transaction's, p99 at most 5 ms, and p50 on
the full ledger at most 1.2x the empty one's. Prints a table and writes
bench/results/ledger_bench.json.

    .venv/bin/python bench/ledger_bench.py [--single 2000] [--calls 1000000] [--queued 100000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from arbiter import Policy, load_policy_from_sources  # noqa: E402
from arbiter.gate import Gate, TaskRequest  # noqa: E402
from arbiter.ledger import NANO, Ledger, PriceTable  # noqa: E402
from arbiter.usage import Usage  # noqa: E402
from bench.common import scratch_postgres, write_results  # noqa: E402

PRICES = ROOT / "rules" / "prices.toml"
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
MODEL = ("openai", "gpt-5.4-nano")
SETTLE_LAG = 32
POLICY = """
const CAP = {cap}
strategy Routing returns Route {{
    when {{ task.confidential == true }} then Local {{ model: "qwen2.5:14b" }}
    else Cloud {{ provider: "openai", model: "gpt-5.4-nano" }}
}}
rule DailyCap priority 10 {{
    when {{ route.tier == "cloud" and budget.daily_spend_usd + route.estimated_cost_usd > CAP }}
    then Deny {{ reason: "daily cap" }}
}}
rule NightThrottle {{
    when {{ time.hour < 6 and task.priority == "low" }} then Throttle {{ retry_after: 10m }}
}}
rule DeepResearch {{
    when {{ task.kind == "research" and task.depth > 3 }} then RequireApproval {{}}
}}
"""


def policy(cap: float) -> Policy:
    return load_policy_from_sources({"bench.arb": POLICY.format(cap=cap)})


def host() -> dict[str, dict[str, Any]]:
    return {
        "local": {"available": True, "models": ["qwen2.5:14b"], "queue_depth": 0},
        "cloud": {"providers": ["openai", "anthropic"], "queue_depth": 0},
    }


def request(rng: random.Random, task_id: str) -> TaskRequest:
    return TaskRequest(
        task_id=task_id,
        kind="summarise",
        estimated_tokens=rng.randint(500, 20_000),
        max_tokens=rng.randint(100, 4_000),
        source="bench",
        tags=("bench",),
        payload={"task": "sovereign.complete", "kwargs": {"job": {"id": task_id}}},
    )


def gate_for(ledger: Ledger, cap: float) -> Gate:
    chosen = policy(cap)
    return Gate(ledger, lambda: chosen, PriceTable.load(PRICES), host)


def summary(latencies: list[float], wall: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "ops": len(ordered),
        "per_s": len(ordered) / wall,
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "mean_ms": statistics.fmean(ordered) * 1000,
    }


# --- runs -----------------------------------------------------------------------------------


def bare_statement(ledger: Ledger) -> Any:
    scratch = sa.Table(
        "bench_bare",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("v", sa.Integer),
    )
    scratch.create(ledger.engine, checkfirst=True)
    return sa.insert(scratch)


def single(ledger: Ledger, count: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Admissions from one process, each settled SETTLE_LAG admissions later (untimed),
    in blocks alternating with bare transactions (BEGIN, one-row insert, COMMIT through
    the ledger's write transaction), so that drift on a shared machine hits both alike."""
    gate = gate_for(ledger, cap=1e9)
    statement = bare_statement(ledger)
    rng = random.Random(7)
    requests = [request(rng, f"s-{uuid.uuid4().hex[:12]}") for _ in range(count + 50)]
    for warm in requests[:50]:
        gate.admit(warm)
        with ledger.transaction() as conn:
            conn.execute(statement, {"v": 0})
    admit: list[float] = []
    bare: list[float] = []
    pending: list[Any] = []
    block = 100
    for start in range(50, len(requests), block):
        for i in range(block):
            t0 = time.perf_counter()
            with ledger.transaction() as conn:
                conn.execute(statement, {"v": i})
            bare.append(time.perf_counter() - t0)
        for req in requests[start : start + block]:
            t0 = time.perf_counter()
            gate.admit(req)
            admit.append(time.perf_counter() - t0)
            pending.append(req)
            if len(pending) > SETTLE_LAG:
                # A worker settles what the provider billed: at most the bound.
                done = pending.pop(0)
                usage = Usage(done.estimated_tokens // 2, done.max_tokens // 2)
                ledger.settle(done.task_id, 1, usage, *MODEL)
    # Throughput of the admissions themselves: settling is the workers' time, not the gate's.
    return summary(bare, sum(bare)), summary(admit, sum(admit))


SQLITE_NUMBERS = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count})"
PG_NUMBERS = "WITH n(i) AS (SELECT generate_series(1, {count}))"


def fill(ledger: Ledger, calls: int, queued: int) -> None:
    """``calls`` settled model calls over the last 30 days and ``queued`` queued tasks with
    their reservations held, written by the database itself."""
    sqlite = ledger.dialect == "sqlite"
    numbers = SQLITE_NUMBERS if sqlite else PG_NUMBERS
    if sqlite:
        ago = "strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (i % 43200) || ' minutes')"
        now, later = "strftime('%Y-%m-%d %H:%M:%f', 'now')", "'2999-01-01 00:00:00'"
    else:
        ago = "(now() at time zone 'utc') - make_interval(mins => mod(i, 43200))"
        now, later = "(now() at time zone 'utc')", "timestamp '2999-01-01'"
    with ledger.transaction() as conn:
        conn.exec_driver_sql(
            numbers.format(count=calls)
            + " INSERT INTO model_calls (task_id, attempt, tier, provider, model, input_tokens,"
            " output_tokens, cached_tokens, cache_write_tokens, total_tokens, cost_nusd, status,"
            f" recorded_at) SELECT 'old-' || i, 1, 'cloud', 'openai', 'gpt-5.4-nano', 2000, 300,"
            f" 0, 0, 2300, 775000, 'succeeded', {ago} FROM n"
        )
        conn.exec_driver_sql(
            numbers.format(count=queued)
            + " INSERT INTO tasks (id, kind, source, status, queue, attempt, confidential, depth,"
            f" created_at, updated_at) SELECT 'queued-' || i, 'summarize', 'bench', 'queued',"
            f" 'cloud', 1, false, 0, {now}, {now} FROM n"
        )
        conn.exec_driver_sql(
            numbers.format(count=queued)
            + " INSERT INTO reservations (task_id, attempt, amount_nusd, tokens, tier, provider,"
            " model, status, created_at, expires_at) SELECT 'queued-' || i, 1, 1000000, 3000,"
            f" 'cloud', 'openai', 'gpt-5.4-nano', 'held', {now}, {later} FROM n"
        )
    ledger.upgrade()  # fills the per-day and per-minute totals from the calls
    if not sqlite:
        # What autovacuum does after a bulk load: dead row versions go, the planner learns
        # the sizes.
        with ledger.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")


def race(url: str, cap: float, worker: int, count: int, start: Any) -> dict[str, Any]:
    ledger = Ledger(url)
    gate = gate_for(ledger, cap)
    rng = random.Random(1000 + worker)
    requests = [request(rng, f"w{worker}-{i}") for i in range(count)]
    gate.admit(request(rng, f"warm-{worker}"))  # connections open, statements prepared
    start.wait()
    latencies = []
    began = time.perf_counter()
    for req in requests:
        t0 = time.perf_counter()
        gate.admit(req)
        latencies.append(time.perf_counter() - t0)
    ended = time.perf_counter()
    ledger.close()
    return {"latencies": latencies, "began": began, "ended": ended}


def replay(ledger: Ledger, cap: float) -> dict[str, Any]:
    """Re-check each decision, in lock order, against the spend it must have seen."""
    price = PriceTable.load(PRICES).price(*MODEL)
    cap_nusd = round(cap * NANO)
    spent = admitted = refused = 0
    overshoot = refused_with_room = 0
    for record in ledger.decisions():
        task = record.facts["task"]
        estimate = PriceTable.estimate_nusd(price, task["estimated_tokens"], task["max_tokens"])
        if record.verdict == "proceed":
            admitted += 1
            overshoot += spent + estimate > cap_nusd
            spent += estimate
        else:
            refused += 1
            refused_with_room += spent + estimate <= cap_nusd - 1
    held = round(ledger.budget_facts()["daily_spend_usd"] * NANO)
    return {
        "admitted": admitted,
        "refused": refused,
        "cap_usd": cap,
        "spent_usd": held / NANO,
        "replayed_usd": spent / NANO,
        "overshoots": overshoot,
        "refused_with_room": refused_with_room,
        "cap_held_exactly": overshoot == 0
        and refused_with_room == 0
        and held == spent
        and held <= cap_nusd,
    }


def multi(url: str, procs: int, per_proc: int) -> tuple[dict[str, float], dict[str, Any]]:
    # The cap fits about a quarter of the tasks, so the race is for the last dollars.
    cap = 2.5 * procs * per_proc / 2000
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        start = manager.Barrier(procs)
        with ProcessPoolExecutor(procs, mp_context=context) as pool:
            futures = [pool.submit(race, url, cap, w, per_proc, start) for w in range(procs)]
            results = [f.result() for f in futures]
    latencies = [x for r in results for x in r["latencies"]]
    wall = max(r["ended"] for r in results) - min(r["began"] for r in results)
    ledger = Ledger(url)
    check = replay(ledger, cap)
    ledger.close()
    return summary(latencies, wall), check


# --- databases ------------------------------------------------------------------------------


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="ledger-bench-") as folder:
        yield f"sqlite:///{Path(folder) / 'ledger.db'}"


def scratch(database: str) -> Any:
    return sqlite_database() if database == "sqlite" else scratch_postgres()


def run(database: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    print(f"{database}: bare and admit x1 ...", file=sys.stderr, flush=True)
    ledger = Ledger(url)
    ledger.upgrade()
    base, one = single(ledger, args.single)
    ledger.close()
    with scratch(database) as full_url:
        print(f"{database}: filling {args.calls:,} calls, {args.queued:,} queued ...",
              file=sys.stderr, flush=True)  # fmt: skip
        full = Ledger(full_url)
        full.upgrade()
        fill(full, args.calls, args.queued)
        print(f"{database}: admit full ...", file=sys.stderr, flush=True)
        _, crowded = single(full, args.single)
        full.close()
    with scratch(database) as fresh:
        Ledger(fresh).upgrade()
        print(f"{database}: admit x{args.procs} ...", file=sys.stderr, flush=True)
        many, check = multi(fresh, args.procs, args.per_proc)
    return {
        "bare": base,
        "admit_x1": one,
        "admit_full": crowded,
        f"admit_x{args.procs}": many,
        "cap": check,
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    header = ("database", "run", "ops", "ops/s", "p50 ms", "p99 ms", "x bare p50")
    rows = [header]
    for database, runs in results.items():
        base = runs["bare"]["p50_ms"]
        for name, figures in runs.items():
            if name == "cap":
                continue
            rows.append(
                (
                    database,
                    name,
                    str(figures["ops"]),
                    f"{figures['per_s']:.0f}",
                    f"{figures['p50_ms']:.2f}",
                    f"{figures['p99_ms']:.2f}",
                    f"{figures['p50_ms'] / base:.1f}",
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(
        zip(row, widths, strict=True))) for row in rows]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    for database, runs in results.items():
        base, one, full = runs["bare"], runs["admit_x1"], runs["admit_full"]
        ratio, flat = one["p50_ms"] / base["p50_ms"], full["p50_ms"] / one["p50_ms"]
        runs["targets"] = {
            "admit_over_bare_p50": ratio,
            "admit_p99_ms": one["p99_ms"],
            "full_over_empty_p50": flat,
            "met": ratio <= 2.5 and one["p99_ms"] <= 5 and flat <= 1.2,
        }
        lines.append(
            f"{database}: admit p50 {ratio:.2f}x bare (target <= 2.5), p99 {one['p99_ms']:.2f} ms "
            f"(<= 5), full ledger p50 {flat:.2f}x empty (<= 1.2): "
            f"{'met' if runs['targets']['met'] else 'NOT MET'}"
        )
    for database, runs in results.items():
        cap = runs["cap"]
        lines.append(
            f"{database}: cap {cap['cap_usd']:.2f} USD, spent {cap['spent_usd']:.6f} USD, "
            f"{cap['admitted']} admitted, {cap['refused']} refused, "
            f"overshoots {cap['overshoots']}, refused with room {cap['refused_with_room']}: "
            f"cap held exactly = {cap['cap_held_exactly']}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=2000)
    parser.add_argument("--procs", type=int, default=8)
    parser.add_argument("--per-proc", type=int, default=250)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--queued", type=int, default=100_000)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    with sqlite_database() as url:
        results["sqlite"] = run("sqlite", url, args)
    if not args.skip_postgres:
        with scratch_postgres() as url:
            results["postgresql"] = run("postgresql", url, args)
    print(table(results))
    meta = {"cpus": multiprocessing.cpu_count(), "settle_lag": SETTLE_LAG, "at": time.time()}
    write_results("ledger_bench", {"meta": meta, "results": results})


if __name__ == "__main__":
    main()

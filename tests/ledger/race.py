"""Worker processes that race admissions against one cap (spawned by the concurrency test)."""

from __future__ import annotations

import random
import time
from typing import Any

from arbiter.gate import Gate, TaskRequest
from arbiter.ledger import Ledger, PriceTable
from arbiter.ledger.models import NANO
from arbiter.ledger.prices import Price
from tests.ledger.policies import cap_policy

MODEL = ("openai", "gpt-5.4-nano")


def random_request(rng: random.Random, task_id: str) -> TaskRequest:
    """A task with a random size, so reservations differ and small ones fit late."""
    return TaskRequest(
        task_id=task_id,
        kind="summarise",
        estimated_tokens=rng.randint(500, 20_000),
        max_tokens=rng.randint(100, 4_000),
        source="race",
    )


def host() -> dict[str, dict[str, Any]]:
    return {"local": {"available": False}, "cloud": {"providers": ["openai"]}}


def race(
    url: str, prices_path: str, cap: float, worker: int, count: int, start: Any
) -> dict[str, Any]:
    """Admit ``count`` random tasks as fast as possible; returns verdict counts and latencies."""
    ledger = Ledger(url)
    policy = cap_policy(cap)
    gate = Gate(ledger, lambda: policy, PriceTable.load(prices_path), host)
    rng = random.Random(1000 + worker)
    requests = [random_request(rng, f"w{worker}-{i}") for i in range(count)]
    if start is not None:
        start.wait()
    verdicts: dict[str, int] = {}
    latencies: list[float] = []
    began = time.perf_counter()
    for req in requests:
        t0 = time.perf_counter()
        admission = gate.admit(req)
        latencies.append(time.perf_counter() - t0)
        verdicts[admission.verdict] = verdicts.get(admission.verdict, 0) + 1
    elapsed = time.perf_counter() - began
    ledger.close()
    return {"verdicts": verdicts, "latencies": latencies, "elapsed": elapsed}


def replay(ledger: Ledger, price: Price, cap: float) -> dict[str, int]:
    """Check every decision against the spend at its serialized point.

    Decision ids follow the ledger lock's order, so summing the reservations of the
    admitted ones in id order gives the exact spend each decision saw.
    """
    cap_nusd = round(cap * NANO)
    spent = 0
    seen = {"proceed": 0, "deny": 0}
    for record in ledger.decisions():
        task = record.facts["task"]
        estimate = PriceTable.estimate_nusd(price, task["estimated_tokens"], task["max_tokens"])
        snapshot = round(record.facts["budget"]["daily_spend_usd"] * NANO)
        assert snapshot == spent, f"decision {record.id} saw {snapshot}, replay says {spent}"
        if record.verdict == "proceed":
            assert spent + estimate <= cap_nusd, f"decision {record.id} overshot the cap"
            assert round(record.reserved_usd * NANO) == estimate
            spent += estimate
        else:
            assert record.verdict == "deny", record.verdict
            # Refused only when the cap had no room for it (1 nano-dollar of float slack).
            assert spent + estimate > cap_nusd - 1, f"decision {record.id} refused with room"
        seen[record.verdict] += 1
    return {**seen, "spent_nusd": spent}

"""Admissions and settles racing on PostgreSQL never deadlock.

Both touch two hot rows, the held totals and the fact counter (``ledger_version``); an
admission moves the totals first, a settle records its call (which moves the counter)
before it closes the hold. The counter's trigger takes the totals' row lock first, so the
two always lock in the same order.
"""

from __future__ import annotations

import threading
from queue import Empty, Queue

from sqlalchemy import text

from arbiter.gate import Gate
from arbiter.ledger import Ledger, PriceTable
from arbiter.usage import Usage
from tests.ledger.policies import cap_policy
from tests.ledger.test_gate import host, request
from tests.ledger.test_prices import SEED

ROUNDS = 300


def test_admitting_while_settling_never_deadlocks(postgres_url: str) -> None:
    admitting = Ledger(postgres_url, timezone="UTC")
    admitting.upgrade()
    settling = Ledger(postgres_url, timezone="UTC")
    policy = cap_policy(1e6)
    gate = Gate(admitting, lambda: policy, PriceTable.load(SEED), host, queues={"cloud": "cloud"})
    admitted: Queue[str | None] = Queue()
    errors: list[BaseException] = []

    def settle_all() -> None:
        try:
            while True:
                try:
                    task_id = admitted.get(timeout=30)
                except Empty:
                    return
                if task_id is None:
                    return
                settling.settle(task_id, 1, Usage(1000, 200), "openai", "gpt-5.4-nano")
        except BaseException as error:
            errors.append(error)

    worker = threading.Thread(target=settle_all)
    worker.start()
    try:
        for n in range(ROUNDS):
            admitted.put(gate.admit(request(f"race-{n}")).task_id)
    except BaseException as error:
        errors.append(error)
    finally:
        admitted.put(None)
        worker.join(timeout=60)
    try:
        assert errors == []
        assert not worker.is_alive()
        with admitting.engine.connect() as conn:
            calls = conn.execute(text("SELECT count(*) FROM model_calls")).scalar()
            held = conn.execute(text("SELECT count FROM held_totals WHERE id = 1")).scalar()
        assert (calls, held) == (ROUNDS, 0)  # every admission was settled, none is held
    finally:
        admitting.close()
        settling.close()

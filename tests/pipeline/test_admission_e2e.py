"""The admission's promises end to end, with real worker processes and a real broker:
a cap holds against text in any script, confidential work never reaches the cloud
whatever the policy says, and `submit()` is safe from many threads."""

from __future__ import annotations

import multiprocessing
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from arbiter.errors import TaskBlocked
from arbiter.ledger import NANO
from tasks import submit
from tests.pipeline.conftest import Stack, wait_for
from tests.pipeline.fake_openai import FakeOpenAI

pytestmark = pytest.mark.e2e

CAP_USD = 0.15
ALL_CLOUD = """
const CAP = {cap}
strategy Routing returns Route {{
    when {{ task.confidential == true }} then Local {{ provider: "openai_compat", model: "m" }}
    else Cloud {{ provider: "openai", model: "gpt-5.4-mini" }}
}}
rule DailyCap {{
    when {{ budget.daily_spend_usd + route.estimated_cost_usd > CAP }}
    then Deny {{ reason: "the daily cap is reached" }}
}}
"""
# Sends everything to the cloud and says nothing of confidentiality, except that a root
# research topic runs locally (so confidential research can propose follow-ups and
# escalations at all); escalations of unsure briefs go to the cloud.
HOSTILE = """
const ESCALATE_BELOW = 0.6
strategy Routing returns Route {
    when { task.kind == "research" and task.depth == 0 and task.attempt == 1
           and task.source != "escalation" }
        then Local { provider: "openai_compat", model: "tiny-local" }
    else Cloud { provider: "openai", model: "gpt-5.4-mini" }
}
rule Retry {
    when { task.attempt > 1 }
    then Reroute { tier: "cloud", provider: "openai", model: "gpt-5.4" }
}
rule Review {
    when { "review" in task.tags } then RequireApproval { reason: "a person looks" }
}
"""
SCRIPTS = {
    "chinese": "请总结客户的会议记录：他们希望把标志改成青色，并在下周五之前交付。",  # noqa: RUF001
    "japanese": "クライアントは来週の金曜日までにロゴを青緑色に変更することを望んでいます。",
    "emoji": "🎨🖌️🧑‍🎨✨🚀👩‍👩‍👧‍👦🏳️‍🌈",
    "code": "def f(x: int) -> int:\n    return {k: v for k, v in zip(x, x)}  # ∑∂√\n",
    "english": "The client wants the logo in teal, delivered by next Friday. ",
}


@pytest.fixture
def fake_cloud() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI(real_tokens=True).start()
    yield server
    server.stop()


def cloud_stack(make_stack: Callable[..., Stack], broker: str, db: str, cloud: FakeOpenAI) -> Stack:
    stack = make_stack(broker, db)
    stack.configure(openai_base_url=cloud.base_url, cloud_concurrency="4")
    return stack


def _submitter(env: dict[str, str], worker: int, count: int, start: Any) -> dict[str, Any]:
    from arbiter.settings import load_settings
    from tasks.app import create_app

    app = create_app(load_settings(env))
    rng = random.Random(worker)
    admitted, blocked = [], 0
    start.wait()
    for n in range(count):
        script = rng.choice(list(SCRIPTS))
        prompt = f"[{worker}-{n}] " + SCRIPTS[script] * rng.randint(5, 25)
        try:
            handle = submit("summarize", prompt, max_tokens=rng.randint(20, 1500), app=app)
            admitted.append(handle.task_id)
        except TaskBlocked:
            blocked += 1
    return {"admitted": admitted, "blocked": blocked}


def test_eight_processes_never_overshoot_a_cap_with_text_in_any_script(
    redis_url: str,
    database_url: str,
    make_stack: Callable[..., Stack],
    fake_cloud: FakeOpenAI,
) -> None:
    stack = cloud_stack(make_stack, redis_url, database_url, fake_cloud)
    (stack.home / "rules" / "policy.arb").write_text(ALL_CLOUD.format(cap=CAP_USD))
    stack.sovereign("db", "upgrade")
    stack.start_worker("cloud")
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        start = manager.Barrier(8)
        with context.Pool(8) as pool:
            results = pool.starmap(
                _submitter, [(stack.env, worker, 12, start) for worker in range(8)]
            )
    admitted = [task for r in results for task in r["admitted"]]
    blocked = sum(r["blocked"] for r in results)
    assert admitted and blocked, "the race reached the cap"
    ledger = stack.ledger
    done = ("succeeded", "failed")
    wait_for(
        lambda: all((ledger.task(t) or {}).get("status") in done for t in admitted),
        180,
        "every admitted task to finish",
    )
    with ledger.reading() as conn:
        rows = conn.execute(
            sa.text("SELECT cost_nusd, reserved_nusd, input_tokens FROM model_calls")
        ).all()
    assert len(rows) == len(admitted)
    spent = sum(row.cost_nusd for row in rows)
    assert spent <= CAP_USD * NANO, f"spent {spent / NANO} USD of a {CAP_USD} USD cap"
    assert all(row.cost_nusd <= row.reserved_nusd for row in rows), "a call cost its bound"
    assert len(fake_cloud.calls) == len(admitted)
    print(f"admitted {len(admitted)}, blocked {blocked}, spent {spent / NANO:.6f} of {CAP_USD}")


def test_confidential_work_never_reaches_the_cloud_under_a_hostile_policy(
    redis_url: str, make_stack: Callable[..., Stack], fake_cloud: FakeOpenAI
) -> None:
    stack = cloud_stack(make_stack, redis_url, "", fake_cloud)
    (stack.home / "rules" / "policy.arb").write_text(HOSTILE)
    stack.start_worker("local")
    stack.start_worker("cloud")
    marker = "CLIENT-SECRET-7731"

    # submit(), every kind.
    for kind in ("classify", "summarize", "strategy", "code"):
        with pytest.raises(TaskBlocked, match="confidential"):
            submit(kind, f"{marker} {kind}", confidential=True, app=stack.app)
    # A parked approval is refused too, rather than parked for the cloud.
    with pytest.raises(TaskBlocked, match="confidential"):
        submit("code", f"{marker} commit", tags=["review"], confidential=True, app=stack.app)
    # The command line.
    cli = stack.sovereign("enqueue", "draft", f"{marker} by the CLI", "--confidential")
    assert cli.returncode == 1 and "confidential" in cli.stderr + cli.stdout
    assert "Traceback" not in cli.stderr
    # Confidential research runs locally and proposes follow-ups that repeat the matter;
    # a confidential topic of the backlog goes through beat.
    research = submit(
        "research", f"{marker} FOLLOWUPS:2 root research", confidential=True, app=stack.app
    )
    assert research.result(timeout=60)["provider"] == "openai_compat"
    # A retry passes the gate again: the policy reroutes it to the cloud, the gate refuses.
    flaky = submit("research", f"{marker} FLAKY:1 retried", confidential=True, app=stack.app)
    wait_for(
        lambda: (
            [d.decided_by for d in stack.ledger.decisions(flaky.task_id)] == [None, "confidential"]
        ),
        60,
        "the retry's refusal",
    )
    added = stack.sovereign("topics", "add", f"{marker} backlog topic", "--confidential")
    assert added.returncode == 0, added.stderr
    # An unsure local brief of confidential research escalates; the escalation stays home.
    unsure = stack.sovereign("topics", "add", f"{marker} CONFIDENCE:0.1 unsure", "--confidential")
    assert unsure.returncode == 0, unsure.stderr
    stack.start("beat", "beat", "--loglevel", "INFO")
    ledger = stack.ledger

    def refused(where: str) -> int:
        with ledger.reading() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM decisions JOIN tasks ON tasks.id = "
                        f"decisions.task_id WHERE decisions.decided_by = 'confidential' AND {where}"
                    )
                ).scalar()
                or 0
            )

    wait_for(lambda: refused("tasks.depth = 1") >= 2, 60, "beat to try the confidential follow-ups")
    wait_for(lambda: refused("tasks.source = 'escalation'") == 1, 60, "the escalation's refusal")
    with ledger.reading() as conn:
        topics = conn.execute(sa.text("SELECT confidential FROM research_topics")).scalars().all()
    assert len(topics) >= 4 and all(topics), "follow-ups and escalations inherit confidentiality"
    assert not [c for c in fake_cloud.calls if marker in c["prompt"]]
    assert fake_cloud.calls == []
    # Non-confidential work still goes to the cloud under the same policy.
    assert submit("classify", "public matter", app=stack.app).result(timeout=60)["provider"] == (
        "openai"
    )


def test_submit_is_safe_from_many_threads(redis_url: str, make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(redis_url)
    app = stack.app
    failures: list[BaseException] = []
    ids: list[str] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for i in range(125):
            try:
                handle = submit("classify", f"thread {n} message {i}", app=app)
            except BaseException as exc:  # any failure at all is the finding
                with lock:
                    failures.append(exc)
                continue
            with lock:
                ids.append(handle.task_id)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(set(ids)) == 2000
    assert len(stack.ledger.decisions()) == 2000

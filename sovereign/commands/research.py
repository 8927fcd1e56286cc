"""The research loop's commands: the topics backlog and the briefs research wrote."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from arbiter.errors import InputError
from arbiter.settings import load_settings
from sovereign import output

STATUSES = ("queued", "running", "done", "denied", "failed", "waiting")


def register(group: click.Group) -> None:
    for command in (topics, briefs):
        group.add_command(command)


def _ledger() -> Any:
    from arbiter.ledger import Ledger

    return Ledger.from_settings(load_settings())


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value is not None else ""


def _first_line(text: str, width: int = 70) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _topic_json(topic: Any) -> dict[str, Any]:
    data = dataclasses.asdict(topic)
    data["tags"] = list(topic.tags)
    return data


def _brief_json(brief: Any, escalations: list[int] | None = None) -> dict[str, Any]:
    data = dataclasses.asdict(brief)
    if escalations is not None:
        data["escalations"] = escalations
    return data


def _text(text: str) -> str:
    cleaned = " ".join(text.split())
    if not cleaned:
        raise InputError("the topic is empty; give the question to research")
    return cleaned


@click.group(invoke_without_command=True)
@click.pass_context
def topics(ctx: click.Context) -> None:
    """The research backlog beat draws from (add, import, list, show)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_topics)


@topics.command("add")
@click.argument("text")
@click.option("--priority", type=int, default=0, show_default=True, help="Higher runs first.")
@click.option(
    "--confidential",
    is_flag=True,
    help="Client work: its research and follow-ups never leave the studio's machines.",
)
@click.option("--tag", "tags", multiple=True, help="A tag the policy sees (task.tags); repeat.")
def add_topic(text: str, priority: int, confidential: bool, tags: tuple[str, ...]) -> None:
    """Add a research topic to the backlog."""
    topic_id = _ledger().add_topic(
        _text(text), confidential=confidential, priority=priority, tags=tags
    )
    kind = "confidential topic" if confidential else "topic"
    output.say(f"{kind} {topic_id} queued (priority {priority})", colour="green")


@topics.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--priority", type=int, default=0, show_default=True, help="Higher runs first.")
@click.option("--confidential", is_flag=True, help="Every imported topic is confidential.")
@click.option("--tag", "tags", multiple=True, help="A tag for every imported topic; repeat.")
def import_topics(file: Path, priority: int, confidential: bool, tags: tuple[str, ...]) -> None:
    """Add one topic per line of FILE (blank lines and # comments are skipped)."""
    lines = read_topics(file)
    ledger = _ledger()
    for text in output.progress(lines, f"importing {len(lines)} topics"):
        ledger.add_topic(text, confidential=confidential, priority=priority, tags=tags)
    output.say(f"{len(lines)} topics queued from {file}", colour="green")


def read_topics(file: Path) -> list[str]:
    """The topics of a file, one a line; a file that cannot be read is one sentence."""
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise InputError(
            f"cannot read {file} ({exc.strerror}); give a text file with one topic a line"
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{file} is not UTF-8 text (line {line}); save it as UTF-8, one topic a line"
        ) from None
    if "\0" in text:
        raise InputError(f"{file} is a binary file; give a text file with one topic a line")
    lines = [" ".join(line.split()) for line in text.splitlines()]
    found = [line for line in lines if line and not line.startswith("#")]
    if not found:
        raise InputError(f"{file} holds no topic; write one topic a line (# starts a comment)")
    return found


@topics.command("list")
@click.option("--status", type=click.Choice(STATUSES), help="Only topics in this state.")
@click.option("--limit", type=int, default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def list_topics(status: str | None = None, limit: int = 200, as_json: bool = False) -> None:
    """List topics, the next to run first: status, depth, parent, and why one waits."""
    ledger = _ledger()
    found = ledger.topics(status, limit)
    if as_json:
        output.emit_json([_topic_json(t) for t in found])
        return
    if not found:
        output.say(
            "no topics" + (f" {status}" if status else "") + "; add one with `sovereign topics add`"
        )
        return
    rows = [
        (
            t.id,
            t.status,
            t.priority,
            t.depth,
            t.parent_id,
            "yes" if t.confidential else "",
            _first_line(t.text, 60),
            _why(t),
        )
        for t in found
    ]
    columns = ("id", "status", "priority", "depth", "parent", "confidential", "topic", "why")
    output.table(columns, rows, colour_column=1)
    facts = ledger.research_facts()
    output.say(
        f"backlog {facts.get('backlog', 0)}, research cycles today {facts.get('cycles_today', 0)}, "
        f"follow-ups today {facts.get('followups_today', 0)}, "
        f"escalations today {facts.get('escalations_today', 0)}"
    )


def _why(topic: Any) -> str:
    if topic.status == "waiting" and topic.wait_until is not None:
        return f"until {_when(topic.wait_until)} UTC: {topic.reason or ''}"
    return str(topic.reason or "")


@topics.command("show")
@click.argument("topic_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def show_topic(topic_id: int, as_json: bool) -> None:
    """Show one topic and its briefs."""
    ledger = _ledger()
    topic = ledger.topic(topic_id)
    if topic is None:
        raise InputError(f"no topic {topic_id}; `sovereign topics list` shows their ids")
    found = ledger.brief_records(topic_id)
    if as_json:
        output.emit_json(dict(_topic_json(topic), briefs=[_brief_json(b) for b in found]))
        return
    output.fields(
        [
            ("status", topic.status),
            ("topic", topic.text),
            ("priority", topic.priority),
            ("depth", topic.depth),
            ("parent", topic.parent_id),
            ("confidential", topic.confidential),
            ("tags", ", ".join(topic.tags)),
            ("created", _when(topic.created_at)),
            ("task", topic.task_id),
            ("why", _why(topic)),
            ("local confidence", topic.local_confidence),
        ],
        title=f"topic {topic.id}",
    )
    if found:
        output.table(
            ("brief", "model", "tier", "confidence", "escalated from", "summary"),
            [
                (b.id, b.model, b.tier, b.confidence, b.escalated_from, _first_line(b.summary))
                for b in found
            ],
            title="briefs",
        )


@click.group(invoke_without_command=True)
@click.pass_context
def briefs(ctx: click.Context) -> None:
    """The briefs research wrote (list, show)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_briefs)


@briefs.command("list")
@click.option("--topic", "topic_id", type=int, help="Only the briefs of this topic.")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def list_briefs(topic_id: int | None = None, limit: int = 100, as_json: bool = False) -> None:
    """List briefs, newest last."""
    found = _ledger().brief_records(topic_id, limit)
    if as_json:
        output.emit_json([_brief_json(b) for b in found])
        return
    if not found:
        output.say("no briefs yet; beat writes them as it researches the backlog")
        return
    output.table(
        ("id", "topic", "created", "model", "confidence", "escalated from", "summary"),
        [
            (
                b.id,
                b.topic_id,
                _when(b.created_at),
                b.model,
                b.confidence,
                b.escalated_from,
                _first_line(b.summary, 60),
            )
            for b in found
        ],
    )


@briefs.command("show")
@click.argument("brief_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def show_brief(brief_id: int, as_json: bool) -> None:
    """Show one brief: summary, key points, confidence and its signals, sources."""
    ledger = _ledger()
    brief = ledger.brief(brief_id)
    if brief is None:
        raise InputError(f"no brief {brief_id}; `sovereign briefs list` shows their ids")
    escalations = ledger.escalations_of(brief_id)
    if as_json:
        output.emit_json(_brief_json(brief, escalations))
        return
    topic = ledger.topic(brief.topic_id)
    signals = ", ".join(
        f"{k} {output.cell(v)}" for k, v in brief.signals.items() if k != "notes_given"
    )
    link = ""
    if brief.escalated_from is not None:
        link = f"escalation of brief {brief.escalated_from}"
    elif escalations:
        link = "escalated as brief " + ", ".join(str(i) for i in escalations)
    output.fields(
        [
            ("topic", f"{brief.topic_id}: {topic.text if topic else ''}"),
            ("task", brief.task_id),
            ("model", f"{brief.provider}/{brief.model} ({brief.tier})"),
            ("created", _when(brief.created_at)),
            ("confidence", brief.confidence),
            ("signals", signals),
            ("escalation", link),
        ],
        title=f"brief {brief.id}",
    )
    output.say("")
    output.say(brief.summary)
    for title, items in (
        ("key points", brief.key_points),
        ("sources", brief.sources),
        ("follow-ups", brief.follow_ups),
    ):
        output.say("")
        output.say(f"{title}:" if items else f"{title}: none")
        for item in items:
            output.say(f"  - {item}")

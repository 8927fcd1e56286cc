"""Reading a structured (JSON) answer, and the tiny schema checks a local model needs."""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def parse_answer(text: str, schema: dict[str, Any] | None) -> tuple[Any, str | None]:
    """``(value, None)`` when ``text`` is JSON matching the top of ``schema``, else
    ``(None, reason)``. Without a schema there is nothing to parse: ``(None, None)``."""
    if schema is None:
        return None, None
    match = _FENCE.match(text)
    body = match.group(1) if match else text
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        return None, f"the answer is not valid JSON ({exc.msg} at character {exc.pos})"
    problem = shallow_check(value, schema)
    if problem:
        return None, problem
    return value, None


def shallow_check(value: Any, schema: dict[str, Any]) -> str | None:
    """Check the type and required keys at the top of ``schema``; full validation is the
    provider's job (structured output) and the task's."""
    expected = schema.get("type")
    if isinstance(expected, str) and expected in _TYPES:
        ok = isinstance(value, _TYPES[expected])
        if expected in ("integer", "number") and isinstance(value, bool):
            ok = False
        if not ok:
            return f"the answer is a {type(value).__name__}, the schema wants {expected}"
    if isinstance(value, dict):
        missing = [k for k in schema.get("required", []) if k not in value]
        if missing:
            return "the answer lacks required keys: " + ", ".join(missing)
    return None


def example_value(schema: dict[str, Any]) -> Any:
    """A deterministic value that fits ``schema`` (for fakes and tests)."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        props: dict[str, Any] = schema.get("properties", {})
        return {name: example_value(sub) for name, sub in props.items()}
    if kind == "array":
        items = schema.get("items")
        return [example_value(items)] if isinstance(items, dict) else []
    return {
        "string": "example",
        "integer": 0,
        "number": 0.0,
        "boolean": False,
        "null": None,
    }.get(str(kind))

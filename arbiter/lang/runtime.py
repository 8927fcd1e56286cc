"""The language's values at run time: every operator as a total function.

Compiled policies call these helpers (or inline their fast paths), so nothing a policy
does can raise: a wrong type, a missing fact or a division by zero gives ``null``
(``None``) or ``false`` as the spec's operator table says. Booleans are never numbers
here, although Python's ``True == 1``.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

NUMBER_TYPES = (int, float)  # checked with ``type(x) in NUMBER_TYPES``: excludes bool
_LISTS = (list, tuple)
_EMPTY: tuple[Any, ...] = ()


def num(x: Any) -> int | float | None:
    """Return ``x`` as a number, or ``None`` when it is not one (booleans are not)."""
    t = type(x)
    if t is int or t is float:
        return x  # type: ignore[no-any-return]
    if x is None or t is bool or t is str:
        return None
    if isinstance(x, (int, float)):
        return x  # int and float subclasses, e.g. IntEnum
    if isinstance(x, (Decimal, numbers.Real)):
        # Hosts may pass Decimal money; compare it as a float rather than not at all.
        try:
            return float(x)
        except (ValueError, OverflowError, TypeError):
            return None
    return None


def root(x: Any) -> dict[str, Any]:
    """Return a fact root as a dict: a mapping copied, anything else empty."""
    if type(x) is dict:
        return x
    if isinstance(x, Mapping):
        try:
            return dict(x)
        except Exception:
            return {}
    return {}


def get(x: Any, key: str) -> Any:
    """Return ``x[key]`` for a mapping, else ``None`` (a step through a non-mapping)."""
    if type(x) is dict:
        return x.get(key)
    if isinstance(x, Mapping):
        try:
            return x.get(key)
        except Exception:
            return None
    return None


def iter_list(x: Any) -> Any:
    """Return ``x`` when it is a list, else an empty one (for quantifiers)."""
    return x if isinstance(x, _LISTS) else _EMPTY


# --- equality and order --------------------------------------------------------------


def eq(a: Any, b: Any) -> bool:
    """Structural equality; numbers by value; different types unequal; bool is no number."""
    ta = type(a)
    if ta is type(b) and (ta is str or ta is int or ta is float or ta is bool or a is None):
        return a == b  # type: ignore[no-any-return]
    try:
        return _eq(a, b)
    except RecursionError:
        return False


def _eq(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and bool(a) == bool(b)
    na, nb = num(a), num(b)
    if na is not None or nb is not None:
        return na is not None and nb is not None and na == nb
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and str(a) == str(b)
    if isinstance(a, _LISTS):
        if not isinstance(b, _LISTS) or len(a) != len(b):
            return False
        return all(_eq(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping):
        if not isinstance(b, Mapping) or len(a) != len(b):
            return False
        return all(k in b and _eq(v, b[k]) for k, v in a.items())
    if isinstance(b, (*_LISTS, Mapping)):
        return False
    try:
        return bool(a == b)
    except Exception:
        return False


def ne(a: Any, b: Any) -> bool:
    return not eq(a, b)


def _ordered(a: Any, b: Any) -> tuple[Any, Any] | None:
    """Return the pair when ``a`` and ``b`` can be ordered (two numbers or two strings)."""
    na, nb = num(a), num(b)
    if na is not None and nb is not None:
        return na, nb
    if isinstance(a, str) and isinstance(b, str):
        return str(a), str(b)
    return None


def lt(a: Any, b: Any) -> bool:
    ta, tb = type(a), type(b)
    if ((ta is int or ta is float) and (tb is int or tb is float)) or ta is tb is str:
        return a < b  # type: ignore[no-any-return]
    p = _ordered(a, b)
    return p is not None and p[0] < p[1]


def le(a: Any, b: Any) -> bool:
    ta, tb = type(a), type(b)
    if ((ta is int or ta is float) and (tb is int or tb is float)) or ta is tb is str:
        return a <= b  # type: ignore[no-any-return]
    p = _ordered(a, b)
    return p is not None and p[0] <= p[1]


def gt(a: Any, b: Any) -> bool:
    return lt(b, a)


def ge(a: Any, b: Any) -> bool:
    return le(b, a)


def between(x: Any, low: Any, high: Any) -> bool:
    return le(low, x) and le(x, high)


# --- membership and strings ----------------------------------------------------------


def in_(a: Any, b: Any) -> bool:
    """``a in b``: an element of a list, or a substring of a string."""
    if isinstance(b, _LISTS):
        return any(eq(a, e) for e in b)
    if isinstance(b, str) and isinstance(a, str):
        return str(a) in str(b)
    return False


def contains(a: Any, b: Any) -> bool:
    return in_(b, a)


def starts_with(a: Any, b: Any) -> bool:
    return isinstance(a, str) and isinstance(b, str) and str.startswith(a, b)


def ends_with(a: Any, b: Any) -> bool:
    return isinstance(a, str) and isinstance(b, str) and str.endswith(a, b)


def matches(a: Any, pattern: Any) -> bool:
    """``re.search`` with a pattern computed at run time; a bad pattern gives false."""
    if not isinstance(a, str) or not isinstance(pattern, str):
        return False
    try:
        return re.search(pattern, a) is not None
    except Exception:  # re.error, or a pattern too deep for the regex compiler
        return False


def matches_re(compiled: re.Pattern[str], a: Any) -> bool:
    return isinstance(a, str) and compiled.search(a) is not None


# --- arithmetic ----------------------------------------------------------------------


def _nums(a: Any, b: Any) -> tuple[Any, Any] | None:
    ta, tb = type(a), type(b)
    if (ta is int or ta is float) and (tb is int or tb is float):
        return a, b
    na, nb = num(a), num(b)
    return None if na is None or nb is None else (na, nb)


def add(a: Any, b: Any) -> Any:
    """Numbers add; two strings join; anything else gives null."""
    p = _nums(a, b)
    if p is None:
        return str(a) + str(b) if isinstance(a, str) and isinstance(b, str) else None
    try:
        return p[0] + p[1]
    except OverflowError:
        return None


def sub(a: Any, b: Any) -> Any:
    p = _nums(a, b)
    if p is None:
        return None
    try:
        return p[0] - p[1]
    except OverflowError:
        return None


def mul(a: Any, b: Any) -> Any:
    p = _nums(a, b)
    if p is None:
        return None
    try:
        return p[0] * p[1]
    except OverflowError:
        return None


def div(a: Any, b: Any) -> Any:
    p = _nums(a, b)
    if p is None or p[1] == 0:
        return None
    try:
        return p[0] / p[1]
    except OverflowError:
        return None


def mod(a: Any, b: Any) -> Any:
    p = _nums(a, b)
    if p is None or p[1] == 0:
        return None
    try:
        return p[0] % p[1]
    except OverflowError:
        return None


def neg(x: Any) -> Any:
    n = num(x)
    return None if n is None else -n


# --- functions -----------------------------------------------------------------------


def length(x: Any) -> int:
    """``count(x)`` and ``len(x)``: the length of a list or string, else 0."""
    return len(x) if isinstance(x, (*_LISTS, str)) else 0


def _numbers(x: Any) -> list[Any]:
    if not isinstance(x, _LISTS):
        return []
    out = []
    for e in x:
        n = num(e)
        if n is not None:
            out.append(n)
    return out


def total(x: Any) -> Any:
    """``sum(x)``: the numbers of a list added up (others skipped), else 0."""
    acc: Any = 0
    try:
        for n in _numbers(x):
            acc = acc + n
    except OverflowError:
        return None
    return acc


def minimum(x: Any) -> Any:
    ns = _numbers(x)
    return min(ns) if ns else None


def maximum(x: Any) -> Any:
    ns = _numbers(x)
    return max(ns) if ns else None


def average(x: Any) -> Any:
    ns = _numbers(x)
    if not ns:
        return None
    s = total(ns)
    try:
        return None if s is None else s / len(ns)
    except OverflowError:
        return None


FUNCTIONS = {
    "count": length,
    "len": length,
    "sum": total,
    "min": minimum,
    "max": maximum,
    "avg": average,
}

BINARY = {"+": add, "-": sub, "*": mul, "/": div, "%": mod}

COMPARE = {
    "==": eq,
    "!=": ne,
    "<": lt,
    "<=": le,
    ">": gt,
    ">=": ge,
    "in": in_,
    "not in": lambda a, b: not in_(a, b),
    "contains": contains,
    "not contains": lambda a, b: not contains(a, b),
    "starts_with": starts_with,
    "ends_with": ends_with,
    "matches": matches,
}

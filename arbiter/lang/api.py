"""Loading and checking policies: the language's public entry points."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from arbiter.errors import PolicyError
from arbiter.lang.checker import CheckedPolicy, check_decls
from arbiter.lang.diagnostics import Diagnostic
from arbiter.lang.policy import Policy
from arbiter.lang.sources import Loaded, load_files, load_mapping

PathLike = str | os.PathLike[str]


def _paths(paths: PathLike | Iterable[PathLike]) -> list[PathLike]:
    if isinstance(paths, (str, os.PathLike)):
        return [paths]
    return list(paths)


def _check(loaded: Loaded) -> tuple[CheckedPolicy, list[Diagnostic]]:
    checked, diags = check_decls(loaded.files, loaded.decls)
    order = {f.display: i for i, f in enumerate(loaded.files)}
    everything = loaded.diagnostics + diags
    # Stable: problems of one file in position order, files in load order.
    everything.sort(key=lambda d: (order.get(d.file, -1), d.line, d.col))
    return checked, list(dict.fromkeys(everything))  # without repeats, order kept


def check(paths: PathLike | Iterable[PathLike]) -> list[Diagnostic]:
    """Return every problem in the policy at ``paths`` (files or directories); [] if valid."""
    return _check(load_files(_paths(paths)))[1]


def check_sources(sources: Mapping[str, str]) -> list[Diagnostic]:
    """Return every problem in a policy given as ``{relative path: text}``."""
    return _check(load_mapping(sources))[1]


def _build(loaded: Loaded) -> Policy:
    checked, diags = _check(loaded)
    if diags:
        raise PolicyError(diags)
    return Policy(checked)


def load_policy(paths: PathLike | Iterable[PathLike]) -> Policy:
    """Load, check and compile the policy at ``paths``; raise PolicyError listing every
    problem when it does not check."""
    return _build(load_files(_paths(paths)))


def load_policy_from_sources(sources: Mapping[str, str]) -> Policy:
    """Load a policy from in-memory texts ``{relative path: text}`` (e.g. a published
    policy); includes resolve inside the mapping."""
    return _build(load_mapping(sources))

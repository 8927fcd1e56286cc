"""Command group placeholder: replaced by the issue that builds these commands."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Add this module's commands to ``group`` (none yet)."""

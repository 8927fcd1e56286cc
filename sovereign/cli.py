"""Entry point of the ``sovereign`` command.

Each command group lives in ``sovereign/commands/`` and exposes ``register(group)``. Every
error the project raises on purpose becomes one sentence on standard error and exit
status 1; a usage mistake is click's exit status 2. A Python traceback means a bug.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from arbiter.errors import SovereignError

COMMAND_MODULES = (
    "sovereign.commands.rules",
    "sovereign.commands.ledger",
    "sovereign.commands.run",
    "sovereign.commands.control",
)


class Main(click.Group):
    """Turns the project's errors into one clear sentence and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SovereignError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sovereign")
def cli() -> None:
    """Governed, local-first AI infrastructure for small studios."""


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(cli)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="sovereign", standalone_mode=True)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])

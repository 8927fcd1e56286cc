"""Entry point of the ``sovereign`` command.

Each command group lives in ``sovereign/commands/`` and exposes ``register(group)``. Every
error the project raises on purpose becomes one sentence on standard error and exit
status 1; a usage mistake is click's exit status 2. A Python traceback means a bug.

Arguments must be UTF-8 text: bytes that are not (Python keeps them as surrogate escapes)
would be queued or recorded and fail far from where they were typed, so they are refused
here, for every command at once.
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
    "sovereign.commands.approvals",
    "sovereign.commands.halts",
    "sovereign.commands.commit",
    "sovereign.commands.research",
    "sovereign.commands.explain",
    "sovereign.commands.notes",
)


class Main(click.Group):
    """Turns the project's errors into one clear sentence and exit status 1."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        for position, arg in enumerate(args, start=1):
            problem = not_utf8(arg)
            if problem:
                click.echo(
                    f"error: argument {position} of the command line is not UTF-8 text "
                    f"({problem}); convert it to UTF-8, e.g. with iconv, and try again",
                    err=True,
                )
                ctx.exit(1)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SovereignError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


def not_utf8(text: str) -> str | None:
    """What makes ``text`` not UTF-8 (the first bad byte), or None when it is."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        # A surrogate escape stands for the byte that could not be decoded.
        what = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
        return f"{what} at character {exc.start + 1}"
    return None


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

"""The `watcher` command line: one module per command group.

Global options come before the command: ``watcher --config F --db URL run --once``.
Each module registers its commands on `base.cli`; the list below is the registry.
"""

from __future__ import annotations

from typing import Any

from watcher.cli import (
    alerts,
    check,
    db,
    evidence,
    export,
    rules,
    run,
    serve,
    silences,
    sources,
    story,
)
from watcher.cli.base import cli

COMMAND_MODULES = (
    check,
    db,
    run,
    sources,
    export,
    evidence,
    rules,
    alerts,
    silences,
    story,
    serve,
)


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv, prog_name="watcher")


__all__ = ["COMMAND_MODULES", "cli", "main"]

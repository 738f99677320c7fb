"""The `watcher` command line: one module per command group.

Global options come before the command: ``watcher --config F --db URL run --once``.
Each module registers its commands on `base.cli`; `base.COMMANDS` is the registry, and a
module is imported only when one of its commands is used.
"""

from __future__ import annotations

from typing import Any

from watcher.cli.base import COMMANDS, cli


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv, prog_name="watcher")


__all__ = ["COMMANDS", "cli", "main"]

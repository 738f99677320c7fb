"""Every error watcher raises on purpose, in one hierarchy (expected outcomes of fetching,
parsing and sending are values, not exceptions; these are bad input and broken environments):

    WatcherError
    ├── ConfigError       sources.yaml is invalid: one formatted `file:line: …` line per problem
    ├── RuleError         rules whose own examples fail: (path in the file, message) each
    ├── StoreError        the database cannot be used: unreachable, wrong URL, schema too new
    ├── AlreadyRunning    another watcher holds this SQLite database (the instance lock)
    ├── EvalInputError    a labelled line `watcher eval` cannot read (also a ValueError)
    └── DecodeError       a body declares a charset watcher will not decode (unknown, or not
                          a text encoding: punycode, base64…); the parsers make it a value

The CLI turns each into one line on stderr and an exit code; nothing shows a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence


class WatcherError(Exception):
    """The base of every error watcher raises on purpose."""


class ConfigError(WatcherError):
    """The configuration is invalid. `problems` holds one line per problem, already formatted."""

    def __init__(
        self, problems: list[str], *, unset: Sequence[str] = (), waiting: Sequence[str] = ()
    ) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
        #: The environment variables found unset. When every problem is one of them, the file
        #: is valid wherever they are set (`watcher reload` relies on the daemon's own).
        self.unset = tuple(unset)
        #: The checks that wait until these problems are fixed (they need a valid file), each
        #: said as what is checked: "the examples of 3 rules".
        self.waiting = tuple(waiting)

    @property
    def only_unset(self) -> bool:
        return bool(self.unset) and len(self.unset) == len(self.problems)


class RuleError(WatcherError):
    """Rule examples that fail: (path in the file, message) each."""

    def __init__(self, problems: Sequence[tuple[tuple[str | int, ...], str]]) -> None:
        super().__init__("; ".join(m for _, m in problems))
        self.problems = list(problems)


class StoreError(WatcherError):
    """The database cannot be used (unreachable, wrong URL, schema too new)."""


class BadDatabaseURL(StoreError):
    """The database URL itself is wrong (no driver for it, malformed): the option or setting
    that gave it is to be fixed, not the database."""


class AlreadyRunning(WatcherError):
    """Another process holds this database's instance lock."""


class EvalInputError(WatcherError, ValueError):
    """A labelled line that cannot be read: the message starts with ``file:line:``."""


class DecodeError(WatcherError):
    """A body's declared charset is unknown or not a document encoding."""

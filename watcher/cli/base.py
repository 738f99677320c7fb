"""What every command shares: the global options, `Context` (config, rules, `open_store`),
and `fail`, which turns an error into one line.

Global options come before the command: ``watcher --config F --db URL run --once``.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from zoneinfo import ZoneInfo

import click

from watcher import DEFAULT_DATABASE_URL, __version__
from watcher import log as logsetup
from watcher.errors import BadDatabaseURL, ConfigError, RuleError

if TYPE_CHECKING:  # imported where used: `watcher --help` loads neither pydantic nor SQLAlchemy
    from watcher.config import LoadedConfig
    from watcher.config.loading import Checks
    from watcher.store import Store

log = logging.getLogger("watcher")

T = TypeVar("T")


@dataclass
class Context:
    config_path: str
    db_url: str | None
    log_level: str
    log_format: str
    #: `--utc`: times in command output in UTC rather than settings.timezone.
    utc: bool = False
    _loaded: LoadedConfig | None = field(default=None, repr=False)
    _matcher: Any = field(default=None, repr=False)

    def config(self, checks: Checks | None = None) -> LoadedConfig:
        """The validated config; exits with every problem listed when it is invalid (those of
        `checks` too, on the first call: `watcher check` passes its costlier ones)."""
        if self._loaded is None:
            from watcher.config import load_config

            try:
                self._loaded = load_config(self.config_path, checks=checks)
            except ConfigError as exc:
                fail_config(exc)
            logsetup.add_secrets(self._loaded.secrets)
        return self._loaded

    def timezone(self) -> str:
        """The zone of times in command output: settings.timezone (UTC with `--utc`, or
        when there is no sources.yaml)."""
        if self.utc or not config_exists(self):
            return "UTC"
        return self.config().config.settings.timezone

    def when(self, moment: datetime | None, *, seconds: bool = False) -> str:
        """A time as commands print it, in `timezone()` and saying which:
        ``2026-12-02 18:14 KST``; ``-`` for none."""
        if moment is None:
            return "-"
        local = moment.astimezone(ZoneInfo(self.timezone()))
        return local.strftime(f"%Y-%m-%d %H:%M{':%S' if seconds else ''} %Z")

    def matcher(self, loaded: LoadedConfig | None = None) -> Any:
        """The compiled rules; exits listing every rule whose examples fail."""
        from watcher.rules import compile_rules

        if loaded is None and self._matcher is not None:
            return self._matcher
        loaded = loaded or self.config()
        try:
            matcher = compile_rules(loaded.config)
        except RuleError as exc:
            fail_config(ConfigError([loaded.problem(path, msg) for path, msg in exc.problems]))
        if loaded is self._loaded:
            self._matcher = matcher
        return matcher

    def database_url(self, *, need_config: bool = True) -> str:
        if self.db_url:
            return self.db_url
        if need_config:
            return self.config().config.settings.database_url or DEFAULT_DATABASE_URL
        return DEFAULT_DATABASE_URL

    def store(
        self, *, migrate: bool = True, need_config: bool = True, existing: bool = False
    ) -> Store:
        """Open the database, applying pending migrations (the daemon and most commands).
        With `existing` (every command but `run` and `db upgrade`), a database that does not
        exist or holds no watcher data yet is an error rather than created."""
        from watcher.store import Store, database_failure, missing_file

        url = self.database_url(need_config=need_config)
        if existing:
            self.refuse_missing(url)
        elif path := missing_file(url):  # created here: SQLite makes the file, not its folder
            folder = Path(path).absolute().parent
            if not folder.is_dir():
                fail(f"cannot create the database {path}: its folder {folder} does not exist")
        try:
            store = Store.open(url)
            if existing and store.current_revision() is None:
                store.close()
                fail(
                    f"database {logsetup.redact(url)} holds no watcher data yet: `watcher run` "
                    "(or `watcher db upgrade`) sets it up"
                )
            if migrate:
                store.ensure_schema()
        except BadDatabaseURL as exc:  # the option or setting is wrong, not the database
            fail(str(exc), code=2)
        except Exception as exc:  # driver errors: unreachable server, bad credentials
            fail(database_failure(url, exc))
        return store

    def refuse_missing(self, url: str) -> None:
        """Exit when `url` names a SQLite file that does not exist: only `watcher run` and
        `watcher db upgrade` create a database (any other command would make and migrate a
        stray file that nothing else reads, and report success on it)."""
        from watcher.store import missing_file

        if path := missing_file(url):
            fail(
                f"no database at {path}: `watcher run` creates it (or point --db / "
                "settings.database_url at the existing one)"
            )

    @contextmanager
    def open_store(
        self, *, migrate: bool = True, need_config: bool = True, existing: bool = False
    ) -> Iterator[Store]:
        """`store()` for the length of a block, closed however the block ends. A database
        error the block does not handle (a read-only file, a server gone) ends the command
        with one line, not a traceback."""
        from watcher.store import database_failure, is_database_error

        store = self.store(migrate=migrate, need_config=need_config, existing=existing)
        try:
            yield store
        except Exception as exc:
            if not is_database_error(exc):
                raise
            fail(database_failure(self.database_url(need_config=need_config), exc))
        finally:
            store.close()


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {logsetup.redact(message)}", err=True)
    sys.exit(code)


def fail_config(exc: ConfigError) -> NoReturn:
    for problem in exc.problems:
        click.echo(logsetup.redact(problem), err=True)
    count = len(exc.problems)
    click.echo(f"{count} problem{'s' if count != 1 else ''} found; nothing was changed.", err=True)
    if exc.waiting:
        more = len(exc.waiting)
        click.echo(
            f"{more} more check{'s wait' if more != 1 else ' waits'} until these are fixed: "
            + "; ".join(exc.waiting),
            err=True,
        )
    sys.exit(2)


pass_ctx = click.make_pass_decorator(Context)

#: The registry of commands: name → the module of `watcher.cli` that defines it. A module is
#: imported only when one of its commands runs (or `--help` lists them all), so a command
#: pays for its own imports alone: `watcher run --once` does not load the web pages.
COMMANDS = {
    "alerts": "alerts",
    "check": "check",
    "db": "db",
    "eval": "rules",
    "evidence": "evidence",
    "export": "export",
    "match": "rules",
    "notify": "alerts",
    "reload": "run",
    "replay": "rules",
    "run": "run",
    "serve": "serve",
    "silence": "silences",
    "sources": "sources",
    "story": "story",
}


class LazyGroup(click.Group):
    """The top-level group: its commands come from `COMMANDS`, imported when asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is not None and cmd_name not in self.commands:
            importlib.import_module(f"watcher.cli.{module}")
        return self.commands.get(cmd_name)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="watcher")
@click.option(
    "--config",
    "config_path",
    default="sources.yaml",
    show_default=True,
    envvar="WATCHER_CONFIG",
    metavar="PATH",
    help="The sources.yaml to use (env WATCHER_CONFIG).",
)
@click.option(
    "--db",
    "db_url",
    envvar="WATCHER_DATABASE_URL",
    metavar="URL",
    help="Database URL, e.g. sqlite:///watcher.db or postgresql+psycopg://user@host/db "
    "(env WATCHER_DATABASE_URL; default: settings.database_url, else "
    f"{DEFAULT_DATABASE_URL}).",
)
@click.option(
    "--utc",
    is_flag=True,
    help="Print times in UTC (default: settings.timezone; times always name their zone).",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    help="The lowest level of log line written to stderr; debug also logs every quiet cycle.",
)
@click.option(
    "--log-format",
    default="text",
    show_default=True,
    type=click.Choice(["text", "json"]),
    help="One line per event, as text or JSON.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    config_path: str,
    db_url: str | None,
    utc: bool,
    log_level: str,
    log_format: str,
) -> None:
    """Watch UN and news sources for forced repatriations of North Korean escapees,
    and alert advocates.

    Configuration lives in sources.yaml; see `watcher check` and docs/configuration.md.
    """
    logsetup.setup(log_level, log_format)
    ctx.obj = Context(
        config_path=config_path,
        db_url=db_url,
        log_level=log_level,
        log_format=log_format,
        utc=utc,
    )


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], *, empty: str) -> None:
    """Rows under a header, columns padded to their widest cell (the last one free);
    `empty` (one line) when there are no rows."""
    if not rows:
        click.echo(empty)
        return
    everything = [tuple(header), *(tuple(r) for r in rows)]
    widths = [max(len(r[i]) for r in everything) for i in range(len(header) - 1)]
    for row in everything:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]).rstrip())


@contextmanager
def progress(items: Iterable[T], label: str) -> Iterator[Iterable[T]]:
    """`items`, with a progress line on stderr while they are consumed when stderr is a
    terminal (click's bar: count, rate); plain `items` otherwise, so pipes and logs get no
    control characters."""
    if not sys.stderr.isatty():
        yield items
        return
    with click.progressbar(
        items, label=label, file=sys.stderr, show_pos=True, show_eta=False
    ) as bar:
        yield bar


def one_line_text(text: str | None, limit: int | None = 120) -> str:
    """Untrusted text (a source's title or language, a server's error, a stored key) as one
    line a terminal shows as written, cut to `limit` (None: whole): control characters (an
    escape sequence's ESC, C1's CSI), bidi overrides and lone surrogates removed and
    whitespace folded, as every alert format cleans it (`render.clean`).

    Usage::

        one_line_text("\\x1b]0;owned\\x07 title\\n2")   # "]0;owned title 2"
    """
    from watcher.render import clean

    text = clean(text)
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- alerts


def who(by: str | None) -> str:
    """Who a correction, an undo or a silence is recorded as: `--by`, else the account running
    the command ($LOGNAME, $USER, then the system's own record of the account: a container or a
    cron job often sets neither variable), else "unknown"."""
    import getpass

    if by and by.strip():
        return by.strip()
    try:
        return getpass.getuser() or "unknown"
    except (OSError, KeyError):  # no variable and no passwd entry (an arbitrary container uid)
        return "unknown"


def config_exists(ctx: Context) -> bool:
    import os

    return os.path.exists(ctx.config_path)

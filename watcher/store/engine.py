"""The database connection: engines, migrations, transactions.

`StoreBase` is what every query group in `watcher.store` builds on: one SQLAlchemy engine
(SQLite in WAL mode by default, or PostgreSQL via `postgresql+psycopg://…`) and the
Alembic migrations in `migrations/`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DatabaseError

from watcher.errors import BadDatabaseURL, StoreError
from watcher.urls import redact_credentials

log = logging.getLogger("watcher.store")

#: The newest migration; `Store.schema_is_current` compares with one query, so that start-up
#: imports Alembic only when the database is behind. A test checks it is Alembic's head.
SCHEMA_HEAD = "0020"

#: Seconds a database call may take (connect, statement, lock wait) before it fails: a stalled
#: database then shows as an error the daemon retries, not as a hang.
DB_TIMEOUT = 10

#: Any 64-bit number: the PostgreSQL advisory lock taken around migrations.
_MIGRATION_LOCK = 0x5741544348455201


def migrations_dir() -> Path:
    """The Alembic scripts: inside the installed wheel, or beside the package in a checkout."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "migrations", here.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise StoreError(f"migrations not found beside {here}")


def make_engine(url: str) -> Engine:
    """An engine with the settings watcher relies on (WAL and foreign keys on SQLite)."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": DB_TIMEOUT})

            @event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
                cursor = dbapi_conn.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.execute(f"PRAGMA busy_timeout={DB_TIMEOUT * 1000}")
                cursor.close()

            return engine
        # A server that vanishes (a cut cable, a blackholed route) must fail a call in seconds,
        # not hang the daemon: connect, statement and TCP timeouts all at DB_TIMEOUT.
        engine = create_engine(
            url,
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=5,
            connect_args={
                "connect_timeout": DB_TIMEOUT,
                "keepalives": 1,
                "keepalives_idle": 5,
                "keepalives_interval": 2,
                "keepalives_count": 3,
                "tcp_user_timeout": DB_TIMEOUT * 1000,
            }
            if url.startswith("postgresql")
            else {},
        )
        if url.startswith("postgresql"):

            @event.listens_for(engine, "connect")
            def _statement_timeout(dbapi_conn: Any, _record: Any) -> None:
                # Set per connection (not via `options`, which the URL may carry already).
                with dbapi_conn.cursor() as cursor:
                    cursor.execute(f"SET statement_timeout = {DB_TIMEOUT * 1000}")
                    cursor.execute(f"SET lock_timeout = {DB_TIMEOUT * 1000}")
                    # A plan per execution, from the table's size at that moment: a generic
                    # plan cached while `items` was small (a sequential scan, right then) would
                    # otherwise serve every key lookup of the connection's life, until an
                    # ANALYZE. Planning these short statements costs less than one such scan.
                    cursor.execute("SET plan_cache_mode = force_custom_plan")
                dbapi_conn.commit()

        return engine
    except Exception as exc:  # a malformed URL or a missing driver
        raise BadDatabaseURL(
            f"bad database URL {redact_url(url)!r}: {exc} (expected sqlite:///PATH, e.g. "
            "sqlite:///watcher.db, or a postgresql+psycopg:// URL)"
        ) from None


def missing_file(url: str) -> str | None:
    """The path of a SQLite database file that does not exist yet (opening would create it);
    None for an existing file, an in-memory database, or a server database."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:" or parsed.database.startswith("file:"):
        return None
    return None if Path(parsed.database).exists() else parsed.database


def server_key(database_url: str) -> str:
    """A server database as the daemon's PID file is named after: where it is and whose,
    never its password, so that `watcher reload` from a shell without the daemon's password
    (or with other secrets registered) names the daemon's file."""
    from sqlalchemy.engine import make_url

    try:
        url = make_url(database_url)
    except Exception:  # the daemon could not have started on it: any stable key will do
        return database_url.rpartition("@")[2]
    query = sorted((k, str(v)) for k, v in url.query.items() if k != "password")
    return f"{url.get_backend_name()}|{url.username}|{url.host}|{url.port}|{url.database}|{query}"


def redact_url(url: str) -> str:
    """The URL with any password replaced, for messages: the user-info one and any given as
    a query parameter (`?password=`, `?sslpassword=`: `urls.redact_credentials`).

    Usage::

        redact_url("postgresql+psycopg://u@db/x?password=pw&sslmode=require")
        # 'postgresql+psycopg://***@db/x?password=***&sslmode=require'
    """
    from sqlalchemy.engine import make_url

    try:
        return redact_credentials(make_url(url).render_as_string(hide_password=True))
    except Exception:
        # shown as written (a path given for a URL is the usual mistake), but for everything
        # before the last @ after the scheme: a password may hold any character, / and @ too
        head, at, tail = url.rpartition("@")
        if not at:
            return redact_credentials(url)
        scheme, sep, _ = head.partition("://")
        shown = f"{scheme}{sep}***@{tail}" if sep and "/" not in scheme else f"***@{tail}"
        return redact_credentials(shown)


class StoreBase:
    """One engine and the schema; the query groups (sources, items) extend it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> Any:
        return cls(make_engine(url))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def _insert(self) -> Any:
        """The dialect's INSERT, which knows ON CONFLICT."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as postgresql_insert

            return postgresql_insert
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self.engine.begin() as conn:
            yield conn

    # ----------------------------------------------------------------- schema

    def current_revision(self) -> str | None:
        """The applied migration, or None for an empty database (one query)."""
        try:
            with self.engine.connect() as conn:
                return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except DatabaseError as exc:  # also a file that is not a database (DatabaseError)
            if is_missing_table(exc):
                return None
            raise StoreError(
                f"database {redact_url(str(self.engine.url))}: {_one_line(exc)}"
            ) from None

    def check_writable(self) -> None:
        """Raise the database's own error when it takes no writes (a SQLite file another
        account owns or opened read-only, a read-only PostgreSQL role or replica): one
        statement that rewrites the revision with itself, rolled back, so that `watcher run`
        says so at start instead of failing every poll."""
        with self.engine.connect() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = version_num"))
            conn.rollback()

    def schema_is_current(self) -> bool:
        return self.current_revision() == SCHEMA_HEAD

    def upgrade(self, *, replay: bool = False) -> tuple[str | None, str | None]:
        """Apply pending migrations; return (revision before, revision after).

        A database with no tables at all is created at the newest schema in one step and
        stamped with its revision (the tables the migrations would build: tests/
        test_migrations.py checks they agree); `replay` runs every migration instead. On
        PostgreSQL this runs under an advisory lock, so replicas starting together do not race.
        """
        from alembic import command
        from alembic.config import Config as AlembicConfig
        from sqlalchemy import inspect

        from watcher.store.tables import metadata

        before = self.current_revision()
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(migrations_dir()))
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Migrations may wait for another replica's and may rewrite large tables.
                conn.execute(text("SET LOCAL statement_timeout = 0"))
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            cfg.attributes["connection"] = conn
            if not replay and not inspect(conn).get_table_names():
                metadata.create_all(conn)
                command.stamp(cfg, "head")
            else:
                command.upgrade(cfg, "head")
        after = self.current_revision()
        if after != before:
            self.analyze()
        return before, after

    def analyze(self, tables: Sequence[str] = ()) -> None:
        """PostgreSQL: refresh the planner's statistics of `tables` (default: every table of
        the current schema), and with them every cached plan that reads them. SQLite: nothing
        (see `analyze_grown`)."""
        if self.dialect != "postgresql":
            return
        with self.engine.begin() as conn:
            conn.execute(text("SET LOCAL statement_timeout = 0"))
            if not tables:
                listed = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                names: Any = conn.execute(text(listed)).scalars()
                tables = [str(name) for name in names]
            for table in sorted(tables):
                quoted = table.replace('"', '""')
                conn.execute(text(f'ANALYZE "{quoted}"'))

    def analyze_grown(self, factor: float = 2.0, floor: int = 1000) -> list[str]:
        """ANALYZE the tables (PostgreSQL) that hold more than `factor` times the rows they
        held at their last ANALYZE (and at least `floor`); returns their names.

        Why: PostgreSQL caches a plan per prepared statement, chosen from the statistics of
        the moment. A plan made while `items` was empty (a fresh database, the first cycle)
        scans the whole table for every key lookup and is kept as the table grows, until an
        ANALYZE invalidates it; autovacuum gets there only a minute or more later. One
        cheap query per call (the live row counts the server already keeps), so a cycle can
        call this every few seconds; after a large ingest it costs an ANALYZE of the grown
        tables, a sample of at most 30,000 rows each.

        SQLite has no cached plans of this kind, and without statistics its planner assumes
        large tables and uses the indexes: an ANALYZE of a young database would record it as
        small and steer later queries away from them. Nothing is done there."""
        if self.dialect != "postgresql":
            return []
        query = text(
            "SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
            "WHERE s.schemaname = current_schema() AND s.n_live_tup >= :floor "
            "AND s.n_live_tup > :factor * greatest(c.reltuples, 0) ORDER BY s.relname"
        )
        with self.engine.connect() as conn:
            found: Any = conn.execute(query, {"floor": floor, "factor": factor}).scalars()
            grown = [str(name) for name in found]
        if grown:
            self.analyze(grown)
            log.debug("analyzed %s", ", ".join(grown), extra={"action": "analyze"})
        return grown

    def ensure_schema(self) -> None:
        """Upgrade when behind; cheap when current (one query, no Alembic import)."""
        if not self.schema_is_current():
            before, after = self.upgrade()
            log.info(
                "database migrated from %s to %s",
                before or "empty",
                after,
                extra={"action": "db_upgrade"},
            )


def is_missing_table(exc: BaseException) -> bool:
    """Whether a database error says a table is not there (an empty or recreated database)."""
    message = str(exc).lower()
    return "no such table" in message or ("does not exist" in message and "relation" in message)


def _one_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    first = str(orig).strip().splitlines()
    return first[0] if first else type(orig).__name__


def database_failure(url: str, exc: BaseException) -> str:
    """A database error as the one line a command ends with, naming the database and, for a
    database that takes no writes, what to look at."""
    if isinstance(exc, StoreError):  # names the database already
        return str(exc)
    return f"database {redact_url(url)}: {with_hint(_one_line(exc))}"


def with_hint(problem: str) -> str:
    """A database's one-line error and, for a database that takes no writes (a file whose owner
    or permissions changed, a disk remounted read-only, a full disk), what to look at."""
    if "readonly database" in problem:
        return f"{problem} (check the file's owner and permissions)"
    lowered = problem.lower()
    if any(
        full in lowered
        for full in ("database or disk is full", "disk i/o error", "no space left on device")
    ):
        return f"{problem} (the disk may be full: check free space and quotas)"
    return problem


def is_database_error(exc: BaseException) -> bool:
    """Whether an exception came from the database (an outage, a lock, a full disk) rather than
    from watcher's handling of a source: only these mean "database unavailable".

    A statement the database refuses because of the data it carries (a number out of range,
    a constraint) is not an outage: retrying the same data would block that source's poll
    forever, so it stays that source's failure (told by its health) and the rest go on."""
    import sqlite3

    from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

    if isinstance(exc, DataError | IntegrityError | sqlite3.DataError | sqlite3.IntegrityError):
        return False
    return isinstance(exc, SQLAlchemyError | StoreError | sqlite3.Error)

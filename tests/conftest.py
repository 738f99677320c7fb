"""Shared fixtures: a database URL and a migrated Store on SQLite and on PostgreSQL.

PostgreSQL tests use WATCHER_TEST_POSTGRES_URL (default: the local test server). When no
server answers they are skipped with a reason, unless WATCHER_REQUIRE_POSTGRES=1 (CI), where
they fail.

A test that asks for `db_url` or `pg_schema_url` alone gets an empty database (no tables), for
the commands that create one: a fresh PostgreSQL schema, dropped afterwards. A test that asks
for `store` gets a migrated, empty database, and `db_url` names that same database. Migrating
is most of a test's setup (a few dozen DDL statements and an ANALYZE on PostgreSQL), so each
test process (each xdist worker) migrates once and then:

- SQLite: copies the migrated file, the same bytes a fresh upgrade would write;
- PostgreSQL: keeps one migrated schema and empties it before each test as a fresh upgrade
  leaves it: every row deleted, every sequence restarted, every table analyzed. A schema a
  test changed (tables, columns or revision) is dropped and a new one migrated.
"""

from __future__ import annotations

import graphlib
import os
import shutil
import uuid
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from tests.helpers import reap_started
from watcher.store import Store

POSTGRES_URL = os.environ.get(
    "WATCHER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("WATCHER_REQUIRE_POSTGRES") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist (`make test`), the tests that start processes first: they are the long ones
    (mostly waiting on a daemon), and started early they overlap with the many short tests
    instead of running alone at the end. Every worker sorts the same way."""
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: item.get_closest_marker("e2e") is None)


@pytest.fixture(autouse=True)
def _reaped() -> Iterator[None]:
    """Every `watcher` process a test started in the background ends with the test."""
    yield
    reap_started()


@cache
def postgres_problem() -> str | None:
    """None when the test server answers, else why not."""
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return f"PostgreSQL at {POSTGRES_URL} is not reachable: {str(exc).splitlines()[0]}"
    return None


def _with_options(url: str, schema: str) -> str:
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}options=-csearch_path%3D{schema}"


def _need_postgres() -> None:
    problem = postgres_problem()
    if problem:
        if REQUIRE_POSTGRES:
            pytest.fail(f"WATCHER_REQUIRE_POSTGRES=1 but {problem}")
        pytest.skip(problem)


def _create_schema() -> str:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    finally:
        admin.dispose()
    return schema


def _drop_schema(schema: str) -> None:
    admin = create_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A URL whose connections live in a fresh, empty PostgreSQL schema."""
    _need_postgres()
    schema = _create_schema()
    try:
        yield _with_options(POSTGRES_URL, schema)
    finally:
        _drop_schema(schema)


class MigratedSchema:
    """One migrated PostgreSQL schema, emptied before each test that uses it."""

    #: What makes the schema the one the migrations build: every column of every table,
    #: and the revision.
    SHAPE = text(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() ORDER BY 1, 2"
    )

    def __init__(self) -> None:
        self.schema = ""
        self.url = ""
        self.engine: Engine | None = None
        self.shape: Any = None
        self.revision: str | None = None
        #: Tables to empty, each before the tables it refers to.
        self.tables: list[str] = []
        self.sequences: list[str] = []

    def build(self) -> None:
        self.schema = _create_schema()
        self.url = _with_options(POSTGRES_URL, self.schema)
        store = Store.open(self.url)
        try:
            store.upgrade()  # the real path, once
        finally:
            store.close()
        self.engine = create_engine(self.url)
        with self.engine.connect() as conn:
            self.shape = conn.execute(self.SHAPE).all()
            self.revision = self._revision(conn)
            tables = conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            ).scalars()
            refers = conn.execute(
                text(
                    "SELECT child.relname, parent.relname FROM pg_constraint c "
                    "JOIN pg_class child ON child.oid = c.conrelid "
                    "JOIN pg_class parent ON parent.oid = c.confrelid "
                    "JOIN pg_namespace n ON n.oid = child.relnamespace "
                    "WHERE c.contype = 'f' AND n.nspname = current_schema()"
                )
            ).all()
            sequences = "SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()"
            self.sequences = list(conn.execute(text(sequences)).scalars())
        # Each table after those that refer to it (a self-reference needs no order).
        graph: dict[str, set[str]] = {name: set() for name in tables}
        for child, parent in refers:
            if child != parent:
                graph[parent].add(child)
        self.tables = list(graphlib.TopologicalSorter(graph).static_order())
        self.tables.remove("alembic_version")

    @staticmethod
    def _revision(conn: Any) -> str | None:
        return conn.execute(text("SELECT max(version_num) FROM alembic_version")).scalar()

    def fresh(self) -> str:
        """The URL of the schema, emptied as a fresh upgrade leaves it."""
        if self.engine is None or not self._reset():
            self.discard()
            self.build()
        return self.url

    def _reset(self) -> bool:
        assert self.engine is not None
        try:
            with self.engine.begin() as conn:
                conn.execute(text("SET LOCAL lock_timeout = '10s'"))
                if conn.execute(self.SHAPE).all() != self.shape:
                    return False
                if self._revision(conn) != self.revision:
                    return False
                for table in self.tables:
                    conn.execute(text(f'DELETE FROM "{table}"'))
                for sequence in self.sequences:
                    conn.execute(text(f'ALTER SEQUENCE "{sequence}" RESTART'))
                # the deletes reach the server's row counts at commit, not some seconds later
                conn.execute(text("SELECT pg_stat_force_next_flush()"))
            with self.engine.begin() as conn:  # as upgrade does: every table analyzed, empty
                for table in sorted([*self.tables, "alembic_version"]):
                    conn.execute(text(f'ANALYZE "{table}"'))
        except Exception:  # a connection left holding a lock, a schema gone: start afresh
            return False
        return True

    def discard(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None
        if self.schema:
            try:
                _drop_schema(self.schema)
            except Exception:  # still locked by a leaked connection: left behind, not waited on
                pass
            self.schema = ""


@pytest.fixture(scope="session")
def _migrated_postgres() -> Iterator[MigratedSchema]:
    migrated = MigratedSchema()
    yield migrated
    migrated.discard()


@pytest.fixture(scope="session")
def _migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, closed (its write-ahead log checkpointed into it)."""
    path = tmp_path_factory.mktemp("migrated") / "watcher.db"
    store = Store.open(f"sqlite:///{path}")
    store.upgrade()
    store.close()
    assert not Path(f"{path}-wal").exists(), "the template must be one self-contained file"
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend; migrated when the test also asks for `store`."""
    migrated = "store" in request.fixturenames
    if request.param == "sqlite":
        path = tmp_path / "watcher.db"
        if migrated:
            shutil.copyfile(request.getfixturevalue("_migrated_sqlite"), path)
        return f"sqlite:///{path}"
    if migrated:
        _need_postgres()
        schema: MigratedSchema = request.getfixturevalue("_migrated_postgres")
        return schema.fresh()
    return str(request.getfixturevalue("pg_schema_url"))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A migrated, empty Store on each backend."""
    s = Store.open(db_url)
    assert s.current_revision() is not None, "migrated"
    yield s
    s.close()

"""The one package that speaks SQL: every query, returning `watcher.types` values.

The same code runs on SQLite (the default, in WAL mode) and PostgreSQL
(`postgresql+psycopg://…`). Each module holds the queries of one part of the schema:

    engine.py    engines, migrations, transactions (`StoreBase`)
    tables.py    the schema as SQLAlchemy Core tables (migrations/ creates it)
    rows.py      row → value conversions, each written once
    sources.py   configured sources, leases, poll outcomes
    items.py     items, their matches and the sources that carried them
    articles.py  article pages still to fetch (`fetch_article` sources), tried again later
    stories.py   stories and the deliveries they queue, in the poll's transaction
    outbox.py    the deliveries waiting to be sent, their attempts, silences
    views.py     read models for the web pages and the CLI

Usage::

    store = Store.open("sqlite:///watcher.db")
    store.upgrade()                 # apply pending Alembic migrations
    result = store.save_items(items, now=now)
"""

from __future__ import annotations

from watcher import DEFAULT_DATABASE_URL
from watcher.errors import StoreError
from watcher.store.articles import ArticleQueries
from watcher.store.engine import (
    SCHEMA_HEAD,
    StoreBase,
    database_failure,
    is_database_error,
    is_missing_table,
    make_engine,
    migrations_dir,
    missing_file,
    redact_url,
    server_key,
    with_hint,
)
from watcher.store.items import ItemQueries, content_hash
from watcher.store.sources import SourceQueries
from watcher.types import SaveResult


class Store(SourceQueries, ItemQueries, ArticleQueries, StoreBase):
    """The database: one engine, the source and item queries.

    The outbox (`store.outbox.Outbox`) and the read models (`store.views.Views`) wrap a Store.
    """

    @classmethod
    def open(cls, url: str) -> Store:
        return cls(make_engine(url))


__all__ = [
    "DEFAULT_DATABASE_URL",
    "SCHEMA_HEAD",
    "SaveResult",
    "Store",
    "StoreError",
    "content_hash",
    "database_failure",
    "is_database_error",
    "is_missing_table",
    "make_engine",
    "migrations_dir",
    "missing_file",
    "redact_url",
    "server_key",
    "with_hint",
]

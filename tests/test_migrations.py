"""Alembic migrations and the SQLAlchemy tables agree, on both databases."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from watcher.store import SCHEMA_HEAD, Store, migrations_dir, search
from watcher.store.tables import metadata


def test_schema_head_constant_is_alembic_head() -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    assert ScriptDirectory.from_config(cfg).get_heads() == [SCHEMA_HEAD]


#: SQLite's reflection skips the search order index (an expression); `search.include_name`
#: leaves it out of the comparison on both databases.
EXPRESSION_INDEX = pytest.mark.filterwarnings(
    "ignore:Skipped unsupported reflection of expression-based index ix_items_search_order"
)


@EXPRESSION_INDEX
def test_autogenerate_finds_no_difference(db_url: str) -> None:
    """Every migration replayed from empty builds exactly the tables the code declares (which
    is what a fresh database gets in one step)."""
    store = Store.open(db_url)
    assert store.upgrade(replay=True) == (None, SCHEMA_HEAD)
    with store.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_name": search.include_name}
        )
        diff = compare_metadata(context, metadata)
    store.close()
    assert diff == []


@EXPRESSION_INDEX
def test_a_fresh_database_is_created_at_the_newest_schema(db_url: str) -> None:
    store = Store.open(db_url)
    assert store.upgrade() == (None, SCHEMA_HEAD)
    assert store.upgrade() == (SCHEMA_HEAD, SCHEMA_HEAD), "a second upgrade changes nothing"
    with store.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_name": search.include_name}
        )
        assert compare_metadata(context, metadata) == []
    store.close()


def _shape(store: Store) -> dict[str, list[str]]:
    insp = inspect(store.engine)
    return {
        table: sorted(c["name"] for c in insp.get_columns(table))
        for table in insp.get_table_names()
        if search.include_name(table, "table")
    }


def test_both_databases_get_the_same_tables_and_columns(tmp_path, pg_schema_url: str) -> None:
    lite = Store.open(f"sqlite:///{tmp_path / 'w.db'}")
    pg = Store.open(pg_schema_url)
    lite.upgrade(replay=True)
    pg.upgrade(replay=True)
    assert _shape(lite) == _shape(pg)
    lite.close()
    pg.close()


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'w.db'}")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    store.close()


def test_keys_stored_with_a_user_name_lose_it_and_stay_one_item(store: Store) -> None:
    """Migration 0014: a link's user name was kept in its key; watcher drops it now, so an
    item stored that way would come back as new (and could alert again)."""
    from datetime import UTC, datetime

    from alembic import command
    from sqlalchemy import insert, select

    from watcher.items import make_item
    from watcher.store import tables as t

    now = datetime(2026, 12, 3, tzinfo=UTC)
    store.sync_sources([_Source("s")], now)
    keys = {
        "https://user@e.org/a": "https://e.org/a",  # re-keyed
        "https://e.org/b?mail=a@b.org": "https://e.org/b?mail=a@b.org",  # an @ in the query
        "https://ann@e.org/c": "https://ann@e.org/c",  # stored again since: both kept
        "https://e.org/c": "https://e.org/c",
    }
    with store.engine.begin() as conn:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(migrations_dir()))
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0013")  # the later migrations' tables go: they run again
        for n, key in enumerate(keys):
            conn.execute(
                insert(t.items).values(
                    key=key, source_id="s", url=key, title=f"t{n}", text="", fetched_at=now,
                    baseline=False, content_hash=str(n),
                )
            )  # fmt: skip
    assert store.upgrade() == ("0013", SCHEMA_HEAD)
    with store.engine.connect() as conn:
        stored = dict(conn.execute(select(t.items.c.title, t.items.c.key)).all())
    assert [stored[f"t{n}"] for n in range(4)] == list(keys.values())
    # and the item, polled again, is the one stored
    again = make_item(
        source_id="s",
        title="t0",
        link="https://user@e.org/a",
        summary="",
        fetched_at=now,
    )
    assert again.key == "https://e.org/a" and store.save_items([again]).new == ()


def test_article_retries_come_with_0015_and_go_with_their_item(store: Store) -> None:
    """Migration 0015: items whose article page is still to fetch; a row goes with its item
    (`db prune` deletes items), on both databases."""
    from datetime import UTC, datetime

    from alembic import command
    from sqlalchemy import delete, func, inspect, select

    from watcher.items import make_item
    from watcher.store import tables as t

    now = datetime(2026, 12, 3, tzinfo=UTC)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0014")
    assert "article_retries" not in inspect(store.engine).get_table_names()
    assert store.upgrade() == ("0014", SCHEMA_HEAD)
    store.sync_sources([_Source("s")], now)
    item = make_item(source_id="s", title="t", link="https://e.org/a", summary="", fetched_at=now)
    store.save_items([item])
    store.record_articles(
        "s", now, failed={item.key: "HTTP 403 Forbidden"}, fetched=(), give_up_after=5
    )
    (pending,) = store.pending_articles("s")
    assert (pending.item.key, pending.tries, pending.last_error) == (
        item.key,
        1,
        "HTTP 403 Forbidden",
    )
    with store.engine.begin() as conn:
        conn.execute(delete(t.item_sources))
        conn.execute(delete(t.items))
        left = conn.execute(select(func.count()).select_from(t.article_retries)).scalar_one()
    assert left == 0


@EXPRESSION_INDEX
def test_counts_stored_before_0018_stay_exact_and_new_ones_keep_their_hedge(store: Store) -> None:
    """Migration 0018: matches and stories keep whether their count was approximate ("about
    600", 600여 명); rows stored before it read as exact, on both databases, and it goes back."""
    import json
    from datetime import UTC, datetime

    from alembic import command
    from sqlalchemy import column, insert, select, table

    from watcher.store import tables as t

    now = datetime(2026, 12, 4, tzinfo=UTC)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0017")
    for name in ("matches", "stories"):
        assert "people_approximate" not in _columns(store, name)
    story = {
        "events": json.dumps(["forced_repatriation"]), "severity": "critical", "title": "t",
        "people": 600, "places": "[]", "first_seen_at": now, "updated_at": now, "revision": 1,
        "item_count": 1,
    }  # fmt: skip
    # the table as 0017 had it (the code's table would also write the new column)
    before = table("stories", *(column(name, t.stories.c[name].type) for name in story))
    with store.engine.begin() as conn:
        conn.execute(insert(before).values(**story))
    assert store.upgrade() == ("0017", SCHEMA_HEAD)
    with store.engine.begin() as conn:
        old = conn.execute(select(t.stories.c.people, t.stories.c.people_approximate)).one()
        assert tuple(old) == (600, False)
        conn.execute(insert(t.stories).values(**story, people_approximate=True))
        stored = conn.execute(
            select(t.stories.c.people_approximate).order_by(t.stories.c.id)
        ).scalars()
        assert list(stored) == [False, True]
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0017")
    assert "people_approximate" not in _columns(store, "stories")
    assert store.upgrade() == ("0017", SCHEMA_HEAD)


def _columns(store: Store, table: str) -> set[str]:
    return {c["name"] for c in inspect(store.engine).get_columns(table)}


class _Source:
    def __init__(self, source_id: str) -> None:
        self.id, self.kind, self.url = source_id, "feed", "https://e.org/feed"


@EXPRESSION_INDEX
def test_days_alone_stored_before_0019_are_read_from_their_written_dates(store: Store) -> None:
    """Migration 0019: items keep the day alone their outlet gave ("2026-11-20", no time) and
    stories founded by one their event's day, filled in from the dates as written."""
    from datetime import UTC, date, datetime

    from alembic import command
    from sqlalchemy import column, insert, select, table

    from watcher.store import tables as t

    now = datetime(2026, 12, 5, tzinfo=UTC)
    midnight = datetime(2026, 11, 19, 15, tzinfo=UTC)  # 2026-11-20 in Seoul
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    store.sync_sources([_Source("s")], now)
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0018")
    assert "published_day" not in _columns(store, "items")
    assert "event_day" not in _columns(store, "stories")
    written = {"2026-11-20": midnight, "2026-11-20T00:00:00+09:00": midnight, None: None}
    story = {
        "events": "[]", "severity": "high", "title": "t", "places": "[]", "first_seen_at": now,
        "updated_at": now, "revision": 1, "item_count": 1, "event_at": midnight,
    }  # fmt: skip
    # the tables as 0018 had them
    items = table("items", *(column(n, t.items.c[n].type) for n in ITEM_COLUMNS_0018))
    stories = table("stories", *(column(name, t.stories.c[name].type) for name in story))
    with store.engine.begin() as conn:
        for n, (raw, at) in enumerate(written.items()):
            conn.execute(
                insert(items).values(
                    key=f"k{n}", source_id="s", title="t", text="", published_at=at,
                    published_raw=raw, fetched_at=now, baseline=False, content_hash="h",
                )
            )  # fmt: skip
            conn.execute(insert(stories).values(**story))
            conn.execute(
                insert(t.story_items).values(
                    story_id=n + 1, item_id=n + 1, added_at=now, revision=1
                )
            )
        # the story of the written midnight: its event has a time
        conn.execute(t.stories.update().where(t.stories.c.id == 2).values(event_at=now))
    assert store.upgrade() == ("0018", SCHEMA_HEAD)
    with store.engine.begin() as conn:
        days = conn.execute(select(t.items.c.published_day).order_by(t.items.c.id)).scalars()
        assert list(days) == [date(2026, 11, 20), None, None]
        events = conn.execute(select(t.stories.c.event_day).order_by(t.stories.c.id)).scalars()
        assert list(events) == [date(2026, 11, 20), None, None]
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0018")
    assert "published_day" not in _columns(store, "items")
    assert store.upgrade() == ("0018", SCHEMA_HEAD)


ITEM_COLUMNS_0018 = (
    "key", "source_id", "title", "text", "published_at", "published_raw", "fetched_at",
    "baseline", "content_hash",
)  # fmt: skip

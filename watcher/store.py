"""Every database query: engines, migrations, source state and items.

Returns `watcher.types` values, never ORM rows. The same code runs on SQLite (the default,
in WAL mode) and PostgreSQL (`postgresql+psycopg://…`).

Usage::

    store = Store.open("sqlite:///watcher.db")
    store.upgrade()                 # apply pending Alembic migrations
    result = store.save_items(items, now=now)
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, bindparam, create_engine, event, func, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError, ProgrammingError

from watcher import tables as t
from watcher.errors import StoreError
from watcher.types import Item, MatchRecord, PollSuccess, SaveResult, SourceState

log = logging.getLogger(__name__)

#: The newest migration; `Store.schema_is_current` compares with one query, so that start-up
#: imports Alembic only when the database is behind. A test checks it is Alembic's head.
SCHEMA_HEAD = "0006"

DEFAULT_DATABASE_URL = "sqlite:///watcher.db"

#: Any 64-bit number: the PostgreSQL advisory lock taken around migrations.
_MIGRATION_LOCK = 0x5741544348455201


def migrations_dir() -> Path:
    """The Alembic scripts: inside the installed wheel, or beside the package in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "migrations", here.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise StoreError(f"migrations not found beside {here}")


def make_engine(url: str) -> Engine:
    """An engine with the settings watcher relies on (WAL and foreign keys on SQLite)."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30})

            @event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
                cursor = dbapi_conn.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.execute("PRAGMA busy_timeout=30000")
                cursor.close()

            return engine
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
    except Exception as exc:  # a malformed URL or a missing driver
        raise StoreError(f"bad database URL {redact_url(url)!r}: {exc}") from None


def redact_url(url: str) -> str:
    """The URL with any password replaced, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable database URL>"


class Store:
    """The database: one engine, every query."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> Store:
        return cls(make_engine(url))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def _insert(self) -> Any:
        """The dialect's INSERT, which knows ON CONFLICT."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert

    def close(self) -> None:
        self.engine.dispose()

    # ----------------------------------------------------------------- schema

    def current_revision(self) -> str | None:
        """The applied migration, or None for an empty database (one query)."""
        try:
            with self.engine.connect() as conn:
                return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except (OperationalError, ProgrammingError) as exc:
            if _is_missing_table(exc):
                return None
            raise StoreError(
                f"database {redact_url(str(self.engine.url))}: {_one_line(exc)}"
            ) from None

    def schema_is_current(self) -> bool:
        return self.current_revision() == SCHEMA_HEAD

    def upgrade(self) -> tuple[str | None, str | None]:
        """Apply pending migrations; return (revision before, revision after).

        On PostgreSQL this runs under an advisory lock, so replicas starting together
        do not race.
        """
        from alembic import command
        from alembic.config import Config as AlembicConfig

        before = self.current_revision()
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(migrations_dir()))
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        return before, self.current_revision()

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

    # ----------------------------------------------------------------- sources

    def sync_sources(self, sources: Iterable[Any], now: datetime) -> None:
        """Insert configured sources that are new; update kind/url of known ones."""
        with self.engine.begin() as conn:
            known = {
                row.id: row
                for row in conn.execute(select(t.sources.c.id, t.sources.c.kind, t.sources.c.url))
            }
            for source in sources:
                row = known.get(source.id)
                if row is None:
                    conn.execute(
                        t.sources.insert().values(
                            id=source.id,
                            kind=source.kind,
                            url=source.url,
                            consecutive_failures=0,
                            created_at=now,
                        )
                    )
                elif (row.kind, row.url) != (source.kind, source.url):
                    # A new address: its validators and body hash no longer apply.
                    conn.execute(
                        update(t.sources)
                        .where(t.sources.c.id == source.id)
                        .values(
                            kind=source.kind,
                            url=source.url,
                            etag=None,
                            last_modified=None,
                            body_hash=None,
                        )
                    )

    def claim_due(
        self, source_ids: Sequence[str], now: datetime, lease_until: datetime
    ) -> list[str]:
        """Claim the given sources that are due: their next-due time moves to `lease_until`
        in the same statement, so no other replica claims them (PostgreSQL skips rows another
        transaction holds). The poll's outcome then sets the real next-due time; if the
        claiming process dies, the source is due again when the lease ends."""
        if not source_ids:
            return []
        s = t.sources
        due = s.c.id.in_(list(source_ids)) & (s.c.next_due_at.is_(None) | (s.c.next_due_at <= now))
        chosen = select(s.c.id).where(due)
        if self.dialect == "postgresql":
            chosen = chosen.with_for_update(skip_locked=True)
        statement = (
            update(s)
            .where(s.c.id.in_(chosen.scalar_subquery()))
            .values(next_due_at=lease_until)
            .returning(s.c.id)
        )
        with self.engine.begin() as conn:
            return list(conn.execute(statement).scalars())

    def release_sources(self, leases: dict[str, datetime], now: datetime) -> None:
        """Make sources due now whose claim (lease) this process still holds."""
        s = t.sources
        with self.engine.begin() as conn:
            for source_id, lease in leases.items():
                conn.execute(
                    update(s)
                    .where((s.c.id == source_id) & (s.c.next_due_at == lease))
                    .values(next_due_at=now)
                )

    def source_states(self) -> dict[str, SourceState]:
        counts = (
            select(t.items.c.source_id, func.count().label("n"))
            .group_by(t.items.c.source_id)
            .subquery()
        )
        query = (
            select(t.sources, counts.c.n.label("items_stored"))
            .outerjoin(counts, counts.c.source_id == t.sources.c.id)
            .order_by(t.sources.c.id)
        )
        with self.engine.connect() as conn:
            return {row.id: _state(row, row.items_stored or 0) for row in conn.execute(query)}

    def fetch_states(self) -> dict[str, SourceState]:
        """Fetch state of every source (no item counts: cheap enough for every cycle)."""
        with self.engine.connect() as conn:
            return {row.id: _state(row, 0) for row in conn.execute(select(t.sources))}

    def source_state(self, source_id: str) -> SourceState | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.sources).where(t.sources.c.id == source_id)).first()
            return _state(row, 0) if row else None

    # ----------------------------------------------------------------- items

    def save_items(
        self,
        items: Sequence[Item],
        now: datetime | None = None,
        *,
        success: PollSuccess | None = None,
        matches: Sequence[MatchRecord] = (),
        after: Any = None,
    ) -> SaveResult:
        """Store items not stored before (by key) and record which source carried each;
        with `success`, record the poll's fetch state in the same transaction; store the
        `matches` of the items that are new or updated (an update replaces its matches).
        `after(conn, new_items, matches, ids, now)` runs last, in the same transaction (the
        alerting hook: stories and the outbox).

        A re-seen key is not stored again; when its title or text changed materially the
        row is updated and the old version kept in `item_revisions`. Concurrent writers are
        safe: new rows go in with `ON CONFLICT (key) DO NOTHING`.
        """
        if not items:
            if success is not None:
                self.record_success(success)
            return SaveResult()
        unique = list({item.key: item for item in items}.values())
        keys = [item.key for item in unique]
        seen_at = now or unique[0].fetched_at
        with self.engine.begin() as conn:
            existing = self._existing(conn, keys)
            fresh = [item for item in unique if item.key not in existing]
            inserted = self._insert_items(conn, fresh) if fresh else {}
            updated = []
            for item in unique:
                old = existing.get(item.key)
                if old is not None and _materially_changed(old.title, old.text, item):
                    conn.execute(
                        t.item_revisions.insert().values(
                            item_id=old.id,
                            changed_at=seen_at,
                            old_title=old.title,
                            old_text=old.text,
                        )
                    )
                    conn.execute(
                        update(t.items)
                        .where(t.items.c.id == old.id)
                        .values(
                            title=item.title,
                            text=item.text,
                            content_hash=content_hash(item.title, item.text),
                        )
                    )
                    updated.append(item)
            ids = {k: row.id for k, row in existing.items()} | inserted
            # Keys another writer inserted between our lookup and our insert.
            ids |= self._ids(conn, [k for k in keys if k not in ids])
            self._link_sources(
                conn, [(ids[i.key], i.source_id) for i in unique if i.key in ids], seen_at
            )
            changed = {k: inserted[k] for k in inserted} | {
                i.key: ids[i.key] for i in updated if i.key in ids
            }
            stored = [m for m in matches if m.item_key in changed]
            self._replace_matches(
                conn, stored, changed, updated_ids=[ids[i.key] for i in updated], now=seen_at
            )
            if success is not None:
                self._record_success(conn, success)
            new = tuple(item for item in unique if item.key in inserted)
            hooked = tuple(after(conn, new, stored, inserted, seen_at) or ()) if after else ()
        return SaveResult(
            new=new,
            updated=tuple(updated),
            seen=len(unique) - len(new) - len(updated),
            matches=tuple(stored),
            after=hooked,
        )

    def _replace_matches(
        self,
        conn: Connection,
        matches: Sequence[MatchRecord],
        ids: dict[str, int],
        *,
        updated_ids: Sequence[int],
        now: datetime,
    ) -> None:
        if updated_ids:
            conn.execute(t.matches.delete().where(t.matches.c.item_id.in_(updated_ids)))
        if matches:
            conn.execute(
                self._insert(t.matches).on_conflict_do_nothing(),
                [_match_values(m, ids[m.item_key], now) for m in matches],
            )

    def matches_of(self, key: str) -> list[MatchRecord]:
        """The stored matches of one item, by rule id."""
        query = (
            select(t.matches, t.items.c.key)
            .join(t.items, t.items.c.id == t.matches.c.item_id)
            .where(t.items.c.key == key)
            .order_by(t.matches.c.rule_id)
        )
        with self.engine.connect() as conn:
            return [_match(row) for row in conn.execute(query)]

    def matched_events(self) -> dict[str, frozenset[str]]:
        """Item key → the events stored for it (items with at least one match)."""
        query = select(t.items.c.key, t.matches.c.event).join(
            t.items, t.items.c.id == t.matches.c.item_id
        )
        out: dict[str, set[str]] = {}
        with self.engine.connect() as conn:
            for key, event in conn.execute(query):
                out.setdefault(key, set()).add(event)
        return {k: frozenset(v) for k, v in out.items()}

    def match_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.matches)).scalar_one())

    def _existing(self, conn: Connection, keys: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        table = t.items
        for chunk in _chunks(keys, 500):
            query = select(
                table.c.id, table.c.key, table.c.title, table.c.text, table.c.content_hash
            ).where(table.c.key.in_(chunk))
            out.update({row.key: row for row in conn.execute(query)})
        return out

    def _ids(self, conn: Connection, keys: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for chunk in _chunks(keys, 500):
            query = select(t.items.c.key, t.items.c.id).where(t.items.c.key.in_(chunk))
            out.update({row.key: row.id for row in conn.execute(query)})
        return out

    def _link_sources(
        self, conn: Connection, pairs: Sequence[tuple[int, str]], seen_at: datetime
    ) -> None:
        if not pairs:
            return
        insert = self._insert
        rows = [
            {"item_id": item_id, "source_id": source_id, "first_seen_at": seen_at}
            for item_id, source_id in dict.fromkeys(pairs)
        ]
        # executemany: compiled once and cached, sent as batched multi-row VALUES.
        conn.execute(insert(t.item_sources).on_conflict_do_nothing(), rows)

    def _insert_items(self, conn: Connection, items: Sequence[Item]) -> dict[str, int]:
        """Insert new rows; key → id of those this call inserted."""
        insert = self._insert
        rows = [_item_values(item) for item in items]
        stmt = (
            insert(t.items)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(t.items.c.key, t.items.c.id)
        )
        return {row.key: row.id for row in conn.execute(stmt, rows)}

    def known_keys(self, keys: Sequence[str]) -> set[str]:
        with self.engine.connect() as conn:
            return set(self._existing(conn, keys))

    def item_sources(self, key: str) -> list[str]:
        """Ids of the sources that carried the item, in the order they first did."""
        query = (
            select(t.item_sources.c.source_id)
            .join(t.items, t.items.c.id == t.item_sources.c.item_id)
            .where(t.items.c.key == key)
            .order_by(t.item_sources.c.first_seen_at, t.item_sources.c.source_id)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def item_revisions(self, key: str) -> list[tuple[str, str]]:
        """(old title, old text) of an item's earlier versions, oldest first."""
        query = (
            select(t.item_revisions.c.old_title, t.item_revisions.c.old_text)
            .join(t.items, t.items.c.id == t.item_revisions.c.item_id)
            .where(t.items.c.key == key)
            .order_by(t.item_revisions.c.id)
        )
        with self.engine.connect() as conn:
            return [(r.old_title, r.old_text) for r in conn.execute(query)]

    # ----------------------------------------------------------------- poll outcomes

    def record_success(self, success: PollSuccess) -> None:
        """A poll that worked (including 304 and an unchanged body)."""
        with self.engine.begin() as conn:
            self._record_success(conn, success)

    def _record_success(self, conn: Connection, success: PollSuccess) -> None:
        values: dict[str, Any] = {
            "last_polled_at": success.polled_at,
            "last_success_at": success.polled_at,
            "consecutive_failures": 0,
            "next_due_at": success.next_due_at,
            "etag": success.etag,
            "last_modified": success.last_modified,
        }
        if success.body_hash is not None:
            values["body_hash"] = success.body_hash
        if success.item_count is not None:
            values["last_item_count"] = success.item_count
        conn.execute(update(t.sources).where(t.sources.c.id == success.source_id).values(**values))

    def record_unchanged(
        self, polls: Sequence[tuple[str, datetime, datetime, str | None, str | None]]
    ) -> None:
        """Many polls that changed nothing (304 or the same body), in one transaction:
        (source id, polled at, next due at, etag, last modified) each. A warm cycle of 200
        sources is then one round trip instead of 200."""
        if not polls:
            return
        statement = (
            update(t.sources)
            .where(t.sources.c.id == bindparam("sid"))
            .values(
                last_polled_at=bindparam("now"),
                last_success_at=bindparam("now"),
                consecutive_failures=0,
                next_due_at=bindparam("due"),
                etag=bindparam("p_etag"),
                last_modified=bindparam("lm"),
            )
        )
        rows = [
            {"sid": sid, "now": now, "due": due, "p_etag": etag, "lm": lm}
            for sid, now, due, etag, lm in polls
        ]
        with self.engine.begin() as conn:
            conn.execute(statement, rows)

    def record_failure(
        self, source_id: str, now: datetime, *, error: str, failures: int, next_due_at: datetime
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(t.sources)
                .where(t.sources.c.id == source_id)
                .values(
                    last_polled_at=now,
                    last_error=error[:1000],
                    last_error_at=now,
                    consecutive_failures=failures,
                    next_due_at=next_due_at,
                )
            )

    def item_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.items)).scalar_one())

    def iter_items(
        self, *, since: datetime | None = None, source_id: str | None = None
    ) -> Iterator[Item]:
        query = select(t.items).order_by(t.items.c.id)
        if since is not None:
            query = query.where(t.items.c.fetched_at >= since)
        if source_id is not None:
            query = query.where(t.items.c.source_id == source_id)
        with self.engine.connect() as conn:
            for row in conn.execute(query.execution_options(yield_per=500)):
                yield _item(row)


def _match_values(m: MatchRecord, item_id: int, now: datetime) -> dict[str, Any]:
    return {
        "item_id": item_id,
        "rule_id": m.rule_id,
        "event": m.event,
        "severity": m.severity,
        "people": m.people,
        "places": json.dumps(list(m.places), ensure_ascii=False),
        "dates": json.dumps(list(m.dates)),
        "why": m.why or None,
        "matched_at": now,
    }


def _match(row: Any) -> MatchRecord:
    return MatchRecord(
        item_key=row.key,
        rule_id=row.rule_id,
        event=row.event,
        severity=row.severity,
        people=row.people,
        places=tuple(json.loads(row.places)),
        dates=tuple(json.loads(row.dates)),
        why=row.why or "",
    )


def content_hash(title: str, text: str) -> str:
    return hashlib.sha256(f"{title}\n{text}".encode()).hexdigest()


_WORDS = re.compile(r"\W+")


def _normalised(title: str, text: str) -> str:
    return _WORDS.sub(" ", f"{title} {text}".lower()).strip()


def _materially_changed(old_title: str, old_text: str, item: Item) -> bool:
    """Edits beyond case, punctuation and spacing."""
    return _normalised(old_title, old_text) != _normalised(item.title, item.text)


def _chunks(values: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _item_values(item: Item) -> dict[str, Any]:
    return {
        "key": item.key,
        "source_id": item.source_id,
        "url": item.url,
        "title": item.title,
        "text": item.text,
        "lang": item.lang,
        "published_at": item.published_at,
        "published_raw": item.published_raw,
        "fetched_at": item.fetched_at,
        "baseline": item.baseline,
        "content_hash": content_hash(item.title, item.text),
    }


def _item(row: Any) -> Item:
    return Item(
        key=row.key,
        source_id=row.source_id,
        url=row.url,
        title=row.title,
        text=row.text,
        lang=row.lang,
        published_at=row.published_at,
        published_raw=row.published_raw,
        fetched_at=row.fetched_at,
        baseline=row.baseline,
    )


def _state(row: Any, items_stored: int) -> SourceState:
    return SourceState(
        id=row.id,
        kind=row.kind,
        url=row.url,
        etag=row.etag,
        last_modified=row.last_modified,
        body_hash=row.body_hash,
        last_polled_at=row.last_polled_at,
        last_success_at=row.last_success_at,
        last_error=row.last_error,
        last_error_at=row.last_error_at,
        consecutive_failures=row.consecutive_failures,
        next_due_at=row.next_due_at,
        last_item_count=row.last_item_count,
        items_stored=items_stored,
    )


def _is_missing_table(exc: Exception) -> bool:
    message = str(exc).lower()
    return "no such table" in message or ("does not exist" in message and "relation" in message)


def _one_line(exc: Exception) -> str:
    orig = getattr(exc, "orig", None) or exc
    first = str(orig).strip().splitlines()
    return first[0] if first else type(orig).__name__

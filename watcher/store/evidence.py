"""Evidence in the database: content-addressed, compressed blobs and one row per matched item
and kind, written in the poll's transaction and never changed (`watcher.evidence`).

Both databases keep it the same way (`evidence_blobs`, `evidence`): the database is the one
thing an operator backs up, and a blob written once by its SHA-256 is shared by every item of
one feed response. docs/evidence.md gives the size per 1,000 items.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from watcher.evidence import Capture, Record, sha256, text_bytes
from watcher.store import checks
from watcher.store import tables as t
from watcher.types import Item


def keep(
    conn: Connection,
    items: Sequence[Item],
    ids: Mapping[str, int],
    captures: Mapping[str, Sequence[Capture]],
) -> int:
    """Write the first-seen record of each item (its captures and the text the rules read);
    an item that already has one of a kind keeps it. The number of records written."""
    written = 0
    for item in items:
        item_id = ids.get(item.key)
        if item_id is None:
            continue
        text = text_bytes(item.title, item.text)
        text_hash = _blob(conn, text)
        kept = captures.get(item.key, ())
        if kept:
            checks.schedule(conn, item_id, item.url, min(c.fetched_at for c in kept))
        for capture in captures.get(item.key, ()):
            body_hash = _blob(conn, capture.body)
            result = conn.execute(
                _insert(conn, t.evidence)
                .values(
                    item_id=item_id,
                    kind=capture.kind,
                    url=capture.url,
                    final_url=capture.final_url,
                    status=capture.status,
                    headers=json.dumps([list(h) for h in capture.headers], ensure_ascii=False),
                    fetched_at=capture.fetched_at,
                    body_sha256=body_hash,
                    text_sha256=text_hash,
                )
                .on_conflict_do_nothing(index_elements=["item_id", "kind"])
            )
            written += result.rowcount or 0
    return written


def _blob(conn: Connection, data: bytes) -> str:
    digest = sha256(data)
    conn.execute(
        _insert(conn, t.evidence_blobs)
        .values(sha256=digest, size=len(data), data=zlib.compress(data, 6))
        .on_conflict_do_nothing(index_elements=["sha256"])
    )
    return digest


def _insert(conn: Connection, table: Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def blob(conn: Connection, digest: str) -> bytes | None:
    row = conn.execute(
        select(t.evidence_blobs.c.data).where(t.evidence_blobs.c.sha256 == digest)
    ).first()
    return zlib.decompress(row.data) if row else None


def records(
    conn: Connection,
    *,
    story_id: int | None = None,
    item_id: int | None = None,
    since: datetime | None = None,
) -> Iterator[Record]:
    """The evidence of matched items (of one story, of one item, or first seen since a
    time), oldest first, with the bytes and the text read back from their blobs."""
    query = (
        select(
            t.evidence,
            t.items.c.key,
            t.items.c.url.label("item_url"),
            t.items.c.title,
            t.items.c.source_id,
            t.items.c.published_at,
            t.items.c.published_raw,
            t.items.c.fetched_at.label("item_fetched_at"),
            t.story_items.c.story_id,
        )
        .join(t.items, t.items.c.id == t.evidence.c.item_id)
        .outerjoin(t.story_items, t.story_items.c.item_id == t.items.c.id)
        .order_by(t.evidence.c.fetched_at, t.evidence.c.id)
    )
    if story_id is not None:
        query = query.where(t.story_items.c.story_id == story_id)
    if item_id is not None:
        query = query.where(t.evidence.c.item_id == item_id)
    if since is not None:
        query = query.where(t.evidence.c.fetched_at >= since)
    for row in conn.execute(query).all():
        body = blob(conn, row.body_sha256)
        kept = blob(conn, row.text_sha256)
        if body is None or kept is None:  # pragma: no cover - blobs are never deleted
            continue
        # The title and text as first seen (the item may have been revised since).
        title, _, text = kept.decode("utf-8").partition("\n\n")
        yield Record(
            item_key=row.key,
            item_url=row.item_url,
            title=title,
            source_id=row.source_id,
            story_id=row.story_id,
            capture=Capture(
                kind=row.kind,
                url=row.url,
                final_url=row.final_url,
                status=row.status,
                headers=tuple((str(k), str(v)) for k, v in json.loads(row.headers)),
                fetched_at=row.fetched_at,
                body=body,
            ),
            text=text,
            body_sha256=row.body_sha256,
            text_sha256=row.text_sha256,
            published_at=row.published_at,
            published_raw=row.published_raw,
            fetched_at=row.item_fetched_at,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Kept:
    """One first-seen record of an item, as a page names it."""

    #: feed (the feed, listing or API response the item came in) | article (its page)
    kind: str
    #: The address fetched (as the source is written: no secret of the environment).
    url: str
    #: SHA-256 of the response's body as fetched (the whole feed or listing for `feed`).
    sha256: str
    fetched_at: datetime


def first_seen(conn: Connection, item_ids: Sequence[int]) -> dict[int, tuple[Kept, ...]]:
    """item id → its first-seen records (the response it came in, its article page), oldest
    first, for the story and item pages."""
    if not item_ids:
        return {}
    found: dict[int, list[Kept]] = {}
    e = t.evidence
    for row in conn.execute(
        select(e.c.item_id, e.c.kind, e.c.url, e.c.body_sha256, e.c.fetched_at)
        .where(e.c.item_id.in_(list(item_ids)))
        .order_by(e.c.fetched_at, e.c.id)
    ):
        found.setdefault(row.item_id, []).append(
            Kept(kind=row.kind, url=row.url, sha256=row.body_sha256, fetched_at=row.fetched_at)
        )
    return {k: tuple(v) for k, v in found.items()}

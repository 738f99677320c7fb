"""Database rows to `watcher.types` values and back: each conversion written once.

A value's fields take the columns of the same names (`_value`); only what differs (JSON
columns, renamed ones) is written out."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import datetime
from typing import Any, TypeVar

from watcher.items import published_day
from watcher.stories import Facts, Story
from watcher.types import (
    ChannelStatus,
    Delivery,
    Item,
    MatchRecord,
    SourceState,
    StoredReport,
    StoredStory,
)


def match_values(m: MatchRecord, item_id: int, now: datetime) -> dict[str, Any]:
    return {
        "item_id": item_id,
        "rule_id": m.rule_id,
        "event": m.event,
        "severity": m.severity,
        "people": m.people,
        "people_approximate": m.people_approximate,
        "places": json.dumps(list(m.places), ensure_ascii=False),
        "dates": json.dumps(list(m.dates)),
        "why": m.why or None,
        "matched_at": now,
    }


def match(row: Any) -> MatchRecord:
    return _value(
        MatchRecord,
        row,
        item_key=row.key,
        places=tuple(json.loads(row.places)),
        dates=tuple(json.loads(row.dates)),
        why=row.why or "",
    )


def item_values(item: Item, content_hash: str) -> dict[str, Any]:
    return {
        "key": item.key,
        "source_id": item.source_id,
        "url": item.url,
        "title": item.title,
        "text": item.text,
        "lang": item.lang,
        "published_at": item.published_at,
        "published_raw": item.published_raw,
        "published_day": published_day(item),
        "fetched_at": item.fetched_at,
        "baseline": item.baseline,
        "content_hash": content_hash,
    }


def item(row: Any) -> Item:
    return _value(Item, row)


def state(row: Any, items_stored: int) -> SourceState:
    return _value(SourceState, row, items_stored=items_stored)


def story(row: Any, reports: tuple[Facts, ...] = ()) -> Story:
    return _value(
        Story,
        row,
        events=frozenset(json.loads(row.events)),
        places=tuple(json.loads(row.places)),
        reports=reports,
    )


def report(row: Any) -> StoredReport:
    """A report of a story: an item row (with its `published_raw`) with the story link's
    `added_at`."""
    return _value(StoredReport, row, item_id=row.id, published_day=published_day(row))


def stored_story(row: Any, reports: tuple[StoredReport, ...] = ()) -> StoredStory:
    return _value(
        StoredStory,
        row,
        events=tuple(json.loads(row.events)),
        places=tuple(json.loads(row.places)),
        reports=reports,
    )


def delivery(row: Any) -> Delivery:
    return _value(Delivery, row)


def channel_status(row: Any) -> ChannelStatus:
    return _value(ChannelStatus, row)


V = TypeVar("V")


def _value(cls: type[V], row: Any, **given: Any) -> V:
    """`cls` from the row's columns of the same names, with `given` values for the rest (JSON
    columns, renamed ones). A field with a default may be absent from the row."""
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
    mapping = row._mapping
    return cls(**{n: mapping[n] for n in names if n not in given and n in mapping}, **given)


_FIELDS: dict[type, tuple[str, ...]] = {}

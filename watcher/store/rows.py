"""Database rows to `watcher.types` values and back: each conversion written once."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from watcher.stories import Facts, Story
from watcher.types import Item, MatchRecord, SourceState, StoredReport, StoredStory


def match_values(m: MatchRecord, item_id: int, now: datetime) -> dict[str, Any]:
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


def match(row: Any) -> MatchRecord:
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
        "fetched_at": item.fetched_at,
        "baseline": item.baseline,
        "content_hash": content_hash,
    }


def item(row: Any) -> Item:
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


def state(row: Any, items_stored: int) -> SourceState:
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


def story(row: Any, reports: tuple[Facts, ...] = ()) -> Story:
    return Story(
        id=row.id,
        events=frozenset(json.loads(row.events)),
        severity=row.severity,
        title=row.title,
        people=row.people,
        places=tuple(json.loads(row.places)),
        first_seen_at=row.first_seen_at,
        updated_at=row.updated_at,
        revision=row.revision,
        item_count=row.item_count,
        event_at=row.event_at,
        reports=reports,
    )


def report(row: Any) -> StoredReport:
    """A row of `store.stories.REPORT_COLUMNS` (with `added_at`)."""
    return StoredReport(
        item_id=row.id,
        key=row.key,
        source_id=row.source_id,
        title=row.title,
        url=row.url,
        lang=row.lang,
        published_at=row.published_at,
        fetched_at=row.fetched_at,
        added_at=row.added_at,
        text=row.text,
    )


def stored_story(row: Any, reports: tuple[StoredReport, ...] = ()) -> StoredStory:
    return StoredStory(
        id=row.id,
        events=tuple(json.loads(row.events)),
        severity=row.severity,
        title=row.title,
        people=row.people,
        places=tuple(json.loads(row.places)),
        first_seen_at=row.first_seen_at,
        updated_at=row.updated_at,
        revision=row.revision,
        reports=reports,
    )

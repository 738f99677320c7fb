"""A JSON API with the dotted-path field mapping given in sources.yaml."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

from watcher.items import language_tag, make_item, without_controls
from watcher.parsers import ParseResult, decode_body, each_entry
from watcher.types import FetchResult, Item

MAX_ITEMS = 1_000


def lookup(data: Any, path: str | None) -> Any:
    """`fields.date.created` / `fields.language.0.code` inside nested dicts and lists."""
    if not path:
        return None
    node = data
    for part in path.split("."):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
        if node is None:
            return None
    return node


def _integer(digits: str) -> int | str:
    """A JSON integer; one longer than Python reads (its denial-of-service guard, 4,300
    digits) stays the text it is: one hostile field costs neither the entry nor the feed."""
    limit = sys.get_int_max_str_digits()  # 0: no limit (PYTHONINTMAXSTRDIGITS=0)
    if limit and len(digits) > limit:
        return digits
    return int(digits)


def parse(source: Any, result: FetchResult, fetched_at: datetime) -> ParseResult:
    decoded = decode_body(result.body or b"", result.encoding or "utf-8")
    try:
        data = json.loads(decoded.text, parse_int=_integer)
    except json.JSONDecodeError as exc:
        return ParseResult(error=f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    except RecursionError:  # "[[[[…" deeper than Python's stack: refused, not a crash
        return ParseResult(error="not JSON: arrays or objects nested too deeply to read")
    entries = lookup(data, source.items) if source.items else data
    if not isinstance(entries, list):
        return ParseResult(error=f"no list at {source.items!r} in the JSON response")
    fields = source.fields

    def build(entry: Any) -> Item | None:
        if not isinstance(entry, dict):
            return None
        title, url = lookup(entry, fields.title), lookup(entry, fields.url)
        if not title and not url:
            return None
        guid = lookup(entry, fields.id)
        return make_item(
            source_id=source.id,
            title=_str(title),
            link=_str(url),
            guid=None if guid is None else str(guid),
            summary=_str(lookup(entry, fields.summary)),
            date_raw=_str(lookup(entry, fields.date)),
            lang=language_tag(_str(lookup(entry, fields.lang))) or source.lang,
            zone=source.zone,
            fetched_at=fetched_at,
            base_url=result.final_url or result.url,
        )

    items, skipped = each_entry(entries[:MAX_ITEMS], build)
    return ParseResult(items=items, skipped=skipped, replaced=decoded.replaced)


def _str(value: Any) -> str | None:
    """A scalar field as text, without control characters (JSON escapes any: "\\u0000");
    None for a missing field or an object or list."""
    if value is None or isinstance(value, dict | list):
        return None
    return without_controls(str(value))

"""Re-checks at the source: is a matched report still there, and still the same?

    due check ──fetch (same fetcher, same per-host limits)──▶ verdict(check, result, text)
        404 / 410, or a redirect to the site's front page  → removed at source
        the page's main text changed materially           → changed: a revision of the item
        the same, or no clear answer (timeout, 5xx, 403)  → nothing; the next check, or a retry

Each matched item is checked 1, 7 and 30 days after it was first seen (`SCHEDULE`). A report
found removed is marked on the story page and, on routes that ask for it
(`notify_on: [removed]`), raises a message; a changed page is kept as a revision of the item
with its previous text, shown as a diff on the item's page. The first-seen evidence never
changes (`watcher.evidence`).

`verdict` and `next_due` are pure; `run_checks` is the I/O, called once per daemon cycle.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from watcher.types import FetchResult

if TYPE_CHECKING:
    from watcher.config import Config
    from watcher.fetch import Fetcher
    from watcher.routing import Alerting
    from watcher.store import Store

log = logging.getLogger("watcher.recheck")

#: When each check is due, counted from when the item was first seen.
SCHEDULE = (timedelta(days=1), timedelta(days=7), timedelta(days=30))
#: A check that got no clear answer is tried again this much later...
RETRY_AFTER = timedelta(hours=6)
#: ...until this long after the check was due; then it counts as done.
GIVE_UP_AFTER = timedelta(days=3)
#: Page texts less alike than this (difflib ratio) are a change, not a re-layout.
CHANGED_BELOW = 0.97
#: Checks per cycle at most (they share the fetcher's per-host limits with the polls).
PER_CYCLE = 50


@dataclass(frozen=True, kw_only=True, slots=True)
class Due:
    """A check that is due: the item, its source and what the last check saw."""

    item_id: int
    key: str
    url: str
    source_id: str
    title: str
    first_seen_at: datetime
    due_at: datetime
    done: int
    #: The page's main text as last read (None before the first check of a feed item).
    page_text: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class Verdict:
    #: removed | changed | same | unclear
    outcome: str
    #: One line for the log and the story page ("404", "redirected to the front page").
    why: str
    #: The page's main text now (removed/unclear: None).
    text: str | None = None


def verdict(result: FetchResult, text: str | None, previous: str | None) -> Verdict:
    """What one check found, from the fetch and the page's extracted main text."""
    if result.status in (404, 410):
        return Verdict(outcome="removed", why=f"HTTP {result.status}")
    if result.ok and result.status == 200 and _front_page(result):
        return Verdict(outcome="removed", why=f"redirected to the front page {result.final_url}")
    if not result.ok or result.status != 200:
        return Verdict(outcome="unclear", why=result.error or f"HTTP {result.status}")
    if not text:
        return Verdict(outcome="unclear", why="no main text found on the page")
    if previous is None:
        return Verdict(outcome="same", why="first reading of the page", text=text)
    if changed(previous, text):
        return Verdict(outcome="changed", why="the page's text changed", text=text)
    return Verdict(outcome="same", why="unchanged", text=text)


def _front_page(result: FetchResult) -> bool:
    """Outlets often answer a pulled article with a redirect to their front page."""
    asked, ended = urlsplit(result.url), urlsplit(result.final_url)
    return (
        result.final_url != result.url
        and ended.path in ("", "/")
        and asked.path
        not in (
            "",
            "/",
        )
    )


def changed(old: str, new: str) -> bool:
    a, b = " ".join(old.split()), " ".join(new.split())
    if a == b:
        return False
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() < CHANGED_BELOW


def next_due(check: Due, outcome: str, now: datetime) -> tuple[datetime | None, int]:
    """(when the next check is due, checks done) after this one."""
    if outcome == "removed":
        return None, check.done + 1
    if outcome == "unclear" and now - check.due_at < GIVE_UP_AFTER:
        return now + RETRY_AFTER, check.done
    done = check.done + 1
    if done >= len(SCHEDULE):
        return None, done
    return max(check.first_seen_at + SCHEDULE[done], now), done


def diff(old: str, new: str) -> list[tuple[str, str]]:
    """A readable word diff: (op, words) with op in ' ', '-', '+'."""
    a, b = old.split(), new.split()
    out: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            words = a[i1:i2]
            shown = " ".join(words if len(words) <= 24 else [*words[:10], "…", *words[-10:]])
            out.append((" ", shown))
            continue
        if i2 > i1:
            out.append(("-", " ".join(a[i1:i2])))
        if j2 > j1:
            out.append(("+", " ".join(b[j1:j2])))
    return out


# --------------------------------------------------------------------------- I/O


async def run_checks(
    store: Store,
    fetcher: Fetcher,
    config: Config,
    now: datetime,
    *,
    alerting: Alerting | None = None,
    limit: int = PER_CYCLE,
) -> list[tuple[Due, Verdict]]:
    """Fetch the checks that are due, record what each found; what was found."""
    import asyncio

    from watcher.fetch import FetchRequest
    from watcher.parsers.article import extract
    from watcher.store.checks import due_checks, record_check

    sources = {s.id: s for s in config.sources}
    due: Sequence[Due] = await asyncio.to_thread(due_checks, store, now, limit)
    if not due:
        return []

    async def one(check: Due) -> tuple[Due, Verdict]:
        source = sources.get(check.source_id)
        result = await fetcher.fetch(
            FetchRequest(
                source_id=check.source_id,
                url=check.url,
                robots=bool(source and source.robots),
            )
        )
        text = None
        if result.ok and result.status == 200 and result.body:
            try:
                text = extract(result)
            except Exception as exc:  # an unreadable page is an unclear answer, not a crash
                log.info("%s: page text not extracted: %s", check.key, exc)
        found = verdict(result, text, check.page_text)
        await asyncio.to_thread(record_check, store, check, found, result, now, alerting)
        if found.outcome in ("removed", "changed"):
            log.warning(
                "%s: %s at source (%s)",
                check.url,
                "removed" if found.outcome == "removed" else "changed",
                found.why,
                extra={"source": check.source_id, "item": check.key, "action": "recheck"},
            )
        return check, found

    return list(await asyncio.gather(*(one(c) for c in due)))

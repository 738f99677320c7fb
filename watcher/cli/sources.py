"""`watcher sources`: each source's health, and one test poll."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from watcher.cli.base import Context, cli, fail, one_line_text, pass_ctx
from watcher.log import redact

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from watcher.types import Item


@cli.group()
def sources() -> None:
    """Inspect sources: their state, or what one yields right now."""


@sources.command("list")
@pass_ctx
def sources_list(ctx: Context) -> None:
    """Show every source: kind, interval, health and why, when it last brought a new
    item, last success, next poll, items stored. Health is kept after each poll: retrying (N)
    (N failures in a row, below failure_threshold), failing, blocked (a bot challenge or login
    page), empty (nothing parsed in `empty_polls` polls), broken (items without titles, links
    or dates), moved (a permanent redirect: the new address is given), stale (no new item for
    longer than usual).

    NEXT POLL is when the daemon polls the source next, from the schedule in the database:
    relative, then the time in settings.timezone, or UTC with --utc ("in 3m (14:05 KST)";
    "now" when due). "due 2h ago" means no daemon has polled it since: is `watcher run`
    running? While a poll runs it shows when that poll's claim ends."""
    from zoneinfo import ZoneInfo

    from watcher import health
    from watcher.clock import utcnow
    from watcher.config import format_duration

    config = ctx.config().config
    with ctx.open_store(existing=True) as store:
        states = store.source_states()
    now = utcnow()
    zone = ZoneInfo(ctx.timezone())  # settings.timezone, or UTC with --utc
    head = (
        "ID",
        "KIND",
        "EVERY",
        "HEALTH",
        "LAST NEW ITEM",
        "LAST SUCCESS",
        "NEXT POLL",
        "ITEMS",
        "REASON",
    )
    rows = [head]
    for source in config.sources:
        st = states.get(source.id)
        shown = health.current(st, enabled=source.enabled)
        rows.append(
            (
                source.id,
                source.kind,
                format_duration(source.interval),
                shown.status,
                _ago(st.last_new_at if st else None, now),
                _ago(st.last_success_at if st else None, now),
                _next(st.next_due_at if st else None, now, zone) if source.enabled else "-",
                str(st.items_stored if st else 0),
                # a reason may quote an address (a redirect's target): never with its secrets;
                # or a server's words: never with its control characters
                one_line_text(redact(shown.reason), None) if shown.status != "new" else "",
            )
        )
    configured = {s.id for s in config.sources}
    for sid, st in states.items():
        if sid not in configured:
            rows.append(
                (
                    sid,
                    st.kind,
                    "-",
                    "removed",
                    _ago(st.last_new_at, now),
                    _ago(st.last_success_at, now),
                    "-",
                    str(st.items_stored),
                    "",
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    for row in rows:
        cells = "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False))
        click.echo(f"{cells}  {row[-1]}".rstrip())


def _ago(when: Any, now: Any) -> str:
    if when is None:
        return "never"
    seconds = int((now - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{max(seconds, 0)}s ago"


def _next(due: Any, now: Any, zone: Any) -> str:
    """When a source is polled next: "in 3m (14:05)", "now", or "due 2h ago (12:05)" when
    overdue by more than a minute (no daemon is polling it)."""
    if due is None:
        return "now"
    local = due.astimezone(zone)
    day = "" if local.date() == now.astimezone(zone).date() else "%m-%d "
    at = local.strftime(f"{day}%H:%M %Z")  # the zone named, as every time commands print
    seconds = int((due - now).total_seconds())
    if seconds < -60:
        return f"due {_ago(due, now)} ({at})"
    if seconds <= 0:
        return "now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"in {seconds // size}{unit} ({at})"
    return f"in {seconds}s ({at})"


@sources.command("test")
@click.argument("source_id")
@pass_ctx
def sources_test(ctx: Context, source_id: str) -> None:
    """Fetch one source now and print what it parsed, without storing anything.

    The tool for writing selectors: each item's date (in the source's time zone, or UTC with
    --utc; each names its zone), language, title and URL. Exit code 1 when the fetch or the
    parse failed.
    """
    import asyncio
    from urllib.parse import urlsplit
    from zoneinfo import ZoneInfo

    from watcher.clock import utcnow
    from watcher.fetch import Fetcher, FetchLimits
    from watcher.parsers import parse
    from watcher.pipeline import request_for

    config = ctx.config().config
    try:
        source = config.source(source_id)
    except KeyError:
        known = ", ".join(s.id for s in config.sources)
        fail(f"no source {source_id!r} in {ctx.config_path} (sources: {known})", code=2)

    async def go() -> Any:
        async with Fetcher(FetchLimits.from_settings(config.settings)) as fetcher:
            return await fetcher.fetch(request_for(source, None, conditional=False))

    result = asyncio.run(go())
    address = source.shown_url if result.final_url == source.url else redact(result.final_url)
    if not result.status and (result.error or "").startswith("refused:"):
        fail(f"{source.id}: not fetched: {result.error}")  # watcher's own address policy
    if not result.status:  # no answer at all: say from where, not "HTTP -, 0 bytes"
        host = redact(urlsplit(result.final_url or source.url).netloc)
        said = one_line_text(result.error, None)
        fail(f"{source.id}: no answer from {host} after {result.elapsed:.1f}s: {said}")
    click.echo(
        f"{source.id}: {address} -> HTTP {result.status or '-'}, "
        f"{len(result.body or b'')} bytes in {result.elapsed:.2f}s"
    )
    if result.moved_to:
        click.echo(f"  moved permanently to {redact(result.moved_to)} (put it in sources.yaml)")
    # What the source sent (a server's reason, a title, a language) is shown, never obeyed.
    if not result.ok:
        fail(f"{source.id}: {one_line_text(result.error, None)}")
    parsed = parse(source, result, utcnow())
    if parsed.error:
        fail(f"{source.id}: {one_line_text(parsed.error, None)}")
    # in the source's own zone, where its dates are easiest to compare with its pages (UTC
    # with --utc); each time names its zone, as every time commands print
    shown_zone = "UTC" if ctx.utc else source.zone
    zone = ZoneInfo(shown_zone)
    dates = [_published(item, zone) for item in parsed.items]
    width = max((len(d) for d in dates), default=0)
    for item, when in zip(parsed.items, dates, strict=True):
        click.echo(
            f"{when:<{width}}  {one_line_text(item.lang, None) or '??':<3} "
            f"{one_line_text(item.title, 100)}"
        )
        click.echo(f"{'':{width + 5}}{one_line_text(item.url, None) or '(no link)'}")
    click.echo(f"{len(parsed.items)} items (dates in {shown_zone})")


def _published(item: Item, zone: ZoneInfo) -> str:
    """An item's date as `sources test` prints it: "2026-11-20 14:05 KST", the day alone said
    so when the outlet gave no time ("2026-11-20 (no time given)", as alerts say it: never
    its stored midnight), the fetch time when the date given was in the future ("2026-12-03
    16:00 UTC (fetch time: the date given, 'Fri, 04 Dec 2026 04:00:00 +0000', was in the
    future)"), or "(no date)"."""
    from watcher.items import future_date, published_day
    from watcher.render import WORDS, day_alone

    if item.published_at is None:
        return "(no date)"
    if future_date(item):
        at = item.published_at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
        given = item.published_raw or "the feed's"
        return f"{at} (fetch time: the date given, {given!r}, was in the future)"
    day = published_day(item)
    if day is not None:
        return day_alone(day, WORDS["en"])
    return item.published_at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


# --------------------------------------------------------------------------- export

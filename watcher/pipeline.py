"""One poll, top to bottom: state → fetch → parse → items → (articles) → store.

`poll_source` is the whole data flow for one source; `run_cycle` polls many at once.
Faults are values: a source that fails is recorded with one line saying why, and the cycle
goes on. For a `fetch_article` source an article page that fails is one too: its item keeps
the listing's text, the page is tried again on later polls (`ARTICLE_TRIES`, unchanged
listing or not; `store.articles`), the item is matched again when it arrives, and a poll
whose pages mostly fail makes the source unhealthy (`health.article_problem`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from zoneinfo import ZoneInfo

from watcher import health
from watcher import log as logsetup
from watcher.clock import crash_point, utcnow
from watcher.evidence import Capture
from watcher.fetch import Fetcher, FetchRequest
from watcher.items import future_date
from watcher.parsers import ParseResult, parse
from watcher.routing import last_slot, ops_targets
from watcher.rules import Matcher
from watcher.store import Store, is_database_error
from watcher.types import (
    FetchResult,
    HealthChange,
    Item,
    MatchRecord,
    PollReport,
    PollSuccess,
    SaveResult,
    SourceState,
)

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from watcher.config import Config, Settings, Source
    from watcher.routing import Alerting

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
P = ParamSpec("P")
T = TypeVar("T")


class Offload:
    """Runs blocking database calls in worker threads, so that the event loop keeps fetching
    while the database commits. One thread by default: writes stay serialised, as SQLite
    needs. PostgreSQL takes `threads=DB_THREADS`: two polls' saves in flight at once, each
    in its own transaction, as two replicas' are (a save waits on its round trips; with one
    thread the cycle waited on every one of them in turn). Without a pool
    (`Offload(threads=0)`) calls run inline, for tests and one-off polls."""

    def __init__(self, threads: int = 1) -> None:
        self._pool: Executor | None = None
        if threads:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(threads, thread_name_prefix="watcher-db")
        #: time.monotonic() when each call now running began, by thread (the threads write
        #: it, the event loop reads it: under the lock).
        self._running: dict[int, float] = {}
        self._lock = threading.Lock()

    @property
    def busy_since(self) -> float | None:
        """When the longest-running call now in a thread began (None: idle), so that
        readiness can tell a database that hangs from one that answers."""
        with self._lock:
            return min(self._running.values(), default=None)

    async def __call__(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._pool is None:
            return fn(*args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: self._timed(fn, *args, **kwargs))

    def _timed(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        thread = threading.get_ident()
        with self._lock:
            self._running[thread] = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            with self._lock:
                self._running.pop(thread, None)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


#: Database threads for PostgreSQL (see `Offload`); SQLite has one writer, so one thread.
DB_THREADS = 2


def offload_for(store: Store) -> Offload:
    """The worker threads for this store's database."""
    return Offload(threads=DB_THREADS if store.dialect == "postgresql" else 1)


INLINE = Offload(threads=0)


class Parsing:
    """Runs the parsers in worker processes, so that a cold cycle (thousands of items through
    feedparser) uses every core while the event loop fetches and stores, and a hostile body
    meets the memory cap there, never in the daemon. `processes=0` parses inline, in this
    process, on the event loop and with no cap: for tests and one-off calls only (the
    settings always give at least one worker).

    Usage::

        parsing = Parsing(processes=2)
        result = await parsing(source, fetch_result, now)
        parsing.close()
    """

    def __init__(
        self, processes: int = 0, matcher: Matcher | None = None, memory: int | None = None
    ) -> None:
        #: Worker processes; 0: inline.
        self.processes = processes
        #: With a matcher, the workers also match the parsed items (off the event loop).
        self.matcher = matcher
        #: Bytes each worker may grow by (`settings.parse_memory`); None: no cap.
        self.memory = memory
        self._pool: Executor | None = None

    @classmethod
    def from_settings(cls, settings: Settings, matcher: Matcher | None = None) -> Parsing:
        import os

        # One worker is a process too: inline, a hostile body would block the event loop
        # (/healthz, sends, every other poll) and grow the daemon itself without a cap.
        wanted = settings.parse_processes or min(os.cpu_count() or 1, 4)
        return cls(processes=wanted, matcher=matcher, memory=settings.parse_memory or None)

    async def __call__(self, source: Source, result: FetchResult, now: datetime) -> ParseResult:
        if self.processes < 1:
            return _parse_and_match(source, result, now, self.matcher)
        from concurrent.futures.process import BrokenProcessPool

        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # fork: workers start in milliseconds with the parsers already imported.
            self._pool = ProcessPoolExecutor(
                self.processes,
                mp_context=multiprocessing.get_context("fork"),
                initializer=_init_worker,
                initargs=(self.matcher, self.memory),
            )
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, _worker_parse, source, result, now)
        except BrokenProcessPool:  # a worker died (out of memory?): not parsed here either,
            # which would take the main process past the budget; the next poll tries again
            log.warning(
                "%s: the parse process died (out of memory?); the workers are restarted",
                source.id,
                extra={"source": source.id, "action": "parse"},
            )
            self._pool = None
            return ParseResult(
                error=f"the parse process died on this {len(result.body or b'')} byte body "
                "(out of memory? see settings.parse_memory)"
            )

    def close(self, *, cancel: bool = True) -> None:
        """Stop the workers; with `cancel=False` (a reload), parses already queued finish."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel)
            self._pool = None


def _parse_and_match(
    source: Source, result: FetchResult, now: datetime, matcher: Matcher | None
) -> ParseResult:
    parsed = parse(source, result, now)
    if matcher is None or parsed.error or not parsed.items:
        return parsed
    return replace(parsed, matches=tuple(match_items(matcher, parsed.items, source.tags)))


_WORKER_MATCHER: Matcher | None = None
_WORKER_MEMORY: int | None = None


def _init_worker(matcher: Matcher | None, memory: int | None) -> None:
    global _WORKER_MATCHER, _WORKER_MEMORY
    _WORKER_MATCHER = matcher
    _WORKER_MEMORY = memory
    _die_with_parent()
    if memory is not None:
        cap_memory(memory)


def _worker_parse(source: Source, result: FetchResult, now: datetime) -> ParseResult:
    parsed = _parse_and_match(source, result, now, _WORKER_MATCHER)
    if parsed.error and parsed.error.endswith("needs more memory than allowed"):
        budget = f"{(_WORKER_MEMORY or 0) / 2**20:.0f} MiB"
        return replace(parsed, error=f"{parsed.error} (settings.parse_memory: {budget})")
    return parsed


def cap_memory(budget: int) -> bool:
    """Let this process's heap grow by at most `budget` bytes from now (RLIMIT_DATA, Linux):
    past it, allocations raise MemoryError in this process instead of pressing the machine.
    False where the limit cannot be set."""
    try:
        import resource

        with open("/proc/self/status", encoding="ascii") as status:
            used = next(
                int(line.split()[1]) * 1024 for line in status if line.startswith("VmData:")
            )
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        limit = used + budget
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    except (ImportError, OSError, StopIteration, ValueError):
        return False
    return True


def _die_with_parent() -> None:
    """In a parse worker: end when the daemon ends, even by kill -9 (Linux), instead of
    lingering with its log pipes open."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the pool's own shutdown must do
        pass


async def inline_parsing(source: Source, result: FetchResult, now: datetime) -> ParseResult:
    return parse(source, result, now)


def request_for(
    source: Source, state: SourceState | None, *, conditional: bool = True
) -> FetchRequest:
    """The HTTP request that polls a source (conditional on the stored validators)."""
    params: dict[str, Any] = {}
    json_body = None
    method = "GET"
    if source.kind == "json":
        method = source.method
        params = {k: v for k, v in source.params.items() if v != ""}
        json_body = source.body
    return FetchRequest(
        source_id=source.id,
        url=source.url,
        method=method,
        params=params,
        json_body=json_body,
        headers=dict(source.headers),
        etag=state.etag if conditional and state else None,
        last_modified=state.last_modified if conditional and state else None,
        robots=source.kind == "html" and source.robots,
    )


def next_due(source: Source, settings: Settings, now: datetime, failures: int) -> datetime:
    """The interval after success, plus a random `jitter` share of it (so that sources added
    together drift apart instead of firing in the same second); after `failure_threshold`
    failures in a row the interval doubles per further failure, up to `max_backoff`."""
    interval: timedelta = source.interval
    if failures >= settings.failure_threshold:
        factor = 1 << (failures - settings.failure_threshold + 1)
        return now + min(interval * factor, max(settings.max_backoff, interval))
    import random

    return now + interval * (1 + random.uniform(0, settings.jitter))


async def poll_source(
    source: Source,
    state: SourceState | None,
    *,
    fetcher: Fetcher,
    store: Store,
    settings: Settings,
    clock: Clock = utcnow,
    parsing: Parsing | None = None,
    unchanged: list[PollSuccess] | None = None,
    db: Offload = INLINE,
    matcher: Matcher | None = None,
    alerting: Alerting | None = None,
) -> PollReport:
    """Fetch, parse, normalise and store one source; record its state; never raises for
    faults of the source. With `unchanged`, polls that changed nothing are appended to it
    for the caller to record in one batch (`Store.record_unchanged`).

    A fault of watcher's own while handling the source (a rule or parser that raises) is that
    source's failure: recorded on it, retried with backoff, its traceback logged once. Only
    database errors propagate: the caller decides what an outage means."""
    try:
        return await _poll(
            source,
            state,
            fetcher=fetcher,
            store=store,
            settings=settings,
            clock=clock,
            parsing=parsing,
            unchanged=unchanged,
            db=db,
            matcher=matcher,
            alerting=alerting,
        )
    except Exception as exc:
        if is_database_error(exc):
            raise
        text = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        if (source.id, text) not in _TOLD:
            _TOLD.add((source.id, text))
            # The whole traceback, once: log lines are otherwise one line each.
            trace = "".join(traceback.format_exception(exc)).rstrip()
            log.error(
                "%s: internal error while polling (a bug in watcher; retried with backoff)\n%s",
                source.id,
                trace,
                extra={"source": source.id, "action": "poll"},
            )
        failures = state.consecutive_failures if state else 0
        error = f"internal error: {text} (see the log)"
        return await _failed(
            source, _no_result(source), error, store, settings, clock(), failures, db
        )


#: (source id, error) already logged with a traceback: each is logged once per process.
_TOLD: set[tuple[str, str]] = set()


def _no_result(source: Source) -> FetchResult:
    return FetchResult(source_id=source.id, url=source.url, final_url=source.url, status=0)


async def _poll(
    source: Source,
    state: SourceState | None,
    *,
    fetcher: Fetcher,
    store: Store,
    settings: Settings,
    clock: Clock = utcnow,
    parsing: Parsing | None = None,
    unchanged: list[PollSuccess] | None = None,
    db: Offload = INLINE,
    matcher: Matcher | None = None,
    alerting: Alerting | None = None,
) -> PollReport:
    """The poll itself (`poll_source` turns its own faults into the source's failure)."""
    result = await fetcher.fetch(request_for(source, state))
    now = clock()
    failures = state.consecutive_failures if state else 0
    if result.not_modified:
        retried = await _retry_articles(source, state, fetcher, store, db, now, matcher, alerting)
        await _unchanged(source, result, store, settings, now, unchanged, db)
        return _report(source, "not_modified", result, retried)
    if not result.ok:
        return await _failed(
            source, result, result.error or "failed", store, settings, now, failures, db
        )

    # With the headers as received: a challenge served at 200 is told by its `cf-mitigated`
    # header, and attributed by `server`/`cf-ray`, as one at 403 is.
    blocked = health.blocked_page(result.status, _headers(result), (result.body or b"")[:16384])
    if blocked:
        return await _failed(source, result, blocked, store, settings, now, failures, db)
    body_hash = hashlib.sha256(result.body or b"").hexdigest()
    if state is not None and state.body_hash == body_hash and state.last_success_at:
        retried = await _retry_articles(source, state, fetcher, store, db, now, matcher, alerting)
        await _unchanged(source, result, store, settings, now, unchanged, db)
        return _report(source, "unchanged", result, retried)

    parsed = await (parsing or inline_parsing)(source, result, now)
    if parsed.error:
        error = health.login_page((result.body or b"")[:65536]) or parsed.error
        return await _failed(source, result, error, store, settings, now, failures, db)
    items = list(parsed.items)
    if parsed.skipped or parsed.replaced:
        log.warning(
            "%s: %d entries skipped, %d invalid bytes replaced%s",
            source.id,
            len(parsed.skipped),
            parsed.replaced,
            f" (first: {parsed.skipped[0]})" if parsed.skipped else "",
            extra={"source": source.id, "action": "parse"},
        )
    if parsed.truncated:
        log.warning(
            "%s: %s", source.id, parsed.truncated, extra={"source": source.id, "action": "parse"}
        )
    if not items and (login := health.login_page((result.body or b"")[:65536])):
        return await _failed(source, result, login, store, settings, now, failures, db)
    if not items and state is not None and (state.last_item_count or 0) > 0:
        return await _failed(
            source,
            result,
            f"0 items parsed where the last poll had "
            f"{state.last_item_count} (layout or feed changed?)",
            store,
            settings,
            now,
            failures,
            db,
        )
    baseline = state is None or state.last_success_at is None
    articles = _Articles()
    if baseline:
        items = [replace(item, baseline=True) for item in items]
    elif source.fetch_article:
        items, articles = await _with_articles(source, state, items, fetcher, store, db, now)

    # A document cut short keeps no validators: the next poll fetches and reads it whole,
    # not a 304 or "unchanged" for the cut copy.
    whole = parsed.truncated is None
    success = PollSuccess(
        source_id=source.id,
        polled_at=now,
        next_due_at=next_due(source, settings, now, 0),
        etag=result.etag if whole else None,
        last_modified=result.last_modified if whole else None,
        body_hash=body_hash if whole else "",  # "": matches no body, the next is read
        item_count=len(items),
        problem=health.item_problem(items, dated=_promises_dates(source))
        or health.skip_problem(len(items), parsed.skipped)
        or parsed.truncated
        or articles.problem(state),
        moved_to=_shown(result.moved_to),
        newest_published=health.newest_published(items, now),
    )
    # Stored items whose article arrived on a retry are stored again, with it.
    listed = {i.key for i in items}
    items = items + [i for i in articles.retried if i.key not in listed]
    if matcher is None:
        records: list[MatchRecord] = []
    elif parsed.matches is not None and not source.fetch_article:
        records = list(parsed.matches)  # matched in the parsing process
    else:  # article text replaced the summaries: match what will be stored
        records = match_items(matcher, items, source.tags)
    saved = await db(
        store.save_items,
        items,
        now=now,
        success=success,
        matches=records,
        alerting=alerting,
        captures=_captures(source, result, now, items, articles.pages) if records else None,
    )
    if articles.tried:
        await _record_articles(source, articles, store, db, now, problem=False)
    crash_point("after_match")
    _tell_future_dates(source, saved.new)
    if saved.new or saved.updated:
        log.info(
            "%s: %d new, %d updated of %d items, %d matched%s",
            source.id,
            len(saved.new),
            len(saved.updated),
            success.item_count,
            len({m.item_key for m in saved.matches}),
            " (baseline)" if baseline else "",
            extra={"source": source.id, "action": "poll"},
        )
    return PollReport(
        source_id=source.id,
        outcome="ok",
        status=result.status,
        parsed=success.item_count or 0,
        new=len(saved.new),
        updated=len(saved.updated),
        matched=len({m.item_key for m in saved.matches}),
        stories=saved.stories,
        events=tuple(event for _, event in sorted({(m.item_key, m.event) for m in saved.matches})),
        elapsed=result.elapsed,
    )


def _tell_future_dates(source: Source, new: Sequence[Item]) -> None:
    """One warning per poll when new items were dated after their fetch (`items.future_date`):
    the date given, and what was done with it."""
    ahead = [i for i in new if future_date(i)]
    if not ahead:
        return
    first = ahead[0]
    log.warning(
        "%s: %d new item(s) dated after they were fetched (first: %r, fetched %s UTC): "
        "stored with the fetch time as their publication time; if the dates are all ahead by "
        "the same hours, the site writes its local time as another zone's",
        source.id,
        len(ahead),
        first.published_raw or "(the feed's parsed date)",
        f"{first.fetched_at:%Y-%m-%d %H:%M}",
        extra={"source": source.id, "action": "parse"},
    )


async def _unchanged(
    source: Source,
    result: FetchResult,
    store: Store,
    settings: Settings,
    now: datetime,
    batch: list[PollSuccess] | None,
    db: Offload,
) -> None:
    poll = PollSuccess(
        source_id=source.id,
        polled_at=now,
        next_due_at=next_due(source, settings, now, 0),
        etag=result.etag,
        last_modified=result.last_modified,
        moved_to=_shown(result.moved_to),
    )
    if batch is None:
        await db(store.record_unchanged, [poll])
    else:
        batch.append(poll)


def _promises_dates(source: Source) -> bool:
    """Whether the source's format promises a date per item (an html or json source with a
    date selector or field); feeds may lawfully carry none."""
    if source.kind == "html":
        return bool(source.selectors.date)
    if source.kind == "json":
        return bool(source.fields.date)
    return False


def check_health(
    store: Store, config: Config, now: datetime, only: Sequence[str] | None = None
) -> list[HealthChange]:
    """Assess the configured sources (or `only` these), keep each change of health and queue
    one ops notice per change (recovery included); returns the changes applied."""
    states = store.fetch_states(only)
    settings = config.settings
    changes = []
    counting: set[str] = set()
    for source in config.sources:
        state = states.get(source.id)
        if state is None or (only is not None and source.id not in only):
            continue
        limit = source.stale_after or health.STALE_DEFAULT
        since = min(
            (t for t in (state.last_new_at or state.created_at, state.newest_published_at) if t),
            default=None,
        )
        if source.stale_after is None and since and now - since > health.STALE_FLOOR:
            limit = health.stale_limit(None, store.new_item_times(source.id))
        newest = state.newest_published_at
        # Old news: frozen since it was added, or a listing of back-dated documents that
        # still grows? Asked only then (one small query).
        keeps_adding = (
            newest is not None
            and now - newest > limit
            and len(store.new_item_times(source.id, limit=2)) > 1
        )
        assessed = health.assess(
            state,
            enabled=source.enabled,
            now=now,
            failure_threshold=settings.failure_threshold,
            empty_polls=settings.empty_polls,
            stale_after=limit,
            keeps_adding=keeps_adding,
        )
        was = health.stored(state)
        # The last poll stored a new item, dated within the limit or undated: fresh news.
        fresh = (
            state.last_new_at is not None
            and state.last_new_at == state.last_polled_at
            and (newest is None or now - newest <= limit)
        )
        keep = health.settled(
            was,
            assessed,
            failures=state.consecutive_failures,
            clean_polls=state.clean_polls,
            fresh=fresh,
        )
        new = keep.health
        kept = (new.status, new.reason) if new.problem else (None, None)
        if kept == (state.health, state.health_reason or None):
            if keep.clean_polls == state.clean_polls:
                continue
            counting.add(source.id)  # the recovery counts only: nothing to tell
        told = health.notice(source.id, source.display_name, was, new)
        changes.append(
            HealthChange(
                source_id=source.id,
                old=state.health,
                new=kept[0],
                reason=kept[1],
                subject=told[0] if told else None,
                body=told[1] if told else None,
                clean_polls=keep.clean_polls,
            )
        )
    applied = store.record_health(changes, ops_targets(config.routes), now) if changes else []
    applied = [c for c in applied if c.source_id not in counting]
    for change in applied:
        if change.subject and change.new:
            log.warning(
                "%s: unhealthy (%s): %s",
                change.source_id,
                change.new,
                change.reason,
                extra={"source": change.source_id, "action": "health"},
            )
        elif change.subject:
            log.info(
                "%s: recovered",
                change.source_id,
                extra={"source": change.source_id, "action": "health"},
            )
    return applied


def _shown(url: str | None) -> str | None:
    """A redirect's target as stored and told: a key from the environment that the server
    carried over into it is replaced by ***."""
    return logsetup.redact(url) if url else url


def heartbeat_if_due(store: Store, config: Config, now: datetime) -> bool:
    """Queue today's heartbeat on the ops routes once its time has come (`settings.heartbeat`);
    True when this call queued it."""
    from watcher.store.outbox import Outbox

    settings = config.settings
    targets = ops_targets(config.routes)
    if not settings.heartbeat or not targets:
        return False
    slot = last_slot(settings.heartbeat, settings.timezone, now)
    day = f"{slot.astimezone(ZoneInfo(settings.timezone)):%Y-%m-%d}"
    states = store.fetch_states()
    shown = [(s.id, health.current(states.get(s.id), enabled=s.enabled)) for s in config.sources]
    outbox = Outbox(store)
    items, stories, failed = outbox.day_figures(now - timedelta(days=1))
    subject, body = health.heartbeat(day, shown, items=items, stories=stories, failed=failed)
    return outbox.queue_ops_once(subject, body, targets, now)


def match_items(matcher: Matcher, items: Sequence[Item], tags: Sequence[str]) -> list[MatchRecord]:
    """Every rule match of every item, ready to store."""
    records = []
    for item in items:
        # the publication time resolves relative dates ("on Tuesday", 지난 3일) in the text,
        # and gives a year to a day written without one; an undated item has no such time (its
        # fetch time would date a years-old report to last week); why each rule fired comes
        # from the same scan of the text
        verdict = matcher.match(
            item.title,
            item.text,
            lang=item.lang,
            tags=tags,
            published=item.published_at,
            why=True,
        )
        why = dict(verdict.why)
        for m in verdict.matches:
            records.append(
                MatchRecord(
                    item_key=item.key,
                    rule_id=m.rule_id,
                    event=m.event,
                    severity=m.severity,
                    people=verdict.extracted.people,
                    people_approximate=verdict.extracted.people_approximate,
                    places=verdict.extracted.places,
                    dates=verdict.extracted.dates,
                    why=why.get(m.rule_id, ""),
                )
            )
    return records


def _report(
    source: Source, outcome: str, result: FetchResult, retried: SaveResult | None = None
) -> PollReport:
    """An unchanged poll's report (with what its article retries stored, if any)."""
    saved = retried or SaveResult()
    return PollReport(
        source_id=source.id,
        outcome=outcome,
        status=result.status,
        elapsed=result.elapsed,
        updated=len(saved.updated),
        matched=len({m.item_key for m in saved.matches}),
        stories=saved.stories,
        events=tuple(event for _, event in sorted({(m.item_key, m.event) for m in saved.matches})),
    )


async def _failed(
    source: Source,
    result: FetchResult,
    error: str,
    store: Store,
    settings: Settings,
    now: datetime,
    failures: int,
    db: Offload,
) -> PollReport:
    failures += 1
    due = next_due(source, settings, now, failures)
    if result.retry_after:  # the server asked for a pause: no sooner (up to max_backoff)
        asked = timedelta(seconds=result.retry_after)
        due = max(due, now + min(asked, max(settings.max_backoff, source.interval)))
    message = error
    if failures >= settings.failure_threshold:
        wait = _human(due - now)
        message = f"{error} ({failures} failures in a row; backing off, next try in {wait})"
    # The error as it is: the count is kept beside it (the health reason says it), and the
    # next try is the source's next-due time (NEXT POLL); only the log line says all three.
    await db(store.record_failure, source.id, now, error=error, failures=failures, next_due_at=due)
    log.warning("%s: %s", source.id, message, extra={"source": source.id, "action": "poll"})
    return PollReport(
        source_id=source.id,
        outcome="failed",
        status=result.status,
        error=message,
        elapsed=result.elapsed,
    )


def _human(delta: timedelta) -> str:
    from watcher.config import format_duration

    return format_duration(timedelta(seconds=round(delta.total_seconds())))


#: Fetches of an item's article page, the first included, before the item keeps its listing
#: text for good. A retry comes on a later poll, once the source's interval has passed since
#: the last try, doubling per try (1, 2, 4 and 8 intervals: 15 after the first failure).
ARTICLE_TRIES = 5


@dataclass
class _Articles:
    """What one poll's article fetches did."""

    #: The pages fetched, by item key (kept as evidence when the item matches).
    pages: dict[str, Capture] = field(default_factory=dict)
    #: Keys whose page arrived, and those whose page failed (→ the error).
    fetched: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    #: Stored items whose page arrived on a retry, with its text.
    retried: list[Item] = field(default_factory=list)

    @property
    def tried(self) -> int:
        return len(self.fetched) + len(self.failed)

    def problem(self, state: SourceState | None) -> str | None:
        """The source's article problem after this poll: from its fetches, or as the last
        poll that fetched any left it (a poll with nothing to fetch neither clears nor
        raises it: one episode, one notice)."""
        if self.tried:
            return health.article_problem(list(self.failed.values()), self.tried)
        carried = state.poll_problem if state else None
        return carried if carried and carried.startswith(health.ARTICLES_FAILING) else None


async def _with_articles(
    source: Source,
    state: SourceState | None,
    items: list[Item],
    fetcher: Fetcher,
    store: Store,
    db: Offload,
    now: datetime,
) -> tuple[list[Item], _Articles]:
    """Replace the summary of up to `max_articles` new items by their page's main text, and
    try again the pages of stored items that still lack theirs (up to `max_articles` more).
    A known item keeps the text it was stored with: its article's, not the listing's."""
    keys = [i.key for i in items]
    known = await db(store.known_keys, keys)
    stored = await db(store.stored_texts, [k for k in keys if k in known])
    items = [replace(i, text=stored[i.key]) if i.key in stored else i for i in items]
    todo = [i for i in items if i.key not in known and i.url][: source.max_articles]
    articles = _Articles()
    due = await _due_articles(source, store, db, now, skip={i.key for i in todo})
    listed = {i.key: i for i in items}
    again = [listed.get(i.key, i) for i in due]
    if not todo and not again:
        return items, articles
    done = await asyncio.gather(*(_article(source, i, fetcher, now, articles) for i in todo))
    retried = await asyncio.gather(*(_article(source, i, fetcher, now, articles) for i in again))
    got = {i.key: i for i in (*done, *retried)}
    articles.retried = [i for i in retried if i.key in articles.fetched and i.key not in listed]
    return [got.get(i.key, i) for i in items], articles


async def _due_articles(
    source: Source, store: Store, db: Offload, now: datetime, skip: Collection[str] = ()
) -> list[Item]:
    """The stored items of the source whose article page is due another try."""
    pending = await db(store.pending_articles, source.id)
    due = [
        replace(p.item, source_id=source.id)
        for p in pending
        if p.item.key not in skip and now >= p.last_tried_at + source.interval * 2 ** (p.tries - 1)
    ]
    return due[: source.max_articles]


async def _retry_articles(
    source: Source,
    state: SourceState | None,
    fetcher: Fetcher,
    store: Store,
    db: Offload,
    now: datetime,
    matcher: Matcher | None,
    alerting: Alerting | None,
) -> SaveResult | None:
    """On a poll that found the listing unchanged: try again the article pages that are due,
    store the items whose page arrived (matched again on it), and record the outcome."""
    if not source.fetch_article or state is None or not state.last_success_at:
        return None
    due = await _due_articles(source, store, db, now)
    if not due:
        return None
    articles = _Articles()
    arrived = [
        i
        for i in await asyncio.gather(*(_article(source, i, fetcher, now, articles) for i in due))
        if i.key in articles.fetched
    ]
    saved = None
    if arrived:
        records = match_items(matcher, arrived, source.tags) if matcher else []
        saved = await db(
            store.save_items,
            arrived,
            now=now,
            matches=records,
            alerting=alerting,
            captures={i.key: (articles.pages[i.key],) for i in arrived if i.key in articles.pages}
            if records
            else None,
        )
    await _record_articles(source, articles, store, db, now, problem=True)
    return saved


async def _record_articles(
    source: Source, articles: _Articles, store: Store, db: Offload, now: datetime, *, problem: bool
) -> None:
    """Keep which items still lack their article; with `problem`, also the source's article
    problem (a parsed poll keeps it with its other state)."""
    await db(
        store.record_articles,
        source.id,
        now,
        failed=articles.failed,
        fetched=articles.fetched,
        give_up_after=ARTICLE_TRIES,
        problem=articles.problem(None) if problem else None,
        prefix=health.ARTICLES_FAILING,
        touch_problem=problem,
    )


async def _article(
    source: Source, item: Item, fetcher: Fetcher, now: datetime, articles: _Articles
) -> Item:
    """The item with its article page's main text (when longer than what it has); a page
    that fails is noted in `articles.failed` and the item comes back as it was."""
    from watcher.parsers.article import extract

    result = await fetcher.fetch(
        FetchRequest(source_id=source.id, url=item.url or "", robots=source.robots)
    )
    error = result.error if not result.ok else None
    if error is None and not result.body:
        error = f"HTTP {result.status}: an empty page"
    if error is None:  # a challenge served with 200 is no article
        error = health.blocked_page(result.status, _headers(result), (result.body or b"")[:16384])
    if error is not None:
        articles.failed[item.key] = error
        log.info(
            "%s: article not fetched: %s",
            source.id,
            error,
            extra={"source": source.id, "item": item.key, "action": "article"},
        )
        return item
    articles.fetched.add(item.key)
    articles.pages[item.key] = _capture("article", result, now, logsetup.redact_whole(result.url))
    try:
        text = extract(result)
    except Exception as exc:  # the item keeps its summary; the poll goes on
        log.warning(
            "%s: article text not extracted: %s: %s",
            source.id,
            type(exc).__name__,
            str(exc)[:200],
            extra={"source": source.id, "item": item.key, "action": "article"},
        )
        return item
    return replace(item, text=text) if text and len(text) > len(item.text) else item


def _headers(result: FetchResult) -> dict[str, str]:
    """The response's headers by lower-cased name (a repeated one joined, as httpx does)."""
    headers: dict[str, str] = {}
    for name, value in result.headers:
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def _capture(kind: str, result: FetchResult, now: datetime, url: str) -> Capture:
    """A response as evidence keeps it: requested at `url` (as sources.yaml writes it, for
    a source), and every key from the environment that the address it came from or a header
    line carries (a `${VAR}` in the url or in a JSON source's params, a redirect that carried
    it over) replaced by `***`: the evidence is exported to anyone who reads the web pages."""
    return Capture(
        kind=kind,
        url=url,
        final_url=logsetup.redact_whole(result.final_url),
        status=result.status,
        headers=tuple((k, logsetup.redact_whole(v)) for k, v in result.headers),
        fetched_at=now,
        body=result.body or b"",
    )


def _captures(
    source: Source,
    result: FetchResult,
    now: datetime,
    items: Sequence[Item],
    pages: Mapping[str, Capture],
) -> dict[str, tuple[Capture, ...]]:
    """What each item was fetched in (the response, and its page when one was fetched): the
    store keeps it as evidence for the items that matched."""
    feed = _capture("feed", result, now, source.written_url)
    return {i.key: (feed, pages[i.key]) if i.key in pages else (feed,) for i in items}


# --------------------------------------------------------------------------- leases


def lease_length(settings: Settings) -> timedelta:
    """How long a claim on a source lasts unless renewed: a replica that dies mid-poll frees
    its sources after this. A fetch's own budget is `source_timeout`; the margin covers
    parsing and storing. Longer polls (a queue for the host's slots, article pages) renew."""
    return settings.source_timeout + timedelta(seconds=15)


#: Seconds between renewals of the claims held (at most a third of a lease).
RENEW_EVERY = 5.0


class Leases:
    """The claims this process holds on the sources it is polling (source id → lease end).

    A poll's time is not bounded by `source_timeout`: waiting for a per-host slot does not
    count against it, and article pages are fetched after the feed. So while polls run,
    `keep()` extends every claim still held by one lease, in the database, at most every
    third of a lease; a process that dies stops renewing, and its sources are due again
    within one lease. A renewal only extends a claim that is still the one recorded (compare
    and set), so it never undoes a poll's outcome.

    Usage::

        leases = Leases(lease_length(settings))
        leases.held[source_id] = until          # after store.claim_due(..., until)
        keeper = asyncio.create_task(leases.keep(store, db, clock, on_error))
        ...                                     # poll; leases.held.pop(source_id) once recorded
        keeper.cancel()
    """

    def __init__(self, length: timedelta) -> None:
        self.length = length
        #: Claims held now: source id → the lease end recorded in its row.
        self.held: dict[str, datetime] = {}

    async def renew(self, store: Store, db: Offload, now: datetime) -> None:
        if not self.held:
            return
        until = now + self.length
        renewed = await db(store.renew_claims, dict(self.held), until)
        for source_id in renewed:
            if source_id in self.held:  # else its poll ended meanwhile
                self.held[source_id] = until

    async def keep(
        self, store: Store, db: Offload, clock: Clock, on_error: Callable[[Exception], None]
    ) -> None:
        """Renew the claims held until cancelled; a database error is given to `on_error`
        (the next round tries again)."""
        while True:
            await asyncio.sleep(min(RENEW_EVERY, self.length.total_seconds() / 3))
            try:
                await self.renew(store, db, clock())
            except Exception as exc:
                if not is_database_error(exc):
                    raise
                on_error(exc)


# --------------------------------------------------------------------------- cycles


@dataclass
class CycleTally:
    """What polls and sends did in one cycle, told as one line: `run --once` tells each of
    its cycles, the daemon what happened since its last line.

    Usage::

        tally = CycleTally()
        tally.add(report)                       # each PollReport
        tally.attempted("sent")                 # each send's outcome
        log.info(tally.line(next_poll, now, "took 1.2s"))
    """

    #: Polls by outcome (a 304 counts as unchanged).
    outcomes: Counter[str] = field(default_factory=Counter)
    new: int = 0
    matched: int = 0
    #: Stories opened, and stories another report joined or revised.
    opened: set[int] = field(default_factory=set)
    updated: set[int] = field(default_factory=set)
    #: Messages sent, and sends that failed (refused, unreachable or uncertain).
    sent: int = 0
    unsent: int = 0

    def add(self, report: PollReport) -> None:
        self.outcomes["unchanged" if report.outcome == "not_modified" else report.outcome] += 1
        self.new += report.new
        self.matched += report.matched
        for change in report.stories:
            (self.opened if change.change == "new" else self.updated).add(change.story_id)

    def attempted(self, outcome: str) -> None:
        if outcome == "sent":
            self.sent += 1
        else:
            self.unsent += 1

    @property
    def polled(self) -> int:
        return sum(self.outcomes.values())

    @property
    def quiet(self) -> bool:
        """Nothing new: no new item, failed poll, story change or send."""
        return not (
            self.new
            or self.outcomes["failed"]
            or self.opened
            or self.updated
            or self.sent
            or self.unsent
        )

    def line(self, next_poll: tuple[str, datetime | None] | None, now: datetime, span: str) -> str:
        """`cycle: 3 polled (1 failed, 2 ok), 4 new items, 1 matched; stories: 1 opened,
        0 updated; messages: 1 sent, 0 failed; next poll: feed2 in 4m; took 1.2s`"""
        outcomes = ", ".join(f"{n} {k}" for k, n in sorted(self.outcomes.items()) if n)
        upcoming = "none (no enabled source)"
        if next_poll is not None:
            source_id, due = next_poll
            if due is not None and (due - now).total_seconds() >= 1:
                upcoming = f"{source_id} in {_human(due - now)}"
            else:
                upcoming = f"{source_id} now"
        return (
            f"cycle: {self.polled} polled ({outcomes or 'none due'}), {self.new} new items, "
            f"{self.matched} matched; stories: {len(self.opened)} opened, "
            f"{len(self.updated - self.opened)} updated; messages: {self.sent} sent, "
            f"{self.unsent} failed; next poll: {upcoming}; {span}"
        )


#: Seconds between checks, while items are being stored, for tables that grew enough to need
#: fresh planner statistics (`Store.analyze_grown`; PostgreSQL only).
ANALYZE_EVERY = 5.0


async def keep_statistics(store: Store, db: Offload, every: float = ANALYZE_EVERY) -> None:
    """Until cancelled: every `every` seconds, ANALYZE the tables that grew by more than a
    factor since their last ANALYZE, so that a cold first cycle on PostgreSQL leaves the plans
    made while `items` was empty after a few seconds, not after the whole cycle."""
    while True:
        await asyncio.sleep(every)
        try:
            await db(store.analyze_grown)
        except Exception as exc:
            if not is_database_error(exc):
                raise
            log.debug("cannot refresh statistics: %s", exc, extra={"action": "analyze"})


async def run_cycle(
    sources: Sequence[Source],
    *,
    store: Store,
    fetcher: Fetcher,
    settings: Settings,
    clock: Clock = utcnow,
    only_due: bool = True,
    parsing: Parsing | None = None,
    matcher: Matcher | None = None,
    alerting: Alerting | None = None,
) -> list[PollReport]:
    """Poll every given source (only those due, unless `only_due` is false) concurrently."""
    now = clock()
    leases = Leases(lease_length(settings))
    if only_due:  # claimed as the daemon claims them, so a cron run and replicas never overlap
        lease = now + leases.length
        claimed = set(store.claim_due([s.id for s in sources], now, lease))
        sources = [s for s in sources if s.id in claimed]
        leases.held = dict.fromkeys(claimed, lease)
    states = store.fetch_states()
    todo = list(sources)

    unchanged: list[PollSuccess] = []
    db = offload_for(store)
    # Polls in progress at once: the fetcher's own limit. More would only fetch ahead of
    # parsing and storing, holding bodies and items in memory (a cold cycle of 3,000 feeds
    # fetches in seconds what takes a minute to store).
    slots = asyncio.Semaphore(settings.concurrency)

    async def record_unchanged() -> None:
        batch = unchanged[:]
        unchanged.clear()
        try:
            await db(store.record_unchanged, batch)
        except BaseException:
            unchanged[:0] = batch  # not recorded: kept for the next batch or the cycle's end
            raise
        for poll in batch:  # recorded: no longer claimed
            leases.held.pop(poll.source_id, None)

    async def guarded(source: Source) -> PollReport:
        try:
            async with slots:
                report = await poll_source(
                    source,
                    states.get(source.id),
                    fetcher=fetcher,
                    store=store,
                    settings=settings,
                    clock=clock,
                    parsing=parsing,
                    unchanged=unchanged,
                    db=db,
                    matcher=matcher,
                    alerting=alerting,
                )
            if len(unchanged) >= 100:
                await record_unchanged()
            return report
        except Exception as exc:  # a bug or a database fault: say so, keep the cycle going
            log.exception(
                "%s: poll failed: %s",
                source.id,
                exc,
                extra={"source": source.id, "action": "poll"},
            )
            return PollReport(source_id=source.id, outcome="failed", error=str(exc)[:300])
        finally:
            # An unchanged poll waits in the batch: its claim is held until that is recorded.
            if not any(p.source_id == source.id for p in unchanged):
                leases.held.pop(source.id, None)

    def renewal_failed(exc: Exception) -> None:
        log.warning(
            "cannot renew the claims on the sources being polled: %s",
            logsetup.one_line(exc),
            extra={"action": "lease"},
        )

    keepers = [asyncio.create_task(leases.keep(store, db, clock, renewal_failed))]
    if store.dialect == "postgresql":
        keepers.append(asyncio.create_task(keep_statistics(store, db)))
    try:
        return list(await asyncio.gather(*(guarded(s) for s in todo)))
    finally:
        for keeper in keepers:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        try:
            store.record_unchanged(unchanged)
        finally:
            db.close()

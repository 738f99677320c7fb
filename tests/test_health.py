"""Sources that tell the truth: silence, breakage, challenges, moves and staleness are seen,
kept in the database (so successive `run --once` calls add up), and told to the ops routes
once per change, recovery included. Pure rules first, then real polls on both databases."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests.helpers import T0, Clock, cycle, feed_source, rss
from tests.httpserver import FeedServer
from watcher import health
from watcher.pipeline import check_health
from watcher.store import Store
from watcher.store import tables as t
from watcher.types import Item, SourceState

DAY = timedelta(days=1)
#: The newest publication date of a frozen feed.
NEWEST = T0 - 40 * DAY
#: A source added yesterday that has never parsed an item.
EMPTY = {"items_seen_at": None, "last_new_at": None, "created_at": T0 - DAY}


def state(**kw: Any) -> SourceState:
    base: dict[str, Any] = {
        "id": "s",
        "kind": "feed",
        "url": "https://e.org/f",
        "last_polled_at": T0,
        "last_success_at": T0,
        "created_at": T0 - 30 * DAY,
        "ok_polls": 10,
        "items_seen_at": T0,
        "last_new_at": T0 - DAY,
    }
    return SourceState(**{**base, **kw})


def assess(st: SourceState, now: datetime = T0, stale_after: timedelta = 7 * DAY) -> health.Health:
    return health.assess(
        st, enabled=True, now=now, failure_threshold=3, empty_polls=3, stale_after=stale_after
    )


# --------------------------------------------------------------------------- the pure rules


@pytest.mark.parametrize(
    ("changes", "status", "in_reason"),
    [
        ({}, "ok", ""),
        ({"consecutive_failures": 2, "last_error": "HTTP 500"}, "ok", ""),
        ({"consecutive_failures": 3, "last_error": "HTTP 500"}, "failing", "HTTP 500"),
        (
            {"consecutive_failures": 1, "last_error": "blocked: a bot challenge page, HTTP 403"},
            "blocked",
            "bot challenge",
        ),
        (EMPTY | {"ok_polls": 2}, "ok", ""),
        (EMPTY | {"ok_polls": 3}, "empty", "3 polls"),
        ({"poll_problem": "items look broken: 9 of 10 lack a link"}, "broken", "9 of 10"),
        ({"moved_to": "https://new.example/feed"}, "moved", "https://new.example/feed"),
        ({"last_new_at": T0 - 8 * DAY}, "stale", "expected within 7 days"),
        ({"last_new_at": None, "created_at": T0 - 8 * DAY}, "stale", "no item at all"),
        # by publication date: a source added while frozen is stale from its first poll
        (
            {"ok_polls": 1, "created_at": T0, "last_new_at": T0, "newest_published_at": NEWEST},
            "stale",
            "newest item published 2026-10-14, 40 days ago; expected within 7 days",
        ),
        ({"newest_published_at": T0 - 6 * DAY}, "ok", ""),
        # ...but not one that keeps adding items, however old their dates
        ({"newest_published_at": NEWEST, "keeps_adding": True}, "ok", ""),
        (
            {"newest_published_at": NEWEST, "keeps_adding": True, "last_new_at": T0 - 8 * DAY},
            "stale",
            "no new",
        ),
        ({"newest_published_at": T0 - 6 * DAY, "last_new_at": T0 - 8 * DAY}, "stale", "no new"),
        ({"newest_published_at": None, "last_new_at": T0}, "ok", ""),  # undated: first seen
    ],
)
def test_assess(changes: dict[str, Any], status: str, in_reason: str) -> None:
    adding = changes.pop("keeps_adding", False)
    got = health.assess(
        state(**changes),
        enabled=True,
        now=T0,
        failure_threshold=3,
        empty_polls=3,
        stale_after=7 * DAY,
        keeps_adding=adding,
    )
    assert got.status == status
    assert in_reason in got.reason


def test_disabled_and_never_polled_sources_are_not_problems() -> None:
    assert health.assess(
        state(), enabled=False, now=T0, failure_threshold=3, empty_polls=3, stale_after=DAY
    ) == health.Health(status="disabled")
    assert not assess(state(last_polled_at=None)).problem


def test_stale_limit_follows_the_source_own_rhythm() -> None:
    hourly = [T0 - timedelta(hours=h) for h in range(12)]
    assert health.stale_limit(None, hourly) == health.STALE_FLOOR  # 10 h, raised to 3 days
    weekly = [T0 - timedelta(weeks=w) for w in range(8)]
    assert health.stale_limit(None, weekly) == timedelta(weeks=10)
    assert health.stale_limit(None, hourly[:3]) == health.STALE_DEFAULT  # too little history
    assert health.stale_limit(2 * DAY, weekly) == 2 * DAY  # configured wins


def item(n: int, **kw: Any) -> Item:
    base: dict[str, Any] = {
        "key": f"k{n}",
        "source_id": "s",
        "url": f"https://e.org/{n}",
        "title": f"Title {n}",
        "text": "",
        "lang": "en",
        "published_at": T0,
        "published_raw": None,
        "fetched_at": T0,
    }
    return Item(**{**base, **kw})


def test_items_look_broken_only_when_most_lack_something() -> None:
    whole = [item(n) for n in range(10)]
    assert health.item_problem(whole, dated=True) is None
    linkless = [replace(i, url=None) for i in whole[:6]] + whole[6:]
    assert "6 of 10 lack a link" in (health.item_problem(linkless, dated=False) or "")
    undated = [replace(i, published_at=None) for i in whole]
    assert health.item_problem(undated, dated=False) is None  # a feed may carry no dates
    assert "lack a date" in (health.item_problem(undated, dated=True) or "")
    half = [replace(i, url=None) for i in whole[:5]] + whole[5:]
    assert health.item_problem(half, dated=True) is None


@pytest.mark.parametrize(
    ("status", "headers", "head", "blocked"),
    [
        (403, {"cf-mitigated": "challenge", "server": "cloudflare"}, b"", True),
        (503, {}, b"<html><head><title>Just a moment...</title>", True),
        (200, {}, b'<script src="/cdn-cgi/challenge-platform/h/b/orchestrate"></script>', True),
        (403, {}, b"<html><title>403 Forbidden</title>", False),
        (200, {}, b"<rss><channel><title>Just a moment of silence</title>", False),
    ],
)
def test_blocked_page(status: int, headers: dict[str, str], head: bytes, blocked: bool) -> None:
    found = health.blocked_page(status, headers, head)
    assert (found is not None) == blocked
    if found:
        assert found.startswith(health.BLOCKED) and f"HTTP {status}" in found


BLOCKED = health.Health(status="blocked", reason="a bot challenge page, HTTP 200")
MOVED = health.Health(status="moved", reason="permanently redirected to https://e.org/n")


@pytest.mark.parametrize(
    ("kept", "new", "failures", "clean", "settled", "clean_after"),
    [
        (health.OK, BLOCKED, 1, 0, BLOCKED, 0),  # a problem: at once
        (BLOCKED, health.OK, 0, 0, BLOCKED, 1),  # one clean poll: still the episode
        (BLOCKED, health.OK, 0, health.RECOVERY_POLLS - 2, BLOCKED, health.RECOVERY_POLLS - 1),
        (BLOCKED, health.OK, 0, health.RECOVERY_POLLS - 1, health.OK, 0),  # recovered
        (BLOCKED, BLOCKED, 1, 2, BLOCKED, 0),  # back: the same episode, counted afresh
        (BLOCKED, MOVED, 0, 1, MOVED, 0),  # another problem: at once
        (BLOCKED, health.OK, 1, 2, BLOCKED, 0),  # a failed poll (retrying) is not clean
        (BLOCKED, health.Health(status="disabled"), 0, 0, health.Health(status="disabled"), 0),
        (health.OK, health.OK, 0, 0, health.OK, 0),
    ],
)
def test_a_recovery_is_kept_only_once_it_holds(
    kept: health.Health,
    new: health.Health,
    failures: int,
    clean: int,
    settled: health.Health,
    clean_after: int,
) -> None:
    got = health.settled(kept, new, failures=failures, clean_polls=clean)
    assert (got.health, got.clean_polls) == (settled, clean_after)


STALE = health.Health(status="stale", reason="no new item since 2026-11-20 09:00 UTC")


@pytest.mark.parametrize(
    ("kept", "fresh", "settled", "clean_after"),
    [
        (STALE, True, health.OK, 0),  # a fresh item disproves staleness: at once
        (STALE, False, STALE, 1),  # no new item (or an old one): as any recovery
        (BLOCKED, True, BLOCKED, 1),  # new items say nothing of an intermittent block
    ],
)
def test_a_fresh_item_ends_staleness_at_once(
    kept: health.Health, fresh: bool, settled: health.Health, clean_after: int
) -> None:
    got = health.settled(kept, health.OK, failures=0, clean_polls=0, fresh=fresh)
    assert (got.health, got.clean_polls) == (settled, clean_after)


def test_notice_tells_each_change_once() -> None:
    ok, failing = health.OK, health.Health(status="failing", reason="3 failures; HTTP 500")
    worse = health.Health(status="failing", reason="4 failures; HTTP 500")
    stale = health.Health(status="stale", reason="no new item since …")
    told = health.notice("s", "Outlet", ok, failing)
    assert told and "source s is unhealthy (failing)" in told[0] and "HTTP 500" in told[1]
    assert "watcher sources test s" in told[1]
    assert health.notice("s", "Outlet", failing, worse) is None  # same problem, count went up
    assert health.notice("s", "Outlet", failing, stale) is not None  # another problem
    back = health.notice("s", "Outlet", stale, ok)
    assert back and "source s recovered" in back[0] and "was stale" in back[1]
    assert health.notice("s", "Outlet", ok, ok) is None
    assert health.notice("s", "Outlet", failing, health.Health(status="disabled")) is None


# --------------------------------------------------------------------------- real polls


@pytest.fixture
def server():
    with FeedServer() as s:
        yield s


OPS = {"channels": [{"id": "ops", "url": "json://127.0.0.1:9/ops"}]}


def with_ops(sources: list[dict[str, Any]], **settings: Any):
    import yaml

    from watcher.config import load_config_text

    doc = {
        "sources": sources,
        "settings": {"retries": 0, "jitter": 0, "allow_private_addresses": True, **settings},
        **OPS,
        "routes": [{"id": "ops", "ops": True, "channels": ["ops"]}],
    }
    return load_config_text(yaml.safe_dump(doc), "test.yaml", {}).config


def poll_and_check(config, store: Store, clock: Clock, times: int = 1) -> list[Any]:
    changes = []
    for _ in range(times):
        cycle(config, store, clock)
        changes += check_health(store, config, clock())
        clock.advance(minutes=10)
    return changes


def ops_notices(store: Store) -> list[tuple[str, str]]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(t.deliveries.c.subject, t.deliveries.c.body)
            .where(t.deliveries.c.kind == "ops")
            .order_by(t.deliveries.c.id)
        ).all()
    return [(r.subject, r.body) for r in rows]


def kept(store: Store, sid: str = "s") -> tuple[str | None, str | None]:
    st = store.source_state(sid)
    assert st is not None
    return st.health, st.health_reason


def test_a_feed_that_parses_nothing_is_empty_within_three_polls_and_told_once(
    store: Store, server: FeedServer
) -> None:
    server.route("/f", body=rss([]))  # a valid, empty channel: a wrong address or a dead feed
    config = with_ops([feed_source(server, "s", "/f")])
    clock = Clock()
    poll_and_check(config, store, clock, times=2)
    assert kept(store) == (None, None) and ops_notices(store) == []
    poll_and_check(config, store, clock, times=3)
    status, reason = kept(store)
    assert status == "empty" and "parsed nothing in 5 polls" in (reason or "")
    (notice,) = ops_notices(store)  # five polls, one notice
    assert "source s is unhealthy (empty)" in notice[0]


def undated(body: bytes) -> bytes:
    """The feed without its publication dates."""
    import re

    return re.sub(rb"<pubDate>[^<]*</pubDate>", b"", body)


#: A report published within the staleness limit of the frozen feed's recovery (2 days).
FRESH = "Thu, 26 Nov 2026 08:00:00 +0900"
#: A new report dated long before it (a back-dated document).
BACK_DATED = "Mon, 02 Nov 2026 08:00:00 +0900"


@pytest.mark.parametrize(
    ("dates", "reason", "pub", "polls_to_recover"),
    [
        # a new item dated within the limit disproves staleness: recovered on that poll
        (
            lambda b: b,
            "newest item published 2026-11-22, 3 days ago; expected within 2 days",
            FRESH,
            1,
        ),
        (
            undated,
            "no new item since 2026-11-23 09:00 UTC (3 days); expected within 2 days",
            FRESH,
            1,
        ),
        # a new item dated long ago is no fresh news: it recovers as any problem does
        (
            lambda b: b,
            "newest item published 2026-11-22, 3 days ago; expected within 2 days",
            BACK_DATED,
            health.RECOVERY_POLLS,
        ),
    ],
    ids=["dated", "undated", "back-dated"],
)
def test_a_frozen_feed_turns_stale_then_recovers(
    store: Store, server: FeedServer, dates: Any, reason: str, pub: str, polls_to_recover: int
) -> None:
    route = server.route("/f", body=dates(rss([("A", "https://e.org/a")])))
    config = with_ops([feed_source(server, "s", "/f", stale_after="2d")])
    clock = Clock()
    poll_and_check(config, store, clock)
    clock.advance(days=1)
    poll_and_check(config, store, clock)
    assert kept(store)[0] is None
    clock.advance(days=2)
    poll_and_check(config, store, clock)  # the same body for three days
    assert kept(store) == ("stale", reason)
    route.body = dates(rss([("B", "https://e.org/b")], pub=pub))
    poll_and_check(config, store, clock, times=polls_to_recover - 1)
    assert kept(store) == ("stale", reason)  # not yet recovered: the episode may go on
    poll_and_check(config, store, clock)
    assert kept(store) == (None, None)
    subjects = [s for s, _ in ops_notices(store)]
    assert subjects == ["watcher: source s is unhealthy (stale)", "watcher: source s recovered"]


@pytest.mark.parametrize(
    ("dates", "health_after_first_poll"),
    [
        (
            lambda b: b,
            ("stale", "newest item published 2026-10-14, 40 days ago; expected within 14 days"),
        ),
        (undated, (None, None)),  # undated: by when items are first seen, as before
    ],
    ids=["dated", "undated"],
)
def test_a_source_added_while_frozen_is_stale_from_its_first_poll(
    store: Store, server: FeedServer, dates: Any, health_after_first_poll: tuple[Any, Any]
) -> None:
    old = f"{NEWEST:%a, %d %b %Y %H:%M:%S} +0000"
    server.route("/f", body=dates(rss([("A", "https://e.org/a")], pub=old)))
    config = with_ops([feed_source(server, "s", "/f")])
    poll_and_check(config, store, Clock(), times=2)
    assert kept(store) == health_after_first_poll
    assert len(ops_notices(store)) == (1 if health_after_first_poll[0] else 0)


def test_a_listing_that_keeps_adding_back_dated_items_is_not_stale(
    store: Store, server: FeedServer
) -> None:
    # documents posted today but dated weeks back (a UN listing): the first poll cannot tell
    # it from a frozen feed; once it adds items poll after poll, it is judged by those
    old = f"{NEWEST:%a, %d %b %Y %H:%M:%S} +0000"
    config = with_ops([feed_source(server, "s", "/f")])
    clock = Clock()
    entries: list[tuple[str, str]] = []
    for n in range(1 + health.RECOVERY_POLLS):
        entries.append((f"Document {n}", f"https://e.org/{n}"))
        server.route("/f", body=rss(list(entries), pub=old))
        poll_and_check(config, store, clock)
        if n == 0:
            assert kept(store)[0] == "stale"
    assert kept(store) == (None, None)
    assert [subject for subject, _ in ops_notices(store)] == [
        "watcher: source s is unhealthy (stale)",
        "watcher: source s recovered",
    ]


def test_a_permanent_redirect_is_reported_with_its_target(store: Store, server: FeedServer) -> None:
    server.route("/new", body=rss([("A", "https://e.org/a")]))
    server.route("/old", status=301, headers={"Location": server.url("/new")}, body=b"")
    server.route("/tmp", status=302, headers={"Location": server.url("/new")}, body=b"")
    config = with_ops([feed_source(server, "s", "/old"), feed_source(server, "t", "/tmp")])
    poll_and_check(config, store, Clock())
    status, reason = kept(store, "s")
    assert status == "moved" and server.url("/new") in (reason or "")
    assert kept(store, "t") == (None, None)  # a temporary redirect is no move


def test_a_bot_challenge_is_blocked_not_parsed(store: Store, server: FeedServer) -> None:
    server.route(
        "/f",
        status=403,
        content_type="text/html",
        headers={"cf-mitigated": "challenge", "Server": "cloudflare"},
        body=b"<html><title>Just a moment...</title></html>",
    )
    config = with_ops([feed_source(server, "s", "/f")])
    reports, _ = cycle(config, store, Clock())
    assert reports["s"].outcome == "failed" and "bot challenge" in (reports["s"].error or "")
    check_health(store, config, T0)
    assert kept(store)[0] == "blocked"  # at once, not after three failures
    assert len(server.hits("/f")) == 1  # a challenge is not retried


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html><title>Just a moment...</title></html>", id="challenge-markup"),
        pytest.param(b"<html><body>Checking your browser</body></html>", id="header-only"),
    ],
)
def test_a_bot_challenge_at_200_is_told_by_its_headers_as_at_403(
    store: Store, server: FeedServer, body: bytes
) -> None:
    """A Cloudflare challenge answered with 200 is blocked and attributed to Cloudflare by
    its `cf-mitigated` and `server` headers (the poll once judged it by its body alone)."""
    server.route(
        "/f",
        content_type="text/html",
        headers={"cf-mitigated": "challenge", "Server": "cloudflare", "cf-ray": "8f-ICN"},
        body=body,
    )
    config = with_ops([feed_source(server, "s", "/f")])
    reports, _ = cycle(config, store, Clock())
    error = reports["s"].error or ""
    assert reports["s"].outcome == "failed"
    assert "a bot challenge page (Cloudflare), HTTP 200" in error
    check_health(store, config, T0)
    assert kept(store)[0] == "blocked"


def test_a_feed_cut_short_stores_no_partial_entry_and_is_reported(
    store: Store, server: FeedServer
) -> None:
    """The reviewer's case: the feed comes back cut inside a stored report's <link>. Before,
    the cut entry (a title, no link, no date) was stored as a new item and health stayed ok.
    Now it is dropped, the source is `broken` with the cut named, the cut copy's validators
    are not kept, and the whole feed again recovers it."""
    whole = rss([("Kept report", "https://e.org/kept"), (REPORT, "https://e.org/repatriated")])
    route = server.route("/f", body=whole, etag='"whole"')
    config = with_ops([feed_source(server, "s", "/f")])
    clock = Clock()
    poll_and_check(config, store, clock)
    route.body = whole[: whole.index(b"<link>https://e.org/rep") + 10]
    route.etag = '"cut"'
    reports, _ = cycle(config, store, clock)
    assert reports["s"].outcome == "ok" and reports["s"].new == 0
    check_health(store, config, clock())
    assert sorted(i.title for i in store.iter_items()) == sorted(["Kept report", REPORT])
    status, reason = kept(store)
    assert status == "broken"
    assert reason == (
        f"feed cut short: the document ends inside <rss> after {len(route.body)} bytes; "
        "its unfinished last entry was dropped, 1 kept"
    )
    state = store.source_state("s")
    assert state is not None and state.etag is None
    clock.advance(minutes=10)
    route.body, route.etag = whole, '"whole"'
    poll_and_check(config, store, clock)
    assert server.hits("/f")[-1].headers.get("If-None-Match") is None
    for _ in range(health.RECOVERY_POLLS - 1):  # recovered once whole copies keep coming
        clock.advance(minutes=10)
        poll_and_check(config, store, clock)
    assert kept(store) == (None, None)
    subjects = [s for s, _ in ops_notices(store)]
    assert subjects == ["watcher: source s is unhealthy (broken)", "watcher: source s recovered"]


def test_a_feed_cut_before_its_first_whole_entry_is_a_failed_poll(
    store: Store, server: FeedServer
) -> None:
    whole = rss([(REPORT, "https://e.org/repatriated")])
    server.route("/f", body=whole[: whole.index(b"<link>https://e.org/rep") + 10])
    config = with_ops([feed_source(server, "s", "/f")])
    reports, _ = cycle(config, store, Clock())
    assert reports["s"].outcome == "failed"
    assert (reports["s"].error or "").endswith("before any whole entry")
    assert store.item_count() == 0


REPORT = "China forcibly repatriated about 60 North Korean defectors from Jilin this week"


def test_items_without_links_are_broken(store: Store, server: FeedServer) -> None:
    listing = "".join(
        f'<div class="card"><h3>Report {n}</h3><span class="d">2026-11-2{n}</span></div>'
        for n in range(5)
    )
    server.route(
        "/l", body=f"<html><body>{listing}</body></html>".encode(), content_type="text/html"
    )
    source = {
        "id": "s",
        "kind": "html",
        "url": server.url("/l"),
        "robots": False,
        "selectors": {"item": "div.card", "title": "h3", "link": "a", "date": "span.d"},
    }
    config = with_ops([source])
    poll_and_check(config, store, Clock())
    status, reason = kept(store)
    assert status == "broken" and "lack a link" in (reason or "")


def test_a_rule_that_raises_fails_its_source_not_the_database(
    store: Store, server: FeedServer
) -> None:
    import asyncio

    from watcher.fetch import Fetcher, FetchLimits
    from watcher.pipeline import run_cycle

    server.route("/f", body=rss([("A", "https://e.org/a")]))
    config = with_ops([feed_source(server, "s", "/f")])

    class Exploding:
        def match(self, *args: Any, **kwargs: Any) -> Any:
            # one message per database: each process logs a given fault's traceback once
            raise RuntimeError(f"rule bug on {store.dialect}")

    async def go() -> Any:
        async with Fetcher(FetchLimits.from_settings(config.settings)) as fetcher:
            return await run_cycle(
                config.sources,
                store=store,
                fetcher=fetcher,
                settings=config.settings,
                clock=Clock(),
                only_due=False,
                matcher=Exploding(),  # type: ignore[arg-type]
            )

    store.sync_sources(config.sources, T0)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("watcher")  # whatever propagation earlier tests configured
    logger.addHandler(handler)
    try:
        for _ in range(2):
            (report,) = asyncio.run(go())
            assert report.outcome == "failed"
            assert report.error
            assert report.error.startswith("internal error: RuntimeError: rule bug")
    finally:
        logger.removeHandler(handler)
    st = store.source_state("s")
    assert st and st.consecutive_failures == 2 and "rule bug" in (st.last_error or "")
    tracebacks = [r for r in records if "Traceback (most recent call last)" in r.getMessage()]
    assert len(tracebacks) == 1, "the traceback is logged once"
    assert not [r for r in records if "database" in r.getMessage()]


def test_health_is_kept_across_runs(store: Store, server: FeedServer) -> None:
    server.route("/f", status=500, body=b"down")
    config = with_ops([feed_source(server, "s", "/f")], failure_threshold=2)
    clock = Clock()
    for _ in range(3):
        # each `run --once` is a new process: only the database remembers
        cycle(config, store, clock)
        check_health(store, config, clock())
        clock.advance(hours=1)
    assert kept(store)[0] == "failing"
    assert len(ops_notices(store)) == 1


# --------------------------------------------------------------------------- someone always hears


def test_nobody_hears_names_what_is_missing() -> None:
    from watcher.routing import nobody_hears

    bare = config_with_routes([])
    assert [w.split(":")[0] for w in nobody_hears(bare)] == [
        "no route sends stories",
        "no ops route",
    ]
    assert nobody_hears(config_with_routes([{"channels": ["ops"]}, OPS_ROUTE])) == []


OPS_ROUTE = {"id": "ops", "ops": True, "channels": ["ops"]}


def config_with_routes(routes: list[dict[str, Any]], **settings: Any):
    import yaml

    from watcher.config import load_config_text

    doc = {
        "sources": [{"id": "s", "kind": "feed", "url": "https://e.org/f"}],
        "settings": settings,
        **OPS,
        "routes": routes,
    }
    return load_config_text(yaml.safe_dump(doc), "test.yaml", {}).config


def test_the_daily_heartbeat_is_queued_once_per_day(store: Store, server: FeedServer) -> None:
    from watcher.pipeline import heartbeat_if_due

    server.route("/f", body=rss([("A", "https://e.org/a")]))
    config = with_ops([feed_source(server, "s", "/f")], heartbeat="08:00", timezone="Asia/Seoul")
    clock = Clock(datetime(2026, 11, 23, 0, 30, tzinfo=UTC))  # 09:30 in Seoul
    poll_and_check(config, store, clock)
    assert heartbeat_if_due(store, config, clock())
    assert not heartbeat_if_due(store, config, clock() + timedelta(hours=2))  # once a day
    (notice,) = ops_notices(store)
    assert notice[0] == "watcher: daily heartbeat 2026-11-23"
    assert "sources: 1 ok, 0 unhealthy" in notice[1] and "1 new items" in notice[1]
    assert heartbeat_if_due(store, config, clock() + DAY)  # the next morning
    assert ops_notices(store)[-1][0] == "watcher: daily heartbeat 2026-11-24"


def test_no_heartbeat_unless_asked_for(store: Store) -> None:
    from watcher.pipeline import heartbeat_if_due

    config = config_with_routes([OPS_ROUTE])
    store.sync_sources(config.sources, T0)
    assert not heartbeat_if_due(store, config, T0)
    assert ops_notices(store) == []


# --------------------------------------------------------------------------- optional paths


def test_every_code_path_a_shipped_source_uses_imports_and_runs() -> None:
    """The parser of each shipped kind, and for `fetch_article` sources the article extractor
    (trafilatura → justext → lxml_html_clean, a separate package since lxml 5.2): a missing
    dependency fails here, not on a live poll."""
    import importlib

    from tests.helpers import ROOT
    from watcher.config import load_config
    from watcher.parsers import PARSERS
    from watcher.parsers.article import extract
    from watcher.types import FetchResult

    config = load_config(ROOT / "sources.yaml").config
    for kind in {s.kind for s in config.sources}:
        importlib.import_module(PARSERS[kind])
    assert any(s.fetch_article for s in config.sources)
    importlib.import_module("lxml_html_clean")
    lead = "China's foreign ministry said on Tuesday that those who crossed were illegal migrants. "
    page = f"<html><body><nav>menu</nav><article><p>{lead * 8}</p></article></body></html>"
    result = FetchResult(
        source_id="fmprc-press",
        url="https://e.org/a",
        final_url="https://e.org/a",
        status=200,
        body=page.encode(),
        encoding="utf-8",
        content_type="text/html",
    )
    text = extract(result)
    assert text and "illegal migrants" in text and "menu" not in text


@pytest.mark.parametrize(
    ("last_error", "reason"),
    [
        ("HTTP 404 Not Found", "3 failures in a row; last: HTTP 404 Not Found"),
        # an error's own parenthesis stays
        ("refused (policy)", "3 failures in a row; last: refused (policy)"),
    ],
)
def test_a_failing_reason_says_the_count_once(last_error: str, reason: str) -> None:
    got = assess(state(consecutive_failures=3, last_error=last_error))
    assert (got.status, got.reason) == ("failing", reason)


def test_an_ops_title_says_watcher_once() -> None:
    from watcher import render

    message = render.render_ops("watcher: source dnk is unhealthy (failing)", ["x"], "text")
    assert message.title == "[watcher] source dnk is unhealthy (failing)"


# --------------------------------------------------------------------------- titles lost


def _listing(titles: list[str], *, redesigned: bool) -> bytes:
    """An html listing; redesigned, the anchor wraps a thumbnail and the headline is an h4."""
    rows = "".join(
        f'<li class="news"><a class="t" href="/n/{n}"><img src="/i/{n}.jpg"></a><h4>{t}</h4></li>'
        if redesigned
        else f'<li class="news"><a class="t" href="/n/{n}">{t}</a></li>'
        for n, t in enumerate(titles, start=1)
    )
    return f"<html><body><ul>{rows}</ul></body></html>".encode()


def _api(titles: list[str], *, redesigned: bool) -> bytes:
    """A JSON API; redesigned, its `title` key is renamed `name`."""
    import json

    key = "name" if redesigned else "title"
    data = [
        {"fields": {key: t, "url": f"https://e.org/n/{n}"}} for n, t in enumerate(titles, start=1)
    ]
    return json.dumps({"data": data}).encode()


TITLES = ["Report one", "Report two", "Report three"]
LOST_TITLE = [
    pytest.param(
        _listing,
        "text/html",
        {"kind": "html", "robots": False, "selectors": {"item": "li.news", "title": "a.t"}},
        id="html-title-selector",
    ),
    pytest.param(
        _api,
        "application/json",
        {"kind": "json", "items": "data", "fields": {"title": "fields.title", "url": "fields.url"}},
        id="json-title-field",
    ),
]


@pytest.mark.parametrize(("page", "content_type", "kind"), LOST_TITLE)
def test_a_title_that_stops_matching_is_broken_told_once_and_keeps_stored_titles(
    store: Store, server: FeedServer, page: Any, content_type: str, kind: dict[str, Any]
) -> None:
    route = server.route("/l", body=page(TITLES, redesigned=False), content_type=content_type)
    config = with_ops([{"id": "s", "url": server.url("/l"), **kind}])
    clock = Clock()
    poll_and_check(config, store, clock)
    assert kept(store) == (None, None)
    # the redesign: every title is lost, and a fourth report arrives
    route.body = page([*TITLES, "Report four"], redesigned=True)
    poll_and_check(config, store, clock, times=3)
    status, reason = kept(store)
    assert status == "broken" and "4 of 4 lack a title" in (reason or "")
    (notice,) = ops_notices(store)  # three polls, one notice
    assert "source s is unhealthy (broken)" in notice[0]
    titles = {(i.url or "").rsplit("/n/")[-1]: i.title for i in store.iter_items()}
    assert [titles[n] for n in "123"] == TITLES  # as found
    assert titles["4"] == "(untitled)"  # found without one
    assert not any(store.item_revisions(i.key) for i in store.iter_items())


# --------------------------------------------------------------------------- intermittent problems

CHALLENGE = b"<html><head><title>Just a moment...</title></head><body>cf-chl-</body></html>"
MOVED_AWAY = {"status": 301, "body": b"", "headers": {"Location": "/elsewhere"}}


@pytest.mark.parametrize(
    ("bad", "status"),
    [
        ({"body": CHALLENGE, "content_type": "text/html"}, "blocked"),
        (MOVED_AWAY, "moved"),
    ],
    ids=["challenge", "redirect"],
)
def test_a_problem_that_comes_and_goes_is_one_episode_and_one_message(
    store: Store, server: FeedServer, bad: dict[str, Any], status: str
) -> None:
    good = {"status": 200, "body": rss([("A", "https://e.org/a")]), "headers": {}}
    good["content_type"] = "application/rss+xml"
    server.route("/elsewhere", **good)
    route = server.route("/f", **good)
    config = with_ops([feed_source(server, "s", "/f")])
    clock = Clock()

    def serve(answer: dict[str, Any]) -> None:
        for name, value in {**good, **answer}.items():
            setattr(route, name, value)

    for n in range(6):  # bad, good, bad, good…
        serve(bad if n % 2 == 0 else good)
        poll_and_check(config, store, clock)
    assert kept(store)[0] == status
    assert [s for s, _ in ops_notices(store)] == [f"watcher: source s is unhealthy ({status})"]
    serve(good)
    poll_and_check(config, store, clock, times=health.RECOVERY_POLLS - 2)  # with the last: N-1
    assert kept(store)[0] == status
    poll_and_check(config, store, clock)
    assert kept(store) == (None, None)
    assert [s for s, _ in ops_notices(store)][1:] == ["watcher: source s recovered"]
    serve(bad)  # a new episode: told at once
    poll_and_check(config, store, clock)
    assert [s for s, _ in ops_notices(store)][2:] == [f"watcher: source s is unhealthy ({status})"]


# --------------------------------------------------------------------------- overlapping feeds


def test_items_another_source_stored_first_are_new_to_the_source_that_carries_them(
    store: Store, server: FeedServer
) -> None:
    """Two feeds of one outlet that overlap: the second's items are stored already, but its
    last new item is when it first carried them, not "never" (and later "no item at all")."""
    server.route("/f", body=undated(rss([("A", "https://e.org/a"), ("B", "https://e.org/b")])))
    first = with_ops([feed_source(server, "s", "/f")])
    both = with_ops([feed_source(server, "s", "/f"), feed_source(server, "dup", "/f")])
    clock = Clock()
    poll_and_check(first, store, clock)
    carried_at = clock()
    poll_and_check(both, store, clock)
    dup = store.source_state("dup")
    assert dup is not None and dup.last_new_at == carried_at
    poll_and_check(both, store, clock)  # the same items again: nothing new
    dup = store.source_state("dup")
    assert dup is not None and dup.last_new_at == carried_at
    clock.advance(days=15)
    poll_and_check(both, store, clock)
    status, reason = kept(store, "dup")
    assert status == "stale" and "no new item since" in (reason or "")


def dated(*entries: tuple[str, str]) -> bytes:
    """A feed of (title, pubDate) entries."""
    bodies = [rss([(title, f"https://e.org/{title}")], pub=pub) for title, pub in entries]
    items = b"".join(re.search(rb"<item>.*</item>", b, re.S).group(0) for b in bodies)  # type: ignore[union-attr]
    return bodies[0].replace(re.search(rb"<item>.*</item>", bodies[0], re.S).group(0), items)  # type: ignore[union-attr]


#: T0 (09:00 UTC) as a site that labels Seoul's time +0000 writes it: nine hours ahead.
AHEAD = "Mon, 23 Nov 2026 18:00:00 +0000"


def test_a_date_after_the_fetch_is_stored_as_the_fetch_time_and_told_once_per_poll(
    store: Store, server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    route = server.route("/f", body=dated(("A", AHEAD), ("B", "Mon, 23 Nov 2026 08:00:00 +0000")))
    config = with_ops([feed_source(server, "s", "/f")])
    clock = Clock()
    with caplog.at_level(logging.WARNING, logger="watcher"):
        poll_and_check(config, store, clock)
        poll_and_check(config, store, clock)  # the same body: nothing new, nothing told
    with store.engine.connect() as conn:
        rows = {
            r.title: r
            for r in conn.execute(
                select(
                    t.items.c.title,
                    t.items.c.published_at,
                    t.items.c.published_raw,
                    t.items.c.fetched_at,
                )
            )
        }
    assert rows["A"].published_at == rows["A"].fetched_at == T0
    assert rows["A"].published_raw == AHEAD  # the date given, as written
    assert rows["B"].published_at == datetime(2026, 11, 23, 8, tzinfo=UTC)
    # the fetch time says nothing of how old the news is: B is the newest published
    state = store.source_state("s")
    assert state is not None and state.newest_published_at == rows["B"].published_at
    told = [r.getMessage() for r in caplog.records if "dated after they were fetched" in r.message]
    assert told == [
        f"s: 1 new item(s) dated after they were fetched (first: {AHEAD!r}, fetched "
        "2026-11-23 09:00 UTC): stored with the fetch time as their publication time; if the "
        "dates are all ahead by the same hours, the site writes its local time as another "
        "zone's"
    ]
    route.body = dated(("C", "Tue, 24 Nov 2026 09:00:00 +0000"), ("D", AHEAD), ("A", AHEAD))
    with caplog.at_level(logging.WARNING, logger="watcher"):
        poll_and_check(config, store, clock)
    told = [r.getMessage() for r in caplog.records if "dated after they were fetched" in r.message]
    assert len(told) == 2 and told[1].startswith("s: 2 new item(s) dated after they were fetched")

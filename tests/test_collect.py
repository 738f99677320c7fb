"""Collecting end to end against a real local HTTP server, on SQLite and PostgreSQL:
conditional GET, faults recorded per source, baseline, stored once, backoff."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.helpers import T0, Clock, config_for, cycle, feed_source, rss
from tests.httpserver import FeedServer
from watcher import health
from watcher.fetch import Fetcher, FetchLimits, FetchRequest
from watcher.store import Store


@pytest.fixture
def server():
    with FeedServer() as s:
        yield s


def test_conditional_get_second_cycle_parses_nothing(store: Store, server: FeedServer) -> None:
    server.route("/f", body=rss([("A", "https://e.org/a"), ("B", "https://e.org/b")]), etag='"v1"')
    config = config_for([feed_source(server, "s", "/f")])
    reports, requests = cycle(config, store)
    assert reports["s"].outcome == "ok" and reports["s"].new == 2
    reports, requests = cycle(config, store)
    assert requests == 1
    assert reports["s"].outcome == "not_modified" and reports["s"].parsed == 0
    assert server.hits("/f")[-1].headers.get("If-None-Match") == '"v1"'
    assert store.item_count() == 2


def test_unchanged_body_without_validators_is_not_parsed(store: Store, server: FeedServer) -> None:
    server.route("/f", body=rss([("A", "https://e.org/a")]))
    config = config_for([feed_source(server, "s", "/f")])
    cycle(config, store)
    reports, _ = cycle(config, store)
    assert reports["s"].outcome == "unchanged" and reports["s"].parsed == 0


def test_first_poll_is_baseline_later_items_are_not(store: Store, server: FeedServer) -> None:
    route = server.route("/f", body=rss([("Old", "https://e.org/old")]))
    config = config_for([feed_source(server, "s", "/f")])
    cycle(config, store)
    route.body = rss([("New", "https://e.org/new"), ("Old", "https://e.org/old")])
    reports, _ = cycle(config, store)
    assert reports["s"].new == 1
    flags = {i.title: i.baseline for i in store.iter_items()}
    assert flags == {"Old": True, "New": False}


def test_item_on_two_sources_is_stored_once(store: Store, server: FeedServer) -> None:
    server.route("/a", body=rss([("Same story", "https://E.org/story?utm_source=rss#top")]))
    server.route("/b", body=rss([("Same story", "https://e.org/story")]))
    config = config_for([feed_source(server, "a", "/a"), feed_source(server, "b", "/b")])
    cycle(config, store)
    assert store.item_count() == 1
    (item,) = store.iter_items()
    assert item.url == "https://e.org/story"
    assert sorted(store.item_sources("https://e.org/story")) == ["a", "b"]


FAULTS = {
    "server-error": ({"status": 500}, "HTTP 500 Internal Server Error (after 2 attempts)"),
    "not-found": ({"status": 404}, "HTTP 404 Not Found"),
    "garbage": (
        {"body": bytes(range(256)) * 40, "content_type": "application/octet-stream"},
        "not an RSS or Atom feed",
    ),
    "html-page": (
        {
            "body": b"<!DOCTYPE html><html><body><a href='/rss/a.xml'>RSS</a></body></html>",
            "content_type": "text/html; charset=UTF-8",
        },
        "got an HTML page, not a feed (content-type text/html; charset=UTF-8)",
    ),
    "invalid-utf8": (
        {
            "body": b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0">'
            b"<channel><item><title>\xff\xfe bad \xc3</title>"
            b"<link>https://e.org/x</link></item></channel></rss>"
        },
        None,
    ),
    "too-large": ({"stream_bytes": 3 * 1024 * 1024}, "response over the 1 MiB limit"),
    "declared-too-large": (
        {"body": b"x" * (1024 * 1024 + 10)},
        "response of 1,048,586 bytes is over the 1 MiB limit",
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_fault_is_recorded_on_its_source_and_the_cycle_goes_on(
    store: Store, server: FeedServer, fault: str
) -> None:
    route_kw, expected = FAULTS[fault]
    server.route("/bad", **route_kw)
    server.route("/good", body=rss([("Fine", "https://e.org/fine")]))
    config = config_for(
        [feed_source(server, "bad", "/bad"), feed_source(server, "good", "/good")], max_body="1MiB"
    )
    reports, _ = cycle(config, store)
    assert reports["good"].outcome == "ok" and reports["good"].new == 1
    state = store.source_states()["bad"]
    if expected is None:  # invalid UTF-8 is decoded with replacement, not a failure
        assert reports["bad"].outcome == "ok"
        (item,) = [i for i in store.iter_items() if i.source_id == "bad"]
        assert "bad" in item.title
        return
    assert reports["bad"].outcome == "failed"
    assert state.last_error is not None and state.last_error.startswith(expected)
    assert "\n" not in state.last_error
    assert state.consecutive_failures == 1


def test_no_retry_on_404_but_retry_on_503(store: Store, server: FeedServer) -> None:
    server.route("/gone", status=404)
    server.route("/flaky", statuses=[503], body=rss([("Back", "https://e.org/back")]))
    config = config_for(
        [feed_source(server, "gone", "/gone"), feed_source(server, "flaky", "/flaky")]
    )
    reports, _ = cycle(config, store)
    assert len(server.hits("/gone")) == 1
    assert len(server.hits("/flaky")) == 2
    assert reports["flaky"].outcome == "ok"


def test_retry_after_is_honoured(store: Store, server: FeedServer) -> None:
    server.route(
        "/busy",
        statuses=[429],
        headers={"Retry-After": "1"},
        body=rss([("Later", "https://e.org/later")]),
    )
    config = config_for([feed_source(server, "busy", "/busy")])
    reports, _ = cycle(config, store)
    first, second = server.hits("/busy")
    assert reports["busy"].outcome == "ok"
    assert second.at - first.at >= 0.9


@pytest.mark.parametrize(
    ("status", "asked", "wait", "due_in"),
    [
        pytest.param(429, "3600", "1h", timedelta(hours=1), id="429-an-hour"),
        pytest.param(503, "5400", "1h30m", timedelta(hours=1, minutes=30), id="503-90-minutes"),
        # more than max_backoff (6 h by default, 2 h here): the cap
        pytest.param(429, "86400", "1d", timedelta(hours=2), id="429-a-day-capped"),
    ],
)
def test_retry_after_beyond_the_poll_delays_the_next_poll(
    store: Store, server: FeedServer, status: int, asked: str, wait: str, due_in: timedelta
) -> None:
    """A Retry-After longer than the poll can wait is carried to the next poll (capped at
    max_backoff), and the failure names it; before, the source was polled again at its
    interval and the reason said only the status."""
    server.route("/busy", status=status, headers={"Retry-After": asked})
    config = config_for(
        [feed_source(server, "busy", "/busy", interval="5m")], retries=2, max_backoff="2h"
    )
    clock = Clock()
    reports, _ = cycle(config, store, clock, only_due=True)
    assert len(server.hits("/busy")) == 1  # not retried within the poll either
    phrase = "Too Many Requests" if status == 429 else "Service Unavailable"
    assert reports["busy"].error == f"HTTP {status} {phrase}; asked to wait {wait}"
    state = store.source_states()["busy"]
    assert state.next_due_at == T0 + due_in
    assert state.last_error == reports["busy"].error
    clock.advance(minutes=10)  # the source's interval has passed; the pause has not
    reports, _ = cycle(config, store, clock, only_due=True)
    assert reports == {} and len(server.hits("/busy")) == 1


def test_stalled_source_is_cut_at_its_budget(store: Store, server: FeedServer) -> None:
    server.route("/stall", delay=30, body=rss([]))
    server.route("/good", body=rss([("Fine", "https://e.org/fine")]))
    config = config_for(
        [feed_source(server, "stall", "/stall"), feed_source(server, "good", "/good")],
        source_timeout="1s",
        read_timeout="20s",
    )
    reports, _ = cycle(config, store)  # returns: the 30 s answer is never waited for
    assert reports["good"].outcome == "ok"
    assert reports["stall"].error == "no complete response within the source's 1s budget"


def test_redirect_loop(store: Store, server: FeedServer) -> None:
    server.route("/loop", status=302, headers={"Location": "/loop"})
    config = config_for([feed_source(server, "loop", "/loop")])
    reports, _ = cycle(config, store)
    assert reports["loop"].error == "more than 5 redirects (a redirect loop?)"


@pytest.mark.parametrize(
    ("location", "error"),
    [
        ("http://127.0.0.1:99999/feed", "bad URL: port 99999 is out of range (1-65535)"),
        ("https://ex_ample..org/feed", "bad URL: host 'ex_ample..org' has an empty label"),
    ],
    ids=["port", "host"],
)
def test_a_redirect_to_an_address_no_connection_can_use_is_a_fetch_error(
    store: Store, server: FeedServer, location: str, error: str
) -> None:
    """Not "internal error while polling" with an OverflowError's traceback: the source's own
    failure, recorded like any other."""
    server.route("/moved", status=302, headers={"Location": location})
    config = config_for([feed_source(server, "moved", "/moved")])
    reports, _ = cycle(config, store)
    assert reports["moved"].error == error


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://127.0.0.1:99999/feed", "bad URL: port 99999 is out of range (1-65535)"),
        ("http://127.0.0.1:0/feed", "bad URL: port 0 is out of range (1-65535)"),
        ("https://ex_ample..org/feed", "bad URL: host 'ex_ample..org' has an empty label"),
        ("http://[::1/feed", "bad URL: not a valid address: Invalid IPv6 URL"),
    ],
    ids=["port", "port-0", "host", "ipv6"],
)
async def test_an_address_no_connection_can_use_is_a_fetch_error(url: str, error: str) -> None:
    async with Fetcher(FetchLimits(allow_private=True, retries=0)) as fetcher:
        result = await fetcher.fetch(FetchRequest(source_id="s", url=url))
    assert result.error == error and result.status == 0


def test_entity_bomb_is_not_expanded(store: Store, server: FeedServer) -> None:
    # "billion laughs": 10^9 copies of "lol" if expanded
    lol = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    bomb = (
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY l0 "lol">{lol}]>'
        '<rss version="2.0"><channel><item><title>&l9;</title>'
        "<link>https://e.org/bomb</link></item></channel></rss>"
    )
    server.route("/bomb", body=bomb.encode())
    config = config_for([feed_source(server, "bomb", "/bomb")])
    reports, _ = cycle(config, store)
    assert reports["bomb"].outcome == "ok"
    (item,) = store.iter_items()
    assert len(item.title) < 100 and "lollol" not in item.title


def test_backoff_after_repeated_failures(store: Store, server: FeedServer) -> None:
    server.route("/down", status=500)
    config = config_for(
        [feed_source(server, "down", "/down", interval="10m")], failure_threshold=2, retries=0
    )
    clock = Clock()
    for _ in range(3):
        cycle(config, store, clock)
        clock.advance(hours=1)
    state = store.source_states()["down"]
    assert state.consecutive_failures == 3
    # 3rd failure with threshold 2: 10m × 2^(3-2+1) = 40m
    assert state.next_due_at == T0 + timedelta(hours=2) + timedelta(minutes=40)
    # stored as it is: the count is beside it, the next try is next_due_at (asserted above)
    assert state.last_error == "HTTP 500 Internal Server Error"
    shown = health.assess(
        state,
        enabled=True,
        now=clock.now,
        failure_threshold=2,
        empty_polls=3,
        stale_after=timedelta(days=14),
    )
    assert (shown.status, shown.reason) == (
        "failing",
        "3 failures in a row; last: HTTP 500 Internal Server Error",
    )
    server.route("/down", body=rss([("Up", "https://e.org/up")]))
    cycle(config, store, clock)
    state = store.source_states()["down"]
    assert state.consecutive_failures == 0
    assert state.next_due_at == clock.now + timedelta(minutes=10)


def test_only_due_sources_are_polled(store: Store, server: FeedServer) -> None:
    server.route("/f", body=rss([("A", "https://e.org/a")]))
    config = config_for([feed_source(server, "s", "/f", interval="10m")])
    clock = Clock()
    cycle(config, store, clock, only_due=True)
    clock.advance(minutes=5)
    reports, requests = cycle(config, store, clock, only_due=True)
    assert reports == {} and requests == 0
    clock.advance(minutes=6)
    reports, requests = cycle(config, store, clock, only_due=True)
    assert list(reports) == ["s"]


def test_zero_items_after_some_is_a_failure(store: Store, server: FeedServer) -> None:
    route = server.route("/f", body=rss([("A", "https://e.org/a")]))
    config = config_for([feed_source(server, "s", "/f")])
    cycle(config, store)
    route.body = rss([])
    reports, _ = cycle(config, store)
    assert reports["s"].outcome == "failed"
    assert (
        reports["s"].error == "0 items parsed where the last poll had 1 (layout or feed changed?)"
    )


def test_per_host_limit(store: Store) -> None:
    hosts = [FeedServer("127.0.0.2"), FeedServer("127.0.0.3")]
    sources = []
    with hosts[0], hosts[1]:
        for h, server in enumerate(hosts):
            for n in range(6):
                server.route(
                    f"/f{n}", delay=0.2, body=rss([(f"{h}-{n}", f"https://e.org/{h}/{n}")])
                )
                sources.append(feed_source(server, f"s{h}{n}", f"/f{n}"))
        config = config_for(sources)
        reports, _ = cycle(config, store)
        assert all(r.outcome == "ok" for r in reports.values())
        for server in hosts:
            (peak,) = server.max_active.values()
            assert peak == 2  # in parallel, but never more than per_host
    assert store.item_count() == 12


def test_robots_txt_is_honoured_for_html_sources(store: Store, server: FeedServer) -> None:
    server.route(
        "/robots.txt", body=b"User-agent: *\nDisallow: /private/\n", content_type="text/plain"
    )
    page = b"<html><body><ul><li><a href='/a/1'>One</a></li></ul></body></html>"
    server.route("/private/list", body=page, content_type="text/html")
    server.route("/public/list", body=page, content_type="text/html")
    html = {"kind": "html", "interval": "5m", "selectors": {"item": "li"}}
    config = config_for(
        [
            {"id": "private", "url": server.url("/private/list"), **html},
            {"id": "public", "url": server.url("/public/list"), **html},
            {"id": "ignore", "url": server.url("/private/list"), "robots": False, **html},
        ]
    )
    reports, _ = cycle(config, store)
    assert reports["private"].error == (
        f"disallowed by http://127.0.0.1:{server.port}/robots.txt (set robots: false to override)"
    )
    assert reports["public"].outcome == "ok"
    assert reports["ignore"].outcome == "ok"
    assert len(server.hits("/robots.txt")) == 1
    assert len(server.hits("/private/list")) == 1  # only the source with robots: false


def test_user_agent_names_contact(store: Store, server: FeedServer) -> None:
    server.route("/f", body=rss([("A", "https://e.org/a")]))
    config = config_for([feed_source(server, "s", "/f")], contact="mailto:ops@ngo.example")
    cycle(config, store)
    assert server.hits("/f")[0].headers["User-Agent"].endswith("(+mailto:ops@ngo.example)")


def test_fetch_article_for_new_items_only_and_bounded(store: Store, server: FeedServer) -> None:
    article = (
        "<html><head><title>x</title></head><body><nav>menu</nav><article><h1>Detained</h1>"
        + "".join(
            f"<p>Chinese police detained a group of North Korean escapees near the "
            f"border, sentence {n} of a long report with enough words.</p>"
            for n in range(12)
        )
        + "</article><footer>footer</footer></body></html>"
    ).encode()
    for n in range(4):
        server.route(f"/art/{n}", body=article, content_type="text/html; charset=utf-8")
    route = server.route("/f", body=rss([("Old", server.url("/art/0"))]))
    config = config_for([feed_source(server, "s", "/f", fetch_article=True, max_articles=2)])
    cycle(config, store)  # baseline: no article fetched
    assert server.hits("/art/0") == []
    route.body = rss(
        [(f"New {n}", server.url(f"/art/{n}")) for n in range(1, 4)]
        + [("Old", server.url("/art/0"))]
    )
    cycle(config, store)
    fetched = [n for n in range(4) if server.hits(f"/art/{n}")]
    assert fetched == [1, 2]
    texts = {i.title: i.text for i in store.iter_items()}
    assert "sentence 11 of a long report" in texts["New 1"]
    assert texts["New 3"] == "New 3 lead"


#: One entry between two good ones carrying a NUL or an escape where no text cleaning reaches
#: it (the id behind its key, its declared language, its link's host): PostgreSQL refuses a
#: NUL in any text column, so such a value once failed the whole source, every poll.
GOOD_ENTRY = "<item><title>Good {n}</title><link>https://e.org/{n}</link></item>"
CONTROLLED = {
    "feed-guid": (
        "feed",
        '<item><title>Bad</title><guid isPermaLink="false">g&#0;x&#27;[31m</guid></item>',
    ),
    "feed-link-host": ("feed", "<item><title>Bad</title><link>https://e&#0;.org/b</link></item>"),
    "feed-language": ("feed-lang", "<item><title>Bad</title><link>https://e.org/b</link></item>"),
    "json-id-and-lang": ("json", {"t": "Bad", "id": "g\u0000x\u001b[2J", "lang": "en\u0000"}),
    "json-link-host": ("json", {"t": "Bad", "u": "https://e\u0000.org/b", "lang": "\u001b]0;x"}),
    "json-surrogate-id": ("json", {"t": "Bad", "id": "g\ud800x"}),
}


@pytest.mark.parametrize("case", list(CONTROLLED))
def test_a_control_character_in_an_entry_never_costs_the_source(
    store: Store, server: FeedServer, case: str
) -> None:
    kind, bad = CONTROLLED[case]
    if kind == "json":
        good = [{"t": f"Good {n}", "u": f"https://e.org/{n}", "lang": "en"} for n in (1, 2)]
        body = json.dumps({"data": [good[0], bad, good[1]]}).encode()
        server.route("/s", body=body, content_type="application/json")
        fields = {"title": "t", "url": "u", "id": "id", "lang": "lang"}
        source = feed_source(server, "s", "/s", kind="json", items="data", fields=fields)
    else:
        language = "<language>e&#0;n&#27;[2J</language>" if kind == "feed-lang" else ""
        entries = GOOD_ENTRY.format(n=1) + str(bad) + GOOD_ENTRY.format(n=2)
        body = f'<rss version="2.0"><channel>{language}{entries}</channel></rss>'.encode()
        server.route("/s", body=body)
        source = feed_source(server, "s", "/s")
    reports, _ = cycle(config_for([source]), store)
    assert reports["s"].outcome == "ok", reports["s"].error
    stored = {i.title: i for i in store.iter_items()}
    assert sorted(stored) == ["Bad", "Good 1", "Good 2"]
    bad_item = stored["Bad"]
    for value in (bad_item.key, bad_item.url or "", bad_item.lang or ""):
        assert value.isprintable(), repr(value)
    assert bad_item.lang == "en"  # a declared language that is no tag: detected instead


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"[" * 200_000 + b"]" * 200_000, "not JSON: arrays or objects nested too deeply to read"),
    ],
    ids=["nested-too-deep"],
)
def test_json_python_refuses_fails_its_source_in_one_line(
    store: Store, server: FeedServer, caplog: pytest.LogCaptureFixture, body: bytes, said: str
) -> None:
    server.route("/api", body=body, content_type="application/json")
    fields = {"title": "t", "url": "u"}
    source = feed_source(server, "api", "/api", kind="json", items="data", fields=fields)
    reports, _ = cycle(config_for([source], max_body="1MiB"), store)
    assert reports["api"].outcome == "failed" and reports["api"].error == said
    assert store.source_states()["api"].last_error == said
    assert not [r for r in caplog.records if r.exc_info or "internal error" in r.getMessage()]

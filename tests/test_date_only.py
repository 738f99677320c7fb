"""Reports whose outlet gave only a day ("2026-11-20", "Nov 20, 2026", "2026년 11월 20일"): which
written dates give no time of day, the first report of a story (such a report counts as
published at its day's end), and how every view shows one (its day as written, said to have
no time, never the stored midnight as a clock time). The stories are stored on SQLite and
PostgreSQL; the texts are written for the tests (no real reporting)."""

from __future__ import annotations

import html
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import feedparser
import pytest
from bs4 import BeautifulSoup
from starlette.testclient import TestClient

from tests.messages import FAMILY, RULE_AND_CHANNELS, T0, queue, seen, send_due
from watcher import render
from watcher.items import date_only, make_item, parse_date, written_day
from watcher.outbox import Outbox
from watcher.store import Store
from watcher.store.stories import by_time, first_report
from watcher.types import AlertView, Item, Report, StoredReport

DAY = date(2026, 11, 20)

# --------------------------------------------------------------------------- written dates

#: (a date as an outlet writes it, the day it gives when it gives no time of day, else None)
WRITTEN = [
    # ISO
    ("2026-11-20", DAY),
    (" 2026-11-20 ", DAY),
    ("20261120", DAY),
    ("2026-11-20T00:00:00Z", None),  # a written midnight is a time: nobody can tell
    ("2026-11-20T00:00:00+09:00", None),
    ("2026-11-20 00:00", None),
    ("2026-11-20T14:05:00Z", None),
    ("2026-11-20T14", None),
    ("2026-11-20T14:05:00.123456+00:00", None),
    # RFC 822 and other English forms
    ("Fri, 20 Nov 2026", DAY),
    ("Fri, 20 Nov 2026 00:00:00 +0000", None),
    ("Fri, 20 Nov 2026 14:05:00 GMT", None),
    ("20 Nov 2026", DAY),
    ("20 November 2026", DAY),
    ("Nov 20, 2026", DAY),
    ("November 20, 2026", DAY),
    ("Friday, November 20, 2026", DAY),
    ("November 20, 2026 2 pm", None),
    ("November 20, 2026 2:05 p.m.", None),
    ("20 Nov 2026 12:00 AM", None),
    ("11/20/2026", DAY),
    ("2026/11/20", DAY),
    # Korean
    ("2026년 11월 20일", DAY),
    ("2026년 11월 20일 (금)", DAY),
    ("2026. 11. 20.", DAY),
    ("2026.11.20", DAY),
    ("2026.11.20 14:05", None),
    ("2026년 11월 20일 오후 2시 5분", None),
    ("2026년 11월 20일 0시", None),
    ("2026-11-20 오전 9:30", None),
    # Chinese and Japanese
    ("2026年11月20日", DAY),
    ("２０２６年１１月２０日", DAY),  # fullwidth digits
    ("2026年11月20日 14時", None),
    ("2026年11月20日 14时05分", None),
    ("2026年11月20日14:05", None),
    ("2026年11月20日 下午", None),
    # no date at all
    (None, None),
    ("", None),
    ("   ", None),
    ("3 hours ago", None),
    ("not a date", None),
]


@pytest.mark.parametrize(("raw", "day"), WRITTEN, ids=[repr(raw) for raw, _ in WRITTEN])
def test_a_written_date_gives_its_day_alone_or_a_time(raw: str | None, day: date | None) -> None:
    assert written_day(raw) == day
    assert date_only(raw) is (day is not None)
    if day is not None:
        # what is stored is that day's midnight where the source is: the day's end (the
        # first report's rule) is a day later, in any zone
        for zone in ("UTC", "Asia/Seoul", "America/New_York"):
            assert parse_date(raw, zone) == datetime(2026, 11, 20, tzinfo=ZoneInfo(zone))


# --------------------------------------------------------------------------- the first report


def stored(source_id: str, published: datetime | None, day: date | None = None) -> StoredReport:
    return StoredReport(
        item_id=hash(source_id) % 1000,
        key=source_id,
        source_id=source_id,
        title=source_id,
        url=None,
        lang="en",
        published_at=published,
        fetched_at=datetime(2026, 11, 21, 12, tzinfo=UTC),
        added_at=datetime(2026, 11, 21, 12, tzinfo=UTC),
        published_day=day,
    )


MIDNIGHT = datetime(2026, 11, 20, tzinfo=UTC)
#: (the reports in the order they joined, the sources by publication, first first)
ORDERS = [
    pytest.param(
        [stored("day", MIDNIGHT, DAY), stored("timed", MIDNIGHT + timedelta(hours=14))],
        ["timed", "day"],
        id="a time that day comes before the day alone",
    ),
    pytest.param(
        [stored("day", MIDNIGHT, DAY), stored("timed", MIDNIGHT + timedelta(hours=23, minutes=59))],
        ["timed", "day"],
        id="even at 23:59",
    ),
    pytest.param(
        [stored("day", MIDNIGHT, DAY), stored("zero", MIDNIGHT)],
        ["zero", "day"],
        id="a written 00:00 is a time",
    ),
    pytest.param(
        [stored("timed", MIDNIGHT + timedelta(days=1)), stored("day", MIDNIGHT, DAY)],
        ["day", "timed"],
        id="an earlier day alone comes before the next day's midnight",
    ),
    pytest.param(
        [stored("timed", MIDNIGHT + timedelta(days=2, hours=1)), stored("day", MIDNIGHT, DAY)],
        ["day", "timed"],
        id="an earlier day alone comes first",
    ),
    pytest.param(
        [
            stored("seoul-day", datetime(2026, 11, 19, 15, tzinfo=UTC), DAY),  # 20th in Seoul
            stored("timed", datetime(2026, 11, 20, 6, 30, tzinfo=UTC)),  # 15:30 in Seoul
        ],
        ["timed", "seoul-day"],
        id="the day ends where the source wrote it",
    ),
    pytest.param(
        [stored("a", MIDNIGHT, DAY), stored("b", MIDNIGHT, DAY)],
        ["a", "b"],
        id="two days alone: in the order they joined",
    ),
    pytest.param(
        [stored("day", MIDNIGHT, DAY), stored("undated", None)],
        ["day", "undated"],
        id="an undated report by its fetch time",
    ),
]


@pytest.mark.parametrize(("joined", "expected"), ORDERS)
def test_a_report_of_a_day_alone_counts_as_published_at_its_end(
    joined: list[StoredReport], expected: list[str]
) -> None:
    assert [r.source_id for r in by_time(joined)] == expected
    first = first_report(joined)
    assert first is not None and first.source_id == expected[0]


# --------------------------------------------------------------------------- stored stories

SOURCES = """\
sources:
  - {id: dailynk, name: Daily NK, kind: feed, url: "https://e.org/d", lang: en}
  - {id: rfa, name: RFA, kind: feed, url: "https://e.org/r", lang: en}
"""
ROUTES = """\
routes:
  - {id: now, channels: [tg], group_wait: 0s}
settings:
  timezone: Asia/Seoul
"""
#: RFA's time: 15:30 in Seoul on the day Daily NK gave alone.
RFA_AT = datetime(2026, 11, 20, 6, 30, tzinfo=UTC)
DAILY_NK_TITLE = "China repatriates 60 North Korean defectors"
RFA_TITLE = "Sixty North Koreans repatriated from Dandong"
#: How each locale says Daily NK's day (`render.WORDS`).
DAY_SHOWN = {"en": "2026-11-20 (no time given)", "ko": "2026년 11월 20일 (시각 미상)"}
#: Where each source zone puts Daily NK's midnight: no view may show it as a clock time.
MIDNIGHTS = {
    "UTC": ("09:00", "00:00", "19:00"),  # in Seoul, UTC, New York
    "Asia/Seoul": ("00:00", "15:00", "10:00"),
    "America/New_York": ("14:00", "05:00", "00:00"),
}


def reports(zone: str) -> list[Item]:
    """Daily NK's report dated "2026-11-20" (read in `zone`, the source's), and RFA's with a
    time that day: made by the parsers' `make_item`, as a poll makes them."""
    common: dict[str, Any] = {"lang": "en", "zone": zone, "fetched_at": T0}
    return [
        make_item(
            source_id="dailynk",
            title=DAILY_NK_TITLE,
            link="https://d.org/1",
            summary="Chinese police repatriated 60 North Koreans.",
            date_raw="2026-11-20",
            **common,
        ),
        make_item(
            source_id="rfa",
            title=RFA_TITLE,
            link="https://r.org/1",
            summary="Sixty North Koreans were repatriated.",
            date_raw="2026-11-20T06:30:00Z",
            **common,
        ),
    ]


def stored_view(store: Store, zone: str) -> tuple[Any, AlertView]:
    """The story of `reports(zone)` stored and queued; the config and the alert's view."""
    config = queue(store, SOURCES + RULE_AND_CHANNELS + ROUTES, reports(zone))
    outbox = Outbox(store)
    (delivery,) = outbox.listing()
    found = outbox.view(delivery, {s.id: s.display_name for s in config.sources})
    assert found is not None
    return config, found[0]


ZONES = list(MIDNIGHTS)


def no_midnight(text: str, zone: str) -> None:
    for clock in MIDNIGHTS[zone]:
        assert not re.search(rf"\b{clock}\b", text), (clock, text)


@pytest.mark.parametrize("zone", ZONES)
def test_a_stored_report_carries_the_day_its_outlet_gave(store: Store, zone: str) -> None:
    _, view = stored_view(store, zone)
    assert (view.first.source_id, view.first.published_day) == ("rfa", None)
    (other,) = view.others
    assert (other.source_id, other.published_day) == ("dailynk", DAY)
    assert other.published_at == parse_date("2026-11-20", zone)  # the midnight, kept as stored


@pytest.mark.parametrize("fmt", list(FAMILY))
@pytest.mark.parametrize("locale", ["en", "ko"])
@pytest.mark.parametrize("zone", ZONES)
def test_an_alert_names_the_timed_report_first_and_shows_the_day_alone(
    store: Store, zone: str, locale: str, fmt: str
) -> None:
    _, view = stored_view(store, zone)
    for tz in ("Asia/Seoul", "America/New_York"):
        message = render.render_alert(view, fmt, tz, locale=locale)
        body = html.unescape(seen(fmt, message.body)).replace("\u00a0", " ")
        assert RFA_TITLE in body and "Daily NK" in body, body
        assert body.index(RFA_TITLE) < body.index("Daily NK"), body  # RFA is first
        (line,) = [x for x in body.splitlines() if "Daily NK" in x]
        assert DAY_SHOWN[locale] in line, line
        no_midnight(line, zone)
        rfa = "15:30 KST" if tz == "Asia/Seoul" else "01:30 EST"
        assert rfa in body, body


def test_the_sent_message_names_the_timed_report_first(store: Store) -> None:
    config, _ = stored_view(store, "UTC")
    sent = send_due(store, config, T0 + timedelta(hours=1))
    body = html.unescape(seen("telegram", sent["tgram://1:abc/2"].body))
    assert re.search(r"First: RFA \(en\) · (2026-11-20 )?15:30 KST", body), body
    assert "Daily NK (en) · 2026-11-20 (no time given)" in body, body
    assert "09:00" not in body


#: Daily NK's report of 2026-11-20, a day alone (stored as midnight in Seoul).
DAY_ONLY = Report(
    source_id="dailynk",
    source_name="Daily NK",
    title=DAILY_NK_TITLE,
    published_at=datetime(2026, 11, 19, 15, tzinfo=UTC),
    published_day=DAY,
)


def story_view(kind: str, first: Report, *others: Report) -> AlertView:
    return AlertView(
        story_id=1,
        revision=3,
        kind=kind,
        severity="high",
        events=("forced_repatriation",),
        rules=(),
        first=first,
        others=others,
    )


def test_a_day_alone_shows_no_clock_in_a_digest() -> None:
    view = story_view("alert", DAY_ONLY)
    for locale in ("en", "ko"):
        digest = render.render_digest([view], "now", "text", "America/New_York", locale=locale)
        assert f"Daily NK · {DAY_SHOWN[locale]}" in digest.body, digest.body
        assert "10:00" not in digest.body


def test_a_digest_lists_a_day_alone_at_its_end_newest_first() -> None:
    """Daily NK's day alone (2026-11-20 in Seoul) counts at its end: after RFA's 15:30 KST that
    day, so its story is listed first, newest first."""
    timed = replace(
        DAY_ONLY, source_id="rfa", source_name="RFA", title=RFA_TITLE, published_at=RFA_AT,
        published_day=None,
    )  # fmt: skip
    views = [replace(story_view("alert", timed), story_id=2), story_view("alert", DAY_ONLY)]
    for tz in ("Asia/Seoul", "America/New_York"):
        body = render.render_digest(views, "now", "text", tz, locale="en").body
        assert body.index(DAILY_NK_TITLE) < body.index(RFA_TITLE), body


@pytest.mark.parametrize("locale", ["en", "ko"])
@pytest.mark.parametrize(
    ("timed_at", "since"),
    [
        # a time the day before: the day alone is the latest ("since 2026-11-20 (…)")
        (datetime(2026, 11, 18, 6, 30, tzinfo=UTC), None),
        # a time that same day: the day alone counts at its end, so it is still the latest
        (datetime(2026, 11, 20, 5, tzinfo=UTC), None),
        # a time the next day is later
        (datetime(2026, 11, 21, 5, tzinfo=UTC), "14:00 KST"),
    ],
    ids=["a time the day before", "a time that day", "a time the next day"],
)
def test_a_reminder_is_unchanged_since_the_latest_report_a_day_alone_included(
    locale: str, timed_at: datetime, since: str | None
) -> None:
    timed = replace(
        DAY_ONLY, source_id="rfa", source_name="RFA", published_at=timed_at, published_day=None
    )
    view = story_view("reminder", timed, DAY_ONLY)
    body = render.render_alert(view, "text", "Asia/Seoul", locale=locale).body
    head = body.splitlines()[0]
    if since is None:
        assert DAY_SHOWN[locale] in head, head  # not the older timed report, not "revision 3"
    else:
        assert since in head and DAY_SHOWN[locale] not in head, head


# --------------------------------------------------------------------------- the web


def soup(response: Any) -> BeautifulSoup:
    assert response.status_code == 200, response.text
    return BeautifulSoup(response.text, "html.parser")


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("tz", ["", "America/New_York"])
def test_the_pages_feeds_and_api_name_the_timed_report_first_and_show_the_day_alone(
    store: Store, zone: str, tz: str
) -> None:
    from watcher.web import create_app

    config, _ = stored_view(store, zone)
    q = f"?tz={tz}" if tz else ""
    shown = DAY_SHOWN["en"]
    with TestClient(create_app(store, config)) as c:
        card = soup(c.get(f"/{q}")).select_one("article .meta")
        page = soup(c.get(f"/stories/1{q}"))
        atom = c.get(f"/feed.atom{q}")
        json_feed = c.get(f"/feed.json{q}").json()
        (story,) = c.get("/api/stories").json()["stories"]
        one = c.get("/api/stories/1").json()
        items = {i["source"]: i for i in c.get("/api/items?q=repatriated").json()["items"]}
        item_page = soup(c.get(f"/items/{items['dailynk']['id']}{q}"))
        search = soup(c.get(f"/search?q=defectors{'&tz=' + tz if tz else ''}"))

    # the timeline: RFA is first; the event time (Daily NK founded the story) is its day alone
    assert card is not None
    card_text = card.get_text(" ", strip=True)
    assert "First: RFA" in card_text and f"Event {shown}" in card_text, card_text
    no_midnight(card_text, zone)

    # the story page: RFA first, Daily NK with its day alone
    rows = page.select("tr[id^=report-]")
    assert [r.select_one("th").get_text(" ", strip=True).split(" ")[0] for r in rows] == [
        "RFA",
        "Daily",
    ]
    assert rows[1].select("td")[0].get_text(strip=True) == shown
    assert rows[0].select("td")[0].get_text(strip=True) == (
        "2026-11-20 01:30 EST" if tz else "2026-11-20 15:30 KST"
    )

    # the Atom feed: the same lines, RFA first; no <published> from a midnight nobody gave
    parsed = feedparser.parse(atom.content)
    assert not parsed.bozo, parsed.get("bozo_exception")
    (entry,) = parsed.entries
    text = entry.content[0].value
    assert text.index("RFA") < text.index("Daily NK"), text
    assert f"Daily NK (en) · {shown}" in text, text
    no_midnight(text, zone)
    assert "published" not in entry and "<published>" not in atom.text
    (json_entry,) = json_feed["items"]
    assert f"• Daily NK (en), {shown}: {DAILY_NK_TITLE}" in json_entry["content_text"]
    assert "date_published" not in json_entry

    # the API: RFA first, each report's precision, the day as written
    assert story["first_source"] == one["first_source"] == "rfa"
    for found in (story, one):
        by_source = {r["source"]: r for r in found["reports"]}
        assert by_source["dailynk"]["published_precision"] == "day"
        assert by_source["dailynk"]["published_day"] == "2026-11-20"
        assert by_source["dailynk"]["published_at"] == parse_date("2026-11-20", zone).isoformat()
        assert by_source["rfa"]["published_precision"] == "time"
        assert by_source["rfa"]["published_day"] is None
        assert [r["source"] for r in found["reports"]] == ["rfa", "dailynk"]
    assert story["event_precision"] == "day" and story["event_day"] == "2026-11-20"
    assert items["dailynk"]["published_precision"] == "day"
    assert items["rfa"]["published_precision"] == "time"

    # the item page and search show the day alone too
    meta = item_page.select_one(".meta")
    assert meta is not None and f"published {shown}" in meta.get_text(" ", strip=True)
    hits = [td.get_text(strip=True) for td in search.select("tr.hit td:first-child")]
    assert shown in hits, hits


def test_an_undated_report_has_no_precision(store: Store) -> None:
    from watcher.web import create_app

    undated = [replace(i, published_at=None, published_raw=None) for i in reports("UTC")]
    config = queue(store, SOURCES + RULE_AND_CHANNELS + ROUTES, undated)
    with TestClient(create_app(store, config)) as c:
        stories = c.get("/api/stories").json()["stories"]
    # undated and naming no day, they are two stories: each without a precision
    assert len(stories) == 2
    for story in stories:
        assert {r["published_precision"] for r in story["reports"]} == {None}
        assert {r["published_day"] for r in story["reports"]} == {None}
        assert story["event_precision"] is None and story["event_day"] is None


# --------------------------------------------------------------------------- since and until

#: Page zones from the westernmost to the easternmost: in each, Daily NK's stored midnight
#: (in any source zone) may fall on another day than the one it shows.
PAGE_ZONES = ["Pacific/Pago_Pago", "America/New_York", "UTC", "Asia/Seoul", "Pacific/Kiritimati"]
#: (since, until, whether Daily NK's report of 2026-11-20 is in that period)
PERIODS = [
    pytest.param("2026-11-20", "2026-11-20", True, id="its day"),
    pytest.param("2026-11-20", "", True, id="since its day"),
    pytest.param("", "2026-11-20", True, id="until its day"),
    pytest.param("2026-11-19", "2026-11-21", True, id="days around it"),
    pytest.param("2026-11-21", "", False, id="since the next day"),
    pytest.param("", "2026-11-19", False, id="until the day before"),
    pytest.param("2026-11-19", "2026-11-19", False, id="the day before"),
]


@pytest.mark.parametrize(("since", "until", "inside"), PERIODS)
@pytest.mark.parametrize("zone", ZONES)
def test_since_and_until_take_a_day_alone_by_its_day_in_any_zone(
    store: Store, zone: str, since: str, until: str, inside: bool
) -> None:
    from watcher.web import create_app

    config, _ = stored_view(store, zone)
    shown = DAY_SHOWN["en"]
    with TestClient(create_app(store, config)) as c:
        for tz in PAGE_ZONES:
            q = f"since={since}&until={until}&tz={tz}"
            stories = c.get(f"/api/stories?{q}").json()["stories"]
            assert len(stories) == int(inside), (tz, stories)
            items = c.get(f"/api/items?q=repatriated&{q}").json()["items"]
            assert ("dailynk" in {i["source"] for i in items}) is inside, (tz, items)
            found = c.get(f"/api/search?q=defectors&{q}").json()
            assert bool(found["results"]) is inside, (tz, found)
            cards = soup(c.get(f"/?{q}")).select("article .meta")
            assert len(cards) == int(inside), tz
            hits = [td.get_text(strip=True) for td in soup(c.get(f"/search?q=defectors&{q}"))
                    .select("tr.hit td:first-child")]  # fmt: skip
            assert (shown in hits) is inside, (tz, hits)


def one_report(source_id: str, raw: str, zone: str, title: str, text: str) -> Item:
    return make_item(
        source_id=source_id,
        title=title,
        link=f"https://{source_id}.org/{abs(hash(title))}",
        summary=text,
        date_raw=raw,
        lang="en",
        zone=zone,
        fetched_at=T0,
    )


#: (the day an outlet gave alone, the zone it is read in): the first and last of a month,
#: stored at a midnight that some page zone puts in the month before or after.
MONTH_EDGES = [
    pytest.param("2026-11-01", "Asia/Seoul", id="the 1st, east"),
    pytest.param("2026-11-01", "Pacific/Kiritimati", id="the 1st, far east"),
    pytest.param("2026-11-30", "America/New_York", id="the 30th, west"),
    pytest.param("2026-11-30", "Pacific/Pago_Pago", id="the 30th, far west"),
]


@pytest.mark.parametrize(("raw", "zone"), MONTH_EDGES)
def test_the_chart_counts_a_day_alone_in_its_month_in_any_zone(
    store: Store, raw: str, zone: str
) -> None:
    from watcher.store.views import Filters, Views

    report = one_report(
        "dailynk", raw, zone, DAILY_NK_TITLE, "Police repatriated 60 North Koreans."
    )
    queue(store, SOURCES + RULE_AND_CHANNELS + ROUTES, [report])
    views = Views(store)
    now = datetime(2027, 1, 15, tzinfo=UTC)
    for tz in PAGE_ZONES:
        chart = views.monthly(Filters(zone=ZoneInfo(tz)), ZoneInfo(tz), now=now)
        counted = {month: sum(c.values()) for month, c in chart.months if c}
        assert counted == {"2026-11": 1}, (tz, counted)
        for since, until in [("2026-11-01", "2026-11-30"), ("2026-10-01", "2026-12-31")]:
            period = Filters(
                since=datetime.fromisoformat(since).replace(tzinfo=ZoneInfo(tz)),
                until=datetime.fromisoformat(until).replace(tzinfo=ZoneInfo(tz))
                + timedelta(days=1),
                zone=ZoneInfo(tz),
            )
            chart = views.monthly(period, ZoneInfo(tz), now=now)
            counted = {month: sum(c.values()) for month, c in chart.months if c}
            assert counted == {"2026-11": 1}, (tz, since, counted)


@pytest.mark.parametrize("zone", ZONES)
def test_lists_place_a_day_alone_at_its_end_newest_first(store: Store, zone: str) -> None:
    """The timeline (pages, feeds, API) puts a story dated by its day alone after one with a
    time that day, as the stories order their reports (`types.counted_at`)."""
    from watcher.web import create_app

    timed = one_report(
        "rfa",
        "2026-11-20T23:00:00" + datetime(2026, 11, 20, tzinfo=ZoneInfo(zone)).strftime("%z"),
        zone,
        "Three North Korean women repatriated from Hyesan",
        "Three North Korean women were repatriated from Hyesan after a raid.",
    )
    day = one_report(
        "dailynk",
        "2026-11-20",
        zone,
        DAILY_NK_TITLE,
        "Police repatriated 60 North Koreans in Dandong.",
    )
    config = queue(store, SOURCES + RULE_AND_CHANNELS + ROUTES, [timed, day])
    with TestClient(create_app(store, config)) as c:
        stories = c.get("/api/stories").json()["stories"]
        assert [s["first_source"] for s in stories] == ["dailynk", "rfa"], stories
        feed = c.get("/feed.json").json()["items"]
        assert DAILY_NK_TITLE in feed[0]["title"], [i["title"] for i in feed]


# --------------------------------------------------------------------------- commands


#: A feed whose one item gives its day alone, as Daily NK's does.
DAY_FEED = (
    '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>T</title>'
    f"<item><title>{DAILY_NK_TITLE}</title><link>https://d.org/1</link>"
    "<pubDate>2026-11-20</pubDate><description>Police repatriated 60.</description>"
    "</item></channel></rss>"
).encode()


@pytest.mark.e2e
@pytest.mark.parametrize("zone", ZONES)
def test_sources_test_shows_a_day_alone_without_a_clock(tmp_path: Path, zone: str) -> None:
    from tests.helpers import watcher
    from tests.httpserver import FeedServer

    with FeedServer() as server:
        server.route("/feed", body=DAY_FEED)
        cfg = tmp_path / "sources.yaml"
        cfg.write_text(
            f"sources:\n  - {{id: d, kind: feed, url: '{server.url('/feed')}', lang: en,"
            f" timezone: {zone}}}\n"
            "settings: {retries: 0, allow_private_addresses: true, timezone: Asia/Seoul}\n"
        )
        for utc in ([], ["--utc"]):
            done = watcher("--config", str(cfg), *utc, "sources", "test", "d")
            assert done.returncode == 0, done.stderr
            (line,) = [x for x in done.stdout.splitlines() if DAILY_NK_TITLE in x]
            assert line.startswith(f"{DAY_SHOWN['en']}  en"), line
            no_midnight(line, zone)


def machine_fields(row: dict[str, Any]) -> tuple[Any, Any]:
    return row["published_precision"], row["published_day"]


#: (source, its published_precision and published_day in every machine output)
PRECISIONS = {"dailynk": ("day", "2026-11-20"), "rfa": ("time", None)}


@pytest.mark.e2e
@pytest.mark.parametrize("zone", ZONES)
def test_exports_give_a_day_alone_its_precision_and_day(
    store: Store, db_url: str, tmp_path: Path, zone: str
) -> None:
    import csv
    import io
    import json

    from tests.helpers import watcher

    queue(store, SOURCES + RULE_AND_CHANNELS + ROUTES, reports(zone))
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(SOURCES + RULE_AND_CHANNELS + ROUTES)

    def run(*args: str) -> str:
        done = watcher("--config", str(cfg), "--db", db_url, "export", *args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    lines = [json.loads(x) for x in run("items").splitlines()]
    assert {r["source"]: machine_fields(r) for r in lines} == PRECISIONS
    rows = list(csv.DictReader(io.StringIO(run("items", "--format", "csv"))))
    assert {r["source"]: machine_fields(r) for r in rows} == {
        "dailynk": ("day", "2026-11-20"),
        "rfa": ("time", ""),
    }
    (story,) = [json.loads(x) for x in run("alerts").splitlines()]
    assert {r["source"]: machine_fields(r) for r in story["items"]} == PRECISIONS
    labels = [json.loads(x) for x in run("labels", "--all-stories").splitlines()]
    # the day the outlet gave, not its stored midnight's day in UTC
    assert {r["source"]: r["published"] for r in labels} == {
        "dailynk": "2026-11-20",
        "rfa": "2026-11-20",
    }


@pytest.mark.parametrize("zone", ZONES)
def test_evidence_gives_a_day_alone_its_precision_and_day(zone: str) -> None:
    import io
    import json

    from warcio.archiveiterator import ArchiveIterator

    from watcher.evidence import Capture, Record, sha256, warc_records

    (item, _) = reports(zone)
    body = b"<rss/>"
    record = Record(
        item_key=item.key,
        item_url=item.url,
        title=item.title,
        source_id=item.source_id,
        story_id=1,
        capture=Capture(
            kind="feed",
            url="https://e.org/d",
            final_url="https://e.org/d",
            status=200,
            headers=(),
            fetched_at=T0,
            body=body,
        ),
        text=item.text,
        body_sha256=sha256(body),
        text_sha256=sha256(item.text.encode()),
        published_at=item.published_at,
        published_raw=item.published_raw,
    )
    out = io.BytesIO()
    warc_records([record], out, gzip=False)
    (meta,) = [
        json.loads(r.content_stream().read())
        for r in ArchiveIterator(io.BytesIO(out.getvalue()))
        if r.rec_type == "metadata"
    ]
    assert machine_fields(meta) == ("day", "2026-11-20")
    assert meta["published"] == parse_date("2026-11-20", zone).astimezone(UTC).isoformat()
    assert meta["published_as_written"] == "2026-11-20"

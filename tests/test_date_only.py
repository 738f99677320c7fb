"""Reports whose outlet gave only a day ("2026-11-20", "Nov 20, 2026", "2026년 11월 20일"): which
written dates give no time of day, the first report of a story (such a report counts as
published at its day's end), and how every view shows one (its day as written, said to have
no time, never the stored midnight as a clock time). The stories are stored on SQLite and
PostgreSQL; the texts are written for the tests (no real reporting)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from watcher.items import date_only, parse_date, written_day
from watcher.store.stories import by_time, first_report
from watcher.types import StoredReport

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

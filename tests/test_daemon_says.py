"""The daemon says what it does, and keeps its state where it can be found again.

Real `watcher run` processes read through their log: the start-up summary, one `cycle:` line
per cycle (quiet cycles held back, shown at debug), warnings again on reload, and `watcher
reload` reaching the daemon from another directory. Then, in process: a poll that outlasts
its lease keeps its claim (renewed) against another replica, on SQLite and PostgreSQL; and
the pure parts (the cycle line, the NEXT POLL column). Every wait is on a condition.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import T0, Clock, Started, config_for, feed_source, rss, watcher
from tests.httpserver import FeedServer
from watcher import pipeline
from watcher.cli.sources import _next
from watcher.fetch import Fetcher, FetchLimits
from watcher.pipeline import CycleTally, lease_length, run_cycle
from watcher.store import Store
from watcher.types import PollReport, StoryChange

CONFIG = """
sources:
  - {{id: fast, kind: feed, url: '{fast}', interval: 1s, lang: en}}
  - {{id: hourly, kind: feed, url: '{hourly}', interval: 1h, lang: ko}}
concepts:
  nk_people: {{en: [north korean*, defector*]}}
  sent_back: {{en: [repatriat*, sent back]}}
rules:
  - {{id: return, event: forced_repatriation, severity: high, all_of: [nk_people, sent_back]}}
channels:
  - {{id: hook, url: '{hook}'}}
routes:
  - {{id: urgent, channels: [hook], group_wait: 0s}}
settings: {{retries: 0, shutdown_grace: 5s, delivery_timeout: 2s, allow_private_addresses: true
            {extra}}}
"""

#: The shape of every cycle line, the daemon's and `run --once`'s alike.
CYCLE = re.compile(
    r"cycle: (?P<polled>\d+) polled \((?P<outcomes>[^)]*)\), (?P<new>\d+) new items, "
    r"(?P<matched>\d+) matched; stories: (?P<opened>\d+) opened, (?P<updated>\d+) updated; "
    r"messages: (?P<sent>\d+) sent, (?P<failed>\d+) failed; next poll: (?P<next>[^;]+); "
    r"(?P<span>(last|took) \S+)"
)


def items(*titles: str) -> bytes:
    """A feed of these titles, published now (old items would not alert)."""
    now = format_datetime(datetime.now(UTC))
    return rss([(t, f"https://e.org/{t.lower().replace(' ', '-')}") for t in titles], pub=now)


class Logged(Started):
    """A `watcher run` process whose log is read line by line as it comes."""

    def cycles(self, level: str = "INFO") -> list[re.Match[str]]:
        found = [CYCLE.search(line) for line in self.having(f"{level} ")]
        return [m for m in found if m]


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as s:
        s.route("/fast", body=items("Weather in Seoul", "Markets open higher"))
        s.route("/hourly", body=items("A quiet hour"))
        s.route("/hook", body=b"{}", content_type="application/json")
        yield s


def write_config(folder: Path, server: FeedServer, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sources.yaml"
    path.write_text(
        CONFIG.format(
            fast=server.url("/fast"),
            hourly=server.url("/hourly"),
            hook=server.url("/hook").replace("http://", "json://"),
            extra=extra,
        )
    )
    return path


@pytest.mark.e2e
def test_the_daemon_tells_its_start_and_each_cycle_and_reload_finds_it(
    tmp_path: Path, server: FeedServer, db_url: str
) -> None:
    cfg = write_config(tmp_path / "conf", server)
    started_in, elsewhere = tmp_path / "started-here", tmp_path / "elsewhere"
    started_in.mkdir()
    elsewhere.mkdir()
    daemon = Logged(
        "--config", str(cfg), "--db", db_url, "run", "--metrics-address", "off", cwd=started_in
    )
    try:
        daemon.wait(lambda: daemon.having("running (pid"), "the start-up summary")
        (start,) = daemon.having("running (pid")
        assert f"running (pid {daemon.proc.pid}): 2 sources (feed 2; en 1, ko 1), 1 rule;" in start
        assert "alerts: urgent → hook (json);" in start
        assert "ops: none (nobody hears of broken sources or failed sends);" in start
        assert "; metrics off; pid file " in start and "[action=start]" in start
        if db_url.startswith("sqlite"):
            pid = Path(db_url.removeprefix("sqlite:///") + ".pid")
            assert f"database {db_url};" in start
        else:
            # PostgreSQL: in the temporary folder, named after the database and the file
            found = re.search(r"pid file (\S+watcher-[0-9a-f]{12}\.pid)  \[action=start\]", start)
            assert found is not None, start
            pid = Path(found.group(1))
            assert pid.parent == Path(tempfile.gettempdir())
            assert "database postgresql+psycopg://***@127.0.0.1:5432/" in start
        assert start.endswith(f"pid file {pid}  [action=start]")
        assert pid.read_text().splitlines()[0] == str(daemon.proc.pid)
        assert not (started_in / "watcher.pid").exists()
        # the warnings follow the summary (read from the log as it comes)
        daemon.wait(lambda: daemon.having("no ops route: nobody hears"), "the start-up warnings")
        assert len(daemon.having("no ops route: nobody hears")) == 1
        assert len(daemon.having("interval 1s is under 5m")) == 1

        # the first cycles: the baselines of both sources (3 items)
        daemon.wait(lambda: sum(int(m["new"]) for m in daemon.cycles()) == 3, "the baselines")
        baseline = daemon.cycles()
        assert all(m["opened"] == "0" and m["span"].startswith("last ") for m in baseline)
        assert re.fullmatch(r"(fast|hourly) (now|in \S+)", baseline[0]["next"]), baseline[0]

        # then nothing new: the cycles are quiet and held back, however many polls they hold
        hits = len(server.hits("/fast"))
        daemon.wait(lambda: len(server.hits("/fast")) >= hits + 3, "three more polls")
        assert len(daemon.cycles()) == len(baseline), daemon.cycles()

        # a cycle with news: one line with the new item, the story and (maybe later) the send
        server.routes["/fast"].body = items(
            "Weather in Seoul", "China repatriates 60 North Korean defectors"
        )
        daemon.wait(lambda: server.hits("/hook"), "the alert")
        daemon.wait(
            lambda: sum(int(m["sent"]) for m in daemon.cycles()) == 1, "the send in a cycle line"
        )
        news = daemon.cycles()[len(baseline) :]
        assert sum(int(m["new"]) for m in news) == 1
        assert sum(int(m["matched"]) for m in news) == sum(int(m["opened"]) for m in news) == 1

        # `watcher reload` from another directory, the config given relative to it
        told = len(daemon.having("[action=reload]"))
        relative = os.path.relpath(cfg, elsewhere)
        reloaded = watcher("--config", relative, "--db", db_url, "reload", cwd=elsewhere)
        assert reloaded.returncode == 0, reloaded.stderr
        assert f"sent SIGHUP to watcher (pid {daemon.proc.pid}, from {pid})" in reloaded.stdout
        daemon.wait(lambda: len(daemon.having("[action=reload]")) >= told + 3, "the reload")
        assert len(daemon.having(f"reloaded {cfg}: 2 sources (feed 2; en 1, ko 1), 1 rule;")) == 1
        assert len(daemon.having("no ops route: nobody hears")) == 2  # warned again
        assert len(daemon.having("interval 1s is under 5m")) == 2
    finally:
        code = daemon.stop()
    assert code == 0, daemon.tail()
    assert not pid.exists()
    # One line per cycle that was told, adding up to every poll and send: the quiet cycles
    # went into the next line (the last one at stop).
    cycles = daemon.cycles()
    polls = len(server.hits("/fast")) + len(server.hits("/hourly"))
    assert sum(int(m["polled"]) for m in cycles) == polls
    assert sum(int(m["new"]) for m in cycles) == 4
    assert sum(int(m["sent"]) for m in cycles) == len(server.hits("/hook")) == 1
    assert "watcher stopped" in daemon.lines[-1]

    # `run --once` tells its one cycle in the same words
    once = watcher("--config", str(cfg), "--db", db_url, "run", "--once", "--all")
    assert once.returncode == 0, once.stderr
    (line,) = [m for m in map(CYCLE.search, once.stderr.splitlines()) if m]
    assert line["polled"] == "2" and line["span"].startswith("took ")

    # and `sources list` says when each source is polled next
    listing = watcher("--config", str(cfg), "--db", db_url, "sources", "list")
    assert listing.returncode == 0, listing.stderr
    head, *rows = listing.stdout.splitlines()
    assert "  NEXT POLL  " in head
    hourly = next(row for row in rows if row.startswith("hourly"))
    # 1h + jitter; the date is shown too when the next poll falls on another day
    assert re.search(r"  in (5\dm|1h) \((\d\d-\d\d )?\d\d:\d\d UTC\)  ", hourly), hourly


@pytest.mark.e2e
def test_a_relative_state_dir_is_read_from_the_config_folder_and_debug_shows_quiet_cycles(
    tmp_path: Path, server: FeedServer
) -> None:
    cfg = write_config(tmp_path / "conf", server, extra=", state_dir: run/state")
    db = f"sqlite:///{tmp_path / 'data' / 'w.db'}"
    (tmp_path / "data").mkdir()
    (tmp_path / "a").mkdir()
    daemon = Logged(
        "--config", "../conf/sources.yaml", "--db", db, "--log-level", "debug", "run",
        "--metrics-address", "off", cwd=tmp_path / "a",
    )  # fmt: skip
    pid = tmp_path / "conf" / "run" / "state" / "watcher.pid"
    try:
        daemon.wait(lambda: daemon.having("running (pid"), "the start-up summary")
        assert daemon.having("running (pid")[0].endswith(f"pid file {pid}  [action=start]")
        daemon.wait(lambda: len(daemon.cycles("DEBUG")) >= 2, "two quiet cycles, told at debug")
        assert all(m["new"] == "0" and m["sent"] == "0" for m in daemon.cycles("DEBUG"))
        reloaded = watcher("--config", str(cfg), "reload", cwd=tmp_path)  # no --db needed
        assert reloaded.returncode == 0, reloaded.stderr
        daemon.wait(lambda: daemon.having(f"reloaded {'../conf/sources.yaml'}"), "the reload")
    finally:
        assert daemon.stop() == 0, daemon.tail()
    assert not pid.exists()
    gone = watcher("--config", str(cfg), "reload", cwd=tmp_path)
    assert gone.returncode == 1
    assert f"no running daemon found: {pid} does not exist" in gone.stderr


# --------------------------------------------------------------------------- leases


def test_a_poll_that_outlasts_its_lease_keeps_its_source(
    store: Store, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The feed answers only after the (fake) clock has passed the claim's end: the claim is
    renewed meanwhile, so another replica cannot take the source, and the poll's own outcome
    sets the next time."""
    monkeypatch.setattr(pipeline, "RENEW_EVERY", 0.05)
    asked, answer = threading.Event(), threading.Event()
    body = items("Weather in Seoul")

    def slow(h) -> None:
        asked.set()
        answer.wait(60)
        h.send_response(200)
        h.send_header("Content-Type", "application/rss+xml")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    clock = Clock(T0)
    other = Store.open(db_url)  # another replica on the same database
    with FeedServer() as server:
        server.route("/slow", handler=slow)
        config = config_for([feed_source(server, "slow", "/slow", interval="10m")])
        store.sync_sources(config.sources, T0)
        first_lease = T0 + lease_length(config.settings)

        def due() -> datetime:
            return other.fetch_states()["slow"].next_due_at

        async def until(condition: Callable[[], bool], what: str) -> None:
            deadline = time.monotonic() + 60
            while not condition():
                if time.monotonic() > deadline:
                    pytest.fail(f"timed out waiting for {what}")
                await asyncio.sleep(0.02)

        async def go() -> PollReport:
            async with Fetcher(FetchLimits.from_settings(config.settings)) as fetcher:
                cycle = asyncio.create_task(
                    run_cycle(
                        config.sources,
                        store=store,
                        fetcher=fetcher,
                        settings=config.settings,
                        clock=clock,
                        only_due=True,
                    )
                )
                await until(asked.is_set, "the poll to ask the feed")
                assert due() >= first_lease
                clock.advance(hours=1)  # the first lease is long over
                await until(lambda: due() > clock.now, "the claim to be renewed")
                stolen = other.claim_due(["slow"], clock.now, clock.now + timedelta(minutes=1))
                assert stolen == [], "another replica claimed a source still being polled"
                answer.set()
                (report,) = await cycle
                return report

        try:
            report = asyncio.run(go())
        finally:
            answer.set()
            other.close()
    assert report.outcome == "ok" and report.new == 1
    assert len(server.hits("/slow")) == 1
    assert store.fetch_states()["slow"].next_due_at == clock.now + timedelta(minutes=10)


def test_a_renewal_never_undoes_a_recorded_outcome(store: Store) -> None:
    store.sync_sources(
        config_for([{"id": "s", "kind": "feed", "url": "https://e.org/"}]).sources, T0
    )
    lease = T0 + timedelta(seconds=60)
    assert store.claim_due(["s"], T0, lease) == ["s"]
    assert store.renew_claims({"s": lease}, lease + timedelta(seconds=60)) == ["s"]
    # a renewal that still believes the first lease changes nothing
    assert store.renew_claims({"s": lease}, lease + timedelta(hours=9)) == []
    assert store.fetch_states()["s"].next_due_at == lease + timedelta(seconds=60)
    assert store.next_poll(["s"]) == ("s", lease + timedelta(seconds=60))
    assert store.next_poll([]) is None


# --------------------------------------------------------------------------- the words


def change(story: int, kind: str) -> StoryChange:
    return StoryChange(story_id=story, revision=1, change=kind, item_key="k", deliveries=1)


@pytest.mark.parametrize(
    ("reports", "sends", "upcoming", "line", "quiet"),
    [
        pytest.param(
            [], [], None,
            "cycle: 0 polled (none due), 0 new items, 0 matched; stories: 0 opened, 0 updated; "
            "messages: 0 sent, 0 failed; next poll: none (no enabled source); took 0.1s",
            True,
            id="nothing-due",
        ),
        pytest.param(
            [
                PollReport(source_id="a", outcome="ok", new=3, matched=1,
                           stories=(change(7, "new"), change(8, "joined"))),
                PollReport(source_id="b", outcome="not_modified"),
                PollReport(source_id="c", outcome="unchanged"),
                PollReport(source_id="d", outcome="ok", new=1, stories=(change(7, "joined"),)),
            ],
            ["sent", "sent", "unreachable"], ("a", T0 + timedelta(minutes=4, seconds=2)),
            "cycle: 4 polled (2 ok, 2 unchanged), 4 new items, 1 matched; stories: 1 opened, "
            "1 updated; messages: 2 sent, 1 failed; next poll: a in 4m2s; took 0.1s",
            False,
            id="busy",
        ),
        pytest.param(
            [PollReport(source_id="a", outcome="failed")], [], ("b", None),
            "cycle: 1 polled (1 failed), 0 new items, 0 matched; stories: 0 opened, 0 updated; "
            "messages: 0 sent, 0 failed; next poll: b now; took 0.1s",
            False,
            id="a-failure-is-not-quiet",
        ),
    ],
)  # fmt: skip
def test_the_cycle_line(reports, sends, upcoming, line: str, quiet: bool) -> None:
    tally = CycleTally()
    for report in reports:
        tally.add(report)
    for outcome in sends:
        tally.attempted(outcome)
    assert tally.line(upcoming, T0, "took 0.1s") == line
    assert CYCLE.search(line)
    assert tally.quiet is quiet


@pytest.mark.parametrize(
    ("due", "shown"),
    [
        (None, "now"),
        (T0 - timedelta(seconds=30), "now"),
        (T0 + timedelta(minutes=3, seconds=10), "in 3m (18:03 KST)"),
        (T0 + timedelta(seconds=42), "in 42s (18:00 KST)"),
        (T0 + timedelta(days=1, hours=2), "in 1d (11-24 20:00 KST)"),
        (T0 - timedelta(hours=2), "due 2h ago (16:00 KST)"),
    ],
)
def test_the_next_poll_column(due: datetime | None, shown: str) -> None:
    assert _next(due, T0, ZoneInfo("Asia/Seoul")) == shown


def test_a_refused_reload_says_which_configuration_still_runs(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """The problems of a refused file were logged, and nothing said that the old configuration
    goes on: one line does, with when that one was read (in settings.timezone)."""
    from watcher.config import load_config
    from watcher.daemon import Daemon

    cfg = tmp_path / "sources.yaml"
    cfg.write_text(
        "settings: {parse_processes: 1, timezone: Asia/Seoul}\n"
        "sources:\n  - {id: a, kind: feed, url: 'https://e.org/f'}\n"
    )
    clock = Clock()
    daemon = Daemon(str(cfg), load_config(cfg, env={}), store, matcher=None, clock=clock)
    clock.now += timedelta(hours=5)
    cfg.write_text(cfg.read_text().replace("kind: feed", "kind: feed, interval: often, lang: 1"))
    with caplog.at_level("ERROR", logger="watcher"):
        assert asyncio.run(daemon.reload()) is False
    refused = [r.getMessage() for r in caplog.records if "reload refused" in r.getMessage()]
    assert refused[-1] == (
        f"reload refused: 2 problems in {cfg}; still running the configuration loaded at "
        "2026-11-23 18:00 KST"  # T0, 09:00 UTC
    )
    assert len(refused) == 3


def test_a_database_that_stops_taking_writes_while_running_says_what_to_look_at(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A file whose owner or permissions changed under the running daemon (or a disk remounted
    read-only) is told as an outage, with the same hint the commands give."""
    import sqlite3

    from watcher.config import load_config
    from watcher.daemon import Daemon

    cfg = tmp_path / "sources.yaml"
    cfg.write_text("sources:\n  - {id: a, kind: feed, url: 'https://e.org/f'}\n")
    daemon = Daemon(str(cfg), load_config(cfg, env={}), store, matcher=None, clock=Clock())
    path = tmp_path / "ro.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    with (
        sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn,
        pytest.raises(sqlite3.OperationalError) as raised,
    ):
        conn.execute("INSERT INTO t VALUES (1)")
    with caplog.at_level("ERROR", logger="watcher"):
        daemon._database_down(raised.value)
    (told,) = [r.getMessage() for r in caplog.records]
    assert told == (
        "database unavailable: attempt to write a readonly database (check the file's owner "
        "and permissions) (retrying every second; nothing is lost)"
    )


def test_a_poll_ending_after_the_scheduler_stopped_asks_for_no_delivery(
    tmp_path: Path, store: Store
) -> None:
    """A poll that opens a story asks the delivery job to run now; one that ends after a stop
    shut the scheduler down used to raise JobLookupError ("Task exception was never
    retrieved" at every such stop): its messages simply wait in the outbox."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from watcher.config import load_config
    from watcher.daemon import Daemon

    cfg = tmp_path / "sources.yaml"
    cfg.write_text("sources:\n  - {id: a, kind: feed, url: 'https://e.org/f'}\n")
    daemon = Daemon(str(cfg), load_config(cfg, env={}), store, matcher=None, clock=Clock())

    async def stop_then_ask() -> list[datetime]:
        daemon.scheduler = scheduler = AsyncIOScheduler()
        scheduler.add_job(lambda: None, "interval", seconds=3600, id="deliver")
        scheduler.start()
        daemon._deliver_soon()  # running: the job is moved to now
        moved = scheduler.get_job("deliver").next_run_time
        scheduler.shutdown(wait=False)
        daemon._deliver_soon()  # stopped: nothing asked, nothing raised
        return [moved]

    (moved,) = asyncio.run(stop_then_ask())
    assert moved < datetime.now(UTC) + timedelta(minutes=30)  # now, not in the hour

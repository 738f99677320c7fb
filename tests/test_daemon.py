"""The daemon as operators run it: real `watcher run` processes with 1 s intervals, SIGHUP
reload, /healthz and /metrics, the SQLite single-instance lock, a PostgreSQL outage through a
TCP proxy the test cuts and restores, and three replicas on one PostgreSQL with one killed.
Every wait is on a condition with a deadline."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from tests.helpers import Started, watcher
from tests.httpserver import FeedServer
from tests.tcpproxy import TcpProxy, free_port

#: Every test here starts a process.
pytestmark = pytest.mark.e2e

CONFIG = """
sources:
{sources}
concepts:
  nk_people: {{en: [north korean*, defector*]}}
  sent_back: {{en: [repatriat*, sent back]}}
rules:
  - {{id: return, event: forced_repatriation, severity: high, all_of: [nk_people, sent_back]}}
channels:
  - {{id: hook, url: '{hook}'}}
routes:
  - {{channels: [hook], group_wait: 0s}}
settings: {{retries: 0, state_dir: '{state}', shutdown_grace: 5s, source_timeout: 3s,
            delivery_timeout: 2s, allow_private_addresses: true}}
"""

PLACES = ["Dandong", "Hunchun", "Shenyang", "Tumen", "Yanji", "Sinuiju"]


def rss(*titles: str) -> bytes:
    now = format_datetime(datetime.now(UTC))
    items = "".join(
        f"<item><title>{t}</title><link>https://e.org/{abs(hash(t))}</link>"
        f"<pubDate>{now}</pubDate></item>"
        for t in titles
    )
    head = '<?xml version="1.0"?><rss version="2.0"><channel><title>W</title>'
    return f"{head}{items}</channel></rss>".encode()


def write_config(path: Path, server: FeedServer, feeds: int, interval: str = "1s") -> Path:
    sources = "\n".join(
        f"  - {{id: feed{n}, kind: feed, url: '{server.url(f'/f{n}')}', interval: {interval}, "
        "lang: en}"
        for n in range(feeds)
    )
    for n in range(feeds):
        server.routes.setdefault(f"/f{n}", None) or server.route(f"/f{n}", body=rss())
    server.routes.setdefault("/hook", None) or server.route(
        "/hook", body=b"{}", content_type="application/json"
    )
    path.write_text(
        CONFIG.format(
            sources=sources,
            hook=server.url("/hook").replace("http://", "json://"),
            state=path.parent,
        )
    )
    return path


class Daemon(Started):
    """`watcher run` as an operator starts it, with /healthz, /readyz and /metrics on
    `metrics` (a port) unless None."""

    def __init__(self, cfg: Path, db: str, metrics: int | None = None) -> None:
        address = f"127.0.0.1:{metrics}" if metrics else "off"
        super().__init__("--config", str(cfg), "--db", db, "run", "--metrics-address", address)
        self.metrics = metrics

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read().decode()
        except OSError:
            return 0, ""


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as s:
        yield s


def hooks(server: FeedServer) -> list[dict]:
    return [json.loads(s.body) for s in server.hits("/hook")]


def deliveries(db: str) -> dict[str, int]:
    """Deliveries in the database by status."""
    engine = create_engine(db)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT status, count(*) FROM deliveries GROUP BY status"))
            return {status: n for status, n in rows}
    finally:
        engine.dispose()


def test_health_metrics_reload_and_sigterm(tmp_path: Path, server: FeedServer, db_url: str) -> None:
    cfg = write_config(tmp_path / "sources.yaml", server, feeds=1)
    daemon = Daemon(cfg, db_url, metrics=free_port())
    try:
        daemon.wait(lambda: daemon.get("/healthz") == (200, "ok\n"), "/healthz 200", 60)
        daemon.wait(lambda: daemon.get("/readyz") == (200, "ok\n"), "/readyz 200", 60)
        daemon.wait(lambda: len(server.hits("/f0")) >= 2, "polls every second", 60)
        status, metrics = daemon.get("/metrics")
        assert status == 200
        last_cycle = re.search(r"^watcher_last_cycle_timestamp_seconds (\S+)$", metrics, re.M)
        assert last_cycle and abs(float(last_cycle.group(1)) - time.time()) < 60
        assert 'watcher_polls_total{outcome="ok",source="feed0"}' in metrics
        assert "watcher_fetch_seconds_bucket" in metrics and "watcher_outbox_depth" in metrics
        assert daemon.get("/nope")[0] == 404

        # an invalid edit is refused; the running configuration stays
        good = cfg.read_text()
        cfg.write_text(good.replace("interval: 1s", "interval: often"))
        assert watcher("--config", str(cfg), "reload").returncode == 2  # check refuses it
        os.kill(daemon.pid, signal.SIGHUP)
        polls = len(server.hits("/f0"))
        daemon.wait(lambda: len(server.hits("/f0")) > polls + 1, "polling to go on", 60)

        # a valid edit adding a source takes effect without a restart
        write_config(cfg, server, feeds=2)
        reloaded = watcher("--config", str(cfg), "reload")
        assert reloaded.returncode == 0 and "sent SIGHUP" in reloaded.stdout
        daemon.wait(lambda: len(server.hits("/f1")) >= 1, "the new source to be polled", 60)
    finally:
        code = daemon.stop()
    assert code == 0, daemon.err
    assert "reload refused: " in daemon.err and "interval: expected a duration" in daemon.err
    assert "reloaded " in daemon.err and "watcher stopped" in daemon.err
    assert not (tmp_path / "watcher.pid").exists()


def test_a_restart_reports_the_last_poll_before_it(
    tmp_path: Path, server: FeedServer, db_url: str
) -> None:
    """After a restart with nothing due, /metrics gives the last poll an earlier run made:
    an alert on the gauge's age must not fire because the process is new."""
    cfg = write_config(tmp_path / "sources.yaml", server, feeds=1, interval="1h")
    assert watcher("--config", str(cfg), "--db", db_url, "run", "--once").returncode == 0
    polled_by_once = time.time()
    daemon = Daemon(cfg, db_url, metrics=free_port())
    try:
        daemon.wait(lambda: daemon.get("/readyz") == (200, "ok\n"), "/readyz 200", 60)
        metrics = daemon.get("/metrics")[1]
    finally:
        assert daemon.stop() == 0, daemon.err
    assert len(server.hits("/f0")) == 1, "nothing was due: the daemon polled nothing"
    last_cycle = re.search(r"^watcher_last_cycle_timestamp_seconds (\S+)$", metrics, re.M)
    assert last_cycle is not None
    assert polled_by_once - 120 < float(last_cycle.group(1)) <= polled_by_once


def test_a_second_daemon_on_one_sqlite_file_is_refused(tmp_path: Path, server: FeedServer) -> None:
    cfg = write_config(tmp_path / "sources.yaml", server, feeds=1)
    db = f"sqlite:///{tmp_path / 'w.db'}"
    first = Daemon(cfg, db)
    first.wait(lambda: len(server.hits("/f0")) >= 1, "the first daemon to poll", 60)
    second = watcher("--config", str(cfg), "--db", db, "run", "--metrics-address", "off")
    assert second.returncode == 1
    assert f"another `watcher run` (pid {first.pid}) is using this SQLite database" in (
        second.stderr
    )
    first.kill()  # kill -9 leaves no stale lock behind
    third = Daemon(cfg, db)
    try:
        polls = len(server.hits("/f0"))
        third.wait(lambda: len(server.hits("/f0")) > polls, "the restarted daemon to poll", 60)
    finally:
        assert third.stop() == 0, third.err


@pytest.mark.parametrize("how", ["folder removed", "file replaced"])
def test_a_sqlite_file_removed_or_replaced_under_the_daemon_stops_it_loudly(
    tmp_path: Path, server: FeedServer, how: str
) -> None:
    """Else it would store into a file without a name (lost at its stop) while a second
    daemon, the lock file gone too, could start."""
    cfg = write_config(tmp_path / "sources.yaml", server, feeds=1)
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "g.db"
    daemon = Daemon(cfg, f"sqlite:///{path}")
    try:
        daemon.wait(lambda: daemon.having("running (pid"), "the daemon to start", 60)
        if how == "folder removed":
            shutil.rmtree(folder)
        else:
            shutil.copyfile(path, tmp_path / "copy.db")
            os.replace(tmp_path / "copy.db", path)
        daemon.wait(lambda: daemon.proc.poll() is not None, "the daemon to stop", 60)
    finally:
        code = daemon.stop()
    assert code == 1, daemon.err
    (told,) = daemon.having("was removed or replaced")
    assert " ERROR " in told
    assert (
        f"database file {path} was removed or replaced while running; stopping: nothing more "
        "can be stored there"
    ) in told


def test_a_database_recreated_empty_is_told_and_its_sources_registered_again(
    tmp_path: Path, server: FeedServer, db_url: str
) -> None:
    cfg = write_config(tmp_path / "sources.yaml", server, feeds=1)
    daemon = Daemon(cfg, db_url)
    try:
        daemon.wait(lambda: len(server.hits("/f0")) >= 1, "the first poll", 60)
        engine = create_engine(db_url, connect_args={"timeout": 60} if "sqlite" in db_url else {})
        try:  # what a database dropped and created again holds: no table at all
            cascade = "" if "sqlite" in db_url else " CASCADE"
            with engine.begin() as conn:
                for table in inspect(conn).get_table_names():
                    conn.execute(text(f'DROP TABLE IF EXISTS "{table}"{cascade}'))
        finally:
            engine.dispose()
        daemon.wait(lambda: daemon.having("has no watcher tables"), "the missing tables told", 60)
        upgraded = watcher("--config", str(cfg), "--db", db_url, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        polls = len(server.hits("/f0"))
        daemon.wait(lambda: len(server.hits("/f0")) > polls, "the source polled again", 60)
    finally:
        code = daemon.stop()
    assert code == 0, daemon.err
    # told once per episode; on a loaded machine a drop that meets a locked database is an
    # "unavailable" between two of them, and each change of cause is told again
    told = daemon.having("has no watcher tables")
    assert told and all(" ERROR " in line and "run `watcher db upgrade`" in line for line in told)
    assert daemon.having("database available again")


@pytest.mark.postgres
def test_postgres_outage_is_survived_and_nothing_is_lost(
    tmp_path: Path, server: FeedServer, pg_schema_url: str
) -> None:
    proxy = TcpProxy(("127.0.0.1", 5432))
    db = pg_schema_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    cfg = write_config(tmp_path / "sources.yaml", server, feeds=1)
    daemon = Daemon(cfg, db, metrics=free_port())
    try:
        daemon.wait(lambda: len(server.hits("/f0")) >= 2, "the baseline polls", 60)
        proxy.cut()
        daemon.wait(lambda: daemon.get("/readyz")[0] == 503, "/readyz to report the outage", 60)
        assert daemon.get("/readyz")[1] == "database unavailable\n"
        assert daemon.get("/healthz") == (200, "ok\n"), "liveness holds through an outage"
        server.routes["/f0"].body = rss("China repatriates 60 North Korean defectors")
        time.sleep(0.1)
        proxy.restore()
        daemon.wait(lambda: len(hooks(server)) == 1, "the alert after the database came back", 60)
        daemon.wait(lambda: daemon.get("/readyz")[0] == 200, "/readyz to recover", 60)
        # The send is counted once its answer is in: after the receiver saw it.
        sent = 'watcher_deliveries_total{channel="hook",outcome="sent"} 1.0'
        daemon.wait(lambda: sent in daemon.get("/metrics")[1], "the send to be counted", 60)
        metrics = daemon.get("/metrics")[1]
        assert 'watcher_matches_total{event="forced_repatriation"} 1.0' in metrics
        assert 'watcher_alerts_total{route="route-1"} 1.0' in metrics  # by route, not "any"
    finally:
        code = daemon.stop()
        proxy.cut()
    assert code == 0, daemon.err
    assert "database unavailable" in daemon.err and "database available again" in daemon.err
    assert len(hooks(server)) == 1


@pytest.mark.postgres
def test_a_reload_during_a_database_outage_is_applied_once_it_is_back(
    tmp_path: Path, server: FeedServer, pg_schema_url: str
) -> None:
    proxy = TcpProxy(("127.0.0.1", 5432))
    db = pg_schema_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    cfg = write_config(tmp_path / "sources.yaml", server, feeds=1)
    daemon = Daemon(cfg, db)
    try:
        daemon.wait(lambda: len(server.hits("/f0")) >= 2, "the baseline polls", 60)
        proxy.cut()
        write_config(cfg, server, feeds=2)  # the operator adds a source during the outage
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait(lambda: daemon.having("reload deferred"), "the reload to be deferred", 60)
        assert not daemon.having("reloaded ")
        proxy.restore()
        daemon.wait(lambda: server.hits("/f1"), "the added source to be polled", 60)
    finally:
        code = daemon.stop()
        proxy.cut()
    assert code == 0, daemon.err
    (deferred,) = daemon.having("reload deferred")
    assert f"{cfg} is read again once it is back" in deferred and " ERROR " in deferred
    assert len(daemon.having(f"reloaded {cfg}: 2 sources")) == 1
    assert "Task exception was never retrieved" not in daemon.err


@pytest.mark.postgres
def test_three_replicas_share_the_sources_and_send_each_alert_once(
    tmp_path: Path, server: FeedServer, pg_schema_url: str
) -> None:
    feeds = 6
    cfg = write_config(tmp_path / "sources.yaml", server, feeds=feeds)
    assert watcher("--config", str(cfg), "--db", pg_schema_url, "db", "upgrade").returncode == 0
    replicas = [Daemon(cfg, pg_schema_url) for _ in range(3)]
    try:
        replicas[1].wait(
            lambda: all(len(server.hits(f"/f{n}")) >= 2 for n in range(feeds)),
            "every source polled twice (baseline done)",
            60,
        )
        replicas[0].kill()  # one dies mid-run
        titles = [
            f"{place} police send {count} North Korean defectors back, repatriated at dawn"
            for place, count in zip(PLACES, (3, 17, 40, 90, 210, 700), strict=True)
        ]
        for n, title in enumerate(titles):
            server.routes[f"/f{n}"].body = rss(title)
        # the killed replica's claims end after source_timeout + 15 s = 18 s
        replicas[1].wait(lambda: len(hooks(server)) >= feeds, "one alert per story", 60)
        # Every delivery recorded as sent: nothing is left that could be sent again.
        replicas[1].wait(
            lambda: deliveries(pg_schema_url) == {"sent": feeds}, "the sends recorded", 60
        )
        # no source is polled twice in one interval: hits are at least ~1 s apart
        for n in range(feeds):
            times = sorted(h.at for h in server.hits(f"/f{n}"))
            gaps = [b - a for a, b in itertools.pairwise(times)]
            assert min(gaps) > 0.5, (n, gaps)
    finally:
        codes = [r.stop() for r in replicas[1:]]
    assert codes == [0, 0], [r.err[-2000:] for r in replicas[1:]]
    received = sorted(m["title"] for m in hooks(server))
    assert len(received) == feeds
    assert all(any(p in t for t in received) for p in PLACES)


def test_unhealthy_and_recovered_sources_alert_the_ops_route(
    tmp_path: Path, server: FeedServer
) -> None:
    cfg = write_config(tmp_path / "sources.yaml", server, feeds=1)
    text = (
        cfg.read_text()
        .replace(
            "routes:\n  - {channels: [hook], group_wait: 0s}",
            "routes:\n  - {channels: [hook], ops: true}",
        )
        .replace(
            "shutdown_grace: 5s,", "shutdown_grace: 5s, failure_threshold: 2, max_backoff: 1s,"
        )
    )
    cfg.write_text(text)
    server.routes["/f0"].status = 500
    daemon = Daemon(cfg, f"sqlite:///{tmp_path / 'w.db'}")
    try:
        daemon.wait(lambda: len(hooks(server)) >= 1, "the unhealthy-source alert", 60)
        (first,) = hooks(server)
        assert "source feed0 is unhealthy" in first["title"]
        assert "HTTP 500" in first["message"] and "watcher sources test feed0" in first["message"]
        # (with an item: a feed that parses nothing for empty_polls polls is `empty`, and a
        # recovery is told only after health.RECOVERY_POLLS clean polls)
        server.routes["/f0"].body = rss("A report")
        server.routes["/f0"].status = 200
        daemon.wait(lambda: len(hooks(server)) >= 2, "the recovery alert", 60)
        assert "source feed0 recovered" in hooks(server)[1]["title"]
    finally:
        assert daemon.stop() == 0, daemon.err
    listing = watcher(
        "--config", str(cfg), "--db", f"sqlite:///{tmp_path / 'w.db'}", "sources", "list"
    )
    assert " ok " in listing.stdout


def test_a_removed_source_leaves_the_health_metrics_at_reload_and_at_restart(
    tmp_path: Path, server: FeedServer
) -> None:
    # a source that is no longer watched is polled no more: "unhealthy" for ever, it kept the
    # documented alert on watcher_sources_unhealthy firing and hid the next breakage
    def configure(feeds: int) -> None:
        write_config(tmp_path / "sources.yaml", server, feeds=feeds)
        cfg.write_text(
            cfg.read_text().replace(
                "shutdown_grace: 5s,", "shutdown_grace: 5s, failure_threshold: 2, max_backoff: 1s,"
            )
        )

    cfg, db = tmp_path / "sources.yaml", f"sqlite:///{tmp_path / 'w.db'}"
    configure(feeds=2)
    server.routes["/f1"].status = 500
    unhealthy = 'watcher_source_problem{problem="failing",source="feed1"} 1.0'
    daemon = Daemon(cfg, db, metrics=free_port())
    try:
        daemon.wait(lambda: unhealthy in daemon.get("/metrics")[1], "feed1 unhealthy", 60)
        assert "watcher_sources_unhealthy 1.0" in daemon.get("/metrics")[1]
        configure(feeds=1)
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait(lambda: daemon.having("reloaded "), "the reload", 60)
        metrics = daemon.get("/metrics")[1]
        assert "watcher_sources_unhealthy 0.0" in metrics and unhealthy not in metrics
    finally:
        assert daemon.stop() == 0, daemon.err
    again = Daemon(cfg, db, metrics=free_port())  # its stored health is not seeded either
    try:
        # the gauge, once the first health check has set it (the endpoint answers before)
        again.wait(
            lambda: "watcher_sources_unhealthy " in again.get("/metrics")[1], "the gauge", 60
        )
        metrics = again.get("/metrics")[1]
        assert "watcher_sources_unhealthy 0.0" in metrics and unhealthy not in metrics
    finally:
        assert again.stop() == 0, again.err


@pytest.mark.postgres
def test_a_blackholed_database_is_a_stall_told_once_each_way(
    tmp_path: Path, server: FeedServer, pg_schema_url: str
) -> None:
    """PostgreSQL stops answering without refusing (packets swallowed): readiness fails with
    the reason while a call hangs, liveness holds, and the log says so once when the stall
    starts and once when it ends; the daemon then goes on."""
    proxy = TcpProxy(("127.0.0.1", 5432))
    db = pg_schema_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    cfg = write_config(tmp_path / "sources.yaml", server, feeds=1)
    daemon = Daemon(cfg, db, metrics=free_port())
    try:
        daemon.wait(lambda: len(server.hits("/f0")) >= 2, "the baseline polls", 60)
        proxy.freeze()
        daemon.wait(lambda: daemon.get("/readyz")[1].startswith("database stalled"), "a stall", 90)
        assert daemon.get("/healthz") == (200, "ok\n"), "liveness holds through a stall"
        proxy.thaw()
        daemon.wait(lambda: daemon.get("/readyz")[0] == 200, "/readyz to recover", 60)
        polls = len(server.hits("/f0"))
        daemon.wait(lambda: len(server.hits("/f0")) > polls, "polling to go on", 60)
    finally:
        proxy.thaw()
        code = daemon.stop()
        proxy.cut()
    assert code == 0, daemon.err
    assert daemon.err.count("database stalled") == 1, daemon.err[-3000:]
    assert daemon.err.count("database answers again after a stall") == 1


def test_a_reload_re_plans_the_digest_lines_already_queued(
    tmp_path: Path, server: FeedServer, db_url: str
) -> None:
    # a story waits for a digest twelve hours away; the route is changed to send at once and
    # the daemon reloaded: the waiting line goes now, not at the old digest time
    cfg = write_config(tmp_path / "sources.yaml", server, feeds=1)
    at = f"{datetime.now(UTC) + timedelta(hours=12):%H:%M}"
    immediate = "routes:\n  - {channels: [hook], group_wait: 0s}"
    digest = f"routes:\n  - {{channels: [hook], mode: digest, digest: {{at: '{at}'}}}}"
    cfg.write_text(cfg.read_text().replace(immediate, digest))
    daemon = Daemon(cfg, db_url)
    try:
        daemon.wait(lambda: len(server.hits("/f0")) >= 2, "the baseline polls", 60)
        server.routes["/f0"].body = rss("North Korean defectors sent back from Dandong")
        daemon.wait(lambda: deliveries(db_url) == {"pending": 1}, "the digest line", 60)
        assert hooks(server) == []
        cfg.write_text(cfg.read_text().replace(digest, immediate))
        os.kill(daemon.pid, signal.SIGHUP)
        daemon.wait(lambda: deliveries(db_url) == {"sent": 1}, "the line sent at once", 60)
    finally:
        code = daemon.stop()
    assert code == 0, daemon.err
    (message,) = hooks(server)
    assert "Dandong" in message["message"]
    assert "route route-1: 1 digest line(s) re-planned" in daemon.err


def test_a_channel_whose_url_is_fixed_is_tried_at_once_after_the_reload(
    tmp_path: Path, server: FeedServer, db_url: str
) -> None:
    """A channel that was unreachable waits out its backoff (here an hour); a reload that
    changes its URL makes its waiting messages go now: the URL that failed is not its own
    any more. The URL itself (it may hold a password) is never logged."""
    cfg = write_config(tmp_path / "sources.yaml", server, feeds=1)
    hook = server.url("/hook").replace("http://", "json://")
    wrong = hook.replace(f":{server.url('/').split(':')[2].split('/')[0]}", f":{free_port()}")
    good = cfg.read_text().replace("retries: 0,", "retries: 0, delivery_backoff: 1h,")
    cfg.write_text(good.replace(hook, wrong.replace("json://", "json://user:s3cret@")))
    daemon = Daemon(cfg, db_url)
    try:
        daemon.wait(lambda: len(server.hits("/f0")) >= 2, "the baseline polls", 60)
        server.routes["/f0"].body = rss("China repatriates 60 North Korean defectors")
        daemon.wait(lambda: daemon.having("unreachable"), "the channel to fail", 60)
        cfg.write_text(good)
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait(lambda: len(hooks(server)) == 1, "the alert through the fixed URL", 60)
    finally:
        code = daemon.stop()
    assert code == 0, daemon.err
    (told,) = daemon.having("has a new URL")
    assert "channel hook has a new URL: its waiting messages are tried now" in told
    assert "s3cret" not in daemon.err


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux)")
def test_a_full_disk_is_one_outage_told_once_until_saves_succeed_again(
    tmp_path: Path, server: FeedServer
) -> None:
    """A real write failure (the daemon's file size limit set under the database's size with
    prlimit: SQLite's writes fail as on a full disk) while reads and small writes still go
    through: one `database unavailable` line, with what to check, and one `available again`
    once the saves succeed, not one pair a second; readiness stays failed meanwhile."""
    cfg = write_config(tmp_path / "sources.yaml", server, feeds=2)
    db_file = tmp_path / "w.db"
    daemon = Daemon(cfg, f"sqlite:///{db_file}", metrics=free_port())
    try:
        daemon.wait(
            lambda: all(len(server.hits(f"/f{n}")) >= 2 for n in range(2)), "the baselines", 60
        )
        files = [p for p in tmp_path.iterdir() if p.name.startswith("w.db")]
        limit = max(p.stat().st_size for p in files) + 4096
        limited = ["prlimit", f"--pid={daemon.pid}", f"--fsize={limit}:unlimited"]
        subprocess.run(limited, check=True)
        filler = " ".join(["lorem ipsum"] * 40)
        server.routes["/f1"].body = rss(*[f"Unrelated item {i} {filler}" for i in range(300)])
        server.routes["/f0"].body = rss("China repatriates 60 North Korean defectors")
        daemon.wait(lambda: daemon.having("database unavailable"), "the outage told", 60)
        # Ten seconds of writes failing (each second's tries; reads and small writes may
        # succeed meanwhile): readiness stays failed throughout, not flipping each second.
        seen = set()
        for _ in range(20):
            seen.add(daemon.get("/readyz"))
            time.sleep(0.5)
        assert seen == {(503, "database unavailable\n")}
        unlimited = ["prlimit", f"--pid={daemon.pid}", "--fsize=unlimited:unlimited"]
        subprocess.run(unlimited, check=True)
        daemon.wait(lambda: len(hooks(server)) == 1, "the alert once the disk takes writes", 60)
        daemon.wait(lambda: daemon.get("/readyz")[0] == 200, "/readyz to recover", 60)
    finally:
        code = daemon.stop()
    assert code == 0, daemon.err
    (told,) = daemon.having("database unavailable")
    assert " ERROR " in told and "(the disk may be full: check free space and quotas)" in told
    assert len(daemon.having("database available again")) == 1


@pytest.mark.postgres
def test_a_stop_while_the_database_hangs_ends_soon_after_the_grace_and_says_what_is_left(
    tmp_path: Path, server: FeedServer, pg_schema_url: str
) -> None:
    """SIGTERM while PostgreSQL swallows every packet (calls hang, none fails): the daemon
    waits what is left of shutdown_grace (5 s) for each thing it would record, then says in
    one line what it left unrecorded and exits with code 1, without waiting on the threads
    stuck in the database (it used to wait for ever)."""
    proxy = TcpProxy(("127.0.0.1", 5432))
    db = pg_schema_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    cfg = write_config(tmp_path / "sources.yaml", server, feeds=2)
    daemon = Daemon(cfg, db)
    try:
        daemon.wait(
            lambda: all(len(server.hits(f"/f{n}")) >= 2 for n in range(2)), "the baselines", 60
        )
        server.routes["/f0"].body = rss("China repatriates 60 North Korean defectors")
        polls = len(server.hits("/f0"))
        daemon.wait(lambda: len(server.hits("/f0")) > polls, "the news to be fetched", 60)
        proxy.freeze()
        time.sleep(3)  # the daemon's next database calls go out and hang
        code = daemon.stop(grace=90)  # killed (-9) after 90 s
    finally:
        proxy.thaw()
        daemon.stop()
        proxy.cut()
    assert code == 1, daemon.err[-3000:]
    (told,) = daemon.having("stopped after shutdown_grace")
    assert " ERROR " in told and "with the database not answering; not recorded: " in told
    assert "may be sent once more after the restart" in told
    assert daemon.lines[-1].endswith("watcher stopped (exit code 1)  [action=stop]")
    assert "Traceback" not in daemon.err

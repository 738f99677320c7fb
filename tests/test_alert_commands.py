"""Alerts as an operator runs them: real `watcher` processes, killed mid-cycle and restarted,
the daemon's latency, SIGTERM, and the alerts/silence/notify/export commands."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.helpers import Started, wait_for, watcher
from tests.httpserver import FeedServer, trickle
from watcher.store import Store
from watcher.store.tables import deliveries

#: Every test here starts a process.
pytestmark = pytest.mark.e2e

NOW = datetime.now(UTC)

CONFIG = """
sources:
  - {{id: wire, name: Wire, kind: feed, url: '{feed}', interval: {interval}, lang: en}}
concepts:
  nk_people: {{en: [north korean*, defector*]}}
  sent_back: {{en: [repatriat*, sent back]}}
rules:
  - {{id: return, event: forced_repatriation, severity: high, all_of: [nk_people, sent_back]}}
channels:
  - {{id: hook, url: '{hook}'}}
  - {{id: dead, url: 'json://127.0.0.1:9/nothing-listens-here'}}
  - {{id: refusing, url: '{refusing}'}}
routes:
  - {{channels: [hook], group_wait: 0s}}
settings: {{retries: 0, delivery_timeout: 2s, allow_private_addresses: true}}
"""


def rss(*titles: str) -> bytes:
    items = "".join(
        f"<item><title>{t}</title><link>https://e.org/{abs(hash(t))}</link>"
        f"<pubDate>{format_datetime(NOW)}</pubDate></item>"
        for t in titles
    )
    head = '<?xml version="1.0"?><rss version="2.0"><channel><title>W</title>'
    return f"{head}{items}</channel></rss>".encode()


@pytest.fixture
def setup(tmp_path: Path, db_url: str):
    with FeedServer() as server:
        server.route("/feed", body=rss())
        server.route("/hook", body=b"{}", content_type="application/json")
        server.route("/refuse", status=400, body=b"{}", content_type="application/json")
        cfg = tmp_path / "sources.yaml"
        cfg.write_text(
            CONFIG.format(
                feed=server.url("/feed"),
                hook=server.url("/hook").replace("http://", "json://"),
                refusing=server.url("/refuse").replace("http://", "json://"),
                interval="5s",
            )
        )
        yield server, cfg, db_url


def hooks(server: FeedServer) -> list[dict]:
    return [json.loads(s.body) for s in server.hits("/hook")]


def run(cfg: Path, db: str, *args: str, env: dict[str, str] | None = None):
    return watcher("--config", str(cfg), "--db", db, *args, env=env)


@pytest.mark.parametrize(
    ("crash_at", "most"),
    [("after_match", 1), ("after_send", 2)],
)
def test_kill_mid_cycle_then_restart_loses_nothing(setup, crash_at: str, most: int) -> None:
    server, cfg, db = setup
    assert run(cfg, db, "run", "--once", "--all").returncode == 0  # baseline
    server.routes["/feed"].body = rss("China repatriates 60 North Korean defectors")
    crashed = run(cfg, db, "run", "--once", "--all", env={"WATCHER_CRASH_AT": crash_at})
    assert crashed.returncode == 137, crashed.stderr
    received_before_restart = len(hooks(server))
    assert received_before_restart == (1 if crash_at == "after_send" else 0)

    # On SQLite the restart frees the dead process's claim at once; on PostgreSQL (other
    # replicas may be alive) when its lease ends: 2 x delivery_timeout + 5 s. Wait for that
    # in the database, then restart once.
    if not db.startswith("sqlite"):
        wait_for(lambda: _claims_ended(db), 60, "the dead process's claim to end")
    again = run(cfg, db, "run", "--once", "--all")
    assert again.returncode == 0, again.stderr
    assert "route-1" in run(cfg, db, "alerts", "list", "--status", "sent").stdout
    received = hooks(server)
    assert 1 <= len(received) <= most
    assert all("Forced repatriation" in r["title"] for r in received)
    listing = run(cfg, db, "alerts", "list", "--status", "sent")
    assert len(listing.stdout.splitlines()) == 2  # header + the one delivery, sent
    # and a third run sends nothing more
    run(cfg, db, "run", "--once", "--all")
    assert len(hooks(server)) == len(received)


def test_daemon_delivers_after_its_baseline_and_stops_on_sigterm(setup) -> None:
    """Time to alert is measured in benchmarks/daemon.py (latency); here, only that it comes."""
    server, cfg, db = setup
    cfg.write_text(cfg.read_text().replace("interval: 5s", "interval: 1s"))
    daemon = Started("--config", str(cfg), "--db", db, "run", "--metrics-address", "off")
    try:
        daemon.wait(lambda: _polled(db, "wire"), "the baseline poll to be recorded")
        server.routes["/feed"].body = rss("North Korean defectors repatriated from Dandong")
        daemon.wait(lambda: len(hooks(server)) == 1, "the alert")
    finally:
        code = daemon.stop()
    assert code == 0, daemon.err
    assert "watcher stopped" in daemon.err


def test_sigterm_during_a_send_lets_it_finish_and_it_is_never_sent_again(setup) -> None:
    """SIGTERM while the channel is still answering: the send runs to its end (within
    shutdown_grace) and is recorded as sent, so no later run sends it again; shutting the
    scheduler down used to cancel it midway, leave it pending and log an ERROR."""
    server, cfg, db = setup
    cfg.write_text(cfg.read_text().replace("interval: 5s", "interval: 1s"))
    arrived = threading.Event()

    def slow_hook(handler: BaseHTTPRequestHandler) -> None:
        arrived.set()
        time.sleep(1.0)  # the daemon is told to stop while it waits for this answer
        FeedServer._send(handler, 200, b"{}", "application/json", {})

    server.route("/hook", handler=slow_hook)
    daemon = Started("--config", str(cfg), "--db", db, "run", "--metrics-address", "off")
    try:
        daemon.wait(lambda: _polled(db, "wire"), "the baseline poll to be recorded")
        server.routes["/feed"].body = rss("North Korean defectors repatriated from Dandong")
        daemon.wait(arrived.is_set, "the send to reach the channel")
    finally:
        code = daemon.stop()
    assert code == 0, daemon.err
    assert len(server.hits("/hook")) == 1
    assert "CancelledError" not in daemon.err
    assert not [line for line in daemon.lines if " ERROR " in line], daemon.err
    assert "watcher stopped" in daemon.lines[-1]
    listing = run(cfg, db, "alerts", "list", "--status", "sent")
    assert len(listing.stdout.splitlines()) == 2, listing.stdout  # header + the one, sent
    # and the next run finds nothing to send
    assert run(cfg, db, "run", "--once", "--all").returncode == 0
    assert len(server.hits("/hook")) == 1


def _polled(db: str, source_id: str) -> bool:
    """Has a poll of the source been recorded (its baseline is stored)?"""
    store = Store.open(db)
    try:
        state = store.fetch_states([source_id]).get(source_id)
    except Exception:  # the daemon has not created the tables yet
        return False
    finally:
        store.close()
    return state is not None and state.last_polled_at is not None


def _claims_ended(db: str) -> bool:
    """Is no pending delivery claimed any more (the lease of the process that died ended)?"""
    store = Store.open(db)
    try:
        with store.engine.connect() as conn:
            until = conn.execute(
                select(func.max(deliveries.c.claimed_until)).where(deliveries.c.status == "pending")
            ).scalar()
    finally:
        store.close()
    return until is None or until <= datetime.now(UTC)


def test_alerts_list_retry_and_export(setup) -> None:
    server, cfg, db = setup
    routes = "channels: [refusing, dead], group_wait: 0s"
    cfg.write_text(cfg.read_text().replace("channels: [hook], group_wait: 0s", routes))
    # a busy machine may take more than 2 s to answer: a timeout would be "uncertain"
    settings = "retries: 0, delivery_attempts: 1, delivery_timeout: 30s"
    cfg.write_text(cfg.read_text().replace("retries: 0, delivery_timeout: 2s", settings))
    run(cfg, db, "run", "--once", "--all")
    server.routes["/feed"].body = rss("China repatriates 60 North Korean defectors")
    run(cfg, db, "run", "--once", "--all")
    failed = run(cfg, db, "alerts", "list", "--status", "failed")
    header, row = failed.stdout.splitlines()
    assert header.split()[:6] == ["ID", "STATUS", "KIND", "STORY", "ROUTE", "CHANNEL"]
    delivery_id = row.split()[0]
    assert row.split()[1:6] == ["failed", "alert", "1", "route-1", "refusing"]
    # the unreachable channel is not given up: its message waits, and says why
    (waiting,) = run(cfg, db, "alerts", "list", "--status", "pending").stdout.splitlines()[1:]
    assert waiting.split()[1:6] == ["pending", "alert", "1", "route-1", "dead"]
    assert "waiting: dead unreachable since" in waiting
    # --limit 1 shows the newest delivery alone; 0 or fewer is refused, not "no deliveries"
    everything = run(cfg, db, "alerts", "list").stdout.splitlines()
    assert len(everything) >= 3  # the header and two deliveries
    (newest,) = run(cfg, db, "alerts", "list", "--limit", "1").stdout.splitlines()[1:]
    assert newest.split()[:6] == everything[1].split()[:6]
    for limit in ("0", "-5"):
        refused = run(cfg, db, "alerts", "list", "--limit", limit)
        assert refused.returncode == 2 and refused.stdout == ""
        assert f"Invalid value for '--limit': {limit} is not in the range x>=1" in refused.stderr

    retried = run(cfg, db, "alerts", "retry", delivery_id)
    assert retried.returncode == 0 and "queued again (was failed)" in retried.stdout
    again = run(cfg, db, "alerts", "retry", delivery_id)  # pending already: due now
    assert again.returncode == 0 and f"delivery {delivery_id} due now" in again.stdout
    assert run(cfg, db, "alerts", "retry", "999").returncode == 1

    exported = run(cfg, db, "export", "alerts")
    (story,) = [json.loads(line) for line in exported.stdout.splitlines()]
    assert story["events"] == ["forced_repatriation"] and story["items"][0]["source"] == "wire"
    by_channel = {d["channel"]: d for d in story["deliveries"]}
    assert by_channel["refusing"]["status"] == "pending"  # queued again
    assert by_channel["refusing"]["attempts"][0]["outcome"] == "failed"
    assert by_channel["dead"]["attempts"][0]["outcome"] == "unreachable"


def test_silence_commands(setup) -> None:
    server, cfg, db = setup
    # `silence` mutes the daemon's database: it creates none (a mistyped --db would mute nothing)
    assert run(cfg, db, "db", "upgrade").returncode == 0
    added = run(
        cfg,
        db,
        "silence",
        "add",
        "--match",
        "source=wire",
        "--for",
        "6h",
        "--reason",
        "noisy today",
        "--by",
        "ops",
    )
    assert added.returncode == 0 and added.stdout.startswith("silence 1 active until")
    bad = run(cfg, db, "silence", "add", "--match", "colour=red", "--for", "6h", "--reason", "x")
    assert bad.returncode == 2 and "unknown key 'colour'" in bad.stderr
    over = run(cfg, db, "silence", "add", "--match", "source=wire", "--for", "0s", "--reason", "x")
    assert over.returncode == 2 and "--for: must be at least 1m, got '0s'" in over.stderr
    run(cfg, db, "run", "--once", "--all")
    server.routes["/feed"].body = rss("China repatriates 60 North Korean defectors")
    run(cfg, db, "run", "--once", "--all")
    assert hooks(server) == []
    assert "silenced" in run(cfg, db, "alerts", "list").stdout
    header, row = run(cfg, db, "silence", "list").stdout.splitlines()
    assert header.split() == ["ID", "STATE", "UNTIL", "MATCHERS", "BY", "REASON"]
    fields = row.split()  # id, state, date, time, zone, matchers, by, reason
    assert fields[:2] == ["1", "active"]
    assert fields[4:] == ["UTC", "source=wire", "ops", "noisy", "today"], "times name their zone"
    assert run(cfg, db, "silence", "expire", "1").returncode == 0
    assert run(cfg, db, "silence", "list").stdout == "no active silences\n"
    assert "expired" in run(cfg, db, "silence", "list", "--all").stdout


def test_notify_test_reports_each_channel(setup) -> None:
    server, cfg, db = setup
    result = run(cfg, db, "notify", "test")
    assert result.returncode == 1
    lines = sorted(result.stdout.splitlines())
    assert lines[0].startswith("dead: unreachable: ") and lines[1].startswith("hook: sent")
    (message,) = hooks(server)
    assert "test" in (message["title"] + message["message"]).lower()
    one = run(cfg, db, "notify", "test", "hook")
    assert one.returncode == 0 and one.stdout.startswith("hook: sent")
    assert "Notifying" not in one.stdout + one.stderr, "apprise's chatter stays out"
    unknown = run(cfg, db, "notify", "test", "nope")
    assert unknown.returncode == 2 and "unknown channel 'nope'" in unknown.stderr


def test_a_channel_down_is_tried_at_once_on_retry_or_a_test_message_that_gets_through(
    setup,
) -> None:
    """A channel that was unreachable backs off (here an hour); once the operator has fixed
    it, `alerts retry --channel`, `alerts retry ID` of its waiting message, or a `notify test`
    that reaches it sends what waits at the next run instead of after the backoff."""
    server, cfg, db = setup
    cfg.write_text(
        cfg.read_text()
        .replace("channels: [hook], group_wait: 0s", "channels: [dead], group_wait: 0s")
        .replace("retries: 0,", "retries: 0, delivery_backoff: 1h,")
    )
    run(cfg, db, "run", "--once", "--all")
    server.routes["/feed"].body = rss("China repatriates 60 North Korean defectors")

    def down_again() -> str:
        run(cfg, db, "run", "--once", "--all")
        (row,) = run(cfg, db, "alerts", "list", "--status", "pending").stdout.splitlines()[1:]
        assert "waiting: dead unreachable since" in row, row
        return row.split()[0]

    delivery_id = down_again()
    assert "no deliveries" not in run(cfg, db, "alerts", "list", "--status", "pending").stdout
    by_channel = run(cfg, db, "alerts", "retry", "--channel", "dead")
    assert by_channel.returncode == 0, by_channel.stderr
    assert by_channel.stdout.startswith("1 message for dead due now (dead was down since")
    (row,) = run(cfg, db, "alerts", "list", "--status", "pending").stdout.splitlines()[1:]
    assert "waiting:" not in row
    assert run(cfg, db, "alerts", "retry", "--channel", "hook").returncode == 1  # none waits
    assert run(cfg, db, "alerts", "retry").returncode == 2  # an ID or --channel

    assert down_again() == delivery_id  # tried at once, and down again
    by_id = run(cfg, db, "alerts", "retry", delivery_id)
    assert by_id.returncode == 0, by_id.stderr
    assert f"delivery {delivery_id} due now (dead is tried again at once)" in by_id.stdout

    down_again()
    fixed = server.url("/hook").replace("http://", "json://")
    cfg.write_text(cfg.read_text().replace("json://127.0.0.1:9/nothing-listens-here", fixed))
    tested = run(cfg, db, "notify", "test", "dead")
    assert tested.returncode == 0, tested.stderr
    assert "dead: was down since" in tested.stdout and "messages are due now" in tested.stdout
    run(cfg, db, "run", "--once", "--all")
    assert any("Forced repatriation" in h["title"] for h in hooks(server))
    assert run(cfg, db, "alerts", "list", "--status", "pending").stdout.startswith("no ")


def test_a_channel_that_never_answers_does_not_hold_a_stop(setup) -> None:
    """SIGTERM while a channel trickles its answer for ever (delivery_timeout far longer
    than the grace): the daemon stops within its grace, exits 0 (nothing of the database is
    left), and says the send was not recorded and may go once more."""
    server, cfg, db = setup
    cfg.write_text(
        cfg.read_text()
        .replace("interval: 5s", "interval: 1s")
        .replace("delivery_timeout: 2s", "delivery_timeout: 10m, shutdown_grace: 1s")
    )
    let_go = threading.Event()
    server.route("/hook", handler=trickle(let_go))
    daemon = Started("--config", str(cfg), "--db", db, "run", "--metrics-address", "off")
    try:
        daemon.wait(lambda: _polled(db, "wire"), "the baseline poll to be recorded")
        server.routes["/feed"].body = rss("North Korean defectors repatriated from Dandong")
        daemon.wait(lambda: server.hits("/hook"), "the send to reach the channel")
        code = daemon.stop(grace=120)
    finally:
        let_go.set()
        daemon.stop()
    assert code == 0, daemon.err
    (told,) = [x for x in daemon.lines if "still under way after shutdown_grace" in x]
    assert "may be sent once more after the restart" in told
    assert "database not answering" not in daemon.err


def test_a_stop_past_the_grace_during_a_send_logs_no_library_noise(setup) -> None:
    """SIGTERM while a send outlasts shutdown_grace: the scheduler's cancellation of the
    delivery job and apprise's own "did not finish" error stay out of the log; watcher says
    what happened itself."""
    server, cfg, db = setup
    cfg.write_text(
        cfg.read_text()
        .replace("interval: 5s", "interval: 1s")
        .replace("delivery_timeout: 2s", "delivery_timeout: 2s, shutdown_grace: 1s")
    )
    arrived = threading.Event()

    def slow_hook(handler: BaseHTTPRequestHandler) -> None:
        arrived.set()
        time.sleep(6.0)  # longer than the grace and the delivery timeout
        FeedServer._send(handler, 200, b"{}", "application/json", {})

    server.route("/hook", handler=slow_hook)
    daemon = Started("--config", str(cfg), "--db", db, "run", "--metrics-address", "off")
    try:
        daemon.wait(lambda: _polled(db, "wire"), "the baseline poll to be recorded")
        server.routes["/feed"].body = rss("North Korean defectors repatriated from Dandong")
        daemon.wait(arrived.is_set, "the send to reach the channel")
    finally:
        daemon.stop()
    assert "watcher stopped" in daemon.err
    assert "CancelledError" not in daemon.err and "raised an exception" not in daemon.err
    # apprise's line alone, without which message or channel; watcher's own says both
    alone = [x for x in daemon.lines if "did not finish" in x and "action=deliver" not in x]
    assert not alone, daemon.err

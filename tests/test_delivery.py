"""Alerts end to end on SQLite and PostgreSQL, with real receivers: an SMTP server (aiosmtpd)
reached through apprise's mailto://, and a local HTTP server through apprise's json://.

Feeds are served by a local server; each test polls, groups into stories, writes the outbox in
the poll's transaction, and runs the delivery worker with a controllable clock."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import yaml

from tests.helpers import watcher
from tests.httpserver import FeedServer, trickle
from tests.mailserver import MailServer
from tests.tcpproxy import TcpProxy
from watcher.config import load_config_text
from watcher.fetch import Fetcher, FetchLimits
from watcher.outbox import Deliverer, apprise_send
from watcher.pipeline import run_cycle
from watcher.routing import Alerting, ops_targets
from watcher.rules import compile_rules
from watcher.store import Store
from watcher.store import tables as t
from watcher.store.corrections import Corrections
from watcher.store.outbox import Outbox

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

RULES = {
    "concepts": {
        "nk_people": {"en": ["north korean*", "defector*"], "ko": ["탈북민"]},
        "sent_back": {"gloss": "sent back", "en": ["repatriat*", "sent back"], "ko": ["북송"]},
        "arrested": {"en": ["arrest*", "detain*"], "ko": ["체포"]},
    },
    "rules": [
        {
            "id": "return",
            "event": "forced_repatriation",
            "severity": "high",
            "all_of": ["nk_people", "sent_back"],
            "escalate": [{"to": "critical", "people_at_least": 100}],
        },
        {"id": "arrest", "event": "detention", "all_of": ["nk_people", "arrested"]},
    ],
}

HOSTILE = "<b>China</b> *repatriates* _60_ North Korean defectors [x](javascript:alert(1)) @channel"


def rss(*items: tuple[str, str, datetime]) -> bytes:
    body = "".join(
        f"<item><title>{_xml(title)}</title><link>{link}</link>"
        f"<pubDate>{format_datetime(when)}</pubDate><description>Lead of {_xml(title)}"
        "</description></item>"
        for title, link, when in items
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>T</title>'
        f"<link>https://example.org/</link>{body}</channel></rss>"
    ).encode()


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


class Harness:
    """Sources on a local feed server, channels on local receivers, the store under test."""

    def __init__(
        self, store: Store, feeds: FeedServer, channels: list[dict], routes: list[dict], **settings
    ) -> None:
        self.store, self.feeds, self.clock = store, feeds, Clock()
        doc = {
            "sources": [
                {
                    "id": "yonhap",
                    "name": "Yonhap",
                    "kind": "feed",
                    "url": feeds.url("/yonhap"),
                    "lang": "en",
                    "tags": ["korea"],
                },
                {
                    "id": "voa-ko",
                    "name": "VOA Korean",
                    "kind": "feed",
                    "url": feeds.url("/voa"),
                    "lang": "ko",
                },
            ],
            **RULES,
            "channels": channels,
            "routes": routes,
            "settings": {
                "retries": 0,
                "allow_private_addresses": True,  # feeds and receivers on loopback
                "delivery_backoff": "30s",
                "delivery_attempts": 3,
                **settings,
            },
        }
        self.doc = doc
        self.config = load_config_text(yaml.safe_dump(doc, allow_unicode=True), "t.yaml", {}).config
        self.matcher = compile_rules(self.config)
        store.sync_sources(self.config.sources, T0)
        self.deliverer = Deliverer(store, self.config, clock=self.clock)
        feeds.route("/yonhap", body=rss())
        feeds.route("/voa", body=rss())

    def publish(self, path: str, *entries: tuple[str, str, datetime], minutes: int) -> list[Any]:
        """The feed at `path` now carries `entries`; `minutes` later, one poll: its reports."""
        self.feeds.routes[path].body = rss(*entries)
        self.clock.advance(minutes=minutes)
        return self.poll()

    def poll(self) -> list[Any]:
        async def go() -> list[Any]:
            async with Fetcher(FetchLimits.from_settings(self.config.settings)) as fetcher:
                return await run_cycle(
                    self.config.sources,
                    store=self.store,
                    fetcher=fetcher,
                    settings=self.config.settings,
                    clock=self.clock,
                    only_due=False,
                    matcher=self.matcher,
                    alerting=Alerting.from_config(self.config),
                )

        return asyncio.run(go())

    def deliver(self) -> int:
        return asyncio.run(self.deliverer.run_due())

    def reload(self, routes: list[dict]) -> None:
        """The daemon's reload (or a restart) with these routes: a new Deliverer, which
        re-plans the digest lines already queued."""
        self.doc = {**self.doc, "routes": routes}
        text = yaml.safe_dump(self.doc, allow_unicode=True)
        self.config = load_config_text(text, "t.yaml", {}).config
        self.deliverer = Deliverer(self.store, self.config, clock=self.clock)
        asyncio.run(self.deliverer.replan_digests())

    def statuses(self) -> list[tuple[str, str, str]]:
        return sorted((d.channel, d.kind, d.status) for d in Outbox(self.store).listing())


def hook_channel(feeds: FeedServer, cid: str = "hook", path: str = "/hook") -> dict:
    feeds.route(path, status=200, body=b"{}", content_type="application/json")
    return {"id": cid, "url": feeds.url(path).replace("http://", "json://")}


def hook_messages(feeds: FeedServer, path: str = "/hook") -> list[dict]:
    return [json.loads(seen.body) for seen in feeds.hits(path)]


@pytest.fixture
def feeds():
    with FeedServer() as server:
        yield server


@pytest.fixture
def mail():
    with MailServer() as server:
        yield server


def test_first_poll_is_a_baseline_and_never_alerts(store: Store, feeds: FeedServer) -> None:
    h = Harness(store, feeds, [hook_channel(feeds)], [{"channels": ["hook"], "group_wait": "0s"}])
    feeds.routes["/yonhap"].body = rss(
        ("China repatriates 60 North Korean defectors", "https://e.org/1", T0)
    )
    h.poll()
    assert Outbox(store).story_count() == 1  # the story exists (the web page shows it)
    assert h.statuses() == [] and h.deliver() == 0


def test_email_and_webhook_end_to_end(store: Store, feeds: FeedServer, mail: MailServer) -> None:
    channels = [hook_channel(feeds), {"id": "mail", "url": mail.apprise_url()}]
    h = Harness(
        store,
        feeds,
        channels,
        [{"channels": ["hook", "mail"], "group_wait": "0s"}],
        timezone="Asia/Seoul",
    )
    h.poll()  # baseline: empty feeds
    feeds.routes["/yonhap"].body = rss((HOSTILE, "https://e.org/1", T0 - timedelta(hours=1)))
    h.clock.advance(minutes=10)
    (report, _) = sorted(h.poll(), key=lambda r: r.source_id, reverse=True)
    assert report.matched == 1 and report.stories[0].change == "new"
    assert h.deliver() == 2
    assert h.statuses() == [("hook", "alert", "sent"), ("mail", "alert", "sent")]

    (posted,) = hook_messages(feeds)
    assert "Forced repatriation" in posted["title"] and "HIGH" in posted["title"].upper()
    assert "Yonhap" in posted["message"]

    (message,) = mail.messages
    assert message["From"] == "watcher@example.org" and message["To"] == "alerts@example.org"
    assert "Forced repatriation" in message["Subject"]
    assert [p.get_content_type() for p in message.walk()][1:] == ["text/plain", "text/html"]
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    # markup in a headline is text by the time it is stored; what is left shows literally
    assert "<b>China</b>" not in html and "*repatriates*" in html and "@channel" in html
    assert 'href="javascript' not in html and "[x](javascript:alert(1))" in html
    assert "China" in text and "Yonhap" in text
    assert "KST" in html  # times in the configured zone

    # nothing is ever sent twice
    assert h.deliver() == 0
    h.clock.advance(minutes=10)
    h.poll()
    assert h.deliver() == 0 and len(mail.messages) == 1 and len(hook_messages(feeds)) == 1


def test_an_alert_says_why_it_matched_with_glosses(store: Store, feeds: FeedServer) -> None:
    h = Harness(store, feeds, [hook_channel(feeds)], [{"channels": ["hook"], "group_wait": "0s"}])
    h.poll()
    feeds.routes["/voa"].body = rss(
        ("中, 탈북민 60여명 단둥서 강제북송", "https://voa.example/9", T0)
    )
    h.clock.advance(seconds=30)
    h.poll()
    assert h.deliver() == 1
    (posted,) = hook_messages(feeds)
    # The first report's words, the gloss for the Korean term, the rule's id.
    assert "return: 탈북민 + 북송 (sent back)" in posted["message"]


@pytest.mark.parametrize(("voa_earlier", "first"), [(0, "Yonhap"), (1, "VOA Korean")])
def test_outlets_gathered_during_group_wait_make_one_message(
    store: Store, feeds: FeedServer, voa_earlier: int, first: str
) -> None:
    # VOA's report is found a poll after Yonhap's; when it was published earlier, the alert
    # (like the story page) names it first, whatever order the sources were polled in
    h = Harness(store, feeds, [hook_channel(feeds)], [{"channels": ["hook"], "group_wait": "2m"}])
    h.poll()
    feeds.routes["/yonhap"].body = rss(
        ("China repatriates 60 North Korean defectors via Dandong", "https://e.org/1", T0)
    )
    h.clock.advance(seconds=30)
    h.poll()
    assert h.deliver() == 0  # group_wait not over
    voa_at = T0 - timedelta(hours=voa_earlier)
    feeds.routes["/voa"].body = rss(
        ("中, 탈북민 60여명 단둥서 강제북송", "https://voa.example/2", voa_at)
    )
    h.clock.advance(seconds=60)
    reports = {r.source_id: r for r in h.poll()}
    assert reports["voa-ko"].stories[0].change == "joined"
    h.clock.advance(seconds=60)
    assert h.deliver() == 1
    (posted,) = hook_messages(feeds)
    message = posted["message"]
    assert "Yonhap" in message and "VOA Korean" in message
    other = "VOA Korean" if first == "Yonhap" else "Yonhap"
    assert message.index(first) < message.index(other), message


def test_a_critical_story_is_sent_as_apprise_failure_type_a_routine_one_as_info(
    store: Store, feeds: FeedServer
) -> None:
    # services that can (Slack, Discord, ntfy…) show a critical alert louder than a routine one
    h = Harness(store, feeds, [hook_channel(feeds)], [{"channels": ["hook"], "group_wait": "0s"}])
    h.poll()
    feeds.routes["/yonhap"].body = rss(
        ("North Korean defectors detained in Shenyang", "https://e.org/1", T0),
        ("China repatriates 300 North Korean defectors from Jilin", "https://e.org/2", T0),
    )
    h.clock.advance(minutes=1)
    h.poll()
    assert h.deliver() == 2
    types = {p["title"].split("]")[0].lstrip("["): p["type"] for p in hook_messages(feeds)}
    assert types == {"CRITICAL": "failure", "MEDIUM": "info"}, types


def test_a_story_of_several_events_is_titled_by_the_gravest(
    store: Store, feeds: FeedServer
) -> None:
    # not by the name that sorts first: "Detention, Forced repatriation" buried the return
    h = Harness(store, feeds, [hook_channel(feeds)], [{"channels": ["hook"], "group_wait": "0s"}])
    h.poll()
    feeds.routes["/yonhap"].body = rss(
        ("China repatriates 30 North Korean defectors detained in Jilin", "https://e.org/1", T0)
    )
    h.clock.advance(minutes=1)
    h.poll()
    assert h.deliver() == 1
    (posted,) = hook_messages(feeds)
    assert "] Forced repatriation, Detention" in posted["title"], posted["title"]


def test_a_material_change_sends_an_update_naming_the_new_outlets(
    store: Store, feeds: FeedServer
) -> None:
    h = Harness(store, feeds, [hook_channel(feeds)], [{"channels": ["hook"], "group_wait": "0s"}])
    h.poll()
    feeds.routes["/yonhap"].body = rss(
        ("China repatriates 60 North Korean defectors via Dandong", "https://e.org/1", T0)
    )
    h.clock.advance(minutes=1)
    h.poll()
    h.deliver()
    feeds.routes["/voa"].body = rss(("단둥서 탈북민 600여명 강제북송", "https://voa.example/2", T0))
    h.clock.advance(minutes=5)
    reports = {r.source_id: r for r in h.poll()}
    assert reports["voa-ko"].stories[0].change == "revised"
    assert h.deliver() == 1
    _, update = hook_messages(feeds)
    assert "VOA Korean" in update["message"] and "600" in update["title"] + update["message"]
    assert h.statuses() == [("hook", "alert", "sent"), ("hook", "update", "sent")]
    # it says what changed since the last message: the count the first one gave, and the
    # hedge of the new one (600여명: about 600)
    changed = "Update · 60 → ~600 people · HIGH → CRITICAL · +1 outlet: VOA Korean\n"
    assert changed in update["message"]


def test_each_update_says_what_changed_since_the_message_before_it(
    store: Store, feeds: FeedServer
) -> None:
    h = Harness(store, feeds, [hook_channel(feeds)], [{"channels": ["hook"], "group_wait": "0s"}])
    h.poll()
    h.publish(
        "/yonhap",
        ("Chinese police detain 20 North Korean defectors", "https://e.org/1", T0),
        minutes=1,
    )
    h.deliver()
    h.publish(
        "/voa",
        ("China repatriates 20 North Korean defectors via Dandong", "https://voa.example/2", T0),
        minutes=5,
    )
    h.deliver()
    h.publish(
        "/yonhap",
        ("Chinese police detain 20 North Korean defectors", "https://e.org/1", T0),
        ("China repatriates 60 North Korean defectors via Dandong", "https://e.org/3", T0),
        minutes=5,
    )
    h.deliver()
    first, second, third = (m["message"].splitlines()[0] for m in hook_messages(feeds))
    assert not first.startswith("Update")
    assert second.startswith(
        "Update · MEDIUM → HIGH · now also: Forced repatriation · now also in Dandong"
    )
    # against the second message, not the first: the return and Dandong are not news again
    assert third == "Update · 20 → 60 people"  # Yonhap's second report: no new outlet


def test_a_channel_that_never_heard_of_a_story_gets_its_alert_not_an_update(
    store: Store, feeds: FeedServer
) -> None:
    # the route takes critical stories only: the story's first revision (60, high) went
    # nowhere; when the count makes it critical, the channel's first message is the alert
    routes = [{"channels": ["hook"], "group_wait": "0s", "min_severity": "critical"}]
    h = Harness(store, feeds, [hook_channel(feeds)], routes)
    h.poll()
    h.publish(
        "/yonhap",
        ("China repatriates 60 North Korean defectors via Dandong", "https://e.org/1", T0),
        minutes=1,
    )
    assert h.deliver() == 0
    assert (
        h.publish(
            "/voa", ("단둥서 탈북민 600여명 강제북송", "https://voa.example/2", T0), minutes=5
        )[-1]
        .stories[0]
        .change
        == "revised"
    )
    assert h.deliver() == 1
    (message,) = hook_messages(feeds)
    assert message["title"].startswith("[CRITICAL] Forced repatriation"), message["title"]
    assert "Update" not in message["title"] + message["message"]
    assert h.statuses() == [("hook", "alert", "sent")]


def test_a_change_while_the_alert_waits_out_group_wait_goes_in_the_alert(
    store: Store, feeds: FeedServer
) -> None:
    # the alert waits 5 minutes for more outlets; a graver report a minute later makes a new
    # revision: no update overtakes the alert, which goes out once, showing both
    h = Harness(store, feeds, [hook_channel(feeds)], [{"channels": ["hook"], "group_wait": "5m"}])
    h.poll()
    h.publish(
        "/yonhap",
        ("Chinese police detain 20 North Korean defectors", "https://e.org/1", T0),
        minutes=1,
    )
    assert h.deliver() == 0
    assert (
        h.publish(
            "/voa",
            (
                "China repatriates 20 North Korean defectors via Dandong",
                "https://voa.example/2",
                T0,
            ),
            minutes=1,
        )[-1]
        .stories[0]
        .change
        == "revised"
    )
    assert h.deliver() == 0  # nothing overtakes the waiting alert
    h.clock.advance(minutes=10)
    assert h.deliver() == 1
    (message,) = hook_messages(feeds)
    assert "Update" not in message["title"] + message["message"]
    assert "Forced repatriation" in message["title"] and "VOA Korean" in message["message"]
    assert h.statuses() == [("hook", "alert", "sent")]


def test_a_story_that_turns_critical_is_not_held_back_by_its_digest_line(
    store: Store, feeds: FeedServer
) -> None:
    # docs/alerts.md's routes on one channel: critical at once, the rest in a morning digest.
    # The story opens high (a digest line waits); a report of 600 makes it critical: its
    # alert goes now, not with tomorrow's digest
    h = Harness(
        store,
        feeds,
        [hook_channel(feeds)],
        [
            {"channels": ["hook"], "min_severity": "critical", "group_wait": "0s"},
            {"channels": ["hook"], "mode": "digest", "digest": {"at": "08:00"}},
        ],
    )
    h.poll()
    h.publish(
        "/yonhap", ("China repatriates 20 North Korean defectors", "https://e.org/1", T0), minutes=1
    )
    assert h.deliver() == 0  # the digest line waits for 08:00
    h.publish(
        "/voa",
        ("China repatriates 600 North Korean defectors via Dandong", "https://voa.example/2", T0),
        minutes=1,
    )
    assert h.deliver() == 1
    (message,) = hook_messages(feeds)
    assert "CRITICAL" in message["title"] and "600" in message["title"]
    assert "Update" not in message["title"] + message["message"]
    assert sorted(h.statuses()) == [("hook", "alert", "sent"), ("hook", "digest", "pending")]


def test_a_change_while_the_alert_is_being_sent_follows_it_as_an_update(
    store: Store, feeds: FeedServer
) -> None:
    # the poll that makes the story critical runs while its first alert (rendered before the
    # change) is on its way: the channel then gets the update, not nothing
    h = Harness(store, feeds, [hook_channel(feeds)], [{"channels": ["hook"], "group_wait": "0s"}])
    h.poll()
    h.publish(
        "/yonhap", ("China repatriates 20 North Korean defectors", "https://e.org/1", T0), minutes=1
    )
    send = h.deliverer.send

    def send_during_a_poll(*args: Any, **kw: Any) -> Any:
        feeds.routes["/voa"].body = rss(
            ("China repatriates 600 North Korean defectors", "https://voa.example/2", T0)
        )
        with ThreadPoolExecutor(1) as other:  # the daemon's tick, beside the send
            other.submit(h.poll).result()
        return send(*args, **kw)

    h.deliverer.send = send_during_a_poll
    assert h.deliver() == 1
    h.deliverer.send = send
    h.clock.advance(minutes=1)
    assert h.deliver() == 1
    first, second = hook_messages(feeds)
    assert "20 people" in first["title"] and "CRITICAL" not in first["title"]
    assert "CRITICAL" in second["title"] and "20 → 600 people" in second["message"]
    assert h.statuses() == [("hook", "alert", "sent"), ("hook", "update", "sent")]


def test_a_reminder_sent_in_an_updates_place_says_what_changed(
    store: Store, feeds: FeedServer
) -> None:
    # the channel is down when the count changes; when it is back, the reminder (queued when
    # the alert went out, so first in the queue) carries the story and the update waits
    # behind it: the message must still say what changed, and the next update not repeat it
    h = Harness(
        store,
        feeds,
        [hook_channel(feeds)],
        [{"channels": ["hook"], "group_wait": "0s", "repeat_interval": "1h"}],
    )
    h.poll()
    first = ("China repatriates 60 North Korean defectors via Dandong", "https://e.org/1", T0)
    h.publish("/yonhap", first, minutes=1)
    h.deliver()
    feeds.routes["/hook"].status = 503
    h.publish("/voa", ("단둥서 탈북민 600여명 강제북송", "https://voa.example/2", T0), minutes=10)
    h.deliver()
    feeds.routes["/hook"].status = 200
    h.clock.advance(hours=2)
    h.deliver()
    back = hook_messages(feeds)[-1]  # (the one before it is the attempt the 503 refused)
    assert back["message"].startswith("Update · 60 → ~600 people · HIGH → CRITICAL · +1 outlet")
    assert ("hook", "reminder", "sent") in h.statuses()
    later = ("China repatriated 900 North Korean defectors via Dandong", "https://e.org/3", T0)
    h.publish("/yonhap", first, later, minutes=1)
    h.deliver()
    assert hook_messages(feeds)[-1]["message"].splitlines()[0] == "Update · ~600 → 900 people"


def test_failing_channel_retries_with_backoff_and_does_not_hold_the_others(
    store: Store, feeds: FeedServer
) -> None:
    channels = [hook_channel(feeds), hook_channel(feeds, "flaky", "/flaky")]
    feeds.routes["/flaky"].statuses = [500, 503]
    h = Harness(store, feeds, channels, [{"channels": ["hook", "flaky"], "group_wait": "0s"}])
    h.poll()
    feeds.routes["/yonhap"].body = rss(("North Korean defectors detained", "https://e.org/1", T0))
    h.clock.advance(minutes=1)
    h.poll()
    h.deliver()
    assert h.statuses() == [("flaky", "alert", "pending"), ("hook", "alert", "sent")]
    (flaky,) = [d for d in Outbox(store).listing() if d.channel == "flaky"]
    assert flaky.attempts == 1 and "500" in (flaky.last_error or "")
    down = Outbox(store).channels_down()["flaky"]
    assert down.next_try_at >= h.clock.now + timedelta(seconds=24)  # 30 s with ±20 % jitter
    assert down.failures == 1 and "hook" not in Outbox(store).channels_down()
    h.deliver()
    assert len(feeds.hits("/flaky")) == 1  # not due yet
    h.clock.advance(seconds=40)
    h.deliver()
    h.clock.advance(seconds=80)
    h.deliver()
    assert h.statuses() == [("flaky", "alert", "sent"), ("hook", "alert", "sent")]
    assert len(feeds.hits("/flaky")) == 3 and len(hook_messages(feeds)) == 1
    (attempts,) = Outbox(store).attempts([flaky.id]).values()
    assert [a["outcome"] for a in attempts] == ["unreachable", "unreachable", "sent"]
    assert Outbox(store).channels_down() == {}, "a send that gets through clears the outage"


@pytest.mark.parametrize("retry_after", ["30", None], ids=["retry-after-30", "no-retry-after"])
def test_a_service_that_says_too_many_requests_is_left_alone_a_minute_at_least(
    store: Store, feeds: FeedServer, retry_after: str | None
) -> None:
    """A 429 is a service limiting our rate: the channel waits at least a minute (apprise
    does not pass on the `Retry-After` header), not the usual back-off from a few seconds.
    Before, it was tried again at +3 s, +7 s, +16 s."""
    channels = [hook_channel(feeds)]
    feeds.routes["/hook"].status = 429
    if retry_after:
        feeds.routes["/hook"].headers["Retry-After"] = retry_after
    h = Harness(
        store, feeds, channels, [{"channels": ["hook"], "group_wait": "0s"}], delivery_backoff="2s"
    )
    _one_story(h)
    h.deliver()
    down = Outbox(store).channels_down()["hook"]
    assert down.next_try_at >= h.clock.now + timedelta(seconds=60), down
    assert "429" in (down.last_error or "")


def test_telegrams_retry_after_is_kept_other_answers_are_not_rate_limits() -> None:
    from watcher.outbox import rate_limited

    telegram = "Failed to send Telegram notification to 1: Too Many Requests: retry after 90, "
    assert rate_limited([telegram + "error=429."]) == 90
    assert rate_limited(["Failed to send JSON notification: Too Many Requests - error=429."]) == 60
    assert rate_limited(["Failed to send JSON notification: Bad Gateway - error=502."]) is None


def test_a_delivery_the_service_keeps_refusing_is_marked_failed_and_ops_is_told(
    store: Store, feeds: FeedServer
) -> None:
    channels = [hook_channel(feeds, "broken", "/broken"), hook_channel(feeds, "ops", "/ops")]
    feeds.routes["/broken"].status = 400  # the service answers, and says no
    routes = [{"channels": ["ops"], "ops": True}, {"channels": ["broken"], "group_wait": "0s"}]
    h = Harness(store, feeds, channels, routes)
    h.poll()
    feeds.routes["/yonhap"].body = rss(("North Korean defectors detained", "https://e.org/1", T0))
    h.clock.advance(minutes=1)
    h.poll()
    for _ in range(3):
        h.deliver()
        h.clock.advance(hours=1)
    h.deliver()
    assert ("broken", "alert", "failed") in h.statuses()
    assert ("ops", "ops", "sent") in h.statuses()
    (ops,) = hook_messages(feeds, "/ops")
    assert "broken" in ops["title"] + ops["message"] and "watcher alerts retry" in ops["message"]


def test_silenced_stories_are_recorded_not_sent(store: Store, feeds: FeedServer) -> None:
    h = Harness(store, feeds, [hook_channel(feeds)], [{"channels": ["hook"], "group_wait": "0s"}])
    Outbox(store).add_silence(
        {"source": "yon*"},
        reason="test run",
        starts_at=T0,
        ends_at=T0 + timedelta(hours=6),
        created_by="op",
    )
    h.poll()
    feeds.routes["/yonhap"].body = rss(("North Korean defectors detained", "https://e.org/1", T0))
    h.clock.advance(minutes=1)
    h.poll()
    h.deliver()
    assert h.statuses() == [("hook", "alert", "silenced")]
    assert hook_messages(feeds) == []
    (d,) = Outbox(store).listing()
    assert d.last_error == "silenced by #1: test run"


def _two_stories(h: Harness, feeds: FeedServer) -> None:
    """Poll a baseline, then two stories (a detention, then a forced repatriation
    that a Korean outlet reports too)."""
    h.poll()
    titles = [
        "North Korean defectors detained in Shenyang",
        "China repatriates 300 North Korean defectors from Jilin",
    ]
    feeds.routes["/yonhap"].body = rss((titles[0], "https://e.org/1", T0))
    h.clock.advance(minutes=1)
    h.poll()
    feeds.routes["/voa"].body = rss(("탈북민 300명 지린서 강제북송", "https://voa.example/3", T0))
    feeds.routes["/yonhap"].body = rss(
        (titles[1], "https://e.org/2", T0), (titles[0], "https://e.org/1", T0)
    )
    h.clock.advance(minutes=1)
    h.poll()


def test_mail_server_down_then_up_delivers_everything_in_order(
    store: Store, feeds: FeedServer, mail: MailServer
) -> None:
    h = Harness(
        store,
        feeds,
        [{"id": "mail", "url": mail.apprise_url()}],
        [{"channels": ["mail"], "group_wait": "0s"}],
    )
    mail.stop()
    _two_stories(h, feeds)
    h.deliver()
    assert {s for _, _, s in h.statuses()} == {"pending"}
    mail.start()
    h.clock.advance(minutes=2)
    h.deliver()
    assert {s for _, _, s in h.statuses()} == {"sent"}
    subjects = [m["Subject"] for m in mail.messages]
    assert len(subjects) == 2
    assert "Detention" in subjects[0] and "Forced repatriation" in subjects[1]


def test_old_news_never_alerts(store: Store, feeds: FeedServer) -> None:
    h = Harness(store, feeds, [hook_channel(feeds)], [{"channels": ["hook"], "group_wait": "0s"}])
    h.poll()
    feeds.routes["/yonhap"].body = rss(
        ("North Korean defectors detained", "https://e.org/1", T0 - timedelta(days=30))
    )
    h.clock.advance(minutes=1)
    h.poll()
    assert Outbox(store).story_count() == 1 and h.statuses() == []


def test_reminders_follow_repeat_interval(store: Store, feeds: FeedServer) -> None:
    h = Harness(
        store,
        feeds,
        [hook_channel(feeds)],
        [{"channels": ["hook"], "group_wait": "0s", "repeat_interval": "1h"}],
    )
    h.poll()
    feeds.routes["/yonhap"].body = rss(("North Korean defectors detained", "https://e.org/1", T0))
    h.clock.advance(minutes=1)
    h.poll()
    h.deliver()
    h.clock.advance(minutes=30)
    assert h.deliver() == 0
    h.clock.advance(minutes=31)
    assert h.deliver() == 1
    _, reminder = hook_messages(feeds)
    assert "reminder" in (reminder["title"] + reminder["message"]).lower()


def test_a_timeout_is_uncertain_retried_once_then_left_alone(
    store: Store, feeds: FeedServer
) -> None:
    channels = [hook_channel(feeds, "slow", "/slow")]
    feeds.routes["/slow"].delay = 2.0
    feeds.routes["/slow"].status = 503  # late, and then not taken either
    h = Harness(
        store, feeds, channels, [{"channels": ["slow"], "group_wait": "0s"}], delivery_timeout="1s"
    )
    h.poll()
    feeds.routes["/yonhap"].body = rss(("North Korean defectors detained", "https://e.org/1", T0))
    h.clock.advance(minutes=1)
    h.poll()
    h.deliver()
    (d,) = Outbox(store).listing()
    assert d.status == "pending" and d.last_error.startswith("uncertain")
    h.clock.advance(minutes=5)
    _sends_ended()  # else the channel is still busy with the first
    h.deliver()
    (d,) = Outbox(store).listing()
    assert d.status == "uncertain" and d.attempts == 2
    h.clock.advance(hours=5)
    assert h.deliver() == 0
    assert len(feeds.hits("/slow")) == 2  # the receiver may hold it twice: the window we accept


def test_a_server_that_trickles_its_answer_forever_holds_no_other_channel(
    feeds: FeedServer,
) -> None:
    """A webhook that answers a byte at a time keeps its send running long after we stopped
    waiting. The channel gets no second send while it runs (it is busy: unreachable, tried
    again later), and a healthy channel is sent to at once. Before, each try left a thread in
    apprise's one pool shared by all channels; once it was full, every channel's sends timed
    out unsent and were recorded `uncertain`."""
    from watcher import render

    stop = threading.Event()
    feeds.route("/slow", handler=trickle(stop))
    slow = feeds.url("/slow").replace("http://", "json://")
    good = hook_channel(feeds)["url"]
    message = render.render_test(render.channel_format(slow))
    pool = min(32, (os.cpu_count() or 1) + 4)  # apprise's shared pool
    try:
        first = apprise_send(slow, message, 1)
        assert first.outcome == "uncertain", first
        for _ in range(pool + 1):
            again = apprise_send(slow, message, 1)
            assert again.outcome == "unreachable", again
            assert "previous send still running since" in (again.error or ""), again
        assert len(feeds.hits("/slow")) == 1
        sent = apprise_send(good, message, 30)
        assert sent.outcome == "sent", sent
        assert len(feeds.hits("/hook")) == 1
    finally:
        stop.set()
    _sends_ended()
    after = apprise_send(slow, message, 5)
    assert "still running" not in (after.error or ""), "the channel is free once it ended"


def test_a_slow_channel_holds_no_other_channels_next_claim(store: Store, feeds: FeedServer) -> None:
    """The daemon claims every second without waiting for a channel's batch to end: a
    message due for a fast channel goes while a slow one is still sending. The slow channel's
    own next message is not claimed while it is busy (one send at a time, in order).
    Before, no claim happened until the slowest channel's whole batch was sent."""
    release = threading.Event()

    def slow(h: Any) -> None:
        release.wait(60)
        h.send_response(200)
        h.send_header("Content-Length", "2")
        h.end_headers()
        h.wfile.write(b"{}")

    channels = [hook_channel(feeds, "slow", "/slow"), hook_channel(feeds, "fast", "/fast")]
    feeds.route("/slow", handler=slow)
    h = Harness(
        store,
        feeds,
        channels,
        [{"channels": ["slow", "fast"], "group_wait": "0s"}],
        delivery_timeout="60s",
    )
    _one_story(h)

    async def until(condition: Any, what: str) -> None:
        end = time.monotonic() + 30
        while not condition():
            assert time.monotonic() < end, what
            await asyncio.sleep(0.05)

    async def go() -> None:
        try:
            assert await h.deliverer.run_due(wait=False) == 2
            await until(lambda: feeds.hits("/fast") and feeds.hits("/slow"), "both began")
            # a second story while the slow channel still sends the first
            await asyncio.to_thread(
                h.publish,
                "/yonhap",
                ("China repatriates 300 North Korean defectors from Jilin", "https://e.org/2", T0),
                minutes=1,
            )
            assert await h.deliverer.run_due(wait=False) == 1  # the fast one's, not slow's
            await until(lambda: len(feeds.hits("/fast")) == 2, "the fast channel's second")
            assert len(feeds.hits("/slow")) == 1
            waiting = [d for d in _mine(store, "slow") if d.status == "pending"]
            assert len(waiting) == 2 and waiting[1].claimed_until is None, waiting
        finally:
            release.set()
        await h.deliverer.sends_ended()
        assert await h.deliverer.run_due() == 1

    asyncio.run(go())
    assert [x[2] for x in h.statuses()] == ["sent"] * 4
    assert len(feeds.hits("/slow")) == 2


def _sends_ended(within: float = 60) -> None:
    """Wait until no send runs on in its thread (one we stopped waiting for)."""
    from watcher import outbox

    end = time.monotonic() + within
    while any(thread.is_alive() for thread, _ in list(outbox._sending.values())):
        assert time.monotonic() < end, "a send still runs"
        time.sleep(0.05)


def test_a_send_that_arrives_after_its_timeout_is_not_sent_again(
    store: Store, feeds: FeedServer
) -> None:
    """We stop waiting after `delivery_timeout`, but the send goes on in its thread; when it
    gets through meanwhile, the retry sends nothing more and the delivery is sent."""
    channels = [hook_channel(feeds, "slow", "/slow")]
    feeds.routes["/slow"].delay = 2.0
    h = Harness(
        store, feeds, channels, [{"channels": ["slow"], "group_wait": "0s"}], delivery_timeout="1s"
    )
    _one_story(h)
    h.deliver()
    (d,) = Outbox(store).listing()
    assert d.status == "pending" and d.last_error.startswith("uncertain")
    _sends_ended()
    h.clock.advance(minutes=5)
    h.deliver()
    (d,) = Outbox(store).listing()
    assert d.status == "sent" and len(feeds.hits("/slow")) == 1


def _daily_digest(store: Store, feeds: FeedServer) -> Harness:
    """A harness whose one route is a digest to the hook at 10:00 (the clock starts at 09:00)."""
    return Harness(
        store,
        feeds,
        [hook_channel(feeds)],
        [{"id": "daily", "channels": ["hook"], "mode": "digest", "digest": {"at": "10:00"}}],
    )


def test_digest_route_sends_one_message_with_every_story_at_its_hour(
    store: Store, feeds: FeedServer
) -> None:
    h = _daily_digest(store, feeds)
    h.poll()
    feeds.routes["/yonhap"].body = rss(
        ("North Korean defectors detained in Shenyang", "https://e.org/1", T0),
        ("China repatriates 300 North Korean defectors from Jilin", "https://e.org/2", T0),
    )
    h.clock.advance(minutes=1)
    h.poll()
    assert h.deliver() == 0  # 09:01: not yet
    h.clock.advance(minutes=59)
    assert h.deliver() == 2
    (digest,) = hook_messages(feeds)
    assert "Shenyang" in digest["message"] and "Jilin" in digest["message"]
    assert h.statuses() == [("hook", "digest", "sent"), ("hook", "digest", "sent")]


def test_a_digest_lists_a_story_once_however_many_revisions_queued(
    store: Store, feeds: FeedServer
) -> None:
    # each revision of a story queues a digest delivery; the digest shows the story as it is
    # when sent, so the others are recorded as superseded, not listed again
    h = _daily_digest(store, feeds)
    h.poll()
    feeds.routes["/yonhap"].body = rss(
        ("North Korean defectors detained in Shenyang", "https://e.org/1", T0)
    )
    h.clock.advance(minutes=1)
    h.poll()
    feeds.routes["/yonhap"].body = rss(
        ("North Korean defectors detained in Shenyang", "https://e.org/1", T0),
        ("China detains 30 North Korean defectors in Shenyang", "https://e.org/2", T0),
    )
    h.clock.advance(minutes=1)
    h.poll()
    assert len(h.statuses()) == 2, "a second revision queued a second digest delivery"
    h.clock.advance(minutes=58)
    assert h.deliver() == 2
    (digest,) = hook_messages(feeds)
    assert digest["message"].count("story #1") == 1, digest["message"]
    assert "1 stor" in digest["title"], digest["title"]
    assert sorted(h.statuses()) == [("hook", "digest", "sent"), ("hook", "digest", "superseded")]


def _due(store: Store) -> list[tuple[str, datetime]]:
    return sorted((d.route, d.due_at) for d in Outbox(store).listing() if d.status == "pending")


#: The digest route of `_daily_digest`, at another time or in another form.
DAILY = {"id": "daily", "channels": ["hook"], "mode": "digest"}


@pytest.mark.parametrize(
    ("routes", "due"),
    [
        # an earlier time today: the line queued at 09:01 goes with the 09:30 digest
        ([{**DAILY, "digest": {"at": "09:30"}}], T0.replace(minute=30)),
        # a time already past when the line was queued: tomorrow's
        ([{**DAILY, "digest": {"at": "08:00"}}], T0.replace(day=24, hour=8)),
        # another time zone (10:00 in Seoul is 01:00 UTC)
        (
            [{**DAILY, "digest": {"at": "10:00"}, "timezone": "Asia/Seoul"}],
            T0.replace(day=24, hour=1),
        ),
        # weekly: T0 is a Monday, so Wednesday's 10:00
        ([{**DAILY, "digest": {"at": "10:00", "days": ["wed"]}}], T0.replace(day=25, hour=10)),
        # unchanged: the time it had
        ([{**DAILY, "digest": {"at": "10:00"}}], T0.replace(hour=10)),
        # no longer a digest route: due at once, as the route's messages now are
        ([{"id": "daily", "channels": ["hook"]}], T0.replace(minute=1)),
        # the route removed: its lines keep their time (then go to their channel, if it
        # is still configured, in the default time zone)
        ([{"id": "other", "channels": ["hook"], "mode": "digest"}], T0.replace(hour=10)),
    ],
    ids=["earlier", "past", "zone", "weekly", "unchanged", "immediate", "removed"],
)
def test_a_digest_schedule_changed_re_plans_the_lines_already_queued(
    store: Store, feeds: FeedServer, routes: list[dict], due: datetime
) -> None:
    h = _daily_digest(store, feeds)
    h.poll()
    feeds.routes["/yonhap"].body = rss(
        ("North Korean defectors detained in Shenyang", "https://e.org/1", T0)
    )
    h.clock.advance(minutes=1)
    h.poll()
    assert _due(store) == [("daily", T0.replace(hour=10))]
    h.clock.advance(minutes=4)
    h.reload(routes)
    assert _due(store) == [("daily", due)]
    h.reload(routes)  # again (another replica, a restart): nothing moves
    assert _due(store) == [("daily", due)]


def test_a_digest_moved_earlier_sends_the_old_and_new_stories_in_one_message(
    store: Store, feeds: FeedServer
) -> None:
    # the reviewer's case: 10:00 → 09:30 while a story waits; a story after the reload joins
    # it, and one digest goes at 09:30 (not a second at 10:00 with the older story)
    h = _daily_digest(store, feeds)
    h.poll()
    feeds.routes["/yonhap"].body = rss(
        ("North Korean defectors detained in Shenyang", "https://e.org/1", T0)
    )
    h.clock.advance(minutes=1)
    h.poll()
    h.reload([{**DAILY, "digest": {"at": "09:30"}}])
    feeds.routes["/yonhap"].body = rss(
        ("North Korean defectors detained in Shenyang", "https://e.org/1", T0),
        ("China repatriates 300 North Korean defectors from Jilin", "https://e.org/2", T0),
    )
    h.clock.advance(minutes=1)
    h.poll()
    h.clock.advance(minutes=28)
    assert h.deliver() == 2
    (digest,) = hook_messages(feeds)
    assert "Shenyang" in digest["message"] and "Jilin" in digest["message"]
    h.clock.advance(minutes=30)
    assert h.deliver() == 0 and len(hook_messages(feeds)) == 1


def test_a_digest_line_being_sent_or_retried_keeps_its_time(
    store: Store, feeds: FeedServer
) -> None:
    # a claimed line is another process's send under way; a tried one waits its backoff
    h = _daily_digest(store, feeds)
    h.poll()
    feeds.routes["/yonhap"].body = rss(
        ("North Korean defectors detained in Shenyang", "https://e.org/1", T0),
        ("China repatriates 300 North Korean defectors from Jilin", "https://e.org/2", T0),
    )
    h.clock.advance(minutes=1)
    h.poll()
    first, second = sorted(Outbox(store).listing(), key=lambda d: d.id)
    with store.engine.begin() as conn:
        conn.execute(
            t.deliveries.update()
            .where(t.deliveries.c.id == first.id)
            # (held by either clock: PostgreSQL reckons claims by its own)
            .values(claimed_until=max(h.clock(), datetime.now(UTC)) + timedelta(hours=1))
        )
        conn.execute(t.deliveries.update().where(t.deliveries.c.id == second.id).values(attempts=1))
    h.reload([{**DAILY, "digest": {"at": "09:30"}}])
    assert _due(store) == [("daily", T0.replace(hour=10))] * 2


@pytest.mark.e2e  # `watcher alerts list` runs as a process
def test_an_unreachable_channel_waits_past_the_attempt_budget_and_sends_its_queue_in_order(
    store: Store, feeds: FeedServer, mail: MailServer
) -> None:
    """SMTP down for five hours (far longer than delivery_attempts × backoff): nothing is
    given up, only the head of the queue is tried, ops hear once that mail is late and once
    that it is back, and one round sends the whole queue in order, each message once."""
    channels = [{"id": "mail", "url": mail.apprise_url()}, hook_channel(feeds, "ops", "/ops")]
    routes = [{"channels": ["ops"], "ops": True}, {"channels": ["mail"], "group_wait": "0s"}]
    h = Harness(store, feeds, channels, routes, delivery_late_after="15m")
    mail.stop()
    _two_stories(h, feeds)
    outbox = Outbox(store)
    h.deliver()
    head, behind = sorted((d for d in outbox.listing() if d.channel == "mail"), key=lambda d: d.id)
    assert (head.attempts, behind.attempts) == (1, 0), "only the head is tried"
    assert head.last_error is not None and head.last_error.startswith("unreachable")
    for _ in range(5):
        h.clock.advance(hours=1)
        h.deliver()
    mine = sorted((d for d in outbox.listing() if d.channel == "mail"), key=lambda d: d.id)
    assert [d.status for d in mine] == ["pending", "pending"], "an outage is not a refusal"
    assert mine[0].attempts == 6 > h.config.settings.delivery_attempts and mine[1].attempts == 0
    down = outbox.channels_down()["mail"]
    assert down.failures == 6 and down.late_told_at is not None
    late = hook_messages(feeds, "/ops")
    assert len(late) == 1 and "mail" in late[0]["title"] and "late" in late[0]["title"]
    assert "2 message(s) wait" in late[0]["message"]
    assert mail.messages == []
    db = store.engine.url.render_as_string(hide_password=False)
    listed = watcher("--db", db, "alerts", "list", "--status", "pending").stdout.splitlines()
    waiting = [line for line in listed if "mail" in line]
    assert len(waiting) == 2 and all("waiting: mail unreachable since" in w for w in waiting)

    mail.start()
    h.clock.advance(hours=1, minutes=1)  # past the channel's next try (at most 1 h + 20 %)
    h.clock.advance(minutes=15)
    assert h.deliver() >= 2
    assert [d.status for d in outbox.listing() if d.channel == "mail"] == ["sent", "sent"]
    subjects = [m["Subject"] for m in mail.messages]
    assert len(subjects) == 2, "each message once"
    assert "Detention" in subjects[0] and "Forced repatriation" in subjects[1], "in order"
    assert outbox.channels_down() == {}
    h.deliver()
    back = hook_messages(feeds, "/ops")[1:]
    assert len(back) == 1 and "reachable again" in back[0]["title"]


def test_a_channel_down_past_give_up_after_expires_its_messages_and_ops_can_resend(
    store: Store, feeds: FeedServer
) -> None:
    channels = [hook_channel(feeds, "down", "/down"), hook_channel(feeds, "ops", "/ops")]
    feeds.routes["/down"].status = 503
    routes = [
        {"channels": ["ops"], "ops": True},
        {"channels": ["down"], "group_wait": "0s", "give_up_after": "2h"},
    ]
    h = Harness(store, feeds, channels, routes, delivery_late_after="6h")
    h.poll()
    feeds.routes["/yonhap"].body = rss(("North Korean defectors detained", "https://e.org/1", T0))
    h.clock.advance(minutes=1)
    h.poll()
    h.deliver()
    h.clock.advance(hours=1)
    h.deliver()
    (d,) = [d for d in Outbox(store).listing() if d.channel == "down"]
    assert d.status == "pending" and hook_messages(feeds, "/ops") == []
    h.clock.advance(hours=1, minutes=5)
    h.deliver()
    (d,) = [d for d in Outbox(store).listing() if d.channel == "down"]
    assert d.status == "expired" and d.last_error == "gave up after 2h"
    h.deliver()
    (told,) = hook_messages(feeds, "/ops")
    assert "expired unsent" in told["title"] and "watcher alerts retry" in told["message"]
    assert "503" in told["message"], "ops hear why"

    feeds.routes["/down"].status = 200
    assert Outbox(store).retry(d.id, h.clock.now)
    h.clock.advance(hours=2)  # past the channel's next try
    h.deliver()
    (d,) = [d for d in Outbox(store).listing() if d.channel == "down"]
    assert d.status == "sent" and len(feeds.hits("/down")) == 3  # two refused by the 503, one sent


def test_messages_about_one_story_queued_during_an_outage_arrive_once(
    store: Store, feeds: FeedServer
) -> None:
    """Two updates of one story wait while the channel is down: when it is back, one
    message with every outlet is sent, and the later update is recorded as superseded."""
    h = Harness(store, feeds, [hook_channel(feeds)], [{"channels": ["hook"], "group_wait": "0s"}])
    h.poll()
    first = ("China repatriates 60 North Korean defectors via Dandong", "https://e.org/1", T0)
    feeds.routes["/yonhap"].body = rss(first)
    h.clock.advance(minutes=1)
    h.poll()
    h.deliver()
    feeds.routes["/hook"].status = 503
    feeds.routes["/voa"].body = rss(("단둥서 탈북민 600여명 강제북송", "https://voa.example/2", T0))
    h.clock.advance(minutes=1)
    h.poll()
    h.deliver()
    more = ("China repatriated 900 North Korean defectors via Dandong", "https://e.org/3", T0)
    feeds.routes["/yonhap"].body = rss(more, first)
    h.clock.advance(minutes=1)
    h.poll()
    h.deliver()
    assert sorted(d.kind for d in Outbox(store).listing()) == ["alert", "update", "update"]
    feeds.routes["/hook"].status = 200
    h.clock.advance(hours=2)
    h.deliver()
    assert h.statuses() == [
        ("hook", "alert", "sent"),
        ("hook", "update", "sent"),
        ("hook", "update", "superseded"),
    ]
    alert, update = hook_messages(feeds)[0], hook_messages(feeds)[-1]
    assert "VOA Korean" not in alert["message"]
    assert "VOA Korean" in update["message"] and "900" in update["title"] + update["message"]
    (superseded,) = [d for d in Outbox(store).listing() if d.status == "superseded"]
    assert superseded.last_error is not None and superseded.last_error.startswith("superseded")


def test_a_refusing_mail_server_fails_the_message_without_holding_the_channel(
    store: Store, feeds: FeedServer, mail: MailServer
) -> None:
    mail.refuse = True
    channels = [{"id": "mail", "url": mail.apprise_url()}, hook_channel(feeds, "ops", "/ops")]
    routes = [{"channels": ["ops"], "ops": True}, {"channels": ["mail"], "group_wait": "0s"}]
    h = Harness(store, feeds, channels, routes)
    _two_stories(h, feeds)
    h.deliver()
    mine = [d for d in Outbox(store).listing() if d.channel == "mail"]
    assert [d.attempts for d in mine] == [1, 1], "a refusal does not hold the queue"
    assert all(d.last_error and d.last_error.startswith("Sending email") for d in mine)
    assert Outbox(store).channels_down() == {}
    for _ in range(3):
        h.clock.advance(hours=1)
        h.deliver()
    assert {d.status for d in Outbox(store).listing() if d.channel == "mail"} == {"failed"}
    assert len(hook_messages(feeds, "/ops")) == 2


@pytest.fixture
def cuttable(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Store, Any, Any]]:
    """A store whose database can be taken away and given back: PostgreSQL through a TCP
    proxy that is cut; SQLite locked by another connection (with a 1 s busy timeout)."""
    from watcher.store import engine

    if db_url.startswith("sqlite"):
        monkeypatch.setattr(engine, "DB_TIMEOUT", 1)
        store = Store.open(db_url)
        store.upgrade()
        path = db_url.removeprefix("sqlite:///")
        holder: list[sqlite3.Connection] = []

        def cut() -> None:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("BEGIN EXCLUSIVE")
            holder.append(conn)

        def restore() -> None:
            holder.pop().rollback()

        yield store, cut, restore
        store.close()
        return
    proxy = TcpProxy(("127.0.0.1", 5432))
    store = Store.open(db_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"))
    store.upgrade()
    try:
        yield store, proxy.cut, proxy.restore
    finally:
        proxy.restore()
        store.close()
        proxy.cut()


@pytest.mark.parametrize("reload", [False, True], ids=["", "reloaded-meanwhile"])
def test_a_send_the_database_could_not_record_is_recorded_not_sent_again(
    cuttable: tuple[Store, Any, Any], feeds: FeedServer, reload: bool
) -> None:
    """The database goes away while a message is on its way: the send happened, so it is
    recorded when the database is back, and never sent a second time. With a reload (SIGHUP)
    meanwhile, the daemon's new Deliverer takes over the send still to be recorded (dropped,
    it was sent a second time)."""
    store, cut, restore = cuttable
    h = Harness(store, feeds, [hook_channel(feeds)], [{"channels": ["hook"], "group_wait": "0s"}])
    h.poll()
    feeds.routes["/yonhap"].body = rss(("North Korean defectors detained", "https://e.org/1", T0))
    h.clock.advance(minutes=1)
    h.poll()

    def send_then_cut(url: str, message: Any, timeout: float) -> Any:
        result = apprise_send(url, message, timeout)
        cut()
        return result

    h.deliverer.send = send_then_cut
    h.deliver()
    assert len(hook_messages(feeds)) == 1
    h.deliverer.send = apprise_send
    if reload:
        reloaded = Deliverer(store, h.config, clock=h.clock)  # what `Daemon.reload` makes
        reloaded.inherit(h.deliverer)
        h.deliverer = reloaded
    h.clock.advance(minutes=10)  # far past the claim's lease
    assert h.deliver() == 0, "nothing is claimed while a send waits to be recorded"
    restore()
    for _ in range(3):  # a pooled connection that died with the cut may fail once
        h.deliver()
    (d,) = Outbox(store).listing()
    assert d.status == "sent" and d.attempts == 1
    (attempts,) = Outbox(store).attempts([d.id]).values()
    assert [a["outcome"] for a in attempts] == ["sent"]
    assert len(hook_messages(feeds)) == 1, "sent once"


def test_a_number_no_group_of_people_reaches_stores_and_alerts(
    store: Store, feeds: FeedServer
) -> None:
    """A headline's 11-digit figure is no count of people (and overflows PostgreSQL's integer):
    the item is stored, matched and alerted on both databases, without a count."""
    h = Harness(store, feeds, [hook_channel(feeds)], [{"channels": ["hook"], "group_wait": "0s"}])
    h.poll()
    title = "China repatriates 11622614670 North Korean defectors"
    feeds.routes["/yonhap"].body = rss((title, "https://e.org/big", T0))
    h.clock.advance(minutes=1)
    reports = {r.source_id: r for r in h.poll()}
    assert reports["yonhap"].outcome == "ok", reports["yonhap"].error
    h.deliver()
    (message,) = hook_messages(feeds)
    assert "11622614670" in message["message"] and "people" not in message["title"]


def _one_story(h: Harness) -> None:
    h.poll()
    h.publish(
        "/yonhap",
        ("China repatriates 60 North Korean defectors via Dandong", "https://e.org/1", T0),
        minutes=1,
    )


def _mine(store: Store, channel: str = "mail") -> list[Any]:
    return sorted((d for d in Outbox(store).listing() if d.channel == channel), key=lambda d: d.id)


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ({"data_reply": "451 4.3.0 try again later"}, "451"),
        ({"data_reply": "421 4.3.2 service shutting down"}, "421"),
        ({"rcpt_replies": {"alerts@example.org": "452 4.3.1 insufficient storage"}}, "452"),
    ],
    ids=["451-at-data", "421-at-data", "452-at-rcpt"],
)
def test_a_mail_server_that_says_later_or_drops_the_line_holds_the_queue_not_fails_it(
    store: Store, feeds: FeedServer, mail: MailServer, fault: dict, code: str
) -> None:
    """A 4xx reply, a 421 or a dropped connection is no refusal: the channel is down, the
    alert waits (past `delivery_attempts`) and goes out when the server takes mail again.
    apprise says `Sending email to "…" failed.` for all of them: before, each was a refusal
    and the alert was `failed` after ~15 minutes."""
    for name, value in fault.items():
        setattr(mail, name, value)
    channels = [{"id": "mail", "url": mail.apprise_url()}]
    h = Harness(store, feeds, channels, [{"channels": ["mail"], "group_wait": "0s"}])
    _one_story(h)
    for _ in range(5):  # more than delivery_attempts (3)
        h.deliver()
        h.clock.advance(hours=1)
    (d,) = _mine(store)
    assert d.status == "pending" and d.attempts == 5, d
    assert d.last_error is not None and d.last_error.startswith("unreachable"), d.last_error
    assert code in d.last_error
    assert "mail" in Outbox(store).channels_down()
    mail.data_reply, mail.rcpt_replies, mail.cut_after_data = None, {}, False
    before = len(mail.messages)
    h.clock.advance(hours=2)
    h.deliver()
    (d,) = _mine(store)
    assert d.status == "sent" and len(mail.messages) == before + 1


def test_a_mail_server_that_drops_the_line_after_data_is_uncertain_tried_once_more(
    store: Store, feeds: FeedServer, mail: MailServer
) -> None:
    """The server takes the whole message, then closes the connection without a reply: it
    may hold the message, as after a timeout. It is tried once more, then left `uncertain`
    and the ops routes are told. Before, it was unreachable: a copy on every retry."""
    mail.cut_after_data = True
    channels = [{"id": "mail", "url": mail.apprise_url()}, hook_channel(feeds, "ops", "/ops")]
    routes = [{"channels": ["ops"], "ops": True}, {"channels": ["mail"], "group_wait": "0s"}]
    h = Harness(store, feeds, channels, routes)
    _one_story(h)
    for _ in range(5):
        h.deliver()
        h.clock.advance(hours=1)
    (d,) = _mine(store)
    assert d.status == "uncertain" and d.attempts == 2, d
    assert "may have arrived" in (d.last_error or "") and "closed" in (d.last_error or "")
    assert len(mail.messages) == 2  # the window we accept: one retry
    (told,) = [m for m in hook_messages(feeds, "/ops") if "may not have arrived" in m["title"]]
    assert f"retry {d.id}" in told["message"]


def test_a_mail_server_that_refuses_with_5xx_at_data_fails_the_message(
    store: Store, feeds: FeedServer, mail: MailServer
) -> None:
    mail.data_reply = "554 5.7.1 message rejected as spam"
    h = Harness(
        store,
        feeds,
        [{"id": "mail", "url": mail.apprise_url()}],
        [{"channels": ["mail"], "group_wait": "0s"}],
    )
    _one_story(h)
    for _ in range(3):
        h.deliver()
        h.clock.advance(hours=1)
    (d,) = _mine(store)
    assert d.status == "failed" and "554" in (d.last_error or "")
    assert Outbox(store).channels_down() == {}


def test_a_mail_server_that_answers_after_the_socket_timeout_is_uncertain_not_refused(
    store: Store, feeds: FeedServer, mail: MailServer
) -> None:
    """The server takes the message and answers the end of DATA after apprise's socket gave
    up (here `cto=1`, set in the URL): it may hold the message, so it is tried once more and
    then left `uncertain`. Before, each attempt was a refusal: one copy per attempt."""
    mail.data_delay = 3.0
    url = mail.apprise_url(cto="1")
    h = Harness(
        store,
        feeds,
        [{"id": "mail", "url": url}],
        [{"channels": ["mail"], "group_wait": "0s"}],
        delivery_timeout="10s",
    )
    _one_story(h)
    for _ in range(4):
        h.deliver()
        h.clock.advance(hours=1)
    (d,) = _mine(store)
    assert d.status == "uncertain" and d.attempts == 2, d
    assert "timed out" in (d.last_error or "")
    assert len(mail.messages) == 2  # the window we accept: one retry


def test_mail_waits_as_long_as_the_delivery_timeout_not_apprises_15_seconds() -> None:
    from watcher.outbox import _with_read_timeout

    assert "cto=35" in _with_read_timeout("mailto://mx.example?to=a@b.example", 30)
    assert "cto=3&" in _with_read_timeout("mailtos://mx.example?cto=3&to=a@b.example", 30)
    assert "cto" not in _with_read_timeout("json://hook.example/x", 30)


def test_a_recipient_refused_does_not_resend_to_the_one_that_took_it(
    store: Store, feeds: FeedServer, mail: MailServer
) -> None:
    """Two recipients on one channel, one mailbox gone (550 at RCPT): the other gets the
    alert once, not once per attempt; the refusal is retried for the gone one only, then
    failed, and the error says who has it."""
    mail.rcpt_replies["gone@example.org"] = "550 5.1.1 no such mailbox"
    url = mail.apprise_url("advocate@example.org,gone@example.org")
    h = Harness(
        store, feeds, [{"id": "mail", "url": url}], [{"channels": ["mail"], "group_wait": "0s"}]
    )
    _one_story(h)
    for _ in range(4):
        h.deliver()
        h.clock.advance(hours=1)
    (d,) = _mine(store)
    assert d.status == "failed" and d.attempts == 3, d
    assert "gone@example.org" in (d.last_error or "")
    assert "it reached advocate@example.org" in (d.last_error or "")
    assert mail.received("advocate@example.org") == 1


def test_a_recipient_that_says_later_gets_it_when_it_can_and_the_other_once(
    store: Store, feeds: FeedServer, mail: MailServer
) -> None:
    mail.rcpt_replies["full@example.org"] = "452 4.2.2 mailbox full"
    url = mail.apprise_url("advocate@example.org,full@example.org")
    h = Harness(
        store, feeds, [{"id": "mail", "url": url}], [{"channels": ["mail"], "group_wait": "0s"}]
    )
    _one_story(h)
    for _ in range(3):
        h.deliver()
        h.clock.advance(hours=1)
    (d,) = _mine(store)
    # pending for the one that said later; the channel is not down for the other's messages
    assert d.status == "pending" and "mail" not in Outbox(store).channels_down()
    mail.rcpt_replies.clear()
    h.clock.advance(hours=2)
    h.deliver()
    (d,) = _mine(store)
    assert d.status == "sent"
    assert mail.received("advocate@example.org") == 1 and mail.received("full@example.org") == 1


def _replica_pair(store: Store, db_url: str, feeds: FeedServer, n: int, **settings: Any) -> Any:
    """A harness whose ops route is the hook, `n` ops notices queued on it, and a second
    Deliverer (another replica) on its own connection to the same database; both read the
    real clock."""
    from watcher.clock import utcnow
    from watcher.routing import ops_targets

    h = Harness(
        store, feeds, [hook_channel(feeds)], [{"channels": ["hook"], "ops": True}], **settings
    )
    targets = ops_targets(h.config.routes)
    for i in range(n):
        Outbox(store).add_ops(targets, f"notice {i}", f"body {i}", utcnow() - timedelta(minutes=1))
    other = Store.open(db_url)
    a = Deliverer(store, h.config, clock=utcnow)
    b = Deliverer(other, h.config, clock=utcnow)
    return h, a, b, other


def test_two_replicas_send_a_long_backlog_once(
    store: Store, db_url: str, feeds: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backlog on one channel whose sends together take longer than one claim's lease:
    the replica sending it renews its claim before each message, so the other never takes
    its tail. Before, the tail was claimed again when the batch's one lease lapsed, and sent
    by both."""
    import threading
    import time

    n = 12
    # A short lease (one send fits in it many times over, even on a loaded machine) and a
    # long send timeout (no send times out and is retried): 12 × 1 s outlasts the lease.
    monkeypatch.setattr(Deliverer, "lease", property(lambda self: timedelta(seconds=6)))
    _, a, b, other = _replica_pair(store, db_url, feeds, n, delivery_timeout="60s")
    feeds.routes["/hook"].delay = 1.0

    def everything_sent() -> bool:
        return {d.status for d in Outbox(store).listing()} == {"sent"}

    def replica(deliverer: Deliverer) -> None:
        while not everything_sent():
            asyncio.run(deliverer.run_due())
            time.sleep(0.05)

    try:
        threads = [threading.Thread(target=replica, args=(r,)) for r in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    finally:
        other.close()
    titles = [m["title"] for m in hook_messages(feeds)]
    assert sorted(titles) == sorted(f"[watcher] notice {i}" for i in range(n)), titles
    attempts = Outbox(store).attempts([d.id for d in Outbox(store).listing()])
    assert all([a["outcome"] for a in x] == ["sent"] for x in attempts.values()), attempts


def test_a_replica_whose_clock_runs_ahead_does_not_take_what_another_is_sending(
    store: Store, db_url: str, feeds: FeedServer
) -> None:
    """Claims are reckoned by PostgreSQL's clock: a replica whose own clock is 70 s ahead
    does not see the claim of one mid-send as lapsed. (SQLite is one host: one clock.)"""
    import threading

    from watcher.clock import utcnow

    if store.dialect != "postgresql":
        pytest.skip("SQLite serves one host: the claims' clock is that host's")
    _, a, b, other = _replica_pair(store, db_url, feeds, 1, delivery_timeout="2s")
    b.clock = lambda: utcnow() + timedelta(seconds=70)
    gate = threading.Event()

    def first_waits(handler: Any) -> None:
        if len(feeds.hits("/hook")) == 1:
            gate.wait(60)  # replica A's send is on its way until the other has looked
        FeedServer._send(handler, 200, b"{}", "application/json", {})

    feeds.routes["/hook"].handler = first_waits
    sender = threading.Thread(target=lambda: asyncio.run(a.run_due()))
    sender.start()
    try:
        while not feeds.hits("/hook"):
            threading.Event().wait(0.02)
        taken = asyncio.run(b.run_due())
    finally:
        gate.set()
        sender.join(timeout=60)
        other.close()
    assert taken == 0 and len(feeds.hits("/hook")) == 1
    (d,) = Outbox(store).listing()
    assert d.status == "sent" and d.attempts == 1


def test_a_send_whose_claim_another_replica_took_is_told_not_recorded_twice(
    store: Store, db_url: str, feeds: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    """While the message is on its way its claim lapses and another replica claims it (set
    here by hand): the record of this send is refused and logged as a lost race; the row
    stays the other replica's to record."""
    from sqlalchemy import update

    from watcher.store.tables import deliveries

    _, a, _, other = _replica_pair(store, db_url, feeds, 1)
    other.close()
    theirs = datetime(2030, 1, 1, tzinfo=UTC)

    def send_then_lose_the_claim(url: str, message: Any, timeout: float) -> Any:
        result = apprise_send(url, message, timeout)
        with store.engine.begin() as conn:
            conn.execute(update(deliveries).values(claimed_until=theirs))
        return result

    a.send = send_then_lose_the_claim
    asyncio.run(a.run_due())
    (d,) = Outbox(store).listing()
    assert d.status == "pending" and d.attempts == 0 and d.claimed_until == theirs
    assert Outbox(store).attempts([d.id]) == {d.id: []}
    (lost,) = [r for r in caplog.records if "no longer its to record" in r.getMessage()]
    assert lost.levelname == "ERROR" and "another replica" in lost.getMessage()


@pytest.mark.parametrize("cancelled", [False, True], ids=["stop", "stop-then-cancel"])
def test_told_to_stop_a_deliverer_finishes_and_records_the_send_under_way_and_gives_back_the_rest(
    store: Store, db_url: str, feeds: FeedServer, cancelled: bool
) -> None:
    """A graceful stop during a backlog: the message on its way is sent and recorded, even
    when the job is cancelled meanwhile (a stop past its grace); the next is not taken, and
    (unless cancelled) the rest of the claim is given back, so the restart or another replica
    sends them at once. Before, the cancelled send was never recorded: sent again after the
    restart."""
    import threading

    _, a, _, other = _replica_pair(store, db_url, feeds, 3)
    other.close()
    arrived, gate = threading.Event(), threading.Event()

    def held(handler: Any) -> None:
        arrived.set()
        gate.wait(60)
        FeedServer._send(handler, 200, b"{}", "application/json", {})

    feeds.routes["/hook"].handler = held

    async def go() -> None:
        job = asyncio.ensure_future(a.run_due())
        assert await asyncio.to_thread(arrived.wait, 60)
        a.stop()
        if cancelled:
            job.cancel()  # the scheduler's shutdown, after the grace
            await asyncio.sleep(0)
        gate.set()
        if cancelled:
            with pytest.raises(asyncio.CancelledError):
                await job
        else:
            assert await job == 1
        assert await a.run_due() == 0  # stopped: takes nothing more

    asyncio.run(go())
    first, *rest = sorted(Outbox(store).listing(), key=lambda d: d.id)
    assert first.status == "sent" and first.attempts == 1
    assert len(feeds.hits("/hook")) == 1
    assert [(d.status, d.attempts) for d in rest] == [("pending", 0)] * 2
    if not cancelled:
        assert [d.claimed_until for d in rest] == [None, None], "given back"


# ------------------------------------------------- a recipient that says "later" (review 5)


def _two_recipients(store: Store, feeds: FeedServer, mail: MailServer, **settings: Any) -> Harness:
    """A mail channel to two recipients, the second one's mailbox over quota (452)."""
    mail.rcpt_replies["full@example.org"] = "452 4.2.2 mailbox over quota"
    url = mail.apprise_url("advocate@example.org,full@example.org")
    routes = [{"channels": ["mail"], "group_wait": "0s"}]
    return Harness(store, feeds, [{"id": "mail", "url": url}], routes, **settings)


def test_a_full_mailbox_does_not_hold_back_the_other_recipients_alerts(
    store: Store, feeds: FeedServer, mail: MailServer
) -> None:
    # one recipient's 452 made the whole channel "down": the other's next alerts waited for
    # its back-off, and after give_up_after every delivery expired unsent
    h = _two_recipients(store, feeds, mail, delivery_max_backoff="1h")
    _one_story(h)
    for _ in range(8):
        h.deliver()
        h.clock.advance(minutes=20)
    got = mail.received("advocate@example.org")
    assert got == 1  # the first alert, once
    h.publish(
        "/voa",
        (
            "Police arrest 5 North Korean defectors in Shenyang",
            "https://voa.example/7",
            h.clock.now,
        ),
        minutes=1,
    )
    h.clock.advance(minutes=1)
    h.deliver()
    assert mail.received("advocate@example.org") == got + 1  # the second alert, at once


def test_a_recipient_that_took_the_first_version_reads_the_escalation(
    store: Store, feeds: FeedServer, mail: MailServer
) -> None:
    # the retry for the full mailbox skipped those who took the alert, though the story had
    # escalated meanwhile and the retry said so: they never read "300"
    h = _two_recipients(store, feeds, mail)
    _one_story(h)
    h.deliver()
    assert mail.received("advocate@example.org") == 1
    h.publish(
        "/voa",
        ("China repatriates 300 North Korean defectors via Dandong", "https://voa.example/8", T0),
        minutes=2,
    )
    mail.rcpt_replies.clear()
    for _ in range(4):
        h.clock.advance(hours=1)
        h.deliver()
    told = [m for m in mail.messages if "advocate" in m["To"]]
    assert any("300" in m["Subject"] for m in told), [m["Subject"] for m in told]


def test_renewing_a_backlog_does_not_mistake_its_own_sent_messages_for_a_takeover(
    store: Store, feeds: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(store, feeds, [hook_channel(feeds)], [{"channels": ["hook"], "ops": True}])
    targets = ops_targets(h.config.routes)
    for i in range(3):
        Outbox(store).add_ops(
            targets, f"notice {i}", f"body {i}", h.clock.now - timedelta(minutes=1)
        )
    caplog.set_level(logging.WARNING, logger="watcher.outbox")
    h.deliver()
    assert len(hook_messages(feeds)) == 3
    assert not [r for r in caplog.records if "no longer held" in r.getMessage()]


def test_a_message_withdrawn_while_it_was_sent_is_recorded_sent_and_not_sent_again_on_undo(
    store: Store, feeds: FeedServer
) -> None:
    h = Harness(store, feeds, [hook_channel(feeds)], [{"channels": ["hook"], "group_wait": "0s"}])
    _one_story(h)
    (queued,) = Outbox(store).listing()
    send, undo = h.deliverer.send, []

    def send_while_an_editor_withdraws(url: str, message: Any, timeout: float) -> Any:
        correction = Corrections(store).mark_not_relevant(
            queued.story_id, by="ed", reason="oops", now=h.clock.now
        )
        undo.append(correction.id)
        return send(url, message, timeout)

    h.deliverer.send = send_while_an_editor_withdraws
    h.deliver()
    h.deliverer.send = send
    (d,) = Outbox(store).listing()
    assert d.status == "sent" and len(hook_messages(feeds)) == 1  # the truth: it went out
    Corrections(store).undo(undo[0], by="ed", now=h.clock.now)
    h.clock.advance(minutes=1)
    h.deliver()
    assert len(hook_messages(feeds)) == 1, "sent once"


async def _no_message_after_stop(deliverer: Deliverer) -> int:
    return await deliverer.run_due()


def test_a_stop_reaches_the_deliverer_a_reload_replaced(store: Store, feeds: FeedServer) -> None:
    # a reload replaces the Deliverer while the old one may still be sending: SIGTERM stops
    # both (the old one took its next message, then the next)
    h = Harness(store, feeds, [hook_channel(feeds)], [{"channels": ["hook"], "group_wait": "0s"}])
    _one_story(h)
    old, new = h.deliverer, Deliverer(store, h.config, clock=h.clock)
    new.inherit(old)
    new.stop()
    assert asyncio.run(_no_message_after_stop(old)) == 0
    assert hook_messages(feeds) == [] and Outbox(store).listing()[0].status == "pending"

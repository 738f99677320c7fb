"""Article pages of `fetch_article` sources, end to end against a real local HTTP server on
SQLite and PostgreSQL: a page that fails is tried again on later polls (bounded), the item is
matched again when it arrives, a known item keeps its article text, and a source whose pages
mostly fail is unhealthy."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
import yaml

from tests.helpers import T0, Clock, feed_source, rss
from tests.httpserver import FeedServer
from watcher.config import load_config_text
from watcher.fetch import Fetcher, FetchLimits
from watcher.health import RECOVERY_POLLS
from watcher.pipeline import ARTICLE_TRIES, check_health, run_cycle
from watcher.routing import Alerting
from watcher.rules import compile_rules
from watcher.store import Store
from watcher.types import PollReport

RULES = {
    "concepts": {"nk_people": {"en": ["north korean*"]}, "sent_back": {"en": ["repatriat*"]}},
    "rules": [
        {
            "id": "return",
            "event": "forced_repatriation",
            "all_of": ["nk_people", "sent_back"],
            "severity": "high",
        }
    ],
}

#: What the ministry's listing says: nothing a rule can match.
TITLE = "Regular Press Conference on December 3"
ARTICLE = (
    "<html><body><article><h1>Regular Press Conference on December 3</h1>"
    + "".join(
        f"<p>Asked about the North Korean escapees held in Jilin, the spokesperson said they "
        f"were repatriated in accordance with law, point {n} of the transcript.</p>"
        for n in range(10)
    )
    + "</article></body></html>"
).encode()
CHALLENGE = {
    "status": 403,
    "content_type": "text/html",
    "headers": {"cf-mitigated": "challenge", "Server": "cloudflare"},
    "body": b"<html><title>Just a moment...</title></html>",
}


@pytest.fixture
def server():
    with FeedServer() as s:
        yield s


def config(sources: list[dict[str, Any]]):
    doc = {
        "sources": sources,
        "settings": {"retries": 0, "jitter": 0, "allow_private_addresses": True},
        **RULES,
    }
    return load_config_text(yaml.safe_dump(doc), "a.yaml", {}).config


def poll(cfg, store: Store, clock: Clock) -> PollReport:
    """One cycle with the rules, as the daemon runs it, and the health check after it."""

    async def go() -> list[PollReport]:
        async with Fetcher(FetchLimits.from_settings(cfg.settings)) as fetcher:
            return await run_cycle(
                cfg.sources,
                store=store,
                fetcher=fetcher,
                settings=cfg.settings,
                clock=clock,
                only_due=False,
                matcher=compile_rules(cfg),
                alerting=Alerting.from_config(cfg),
            )

    store.sync_sources(cfg.sources, T0)
    (report,) = asyncio.run(go())
    check_health(store, cfg, clock())
    return report


def health(store: Store) -> tuple[str | None, str | None]:
    state = store.source_state("mfa")
    assert state is not None
    return state.health, state.health_reason


def listing(server: FeedServer, *paths: str) -> bytes:
    return rss([(TITLE if p == "/art/2" else f"Item {p}", server.url(p)) for p in paths])


def test_a_blocked_article_is_tried_again_and_matched_when_it_arrives(
    store: Store, server: FeedServer
) -> None:
    """The reviewer's case: the new article page answers a Cloudflare challenge. Before, the
    item kept its listing title, was never fetched again, matched nothing, and health stayed
    ok. Now the source is unhealthy while its pages fail, the page is fetched again on a later
    poll (the listing unchanged), and the item is matched on its text."""
    route = server.route("/f", body=listing(server, "/art/1"))
    article = server.route("/art/2", **CHALLENGE)
    cfg = config([feed_source(server, "mfa", "/f", fetch_article=True)])
    clock = Clock()
    poll(cfg, store, clock)  # baseline
    clock.advance(minutes=10)
    route.body = listing(server, "/art/2", "/art/1")
    report = poll(cfg, store, clock)
    assert (report.new, report.matched) == (1, 0)
    status, reason = health(store)
    assert status == "broken"
    assert reason == (
        "article pages failing: 1 of 1 blocked (Cloudflare); their items keep the listing's "
        "text and are tried again on later polls"
    )
    (pending,) = store.pending_articles("mfa")
    assert pending.tries == 1 and pending.last_error.startswith("blocked: a bot challenge")

    article.status, article.headers, article.body = 200, {}, ARTICLE
    article.content_type = "text/html; charset=utf-8"
    clock.advance(minutes=10)
    report = poll(cfg, store, clock)  # the listing is unchanged: the page is tried again
    assert report.outcome == "unchanged"
    assert len(server.hits("/art/2")) == 2
    assert (report.updated, report.matched, report.events) == (1, 1, ("forced_repatriation",))
    (item,) = [i for i in store.iter_items() if i.title == TITLE]
    assert "point 9 of the transcript" in item.text
    assert [m.rule_id for m in store.matches_of(item.key)] == ["return"]
    assert store.pending_articles("mfa") == []
    for _ in range(RECOVERY_POLLS - 1):  # recovered once clean polls keep coming
        assert health(store)[0] == "broken"
        clock.advance(minutes=10)
        poll(cfg, store, clock)
    assert health(store) == (None, None)


def test_article_retries_wait_longer_each_time_and_stop(store: Store, server: FeedServer) -> None:
    route = server.route("/f", body=listing(server, "/art/1"))
    server.route("/art/2", status=403, content_type="text/html", body=b"Forbidden")
    cfg = config([feed_source(server, "mfa", "/f", fetch_article=True, interval="5m")])
    clock = Clock()
    poll(cfg, store, clock)
    route.body = listing(server, "/art/2", "/art/1")
    tried_at = []
    for minute in range(0, 3 * 60, 5):  # a poll every 5 minutes for three hours
        clock.now = T0 + timedelta(minutes=5 + minute)
        before = len(server.hits("/art/2"))
        poll(cfg, store, clock)
        if len(server.hits("/art/2")) > before:
            tried_at.append(minute)
    # 1 try, then after 1, 2, 4 and 8 intervals: five in all, then the item keeps its text
    assert tried_at == [0, 5, 15, 35, 75]
    assert len(tried_at) == ARTICLE_TRIES
    assert store.pending_articles("mfa") == []
    status, reason = health(store)
    assert status == "broken" and "1 of 1 HTTP 403 Forbidden" in (reason or "")


def test_a_known_item_keeps_its_article_text(store: Store, server: FeedServer) -> None:
    """Before, the next poll whose listing changed put the listing's summary back over the
    article text (an 'updated' item, a revision, and matches on the summary)."""
    route = server.route("/f", body=listing(server, "/art/1"))
    server.route("/art/2", body=ARTICLE, content_type="text/html; charset=utf-8")
    cfg = config([feed_source(server, "mfa", "/f", fetch_article=True)])
    clock = Clock()
    poll(cfg, store, clock)
    clock.advance(minutes=10)
    route.body = listing(server, "/art/2", "/art/1")
    assert poll(cfg, store, clock).matched == 1
    clock.advance(minutes=10)
    route.body = listing(server, "/art/3", "/art/2", "/art/1")
    report = poll(cfg, store, clock)
    assert (report.new, report.updated) == (1, 0)
    (item,) = [i for i in store.iter_items() if i.title == TITLE]
    assert "point 9 of the transcript" in item.text
    assert store.item_revisions(item.key) == []
    assert len(server.hits("/art/2")) == 1


def test_a_challenge_served_with_200_is_no_article(store: Store, server: FeedServer) -> None:
    route = server.route("/f", body=listing(server, "/art/1"))
    server.route("/art/2", **{**CHALLENGE, "status": 200})
    cfg = config([feed_source(server, "mfa", "/f", fetch_article=True)])
    clock = Clock()
    poll(cfg, store, clock)
    clock.advance(minutes=10)
    route.body = listing(server, "/art/2", "/art/1")
    poll(cfg, store, clock)
    (item,) = [i for i in store.iter_items() if i.title == TITLE]
    assert "Just a moment" not in item.text
    assert health(store)[0] == "broken"
    assert len(store.pending_articles("mfa")) == 1

"""Re-checks at the source: a matched report fetched again 1, 7 and 30 days after it was first
seen; a 404 marks it removed (and tells the routes that ask), a changed page is a revision."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from sqlalchemy import select
from starlette.testclient import TestClient

from tests.httpserver import FeedServer
from watcher import recheck
from watcher.config import load_config_text
from watcher.fetch import Fetcher, FetchLimits
from watcher.pipeline import run_cycle
from watcher.routing import Alerting
from watcher.rules import compile_rules
from watcher.store import Store
from watcher.store import tables as t
from watcher.types import FetchResult

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def result(status: int = 200, final: str = "https://e.org/news/1", **kw: object) -> FetchResult:
    return FetchResult(
        source_id="s",
        url="https://e.org/news/1",
        final_url=final,
        status=status,
        body=b"<html></html>",
        **kw,  # type: ignore[arg-type]
    )


VERDICTS = [
    ("gone", result(404, error="HTTP 404"), "text", "old", "removed"),
    ("gone for good", result(410, error="HTTP 410"), None, "old", "removed"),
    ("sent to the front page", result(final="https://e.org/"), "Home", "old", "removed"),
    ("server error", result(503, error="HTTP 503"), None, "old", "unclear"),
    ("forbidden", result(403, error="HTTP 403"), None, "old", "unclear"),
    ("no main text", result(), None, "old", "unclear"),
    ("first reading of a feed item's page", result(), "the page", None, "same"),
    ("the same words, other spacing", result(), "a  b\nc", "a b c", "same"),
    (
        "a paragraph rewritten",
        result(),
        "Police released them all today.",
        "Police held twelve North Koreans in Dandong.",
        "changed",
    ),
    ("moved within the site", result(final="https://e.org/news/1?amp"), "same", "same", "same"),
]


@pytest.mark.parametrize(
    ("name", "fetched", "text", "previous", "outcome"), VERDICTS, ids=[v[0] for v in VERDICTS]
)
def test_what_a_check_finds(
    name: str, fetched: FetchResult, text: str | None, previous: str | None, outcome: str
) -> None:
    assert recheck.verdict(fetched, text, previous).outcome == outcome


def due(done: int, due_at: datetime) -> recheck.Due:
    return recheck.Due(
        item_id=1,
        key="k",
        url="https://e.org/1",
        source_id="s",
        title="t",
        first_seen_at=T0,
        due_at=due_at,
        done=done,
        page_text=None,
    )


@pytest.mark.parametrize(
    ("done", "outcome", "at", "expected"),
    [
        (0, "same", T0 + timedelta(days=1), (T0 + timedelta(days=7), 1)),
        (1, "changed", T0 + timedelta(days=7), (T0 + timedelta(days=30), 2)),
        (2, "same", T0 + timedelta(days=30), (None, 3)),
        (0, "removed", T0 + timedelta(days=1), (None, 1)),
        (0, "unclear", T0 + timedelta(days=1), (T0 + timedelta(days=1, hours=6), 0)),
        # an unclear answer for more than 3 days counts as the check done
        (0, "unclear", T0 + timedelta(days=5), (T0 + timedelta(days=7), 1)),
        # a late check (the daemon was down) schedules the next from now, not in the past
        (0, "same", T0 + timedelta(days=9), (T0 + timedelta(days=9), 1)),
    ],
)
def test_the_schedule(done: int, outcome: str, at: datetime, expected: tuple) -> None:
    assert recheck.next_due(due(done, T0 + recheck.SCHEDULE[min(done, 2)]), outcome, at) == expected


def test_the_diff_reads_as_words() -> None:
    ops = recheck.diff("Police held twelve people in Dandong", "Police held nine people in Dandong")
    assert ops == [(" ", "Police held"), ("-", "twelve"), ("+", "nine"), (" ", "people in Dandong")]


CONFIG = {
    "concepts": {"nk_people": {"en": ["north korean*"]}, "sent_back": {"en": ["repatriat*"]}},
    "rules": [
        {
            "id": "return",
            "event": "forced_repatriation",
            "all_of": ["nk_people", "sent_back"],
            "severity": "high",
        }
    ],
    "channels": [
        {"id": "hook", "url": "json://127.0.0.1:9/hook"},
        {"id": "desk", "url": "json://127.0.0.1:9/desk"},
    ],
    "routes": [
        {"id": "all", "channels": ["hook"]},
        {"id": "removals", "channels": ["desk"], "notify_on": ["removed"]},
    ],
}


def page(words: str) -> bytes:
    body = "".join(f"<p>{words}, sentence {n} of the report on the returns.</p>" for n in range(8))
    return f"<html><body><article>{body}</article></body></html>".encode()


def feed(link: str) -> bytes:
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><link>x</link>'
        f"<item><title>China repatriates North Koreans</title><link>{link}</link>"
        f"<guid>{link}</guid><pubDate>Mon, 23 Nov 2026 08:00:00 +0900</pubDate>"
        "<description>China repatriates North Koreans, lead</description></item>"
        "</channel></rss>"
    ).encode()


def test_a_report_removed_at_source_is_marked_and_told(store: Store) -> None:
    with FeedServer() as server:
        server.route("/f", body=feed(server.url("/news/1")))
        article = server.route(
            "/news/1", body=page("Police held twelve"), content_type="text/html; charset=utf-8"
        )
        doc = {
            "sources": [{"id": "s", "kind": "feed", "url": server.url("/f"), "interval": "5m"}],
            "settings": {"retries": 1, "jitter": 0, "allow_private_addresses": True},
            **CONFIG,
        }
        config = load_config_text(yaml.safe_dump(doc), "r.yaml", {}).config
        alerting = Alerting.from_config(config)
        store.sync_sources(config.sources, T0)

        async def go(now: datetime, poll: bool) -> list:
            async with Fetcher(FetchLimits.from_settings(config.settings)) as fetcher:
                if poll:
                    await run_cycle(
                        config.sources,
                        store=store,
                        fetcher=fetcher,
                        settings=config.settings,
                        clock=lambda: now,
                        only_due=False,
                        matcher=compile_rules(config),
                        alerting=alerting,
                    )
                return await recheck.run_checks(store, fetcher, config, now, alerting=alerting)

        assert asyncio.run(go(T0, poll=True)) == []  # nothing due on the day it is seen
        # Day 1: the first reading of the page (the item's text was the feed's summary).
        (first,) = asyncio.run(go(T0 + timedelta(days=1, minutes=1), poll=False))
        assert first[1].outcome == "same"
        assert asyncio.run(go(T0 + timedelta(days=2), poll=False)) == []  # next at day 7
        # Day 7: the page was edited: a revision with the previous text.
        article.body = page("Police released all")
        (second,) = asyncio.run(go(T0 + timedelta(days=7, minutes=1), poll=False))
        assert second[1].outcome == "changed"
        with store.engine.connect() as conn:
            (rev,) = conn.execute(select(t.item_revisions)).all()
            item = conn.execute(select(t.items)).one()
        assert "Police held twelve" in rev.old_text and "Police released all" in item.text
        # Day 30: gone.
        article.status, article.body = 404, b"not found"
        (third,) = asyncio.run(go(T0 + timedelta(days=30, minutes=1), poll=False))
        assert third[1].outcome == "removed"
        with store.engine.connect() as conn:
            check = conn.execute(select(t.item_checks)).one()
            kinds = conn.execute(
                select(t.deliveries.c.route, t.deliveries.c.kind).order_by(t.deliveries.c.id)
            ).all()
        assert check.removed_at == T0 + timedelta(days=30, minutes=1) and check.due_at is None
        # The first poll was the source's baseline (no alert); the removal goes only to the
        # route that asked for it.
        assert [(r.route, r.kind) for r in kinds] == [("removals", "removed")]
        assert asyncio.run(go(T0 + timedelta(days=60), poll=False)) == []  # no more checks
        from watcher.web import create_app

        with TestClient(create_app(store, config)) as client:
            story_id = store.engine.connect().execute(select(t.stories.c.id)).scalar_one()
            shown = client.get(f"/stories/{story_id}").text
            item_id = store.engine.connect().execute(select(t.items.c.id)).scalar_one()
            history = client.get(f"/items/{item_id}").text
        assert "Removed at source" in shown and "evidence" in shown
        assert "1 earlier version, the last replaced" in shown
        assert "<del>held twelve,</del>" in history and "<ins>released all,</ins>" in history

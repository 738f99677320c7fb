"""What a later report does to a story and its messages, as the daemon stores it, on both
databases: a report that brings the story to routes it did not match, a report older than
the story's count, and an outlet's edit of a report already in a story."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select, update

from tests.helpers import watcher
from tests.httpserver import FeedServer
from watcher.config import load_config_text
from watcher.pipeline import match_items
from watcher.routing import Alerting
from watcher.rules import compile_rules
from watcher.store import SaveResult, Store
from watcher.store import tables as t
from watcher.types import Item

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

CONFIG: dict[str, Any] = {
    "sources": [
        {"id": "wire-en", "kind": "feed", "url": "https://e.org/en", "lang": "en"},
        {"id": "wire-ko", "kind": "feed", "url": "https://e.org/ko", "lang": "ko"},
        {"id": "rights", "kind": "feed", "url": "https://e.org/r", "lang": "en", "tags": ["ngo"]},
    ],
    "concepts": {
        "nk_people": {
            "gloss": "North Korean escapees",
            "en": ["north korean*"],
            "ko": ["탈북민"],
        },
        "sent_back": {"gloss": "sent back", "en": ["repatriat*"], "ko": ["북송"]},
        "arrested": {"en": ["detain*"], "ko": ["체포"]},
        "un_body": {"en": ["special rapporteur"]},
        "un_act": {"en": ["urge*"]},
    },
    "channels": [
        {"id": "hook", "url": "json://127.0.0.1:9/hook"},
        {"id": "mail", "url": "json://127.0.0.1:9/mail"},
        {"id": "slack", "url": "json://127.0.0.1:9/slack"},
    ],
    "routes": [
        {
            "id": "returns",
            "channels": ["hook"],
            "events": ["forced_repatriation"],
            "continue": True,
        },
        {"id": "detentions", "channels": ["hook"], "events": ["detention"], "continue": True},
        {"id": "un", "channels": ["mail", "hook"], "events": ["un_action"], "continue": True},
        {"id": "korean", "channels": ["slack"], "langs": ["ko"], "continue": True},
        {"id": "ngo", "channels": ["slack"], "tags": ["ngo"], "continue": True},
    ],
    "rules": [
        {
            "id": "return",
            "event": "forced_repatriation",
            "all_of": ["nk_people", "sent_back"],
            "severity": "high",
        },
        {"id": "arrest", "event": "detention", "all_of": ["nk_people", "arrested"]},
        {"id": "un", "event": "un_action", "all_of": ["un_body", "un_act"], "severity": "low"},
    ],
}


def item(key: str, source: str, title: str, *, hours: float = 0, lang: str = "en") -> Item:
    """A report published `hours` after T0 and fetched five minutes later."""
    published = T0 + timedelta(hours=hours)
    return Item(
        key=f"https://e.org/{key}",
        source_id=source,
        url=f"https://e.org/{key}",
        title=title,
        text="",
        lang=lang,
        published_at=published,
        published_raw=None,
        fetched_at=published + timedelta(minutes=5),
    )


@pytest.fixture
def save(store: Store):
    config = load_config_text(yaml.safe_dump(CONFIG, allow_unicode=True), "s.yaml", {}).config
    store.sync_sources(config.sources, T0)
    matcher = compile_rules(config)
    alerting = Alerting.from_config(config)

    def save(*items: Item, now: datetime | None = None) -> SaveResult:
        return store.save_items(
            list(items),
            now=now or max(i.fetched_at for i in items),
            matches=match_items(matcher, items, ()),
            alerting=alerting,
        )

    return save


def deliveries(store: Store) -> list[tuple[str, str, str, int]]:
    """(route, channel, kind, revision) of every queued message, in the order queued."""
    d = t.deliveries.c
    with store.engine.connect() as conn:
        found = conn.execute(select(d.route, d.channel, d.kind, d.revision).order_by(d.id))
        return [tuple(r) for r in found]  # type: ignore[misc]


def the_story(store: Store) -> dict[str, Any]:
    with store.engine.connect() as conn:
        (row,) = conn.execute(select(t.stories)).all()
    return dict(row._mapping)


def sent(store: Store) -> None:
    """Every queued message went out."""
    with store.engine.begin() as conn:
        conn.execute(update(t.deliveries).values(status="sent"))


FOUNDER = item("founder", "wire-en", "China repatriates 60 North Koreans via Dandong")

#: (case, the report that joins, the messages it queues: (route, channel, kind))
REACH_CASES = [
    (
        "a UN statement brings the story to the UN route; a channel already told stays quiet",
        item(
            "un",
            "wire-en",
            "UN Special Rapporteur urges China to stop repatriating North Koreans via Dandong",
            hours=2,
        ),
        [("un", "mail", "alert")],
    ),
    (
        "a Korean report brings the story to the Korean route",
        item("ko", "wire-ko", "중국, 탈북민 60명 단둥 통해 강제북송", hours=2, lang="ko"),
        [("korean", "slack", "alert")],
    ),
    (
        "a tagged source's report brings the story to the route of its tag",
        item("ngo", "rights", "China repatriates 60 North Koreans via Dandong", hours=1),
        [("ngo", "slack", "alert")],
    ),
    (
        "another English outlet brings the story to no route it did not match",
        item("en2", "wire-en", "60 North Koreans repatriated via Dandong", hours=1),
        [],
    ),
]


@pytest.mark.parametrize(("case", "report", "queued"), REACH_CASES, ids=[c[0] for c in REACH_CASES])
@pytest.mark.parametrize("founder_sent", [True, False], ids=["alert sent", "alert waiting"])
def test_a_report_that_joins_quietly_brings_the_story_to_routes_it_now_matches(
    store: Store,
    save,
    case: str,
    report: Item,
    queued: list[tuple[str, str, str]],
    founder_sent: bool,
) -> None:
    save(FOUNDER)
    assert deliveries(store) == [("returns", "hook", "alert", 1)]
    if founder_sent:
        sent(store)
    (change,) = save(report).stories
    assert change.change == "joined"  # no new revision: nothing material
    assert the_story(store)["item_count"] == 2
    assert deliveries(store)[1:] == [(*q, 1) for q in queued]
    assert change.deliveries == len(queued)
    # a third outlet like the second brings nothing more: every route was offered the story
    save(item("again", report.source_id, report.title + " (2)", hours=3, lang=report.lang or ""))
    assert len(deliveries(store)) == 1 + len(queued)


def test_a_report_too_old_to_alert_brings_the_story_to_no_new_route(store: Store, save) -> None:
    save(FOUNDER)
    korean = item("ko", "wire-ko", "중국, 탈북민 60명 단둥 통해 강제북송", hours=2, lang="ko")
    save(korean, now=T0 + timedelta(days=30))
    assert deliveries(store) == [("returns", "hook", "alert", 1)]


def test_a_story_marked_not_relevant_is_brought_to_no_new_route(store: Store, save) -> None:
    save(FOUNDER)
    with store.engine.begin() as conn:
        conn.execute(update(t.stories).values(status="not_relevant"))
    save(item("ko", "wire-ko", "중국, 탈북민 60명 단둥 통해 강제북송", hours=2, lang="ko"))
    assert deliveries(store) == [("returns", "hook", "alert", 1)]


SIXTY = item("sixty", "wire-en", "China repatriates about 60 North Koreans via Dandong")
NINETY = item("ninety", "rights", "China repatriates 90 North Koreans via Dandong", hours=6)


@pytest.mark.parametrize(
    "order", [(SIXTY, NINETY), (NINETY, SIXTY)], ids=["older first", "newer first"]
)
@pytest.mark.parametrize("polls", ["one poll each", "one poll"])
def test_a_storys_count_is_the_latest_published_reports_whatever_the_order(
    store: Store, save, order: tuple[Item, Item], polls: str
) -> None:
    """Daily NK said "about 60" at 09:00 and RFA "90" at 15:00: the story says 90, however
    the two arrive; the 60 arriving last sends no "90 → ~60" update."""
    if polls == "one poll":
        save(*order)
    else:
        save(order[0])
        sent(store)
        save(order[1])
    story = the_story(store)
    assert (story["people"], story["people_approximate"]) == (90, False)
    updates = [d for d in deliveries(store) if d[2] == "update"]
    # news only when the 90 came after the 60 was told
    assert len(updates) == (1 if order[0] is SIXTY and polls != "one poll" else 0)


#: (case, the report as first stored, as its outlet edited it, the story's count after,
#:  the messages the edit queues: (route, kind, revision))
EDIT_CASES = [
    (
        "a new count is news",
        "탈북민 20여명 단둥서 체포",
        "탈북민 30여명 단둥서 체포",
        (30, True),
        [("detentions", "update", 2), ("korean", "update", 2)],
    ),
    (
        "a graver event is news",
        "탈북민 20여명 단둥서 체포",
        "탈북민 20여명 단둥서 체포 후 강제북송",
        (20, True),
        [("returns", "update", 2), ("korean", "update", 2)],
    ),
    (
        "a rewording is not news",
        "Police detain about 60 North Koreans in Dandong",
        "Police in Dandong detain about 60 North Koreans",
        (60, True),
        [],
    ),
]


@pytest.mark.parametrize(
    ("case", "before", "after", "count", "queued"), EDIT_CASES, ids=[c[0] for c in EDIT_CASES]
)
@pytest.mark.parametrize("role", ["founding report", "later report"])
def test_an_outlets_edit_of_a_report_recomputes_its_story(
    store: Store,
    save,
    case: str,
    before: str,
    after: str,
    count: tuple[int, bool],
    queued: list[tuple[str, str, int]],
    role: str,
) -> None:
    lang = "en" if before.isascii() else "ko"
    source = "wire-en" if lang == "en" else "wire-ko"
    edited = item("edited", source, before, lang=lang)
    if role == "later report":
        other = item("other", source, before.replace("Police", "Officers"), hours=-1, lang=lang)
        save(other)
        edited = item("edited", source, before, hours=1, lang=lang)
    save(edited)
    sent(store)
    told = len(deliveries(store))
    # the outlet edits its report; polled an hour later
    fixed = replace(edited, title=after)
    save(fixed, now=edited.fetched_at + timedelta(hours=1))
    story = the_story(store)
    with store.engine.connect() as conn:
        facts = {
            key: json.loads(f)
            for key, f in conn.execute(
                select(t.items.c.key, t.story_items.c.facts).join(
                    t.story_items, t.story_items.c.item_id == t.items.c.id
                )
            )
        }
    assert facts[edited.key]["title"] == after
    assert (story["people"], story["people_approximate"]) == count
    if role == "founding report":
        assert story["title"] == after
    assert [(r, k, rev) for r, _, k, rev in deliveries(store)[told:]] == queued
    assert story["revision"] == (2 if queued else 1)


E2E_CONFIG = """
sources:
  - {{id: wire-en, name: Wire, kind: feed, url: '{en}', interval: 5s, lang: en}}
  - {{id: wire-ko, name: 연합, kind: feed, url: '{ko}', interval: 5s, lang: ko}}
concepts:
  nk_people: {{en: [north korean*], ko: [탈북민]}}
  sent_back: {{en: [repatriat*], ko: [북송]}}
rules:
  - {{id: return, event: forced_repatriation, severity: high, all_of: [nk_people, sent_back]}}
channels:
  - {{id: hook, url: '{hook}'}}
  - {{id: korean-hook, url: '{korean_hook}'}}
routes:
  - {{id: returns, channels: [hook], events: [forced_repatriation], group_wait: 0s, continue: true}}
  - {{id: korean, channels: [korean-hook], langs: [ko], group_wait: 0s, locale: ko}}
settings: {{retries: 0, delivery_timeout: 2s, allow_private_addresses: true}}
"""


def e2e_rss(feed: str, *titles: str) -> bytes:
    published = format_datetime(datetime.now(UTC) - timedelta(hours=1))
    items = "".join(
        f"<item><title>{title}</title><link>https://e.org/{feed}/{n}</link>"
        f"<pubDate>{published}</pubDate></item>"
        for n, title in enumerate(titles)
    )
    head = '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>W</title>'
    return f"{head}{items}</channel></rss>".encode()


@pytest.mark.e2e
def test_a_korean_report_joining_quietly_alerts_the_korean_route(
    tmp_path: Path, db_url: str
) -> None:
    """The reviewer's case, through the daemon: English outlets found a story, a Korean one
    joins it with nothing new; the `langs: [ko]` route gets the story's alert, once, and the
    route that had it hears nothing more."""
    with FeedServer() as server:
        server.route("/en", body=e2e_rss("en"))
        server.route("/ko", body=e2e_rss("ko"))
        for path in ("/hook", "/korean-hook"):
            server.route(path, body=b"{}", content_type="application/json")
        cfg = tmp_path / "sources.yaml"
        cfg.write_text(
            E2E_CONFIG.format(
                en=server.url("/en"),
                ko=server.url("/ko"),
                hook=server.url("/hook").replace("http://", "json://"),
                korean_hook=server.url("/korean-hook").replace("http://", "json://"),
            )
        )

        def once() -> None:
            ran = watcher("--config", str(cfg), "--db", db_url, "run", "--once", "--all")
            assert ran.returncode == 0, ran.stderr

        def got(path: str) -> list[dict[str, Any]]:
            return [json.loads(s.body) for s in server.hits(path)]

        once()  # the baseline
        server.routes["/en"].body = e2e_rss("en", "China repatriates 60 North Koreans via Dandong")
        once()
        assert len(got("/hook")) == 1 and got("/korean-hook") == []
        server.routes["/ko"].body = e2e_rss("ko", "중국, 탈북민 60명 단둥 통해 강제북송")
        once()
        (alert,) = got("/korean-hook")
        assert "강제북송" in alert["title"] and "업데이트" not in json.dumps(
            alert, ensure_ascii=False
        )
        assert len(got("/hook")) == 1
        once()
        assert len(got("/korean-hook")) == 1 and len(got("/hook")) == 1

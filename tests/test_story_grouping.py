"""Stories as the daemon makes them, in the poll's transaction, on both databases: one clock
(publication time), reports compared by their own facts, the same result in any order."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from sqlalchemy import select

from watcher.config import load_config_text
from watcher.pipeline import match_items
from watcher.routing import Alerting
from watcher.rules import compile_rules
from watcher.store import SaveResult, Store
from watcher.store import tables as t
from watcher.types import Item

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

CONFIG = {
    "sources": [
        {"id": "wire-en", "kind": "feed", "url": "https://e.org/en", "lang": "en"},
        {"id": "wire-ko", "kind": "feed", "url": "https://e.org/ko", "lang": "ko"},
    ],
    "concepts": {
        "nk_people": {"gloss": "North Korean escapees", "en": ["north korean*"], "ko": ["탈북민"]},
        "sent_back": {"gloss": "sent back", "en": ["repatriat*", "sent back"], "ko": ["북송"]},
        "arrested": {"en": ["detain*"], "ko": ["체포"]},
    },
    "channels": [
        {"id": "hook", "url": "json://127.0.0.1:9/hook"},
        {"id": "mail", "url": "json://127.0.0.1:9/mail"},
    ],
    "routes": [
        {"id": "urgent", "channels": ["hook", "mail"], "events": ["forced_repatriation"]},
        {"id": "everything", "channels": ["hook"], "continue": True},
    ],
    "rules": [
        {
            "id": "return",
            "event": "forced_repatriation",
            "all_of": ["nk_people", "sent_back"],
            "severity": "high",
        },
        {"id": "arrest", "event": "detention", "all_of": ["nk_people", "arrested"]},
    ],
}


def item(
    key: str,
    source: str,
    title: str,
    *,
    published: datetime | None,
    fetched: datetime,
    lang: str = "en",
) -> Item:
    return Item(
        key=key,
        source_id=source,
        url=key,
        title=title,
        text="",
        lang=lang,
        published_at=published,
        published_raw=None,
        fetched_at=fetched,
    )


@pytest.fixture
def save(store: Store):
    config = load_config_text(yaml.safe_dump(CONFIG, allow_unicode=True), "s.yaml", {}).config
    store.sync_sources(config.sources, T0)
    matcher = compile_rules(config)
    alerting = Alerting.from_config(config)

    def save(*items: Item) -> SaveResult:
        return store.save_items(
            list(items),
            now=max(i.fetched_at for i in items),
            matches=match_items(matcher, items, ()),
            alerting=alerting,
        )

    return save


def stories_of(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(t.items.c.key, t.story_items.c.story_id).join(
                t.story_items, t.story_items.c.item_id == t.items.c.id
            )
        ).all()
    return {key: story_id for key, story_id in rows}


def test_a_report_polled_ten_days_after_publication_joins_its_story(store: Store, save) -> None:
    save(
        item(
            "https://e.org/1",
            "wire-en",
            "China repatriates 60 North Koreans via Dandong",
            published=T0,
            fetched=T0 + timedelta(minutes=5),
        )
    )
    save(
        item(
            "https://e.org/2",
            "wire-ko",
            "중국, 탈북민 60명 단둥 통해 강제북송",
            published=T0 + timedelta(hours=5),
            fetched=T0 + timedelta(days=10),
            lang="ko",
        )
    )
    got = stories_of(store)
    assert got["https://e.org/1"] == got["https://e.org/2"]
    with store.engine.connect() as conn:
        (event_at, count) = conn.execute(select(t.stories.c.event_at, t.stories.c.item_count)).one()
        facts = [json.loads(f) for (f,) in conn.execute(select(t.story_items.c.facts))]
    assert event_at == T0  # the story's clock is its founding report's publication time
    assert count == 2
    assert {f["people"] for f in facts} == {60} and all(f["dated"] for f in facts)


def test_the_same_story_in_any_order_of_arrival(store: Store, save) -> None:
    """Reports stored in one poll are grouped in order of publication, not of arrival."""
    reports = [
        item(
            "https://e.org/b",
            "wire-ko",
            "중국, 탈북민 60명 단둥 통해 강제북송",
            published=T0 + timedelta(hours=2),
            fetched=T0 + timedelta(hours=3),
            lang="ko",
        ),
        item(
            "https://e.org/a",
            "wire-en",
            "China repatriates 60 North Koreans via Dandong",
            published=T0,
            fetched=T0 + timedelta(hours=3),
        ),
        item(
            "https://e.org/c",
            "wire-en",
            "Police detain 7 North Koreans in Kunming",
            published=T0 + timedelta(hours=1),
            fetched=T0 + timedelta(hours=3),
        ),
    ]
    save(*reports)
    got = stories_of(store)
    assert got["https://e.org/a"] == got["https://e.org/b"] != got["https://e.org/c"]
    with store.engine.connect() as conn:
        founder = conn.execute(
            select(t.stories.c.title).where(t.stories.c.id == got["https://e.org/a"])
        ).scalar_one()
    assert founder == "China repatriates 60 North Koreans via Dandong"  # the earliest report


def test_undated_reports_of_different_events_stay_apart(store: Store, save) -> None:
    save(
        item(
            "https://e.org/x",
            "wire-en",
            "Police detain 10 North Koreans in Shenyang",
            published=None,
            fetched=T0,
        ),
        item(
            "https://e.org/y",
            "wire-en",
            "China repatriates 60 North Koreans via Dandong",
            published=None,
            fetched=T0,
        ),
    )
    got = stories_of(store)
    assert got["https://e.org/x"] != got["https://e.org/y"]


def test_an_undated_report_joins_the_story_of_the_day_its_text_states(store: Store, save) -> None:
    """An undated report has only its fetch time, which says nothing of the event's day; a day
    its text states does, and with the count it makes two signals."""
    save(
        item(
            "https://e.org/dated",
            "wire-en",
            "China repatriates 60 North Koreans",
            published=T0,
            fetched=T0 + timedelta(minutes=5),
        )
    )
    save(
        item(
            "https://e.org/states-the-day",
            "wire-en",
            "Activists: 60 North Koreans were repatriated on Nov. 20",
            published=None,
            fetched=T0 + timedelta(days=3),
        ),
        item(
            "https://e.org/states-nothing",
            "wire-en",
            "Fate of 60 repatriated North Koreans unknown",
            published=None,
            fetched=T0 + timedelta(days=3),
        ),
    )
    got = stories_of(store)
    assert got["https://e.org/dated"] == got["https://e.org/states-the-day"]
    assert got["https://e.org/states-nothing"] != got["https://e.org/dated"]
    with store.engine.connect() as conn:
        stated = [json.loads(f)["stated"] for (f,) in conn.execute(select(t.story_items.c.facts))]
    # only what the text writes: no year it does not give, none for the dated report
    assert sorted(stated) == [[], [], ["--11-20"]]


def test_a_report_far_from_any_story_in_time_opens_its_own(store: Store, save) -> None:
    save(
        item(
            "https://e.org/2017",
            "wire-en",
            "Police detain 7 North Koreans in Shenyang",
            published=T0 - timedelta(days=400),
            fetched=T0,
        )
    )
    save(
        item(
            "https://e.org/2018",
            "wire-en",
            "Police detain 7 North Koreans in Shenyang",
            published=T0,
            fetched=T0 + timedelta(minutes=1),
        )
    )
    got = stories_of(store)
    assert got["https://e.org/2017"] != got["https://e.org/2018"]


def test_each_queued_delivery_is_counted_under_its_route(store: Store, save) -> None:
    saved = save(
        item(
            "https://e.org/r",
            "wire-en",
            "China repatriates 60 North Koreans via Dandong",
            published=T0,
            fetched=T0 + timedelta(minutes=1),
        )
    )
    (change,) = saved.stories
    # urgent takes both channels and stops the walk; no second message to hook from another
    # route: one message per story revision per channel.
    assert change.routes == ("urgent", "urgent") and change.deliveries == 2


def test_a_crowded_window_gives_the_nearest_stories_only(store: Store) -> None:
    """More stories than CANDIDATES within the window: the lookup reads the nearest ones on the
    event clock, from both sides of the report, never a merged one, so a crowded fortnight
    costs no more than a quiet one."""
    from watcher import stories as st
    from watcher.store.stories import _insert_story, candidates

    # CANDIDATES - 2 close stories (one of them merged), then six far in the window
    close = st.CANDIDATES - 2
    offsets = [timedelta(hours=h) for h in range(-close, close, 2)]
    offsets += [timedelta(days=d) for d in (-6, -5, -4, 4, 5, 6)]
    with store.engine.begin() as conn:
        ids = {}
        for n, offset in enumerate(offsets):
            facts = st.Facts(
                item_key=f"k{n}",
                source_id="wire-en",
                title=f"Story {n}",
                at=T0 + offset,
                events=frozenset({"detention"}),
                severity="low",
            )
            ids[offset] = _insert_story(conn, facts, T0).id
        merged = ids[timedelta(hours=0)]
        conn.execute(t.stories.update().where(t.stories.c.id == merged).values(status="merged"))
        found = candidates(conn, T0, timedelta(days=7))
    assert len(found) == st.CANDIDATES
    distances = sorted(abs(o) for o in offsets if o != timedelta(0))
    assert sorted(abs(s.event_at - T0) for s in found if s.event_at) == distances[: st.CANDIDATES]
    assert merged not in {s.id for s in found}
    # the close ones, the two at 4 days and one at 5 (the earlier founded of the tie)
    assert ids[timedelta(days=-4)] in {s.id for s in found}
    assert ids[timedelta(days=-5)] in {s.id for s in found}
    assert ids[timedelta(days=5)] not in {s.id for s in found}


def test_a_report_grouped_before_facts_were_kept_is_compared_by_its_title_and_time(
    store: Store, save
) -> None:
    from watcher.store.stories import candidates

    first = item(
        "https://e.org/old",
        "wire-en",
        "China repatriates 60 North Koreans via Dandong",
        published=T0,
        fetched=T0 + timedelta(minutes=5),
    )
    save(first)
    with store.engine.begin() as conn:
        conn.execute(t.story_items.update().values(facts=None))  # as an old database has it
        (story,) = candidates(conn, T0 + timedelta(hours=3), timedelta(days=7))
    (report,) = story.reports
    assert (report.item_key, report.title, report.at, report.dated) == (
        first.key,
        first.title,
        T0,
        True,
    )
    assert report.events == frozenset() and report.places == ()
    # and a copy of its headline the same day still joins it
    save(
        item(
            "https://e.org/copy",
            "wire-en",
            "China repatriates 60 North Koreans via Dandong",
            published=T0 + timedelta(hours=3),
            fetched=T0 + timedelta(hours=3, minutes=5),
        )
    )
    assert len(set(stories_of(store).values())) == 1

"""Retention (`watcher db prune`) on SQLite and PostgreSQL: old unmatched items go with their
earlier versions; items of stories, matches, stories and the outbox stay; a dry run changes
nothing; a pruned item seen again in a feed is not new and sends nothing."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from tests.helpers import watcher
from tests.httpserver import FeedServer
from watcher.config import load_config_text
from watcher.fetch import Fetcher, FetchLimits
from watcher.outbox import Deliverer, SendResult
from watcher.pipeline import match_items, run_cycle
from watcher.routing import Alerting
from watcher.rules import compile_rules
from watcher.store import Store
from watcher.store import tables as t
from watcher.store.prune import KEEP_REVISIONS, key_hash, prune, pruned_keys
from watcher.types import Item, Message

NOW = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=200)

RULES: dict[str, Any] = {
    "concepts": {
        "nk_people": {"en": ["north korean*", "defector*"], "ko": ["탈북민"]},
        "sent_back": {"en": ["repatriat*", "sent back"], "ko": ["북송"]},
    },
    "rules": [
        {
            "id": "return",
            "event": "forced_repatriation",
            "severity": "high",
            "all_of": ["nk_people", "sent_back"],
        }
    ],
}


def config_of(sources: list[dict[str, Any]], rules: dict[str, Any] = RULES) -> Any:
    doc = {
        "sources": sources,
        **rules,
        "channels": [{"id": "hook", "url": "json://127.0.0.1:9/hook"}],
        "routes": [{"channels": ["hook"], "group_wait": "0s"}],
        "settings": {"retries": 0, "allow_private_addresses": True},
    }
    return load_config_text(yaml.safe_dump(doc), "t.yaml", {}).config


SOURCES = [{"id": "yonhap", "name": "Yonhap", "kind": "feed", "url": "https://e.org/y"}]


def item(key: str, title: str, at: datetime) -> Item:
    return Item(
        key=key,
        source_id="yonhap",
        url=key,
        title=title,
        text=f"Lead of {title}",
        lang="en",
        published_at=at,
        published_raw=None,
        fetched_at=at,
    )


def save(store: Store, config: Any, items: list[Item], at: datetime) -> None:
    store.save_items(
        items,
        now=at,
        matches=match_items(compile_rules(config), items, ()),
        alerting=Alerting.from_config(config),
    )


OLD_UNMATCHED = ["https://e.org/weather", "https://e.org/markets", "https://e.org/sports"]
OLD_STORY = "https://e.org/return"
RECENT = "https://e.org/recent"


def seed(store: Store) -> None:
    """Three old unmatched items (one edited: an earlier version), an old item of a story with
    its queued alert, and a recent unmatched item."""
    config = config_of(SOURCES)
    store.sync_sources(config.sources, OLD)
    titles = ["Seoul weather", "Markets rise", "Football scores"]
    save(
        store, config, [item(k, tt, OLD) for k, tt in zip(OLD_UNMATCHED, titles, strict=True)], OLD
    )
    save(store, config, [item(OLD_UNMATCHED[0], "Seoul weather: rain all week", OLD)], OLD)
    save(store, config, [item(OLD_STORY, "China repatriates 60 North Korean defectors", OLD)], OLD)
    save(store, config, [item(RECENT, "Seoul traffic", NOW - timedelta(days=10))], NOW)


def counts(store: Store) -> dict[str, int]:
    tables = (
        t.items,
        t.item_sources,
        t.item_revisions,
        t.matches,
        t.stories,
        t.story_items,
        t.deliveries,
        t.pruned_items,
    )
    with store.engine.connect() as conn:
        return {
            table.name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            for table in tables
        }


def keys(store: Store) -> set[str]:
    with store.engine.connect() as conn:
        return set(conn.execute(select(t.items.c.key)).scalars())


def test_prune_drops_old_unmatched_items_and_keeps_stories_and_the_outbox(store: Store) -> None:
    seed(store)
    before = counts(store)
    assert before["item_revisions"] == 1 and before["deliveries"] == 1

    report = prune(store, older_than=timedelta(days=180), now=NOW)

    assert (report.items, report.revisions, report.source_links) == (3, 1, 3)
    assert report.kept_matched == 1 and report.deliveries == 1 and not report.dry_run
    assert keys(store) == {OLD_STORY, RECENT}
    after = counts(store)
    assert after == {
        **before,
        "items": before["items"] - 3,
        "item_sources": before["item_sources"] - 3,
        "item_revisions": 0,
        "pruned_items": 3,
    }
    with store.engine.connect() as conn:
        assert pruned_keys(conn, [*OLD_UNMATCHED, OLD_STORY, RECENT]) == set(OLD_UNMATCHED)
        tombstones = set(conn.execute(select(t.pruned_items.c.key_hash)).scalars())
    assert tombstones == {key_hash(k) for k in OLD_UNMATCHED}
    assert all(len(h) == 32 for h in tombstones)
    # A second prune finds nothing more to drop.
    assert prune(store, older_than=timedelta(days=180), now=NOW).items == 0


def test_the_age_decides(store: Store) -> None:
    seed(store)
    assert prune(store, older_than=timedelta(days=201), now=NOW).items == 0
    assert prune(store, older_than=timedelta(days=9), now=NOW).items == 4
    assert keys(store) == {OLD_STORY}


def test_a_dry_run_counts_and_changes_nothing(store: Store) -> None:
    seed(store)
    before = counts(store)
    report = prune(store, older_than=timedelta(days=180), now=NOW, dry_run=True)
    assert (report.items, report.revisions, report.source_links) == (3, 1, 3)
    assert report.dry_run and report.kept_matched == 1
    assert counts(store) == before
    assert prune(store, older_than=timedelta(days=180), now=NOW).items == report.items


def test_vacuum_gives_the_space_back_on_sqlite(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'w.db'}")
    store.upgrade()
    try:
        config = config_of(SOURCES)
        store.sync_sources(config.sources, OLD)
        big = [item(f"https://e.org/{n}", f"Item {n} " + "word " * 400, OLD) for n in range(300)]
        save(store, config, big, OLD)
        report = prune(store, older_than=timedelta(days=180), now=NOW, vacuum=True)
    finally:
        store.close()
    assert report.items == 300 and report.vacuumed
    assert report.size_before is not None and report.size_after is not None
    assert report.size_after < report.size_before / 2


# --------------------------------------------------------------------------- seen again


def rss(*entries: tuple[str, str]) -> bytes:
    """Undated entries: their event clock is the fetch time, so a new one is always fresh."""
    body = "".join(
        f"<item><title>{title}</title><link>{link}</link><guid>{link}</guid></item>"
        for title, link in entries
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>T</title>'
        f"<link>https://example.org/</link>{body}</channel></rss>"
    ).encode()


def poll(store: Store, config: Any, at: datetime) -> Any:
    async def go() -> Any:
        async with Fetcher(FetchLimits.from_settings(config.settings)) as fetcher:
            (report,) = await run_cycle(
                config.sources,
                store=store,
                fetcher=fetcher,
                settings=config.settings,
                clock=lambda: at,
                only_due=False,
                matcher=compile_rules(config),
                alerting=Alerting.from_config(config),
            )
            return report

    return asyncio.run(go())


def test_a_pruned_item_seen_again_is_not_new_and_sends_nothing(store: Store) -> None:
    """The item matched nothing when it was stored; a rule added since would match it, and
    undated it would look fresh: still it is neither stored, matched, nor sent again."""
    pruned = ("Police see 40 North Korean defectors sent back", "https://e.org/pruned")
    fresh = ("Another 12 North Korean defectors sent back", "https://e.org/fresh")
    with FeedServer() as feeds:
        feeds.route("/y", body=rss(("Seoul weather", "https://e.org/w")))
        sources = [{"id": "yonhap", "name": "Yonhap", "kind": "feed", "url": feeds.url("/y")}]
        no_rules = config_of(sources, rules={})
        store.sync_sources(no_rules.sources, OLD)
        poll(store, no_rules, OLD)  # the source's first poll: its baseline
        feeds.route("/y", body=rss(("Seoul weather", "https://e.org/w"), pruned))
        assert poll(store, no_rules, OLD + timedelta(hours=1)).new == 1
        assert prune(store, older_than=timedelta(days=180), now=NOW).items == 2

        # Since then a rule was added; the outlet still carries the pruned item, and a new one.
        config = config_of(sources)
        feeds.route("/y", body=rss(("Seoul weather", "https://e.org/w"), pruned, fresh))
        report = poll(store, config, NOW)

    assert report.outcome == "ok" and report.parsed == 3
    assert report.new == 1 and report.matched == 1  # only the fresh item
    assert keys(store) == {"https://e.org/fresh"}
    sent: list[Message] = []

    def send(url: str, message: Message, timeout: float) -> SendResult:
        sent.append(message)
        return SendResult(outcome="sent")

    assert asyncio.run(Deliverer(store, config, clock=lambda: NOW, send=send).run_due()) == 1
    (message,) = sent
    assert "Another 12 North Korean defectors" in message.body
    assert "Police see 40" not in message.body


# --------------------------------------------------------------------------- the command


@pytest.mark.e2e
def test_the_command_says_what_it_would_drop_and_what_it_dropped(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    store = Store.open(f"sqlite:///{db}")
    store.upgrade()
    config = config_of(SOURCES)
    store.sync_sources(config.sources, OLD)
    save(store, config, [item(k, "Seoul weather", OLD) for k in OLD_UNMATCHED], OLD)
    store.close()
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(yaml.safe_dump({"sources": SOURCES}))
    args = ("--utc", "--config", str(cfg), "--db", f"sqlite:///{db}", "db", "prune")

    dry = watcher(*args, "--older-than", "180d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0].startswith("items stored before ")
    assert lines[0].endswith(
        "that no rule matched: would drop 3 (0 earlier versions, 3 source links)"
    )
    assert (
        lines[1]
        == "kept: 0 older items that matched a rule, every match and story, and all 0 outbox "
        "records"
    )
    assert lines[2].startswith("database: ") and "→" not in lines[2]

    done = watcher(*args, "--older-than", "180d")
    assert done.returncode == 0, done.stderr
    assert "dropped 3 (0 earlier versions, 3 source links)" in done.stdout
    assert "remembered 3 dropped keys" in done.stdout
    assert "→" in done.stdout.splitlines()[-1]


# What --older-than refuses, in one line; the hint names an age the option takes (the one
# above: 180d), not the 15m of durations elsewhere, which it would refuse.
@pytest.mark.e2e
@pytest.mark.parametrize(
    ("age", "said"),
    [
        ("2h", "error: --older-than 2h: at least 1d (younger items are still in the feeds)"),
        ("soon", "error: --older-than: expected a duration like 180d, got 'soon'"),
        ("half a year", "error: --older-than: expected a duration like 180d, got 'half a year'"),
    ],
)
def test_the_command_refuses_an_age_it_cannot_take_in_one_line(
    tmp_path: Path, age: str, said: str
) -> None:
    db = f"sqlite:///{tmp_path / 'w.db'}"
    refused = watcher("--db", db, "db", "prune", "--older-than", age)
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [said]


# Earlier versions are bounded: an item whose lead carries a counter that changes on every poll
# ("N comments") keeps its first earlier version and the latest KEEP_REVISIONS, not one per poll.


def test_an_item_edited_on_every_poll_keeps_its_first_and_latest_revisions(store: Store) -> None:
    config = config_of(SOURCES)
    store.sync_sources(config.sources, OLD)
    key = "https://e.org/counter"
    polls = 20
    for n in range(polls + 1):
        edited = item(key, "Seoul weather", OLD + timedelta(minutes=n))
        at = OLD + timedelta(minutes=n)
        save(store, config, [replace(edited, text=f"Rain all week. {n} comments")], at)
    kept = [text for _, text in store.item_revisions(key)]
    assert len(kept) == KEEP_REVISIONS + 1
    assert kept[0] == "Rain all week. 0 comments"  # as first found
    assert kept[1:] == [f"Rain all week. {n} comments" for n in range(polls - 5, polls)]


def test_an_edited_count_of_people_is_still_a_revision(store: Store) -> None:
    config = config_of(SOURCES)
    store.sync_sources(config.sources, OLD)
    key = "https://e.org/ko"
    save(
        store, config, [replace(item(key, "탈북민 강제북송", OLD), text="탈북민 20여명 북송")], OLD
    )
    save(
        store, config, [replace(item(key, "탈북민 강제북송", OLD), text="탈북민 30여명 북송")], NOW
    )
    assert store.item_revisions(key) == [("탈북민 강제북송", "탈북민 20여명 북송")]


def test_prune_trims_the_revisions_of_kept_items_beyond_the_bound(store: Store) -> None:
    """A database written before the bound: an item of a story with 20 earlier versions. It
    stays (it matched), and keeps the first and the latest KEEP_REVISIONS."""
    seed(store)
    with store.engine.begin() as conn:
        story_item = conn.execute(select(t.items.c.id).where(t.items.c.key == OLD_STORY)).scalar()
        conn.execute(
            t.item_revisions.insert(),
            [
                {"item_id": story_item, "changed_at": OLD, "old_title": "t", "old_text": f"v{n}"}
                for n in range(20)
            ],
        )
    dry = prune(store, older_than=timedelta(days=180), now=NOW, dry_run=True)
    assert dry.trimmed_revisions == 20 - KEEP_REVISIONS - 1
    assert len(store.item_revisions(OLD_STORY)) == 20
    report = prune(store, older_than=timedelta(days=180), now=NOW)
    assert report.trimmed_revisions == 20 - KEEP_REVISIONS - 1
    assert OLD_STORY in keys(store)
    kept = [text for _, text in store.item_revisions(OLD_STORY)]
    assert kept == ["v0", *(f"v{n}" for n in range(20 - KEEP_REVISIONS, 20))]
    again = prune(store, older_than=timedelta(days=180), now=NOW)
    assert again.trimmed_revisions == 0

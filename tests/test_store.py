"""The store on SQLite and PostgreSQL: migrations, sources, items stored once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import inspect

from watcher.store import SCHEMA_HEAD, Store
from watcher.types import Item, MatchRecord

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def make_item(key: str = "https://example.org/a", **kw: object) -> Item:
    values: dict = {
        "key": key,
        "source_id": "src",
        "url": key,
        "title": "중국, 탈북민 강제북송",
        "text": "text",
        "lang": "ko",
        "published_at": NOW - timedelta(hours=1),
        "published_raw": "2026-11-23 17:00",
        "fetched_at": NOW,
    }
    values.update(kw)
    return Item(**values)


class _Src:
    def __init__(self, id: str, url: str = "https://example.org/feed") -> None:
        self.id, self.kind, self.url = id, "feed", url


def test_upgrade_creates_schema_and_is_idempotent(db_url: str) -> None:
    store = Store.open(db_url)
    assert store.current_revision() is None
    assert store.upgrade() == (None, SCHEMA_HEAD)
    assert store.upgrade() == (SCHEMA_HEAD, SCHEMA_HEAD)
    tables = set(inspect(store.engine).get_table_names())
    assert {"sources", "items", "alembic_version"} <= tables
    store.close()


def test_same_item_twice_is_one_row(store: Store) -> None:
    store.sync_sources([_Src("src")], NOW)
    first = store.save_items([make_item()])
    second = store.save_items([make_item(title="중국,  탈북민 강제북송!")])  # punctuation only
    assert [i.key for i in first.new] == ["https://example.org/a"]
    assert second.new == () and second.updated == () and second.seen == 1
    assert store.item_count() == 1
    (stored,) = list(store.iter_items())
    assert stored.title == "중국, 탈북민 강제북송"
    assert stored.published_at == NOW - timedelta(hours=1)
    assert stored.published_at.tzinfo is not None


def test_material_edit_updates_item_and_keeps_old_version(store: Store) -> None:
    store.sync_sources([_Src("src")], NOW)
    store.save_items([make_item()])
    result = store.save_items([make_item(title="중국, 탈북민 600여명 강제북송")])
    assert [i.key for i in result.updated] == ["https://example.org/a"]
    assert result.new == ()
    assert store.item_count() == 1
    (stored,) = list(store.iter_items())
    assert stored.title == "중국, 탈북민 600여명 강제북송"
    assert store.item_revisions("https://example.org/a") == [("중국, 탈북민 강제북송", "text")]


def test_an_item_stored_with_the_wordpress_footer_is_not_edited_when_it_is_dropped(
    store: Store,
) -> None:
    # stored by a version that kept the footer; polled again, the parser gives it without
    footer = " The post 중국, 탈북민 강제북송 appeared first on 데일리NK."
    store.sync_sources([_Src("src")], NOW)
    store.save_items([make_item(text="단둥에서 60여 명 북송." + footer)])
    result = store.save_items([make_item(text="단둥에서 60여 명 북송.")])
    assert result.updated == () and store.item_revisions("https://example.org/a") == []
    (stored,) = list(store.iter_items())  # the stored text loses it too, quietly
    assert stored.text == "단둥에서 60여 명 북송."
    # a real edit still is one
    result = store.save_items([make_item(text="단둥에서 600여 명 북송.")])
    assert [i.key for i in result.updated] == ["https://example.org/a"]


def test_item_carried_by_two_sources_is_stored_once(store: Store) -> None:
    store.sync_sources([_Src("a"), _Src("b")], NOW)
    assert len(store.save_items([make_item(source_id="a")]).new) == 1
    later = NOW + timedelta(minutes=5)
    assert store.save_items([make_item(source_id="b")], now=later).new == ()
    assert store.item_count() == 1
    assert store.item_sources("https://example.org/a") == ["a", "b"]


def test_duplicate_keys_in_one_batch(store: Store) -> None:
    store.sync_sources([_Src("src")], NOW)
    result = store.save_items([make_item(), make_item(), make_item("k2")])
    assert sorted(i.key for i in result.new) == ["https://example.org/a", "k2"]
    assert store.item_count() == 2


def test_racing_connections_store_one_row(db_url: str) -> None:
    setup = Store.open(db_url)
    setup.upgrade()
    setup.sync_sources([_Src("src")], NOW)
    setup.close()
    stores = [Store.open(db_url) for _ in range(6)]
    barrier = threading.Barrier(len(stores))
    results: list[int] = []
    errors: list[BaseException] = []

    def insert(store: Store) -> None:
        try:
            barrier.wait()
            for n in range(20):
                results.append(len(store.save_items([make_item(f"key-{n}")]).new))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=insert, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(results) == 20  # each key reported new exactly once across all writers
    assert stores[0].item_count() == 20
    for s in stores:
        s.close()


def test_sync_sources_resets_validators_when_url_changes(store: Store) -> None:
    store.sync_sources([_Src("a"), _Src("b")], NOW)
    with store.engine.begin() as conn:
        from sqlalchemy import update

        from watcher.store.tables import sources

        conn.execute(update(sources).values(etag='"v1"', body_hash="h"))
    store.sync_sources([_Src("a", "https://example.org/new"), _Src("b")], NOW)
    states = store.source_states()
    assert states["a"].url == "https://example.org/new"
    assert states["a"].etag is None and states["a"].body_hash is None
    assert states["b"].etag == '"v1"'


def test_a_failing_source_given_a_new_address_is_due_at_once(store: Store) -> None:
    # hours of back-off after failures of the old address: the fix shows at the next tick
    later = NOW + timedelta(hours=5)
    store.sync_sources([_Src("a"), _Src("b"), _Src("c")], NOW)
    with store.engine.begin() as conn:
        from sqlalchemy import update

        from watcher.store.tables import sources

        conn.execute(update(sources).values(consecutive_failures=11, next_due_at=later))
        conn.execute(update(sources).where(sources.c.id == "c").values(consecutive_failures=0))
    moved = [_Src("a", "https://example.org/new"), _Src("b"), _Src("c", "https://example.org/c2")]
    store.sync_sources(moved, NOW)
    states = store.source_states()
    assert states["a"].next_due_at == NOW  # failing, moved: due now
    assert states["b"].next_due_at == later  # failing, same address: its back-off holds
    assert states["c"].next_due_at == later  # healthy, moved: its interval holds


def test_aware_datetimes_round_trip_in_utc(store: Store) -> None:
    from zoneinfo import ZoneInfo

    store.sync_sources([_Src("src")], NOW)
    seoul = datetime(2026, 11, 23, 18, 0, tzinfo=ZoneInfo("Asia/Seoul"))
    store.save_items([make_item(published_at=seoul.astimezone(UTC))])
    (stored,) = list(store.iter_items())
    assert stored.published_at == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_a_poll_of_many_items_round_trips_every_field_in_order(store: Store) -> None:
    from zoneinfo import ZoneInfo

    from sqlalchemy import select

    from watcher.store.tables import sources

    store.sync_sources([_Src("src"), _Src("other")], NOW)
    seoul = ZoneInfo("Asia/Seoul")
    items = [
        make_item(
            f"https://example.org/{n}",
            source_id="other" if n % 9 == 0 else "src",
            url=None if n % 2 else f"https://example.org/{n}",
            lang=None if n % 3 == 0 else "en",
            published_at=None
            if n % 4 == 0
            else datetime(2026, 11, 23, 18, n, tzinfo=seoul).astimezone(UTC),
            published_raw=None if n % 5 == 0 else f"raw {n}",
            title=f"제목 {n}: \u2019quoted\u2018",
            text=f"text {n} with 'quotes' and \"more\", {{braces}}, NULL",
            baseline=n % 2 == 0,
        )
        for n in range(45)
    ]
    result = store.save_items(items)
    assert [i.key for i in result.new] == [i.key for i in items]
    assert list(store.iter_items()) == items  # every field; ids in the poll's order
    assert store.item_sources("https://example.org/44") == ["src"]
    assert store.item_sources("https://example.org/9") == ["other"]
    again = store.save_items([*items[40:], make_item("https://example.org/new")])
    assert [i.key for i in again.new] == ["https://example.org/new"] and again.seen == 5
    with store.engine.connect() as conn:
        counts = {
            r.id: r.item_count for r in conn.execute(select(sources.c.id, sources.c.item_count))
        }
    assert counts == {"src": 41, "other": 5}


def _match(key: str, rule: str, event: str, people: int | None = None) -> MatchRecord:
    return MatchRecord(
        item_key=key,
        rule_id=rule,
        event=event,
        severity="high",
        people=people,
        places=("Dandong", "단둥"),
        dates=("2026-10-09",),
    )


def test_matches_are_stored_with_new_items_and_replaced_on_update(store: Store) -> None:
    store.sync_sources([_Src("src")], NOW)
    key = "https://example.org/a"
    first = store.save_items(
        [make_item(key)], now=NOW, matches=[_match(key, "return", "forced_repatriation", 600)]
    )
    assert [m.rule_id for m in first.matches] == ["return"]
    (stored,) = store.matches_of(key)
    assert stored.people == 600 and stored.places == ("Dandong", "단둥")
    assert stored.dates == ("2026-10-09",)
    # seen again unchanged: matches for it are not stored again
    again = store.save_items(
        [make_item(key)], now=NOW, matches=[_match(key, "arrest", "detention")]
    )
    assert again.matches == () and [m.rule_id for m in store.matches_of(key)] == ["return"]
    # edited materially: its matches are replaced by the new verdict
    edited = store.save_items(
        [make_item(key, title="中, 탈북민 수백 명 체포 후 강제북송 임박")],
        now=NOW,
        matches=[_match(key, "arrest", "detention")],
    )
    assert len(edited.updated) == 1
    assert [m.rule_id for m in store.matches_of(key)] == ["arrest"]
    assert store.matched_events() == {key: frozenset({"detention"})}
    assert store.match_count() == 1


def test_a_database_call_fails_in_seconds_rather_than_hang(store: Store) -> None:
    """Connect, statement and lock waits are capped (store.DB_TIMEOUT), on both databases: a
    stalled or blackholed database becomes an error the daemon retries, not a hang."""
    from sqlalchemy import text

    from watcher.store.engine import DB_TIMEOUT

    assert DB_TIMEOUT <= 10
    with store.engine.connect() as conn:
        if store.dialect == "postgresql":
            assert conn.execute(text("SHOW statement_timeout")).scalar() == f"{DB_TIMEOUT}s"
            assert conn.execute(text("SHOW lock_timeout")).scalar() == f"{DB_TIMEOUT}s"
        else:
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == DB_TIMEOUT * 1000
    if store.dialect == "postgresql":
        with store.engine.connect() as conn, pytest.raises(Exception, match="statement timeout"):
            conn.execute(text("SET LOCAL statement_timeout = 50"))
            conn.execute(text("SELECT pg_sleep(2)"))


def test_stale_source_claims_are_released_at_start(store: Store) -> None:
    from watcher.config import load_config_text

    config = load_config_text(
        "sources:\n  - {id: a, kind: feed, url: 'https://e.org/a'}\n"
        "  - {id: b, kind: feed, url: 'https://e.org/b'}\n",
        "t.yaml",
        {},
    ).config
    store.sync_sources(config.sources, NOW)
    lease = timedelta(seconds=60)
    assert store.claim_due(["a"], NOW, NOW + lease) == ["a"]  # then the process is killed
    assert store.claim_due(["a"], NOW + timedelta(seconds=1), NOW + lease) == []
    from watcher.store.tables import sources

    with store.engine.begin() as conn:  # b polled a moment ago: due in an hour
        conn.execute(
            sources.update().where(sources.c.id == "b").values(next_due_at=NOW + timedelta(hours=1))
        )
    assert store.release_stale_claims(NOW + timedelta(seconds=2), lease) == 1
    assert store.claim_due(["a", "b"], NOW + timedelta(seconds=2), NOW + lease) == ["a"]


def test_data_the_database_refuses_is_not_an_outage() -> None:
    """An outage is retried until the database is back; a statement refused for its data
    would be refused forever, so it stays one source's failure."""
    import sqlite3

    from sqlalchemy.exc import DataError, IntegrityError, OperationalError

    from watcher.store import is_database_error

    assert is_database_error(OperationalError("SELECT 1", {}, Exception("connection refused")))
    assert is_database_error(sqlite3.OperationalError("database is locked"))
    assert not is_database_error(DataError("INSERT", {}, Exception("integer out of range")))
    assert not is_database_error(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not is_database_error(sqlite3.IntegrityError("UNIQUE constraint failed"))
    assert not is_database_error(ValueError("not from the database"))


def test_two_replicas_adding_the_same_new_source_at_once_both_go_on(store: Store) -> None:
    # Replica A reads the known sources; replica B adds the same new source and commits before
    # A inserts it. A's insert must be a no-op (it was an IntegrityError that stopped A's
    # daemon when three replicas started together on PostgreSQL).
    from sqlalchemy import event

    other = Store.open(store.engine.url.render_as_string(hide_password=False))
    raced = []

    def after(conn: object, cursor: object, statement: str, *args: object) -> None:
        if not raced and statement.lstrip().upper().startswith("SELECT") and "sources" in statement:
            raced.append(True)
            other.sync_sources([_Src("new")], NOW)  # B wins the race, committed

    event.listen(store.engine, "after_cursor_execute", after)
    try:
        store.sync_sources([_Src("new"), _Src("also-new")], NOW)
    finally:
        event.remove(store.engine, "after_cursor_execute", after)
        other.close()
    assert raced, "the race was staged"
    assert set(store.source_states()) == {"new", "also-new"}


# --------------------------------------------------------------------------- matched on update

DAY = timedelta(days=1)


def _alerting_config():
    import yaml

    from tests.helpers import CONFIG
    from watcher.config import load_config_text

    doc = {
        **CONFIG,
        "sources": [{"id": "src", "kind": "feed", "url": "https://e.org/f", "lang": "en"}],
        "channels": [{"id": "adv", "url": "json://127.0.0.1:9/adv"}],
        "routes": [{"id": "adv", "channels": ["adv"]}],
    }
    return load_config_text(yaml.safe_dump(doc), "w.yaml", {}).config


REPORT = "China repatriates 60 North Korean defectors from Jilin"


@pytest.mark.parametrize(
    ("first_seen", "published", "baseline", "alerted"),
    [
        pytest.param(2 / 24, 3 / 24, False, True, id="recent: alerted"),
        pytest.param(2 / 24, None, False, True, id="recent-undated: alerted"),
        pytest.param(10, 10, False, False, id="published-long-ago: a story, no alert"),
        pytest.param(10, None, False, False, id="first-seen-long-ago: a story, no alert"),
        pytest.param(2 / 24, 3 / 24, True, False, id="baseline: a story, no alert"),
    ],
)
def test_an_item_that_matches_only_once_its_title_is_back_joins_a_story(
    store: Store, first_seen: float, published: float | None, baseline: bool, alerted: bool
) -> None:
    """Stored while a selector had lost its title (nothing matched), then put right: the update
    is grouped into a story as a new item would be, judged as it was first found."""
    from watcher.pipeline import match_items
    from watcher.routing import Alerting
    from watcher.rules import compile_rules

    config = _alerting_config()
    store.sync_sources(config.sources, NOW - 30 * DAY)
    matcher, alerting = compile_rules(config), Alerting.from_config(config)

    def poll(title: str, untitled: bool, at: datetime) -> Any:
        found = make_item(
            title=title,
            untitled=untitled,
            text="Police said on Tuesday.",
            lang="en",
            published_at=None if published is None else NOW - published * DAY,
            fetched_at=at,
            baseline=baseline and at < NOW,
        )
        matches = match_items(matcher, [found], ())
        return store.save_items([found], now=at, matches=matches, alerting=alerting)

    first = poll("(untitled)", True, NOW - first_seen * DAY)
    assert first.new and not first.matches and not first.stories
    fixed = poll(REPORT, False, NOW)
    assert fixed.updated and fixed.matches
    (story,) = fixed.stories
    assert story.change == "new" and bool(story.deliveries) == alerted
    again = poll(REPORT + " province", False, NOW + DAY)  # already in its story
    # not grouped again: its story is recomputed with the edited title, quietly
    assert again.updated and [(c.story_id, c.change, c.deliveries) for c in again.stories] == [
        (story.story_id, "edited", 0)
    ]


# --------------------------------------------------------------------------- approximate counts


def test_an_approximate_count_is_stored_with_its_report_and_its_story(store: Store) -> None:
    """ "중국, 탈북민 600여명 강제북송" gives about 600: the match and the story keep it as
    approximate (shown "~600 people"); a later report of the exact count makes the story's
    count exact, and a later hedged one leaves an exact count exact. On both databases."""
    from watcher.pipeline import match_items
    from watcher.routing import Alerting
    from watcher.rules import compile_rules
    from watcher.store.views import Views

    config = _alerting_config()
    store.sync_sources(config.sources, NOW - DAY)
    matcher, alerting = compile_rules(config), Alerting.from_config(config)

    def poll(key: str, title: str, lang: str, at: datetime) -> Any:
        found = make_item(key, source_id="src", title=title, lang=lang, published_at=at)
        matches = match_items(matcher, [found], ())
        return store.save_items([found], now=at, matches=matches, alerting=alerting)

    first = poll("https://e.org/1", "중국, 탈북민 600여명 강제북송", "ko", NOW)
    (stored,) = store.matches_of("https://e.org/1")
    assert (stored.people, stored.people_approximate) == (600, True)
    (change,) = first.stories
    card = Views(store).story(change.story_id)
    assert card is not None
    assert (card.story.people, card.story.people_approximate) == (600, True)

    # a hedged report of the same event keeps it approximate
    poll("https://e.org/2", "China repatriates about 600 North Korean defectors", "en", NOW)
    card = Views(store).story(change.story_id)
    assert card is not None and len(card.story.reports) == 2
    assert (card.story.people, card.story.people_approximate) == (600, True)

    # the exact count of what the story gave as approximate: now exact (and no new message)
    third = poll("https://e.org/3", "China repatriates 600 North Korean defectors", "en", NOW)
    (joined,) = third.stories
    assert joined.story_id == change.story_id and joined.change == "joined"
    card = Views(store).story(change.story_id)
    assert card is not None
    assert (card.story.people, card.story.people_approximate) == (600, False)

    # a hedged report after it does not make the exact count approximate again
    poll("https://e.org/4", "China repatriates more than 600 North Korean defectors", "en", NOW)
    card = Views(store).story(change.story_id)
    assert card is not None and len(card.story.reports) == 4
    assert (card.story.people, card.story.people_approximate) == (600, False)


def test_a_claim_skips_the_channels_still_sending(store: Store) -> None:
    """The deliverer claims every second; a channel still sending its last claim (busy) is
    left out, its messages unclaimed for when it is done."""
    from watcher.store.outbox import Outbox

    outbox = Outbox(store)
    targets = [("ops", "slow"), ("ops", "fast"), ("ops", "other")]
    outbox.add_ops(targets, "notice", "body", NOW - timedelta(minutes=1))
    claimed = outbox.claim_due(NOW, timedelta(minutes=1), busy=["slow", "other"])
    assert [d.channel for d in claimed] == ["fast"]
    rest = outbox.claim_due(NOW, timedelta(minutes=1))
    assert sorted(d.channel for d in rest) == ["other", "slow"]

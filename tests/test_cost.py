"""Costs that must not grow with the number of polls or rows: the daemon settles its polls once
per tick, PostgreSQL plans are refreshed after migrations and growth, and the matcher's fast
paths say exactly what the plain ones say. Timings are in benchmarks/, not here."""

from __future__ import annotations

import asyncio
import time
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, insert, text

from watcher.config import load_config, load_config_text
from watcher.daemon import Daemon
from watcher.fetch import Fetcher, FetchLimits
from watcher.pipeline import Parsing
from watcher.rules import _CJK, _FOLD, _LATIN_WORD, cased, compile_rules, is_cjk_text
from watcher.store import Store
from watcher.store import tables as t
from watcher.types import PollSuccess

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- daemon ticks


def test_a_tick_records_unchanged_polls_and_claims_in_one_transaction(store: Store) -> None:
    class Source:
        def __init__(self, sid: str) -> None:
            self.id, self.kind, self.url = sid, "feed", f"https://{sid}.example/"

    store.sync_sources([Source(s) for s in "abc"], T0)
    lease = T0 + timedelta(minutes=5)
    first = store.settle_and_claim([], ["a", "b"], T0, lease)
    assert sorted(first) == ["a", "b"] and first["a"].id == "a"

    done = PollSuccess(
        source_id="a", polled_at=T0, next_due_at=T0 + timedelta(hours=1), etag='"v2"'
    )
    began = _count_transactions(store)
    later = T0 + timedelta(seconds=1)
    second = store.settle_and_claim([done], ["a", "b", "c"], later, lease)
    # a: recorded, due in an hour; b: still claimed by the first tick; c: due, claimed now
    assert list(second) == ["c"]
    assert began() == 1
    state = store.fetch_states(["a"])["a"]
    assert state.etag == '"v2"' and state.consecutive_failures == 0
    assert state.next_due_at == T0 + timedelta(hours=1)


def test_updates_of_many_sources_take_their_rows_in_source_id_order(store: Store) -> None:
    """Two transactions in flight at once (PostgreSQL's two database threads, or replicas)
    that update several sources rows cannot deadlock when each takes them in one order."""
    store.sync_sources([_Src(s) for s in ("m", "z", "a")], T0)
    lease = T0 + timedelta(minutes=5)
    polls = [
        PollSuccess(source_id=s, polled_at=T0, next_due_at=T0 + timedelta(hours=1))
        for s in ("z", "a", "m")
    ]
    sent = _statements(store)
    store.record_unchanged(polls)
    store.renew_claims({"z": lease, "a": lease, "m": lease}, lease + timedelta(minutes=5))
    store.release_sources({"m": lease, "z": lease, "a": lease}, T0)
    updates = [(q, p) for q, p in sent if q.lstrip().upper().startswith("UPDATE SOURCES")]
    ids: list[str] = []
    for _, params in updates:
        rows_ = params if isinstance(params, list) else [params]
        for row in rows_:
            values = row.values() if isinstance(row, dict) else row
            ids.extend(v for v in values if v in ("a", "m", "z"))
    # the batch of unchanged polls, then the renewals, then the releases: each a, m, z
    assert ids == ["a", "m", "z"] * 3, ids


def _count_transactions(store: Store) -> Any:
    seen = [0]

    def begun(_conn: Any) -> None:
        seen[0] += 1

    event.listen(store.engine, "begin", begun)
    return lambda: seen[0]


def _feed(n: int) -> bytes:
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>F</title>'
        f"<item><title>Weather in city {n}</title><link>https://f{n}.example/1</link>"
        "<pubDate>Tue, 01 Dec 2026 08:00:00 GMT</pubDate></item></channel></rss>"
    ).encode()


def _daemon(tmp_path: Path, store: Store, feeds: int, now: list[datetime]) -> Daemon:
    lines = ["settings: {parse_processes: 1, jitter: 0}", "sources:"]
    lines += [
        f"  - {{id: f{n}, kind: feed, url: 'https://f{n}.example/rss', interval: 1m}}"
        for n in range(feeds)
    ]
    path = tmp_path / "sources.yaml"
    path.write_text("\n".join(lines) + "\n")
    loaded = load_config(path, env={})
    daemon = Daemon(str(path), loaded, store, matcher=None, clock=lambda: now[0])
    daemon.parsing = Parsing(processes=0)  # inline: this counts transactions, not parses

    def answer(request: httpx.Request) -> httpx.Response:
        n = int(request.url.host[1:].split(".")[0])
        if request.headers.get("if-none-match") == '"v1"':
            return httpx.Response(304, headers={"ETag": '"v1"'})
        return httpx.Response(200, content=_feed(n), headers={"ETag": '"v1"'})

    limits = FetchLimits.from_settings(loaded.config.settings)
    daemon.fetcher = Fetcher(limits, transport=httpx.MockTransport(answer))
    store.sync_sources(loaded.config.sources, now[0])
    return daemon


async def _tick_and_wait(daemon: Daemon) -> None:
    await daemon.tick()
    await asyncio.gather(*daemon.in_flight.values())


def test_the_daemon_settles_unchanged_polls_once_per_tick(tmp_path: Path, store: Store) -> None:
    feeds = 6
    now = [T0]
    daemon = _daemon(tmp_path, store, feeds, now)

    async def scenario() -> tuple[int, int, list[Any]]:
        try:
            await _tick_and_wait(daemon)  # the baseline polls: stored as they end
            await daemon.tick()  # their health, checked in one pass
            now[0] += timedelta(minutes=2)
            await _tick_and_wait(daemon)  # every feed answers 304: listed, not yet recorded
            waiting = len(daemon.unchanged)
            before = store.fetch_states()
            began = _count_transactions(store)
            now[0] += timedelta(seconds=1)
            await daemon.tick()  # records them all, checks their health, claims nothing
            return waiting, began(), [before, store.fetch_states()]
        finally:
            if daemon.fetcher is not None:
                await daemon.fetcher.aclose()
            daemon.parsing.close()
            daemon.db.close()

    waiting, transactions, (before, after) = asyncio.run(scenario())
    assert waiting == feeds
    assert daemon.unchanged == [] and daemon.polled == []
    for n in range(feeds):
        old, new = before[f"f{n}"], after[f"f{n}"]
        assert new.last_polled_at == T0 + timedelta(minutes=2) != old.last_polled_at
        assert new.next_due_at is not None and new.next_due_at > now[0]
    # one for the unchanged marks and the claim, the rest for the health pass: not one each
    assert transactions < feeds


# --------------------------------------------------------------------------- statistics


@pytest.mark.postgres
def test_migrations_leave_postgres_with_statistics(pg_schema_url: str) -> None:
    store = Store.open(pg_schema_url)
    try:
        store.upgrade()  # the fresh-create path `watcher db upgrade` and `run` take
        with store.engine.connect() as conn:
            tuples = conn.execute(
                text("SELECT reltuples FROM pg_class WHERE oid = 'items'::regclass")
            ).scalar()
        assert tuples == 0  # analyzed (never analyzed reads -1)
    finally:
        store.close()


def test_grown_tables_are_analyzed_once(store: Store) -> None:
    rows = [
        {
            "id": f"s{n}",
            "kind": "feed",
            "url": f"https://s{n}.example/",
            "consecutive_failures": 0,
            "created_at": T0,
        }
        for n in range(40)
    ]
    with store.engine.begin() as conn:
        conn.execute(insert(t.sources), rows)
    if store.dialect != "postgresql":
        assert store.analyze_grown(floor=10) == []  # SQLite: never (its planner needs none)
        return
    grown: list[str] = []
    deadline = time.monotonic() + 10
    while "sources" not in grown and time.monotonic() < deadline:
        # the server counts live rows a moment after the commit
        grown = store.analyze_grown(floor=10)
        time.sleep(0.1)
    assert "sources" in grown
    with store.engine.connect() as conn:
        tuples = conn.execute(
            text("SELECT reltuples FROM pg_class WHERE oid = 'sources'::regclass")
        ).scalar()
    assert tuples == 40
    assert "sources" not in store.analyze_grown(floor=10)  # not grown since


def _statements(store: Store) -> list[tuple[str, Any]]:
    """The (SQL, parameters) the store's connections send from now on."""
    sent: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, params: Any, *_rest: Any) -> None:
        sent.append((statement, params))

    event.listen(store.engine, "before_cursor_execute", seen)
    return sent


class _Src:
    def __init__(self, sid: str) -> None:
        self.id, self.kind, self.url = sid, "feed", f"https://{sid}.example/"


def _items(n: int, start: int = 0) -> list[Any]:
    from watcher.types import Item

    return [
        Item(
            key=f"https://e.example/{k}",
            source_id="s",
            url=f"https://e.example/{k}",
            title=f"Story {k}",
            text="text",
            lang="en",
            published_at=T0,
            published_raw=None,
            fetched_at=T0,
        )
        for k in range(start, start + n)
    ]


@pytest.mark.postgres
def test_key_lookups_use_the_unique_index_while_statistics_say_empty(pg_schema_url: str) -> None:
    """A fresh database is analyzed empty; its first large ingest must not make each poll's
    key lookup read the whole table until the next ANALYZE. The lookup is one statement
    whatever the number of keys (one array parameter), and it is planned for the table's
    size of the moment (`plan_cache_mode`), not for what pg_class says: once a scan costs
    more than the probes (a few thousand rows), its plan uses the unique index."""
    store = Store.open(pg_schema_url)
    try:
        store.upgrade()  # analyzed while empty
        with store.engine.begin() as conn:  # and autovacuum, however slow this test, not after
            conn.execute(text("ALTER TABLE items SET (autovacuum_enabled = false)"))
        store.sync_sources([_Src("s")], T0)
        store.save_items(_items(12_000))  # the first large ingest; no ANALYZE since
        sent = _statements(store)
        store.save_items(_items(3, start=11_998))  # a poll: 2 known keys, 1 new
        store.save_items(_items(30, start=11_990))
        lookups = [(q, p) for q, p in sent if "FROM items" in q and "keys" in (p or {})]
        assert len({q for q, _ in lookups}) == 1  # one shape for 3 keys and for 40
        statement, params = lookups[-1]
        with store.engine.connect() as conn:  # as the store's connections plan it
            tuples = conn.execute(
                text("SELECT reltuples FROM pg_class WHERE oid = 'items'::regclass")
            ).scalar()
            plan = "\n".join(
                str(row[0]) for row in conn.exec_driver_sql(f"EXPLAIN {statement}", params)
            )
        assert tuples == 0  # the statistics still say the table is empty
        assert "uq_items_key" in plan and "Seq Scan" not in plan, plan
    finally:
        store.close()


@pytest.mark.postgres
def test_a_poll_commits_without_waiting_for_the_flush_and_only_it(pg_schema_url: str) -> None:
    """save_items commits asynchronously (as SQLite's synchronous=NORMAL); the setting is
    local to its transaction, so other writes (a delivery marked sent) still wait."""
    store = Store.open(pg_schema_url)
    try:
        store.upgrade()
        store.sync_sources([_Src("s")], T0)
        sent = _statements(store)
        store.save_items(_items(2))
        assert any("synchronous_commit = off" in q and "LOCAL" in q for q, _ in sent)
        with store.engine.connect() as conn:
            assert conn.execute(text("SHOW synchronous_commit")).scalar() == "on"
    finally:
        store.close()


def test_postgres_runs_two_database_calls_at_once_and_sqlite_one(store: Store) -> None:
    """PostgreSQL: two polls' saves in flight at once (each its own transaction); SQLite: one
    writer, so one call at a time. `busy_since` is the start of the oldest call running."""
    import threading

    from watcher.pipeline import DB_THREADS, offload_for

    db = offload_for(store)
    inside, most = [0], [0]
    meeting = threading.Barrier(2, timeout=60)  # met only when two calls run at once
    lock = threading.Lock()

    def call() -> float | None:
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            if store.dialect == "postgresql":
                meeting.wait()
            else:
                time.sleep(0.05)
            return db.busy_since
        finally:
            with lock:
                inside[0] -= 1

    async def both() -> list[float | None]:
        return list(await asyncio.gather(db(call), db(call)))

    try:
        seen = asyncio.run(both())
    finally:
        db.close()
    assert all(s is not None for s in seen) and db.busy_since is None
    assert DB_THREADS == 2
    assert most[0] == (DB_THREADS if store.dialect == "postgresql" else 1)


@pytest.mark.postgres
def test_a_save_that_postgres_fails_to_break_a_lock_cycle_runs_again(
    pg_schema_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Two saves in flight at once (the daemon's two database threads on PostgreSQL, or two
    replicas) carrying the same new items in different orders wait on each other; PostgreSQL
    fails one. Here a second writer holds item 1 while the save holds item 0 and waits on it,
    then the writer asks for item 0: a real cycle, and the save (which looks for a cycle
    sooner) is the one failed. It runs again once the writer is gone, and stores both."""
    import logging
    import threading

    caplog.set_level(logging.INFO, logger="watcher.store.items")
    # The save's sessions look for a cycle once they have waited 5 s, the writer's after 60 s:
    # the writer closes the cycle long before the save looks, however loaded the machine.
    # (Setting deadlock_timeout takes a superuser, as the test database's user is.)
    store = Store.open(pg_schema_url + "%20-cdeadlock_timeout%3D5s")
    other = Store.open(pg_schema_url)
    try:
        store.upgrade()
        store.sync_sources([_Src("s")], T0)
        items = _items(2)
        done: list[Any] = []
        with other.engine.connect() as writer:
            writer.execute(text("SET deadlock_timeout = '60s'"))
            writer.execute(insert(t.items).values(_row(items[1])))  # holds item 1, uncommitted
            saving = threading.Thread(target=lambda: done.append(store.save_items(items)))
            saving.start()
            _wait_for_lock_wait(other)  # the save holds item 0 and waits on item 1
            writer.execute(
                text("INSERT INTO items (key, source_id, title, text, fetched_at, baseline, "
                     "content_hash) VALUES (:k, 's', 't', 't', now(), false, 'h') "
                     "ON CONFLICT (key) DO NOTHING"),
                {"k": items[0].key},
            )  # fmt: skip
            writer.rollback()  # the writer goes; the save's second try runs alone
            saving.join(timeout=60)
        assert done, "the save did not finish"
        assert {i.key for i in done[0].new} == {i.key for i in items}
        assert "run again (try 2)" in caplog.text
        assert store.item_count() == 2
    finally:
        store.close()
        other.close()


def _row(item: Any) -> dict[str, Any]:
    return {
        "key": item.key,
        "source_id": item.source_id,
        "title": item.title,
        "text": item.text,
        "fetched_at": item.fetched_at,
        "baseline": False,
        "content_hash": "h",
    }


def _wait_for_lock_wait(store: Store, deadline: float = 60.0) -> None:
    """Until some other session of the database waits on a lock."""
    ends = time.monotonic() + deadline
    with store.engine.connect() as conn:
        while time.monotonic() < ends:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND pid <> pg_backend_pid() AND datname = current_database()"
                )
            ).scalar()
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError("no session waited on a lock")


# --------------------------------------------------------------------------- matcher


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  North\tKorean -- defectors\n\n sent  back ",
        "탈북민\u3000\u3000강제북송\u2028중국",
        "U.N.\u2014UNHCR\u00a0/ Dandong_border \u2019quoted\u2018",
        "\x1c\x85\u1680 edge \u2029",
        "fullwidth ＵＮ and ｋｏｒｅａ",
    ],
)
def test_cased_folds_as_the_regex_does(text: str) -> None:
    expected = unicodedata.normalize("NFKC", text).replace("\u2019", "'").replace("\u2018", "'")
    assert cased(text) == _FOLD.sub(" ", expected).strip()


@pytest.mark.parametrize(
    ("text", "cjk"),
    [
        ("plain ascii text", False),
        ("“curly quotes” and é accents", False),
        ("북한 탈북민 강제북송", True),
        ("中国 遣返 脱北者", True),
        ("mostly english words with one 한 syllable in it", False),
        ("ᄀᄀ jamo", True),
    ],
)
def test_cjk_detection_with_its_byte_prefilter(text: str, cjk: bool) -> None:
    assert is_cjk_text(text) is cjk
    assert (len(_CJK.findall(text)) > len(_LATIN_WORD.findall(text)) / 4) is cjk


RULES = """
sources: [{id: s, kind: feed, url: 'https://s.example/', lang: en}]
concepts:
  nk_people: {en: [north korean*, defector*], ko: [탈북민]}
  sent_back: {en: [repatriat*], ko: [강제북송]}
rules:
  - {id: r, event: forced_repatriation, severity: high, all_of: [nk_people, sent_back]}
"""


@pytest.mark.parametrize(
    ("title", "lang", "relevant"),
    [
        ("China repatriated 60 North Korean defectors", "en", True),
        ("e\uffff t\uffff 이\uffff \uffff", "en", False),  # the automaton's dead ends
        ("e\uffff China repatriated North Korean\uffff defectors", "en", True),
        ("탈북민 60명 강제북송 이\uffff", "ko", True),
    ],
)
def test_the_automatons_dead_ends_find_nothing(title: str, lang: str, relevant: bool) -> None:
    matcher = compile_rules(load_config_text(RULES, "rules.yaml", {}).config)
    verdict = matcher.match(title, lang=lang)
    assert verdict.relevant is relevant
    assert verdict.rules == (("r",) if relevant else ())

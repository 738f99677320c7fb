"""Benchmark: the cost of finding a report's story as history grows.

Fills a database with N stories at a steady ten a day (so a larger N is a longer history, one
report each, as the daemon stores them), then times what `write_stories` does for one matched
report: look up the candidate stories on the event clock (`stories.event_at`, indexed) with
their founding facts, and choose. Reports are dated now, a week ago, and undated (fetched
now). Prints the median microseconds per report for each N, and the ratio to the smallest N:
flat means the lookup does not scan history.

`--what save` times the whole store of one matched report instead (`Store.save_items` with its
match and the shipped configuration's routes: item, match, story, outbox rows, one
transaction), dated now and dated a year back, with N stories in the database.

`--what ingest` feeds a fresh database rounds of --round-items fresh items (one save per 30, as
a feed poll stores them; one in ten matched by the shipped rules, published over the two
years before), and prints per round the CPU seconds of the whole process and of the saves
alone, the stories in the database and the RSS at the round's end: flat rounds mean ingest
does not slow as history grows.

    python benchmarks/stories.py [--sizes 100,10000,100000] [--db sqlite|postgres] [--reports 300]
    python benchmarks/stories.py --what save [--sizes 100,100000] [--db sqlite|postgres]
    python benchmarks/stories.py --what ingest [--rounds 6] [--round-items 9000] [--db ...]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, delete, insert, text

from watcher import stories as st
from watcher.config import load_config
from watcher.pipeline import match_items
from watcher.routing import Alerting
from watcher.rules import compile_rules
from watcher.store import Store
from watcher.store import stories as story_queries
from watcher.store import tables as t
from watcher.types import Item

NOW = datetime(2026, 12, 1, tzinfo=UTC)
POSTGRES = os.environ.get(
    "WATCHER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
WINDOW = timedelta(hours=72)
PLACES = ["Dandong", "Shenyang", "Hunchun", "Tumen", "Yanji", "Jilin", "Kunming", "Laos"]


def facts(rng: random.Random, at: datetime, *, dated: bool = True, key: str = "") -> st.Facts:
    return st.Facts(
        item_key=key,
        source_id="bench",
        title=f"China sends back {rng.randint(3, 600)} North Korean defectors via "
        f"{rng.choice(PLACES)}",
        at=at,
        dated=dated,
        events=frozenset({rng.choice(["forced_repatriation", "detention"])}),
        severity="high",
        people=rng.randint(3, 600),
        places=(rng.choice(PLACES),),
    )


def fill(store: Store, n: int, rng: random.Random) -> None:
    span = timedelta(days=n / 10).total_seconds()
    with store.engine.begin() as conn:
        conn.execute(delete(t.story_items))
        conn.execute(delete(t.stories))
        conn.execute(delete(t.items))
        if not conn.execute(t.sources.select().where(t.sources.c.id == "bench")).first():
            columns = {c.name for c in t.sources.columns}
            row = {"id": "bench", "kind": "feed", "url": "https://e.org/", "created_at": NOW}
            conn.execute(insert(t.sources), [{k: v for k, v in row.items() if k in columns}])
        batch = 5000
        for first in range(0, n, batch):
            rows, items, links = [], [], []
            for i in range(first, min(n, first + batch)):
                at = NOW - timedelta(seconds=rng.random() * span)
                f = facts(rng, at, key=f"k{i}")
                rows.append(
                    {
                        "id": i + 1,
                        "events": json.dumps(sorted(f.events)),
                        "severity": "high",
                        "title": f.title,
                        "people": f.people,
                        "places": json.dumps(list(f.places)),
                        "first_seen_at": at,
                        "updated_at": at,
                        "revision": 1,
                        "item_count": 1,
                        "event_at": at,
                    }
                )
                items.append(_item(i + 1, f))
                links.append(
                    {
                        "story_id": i + 1,
                        "item_id": i + 1,
                        "added_at": at,
                        "revision": 1,
                        "facts": json.dumps(f.as_json()),
                    }
                )
            conn.execute(insert(t.stories), rows)
            conn.execute(insert(t.items), items)
            conn.execute(insert(t.story_items), links)
        if store.dialect == "postgresql":  # the ids above were explicit: move the sequences on
            for table in ("items", "stories"):
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
                    )
                )


def _item(item_id: int, f: st.Facts) -> dict[str, object]:
    columns = {c.name for c in t.items.columns}
    values: dict[str, object] = {
        "id": item_id,
        "key": f"https://e.org/{item_id}",
        "source_id": "bench",
        "url": f"https://e.org/{item_id}",
        "title": f.title,
        "text": "",
        "lang": "en",
        "published_at": f.at,
        "fetched_at": f.at,
        "first_seen_at": f.at,
        "last_seen_at": f.at,
        "content_hash": str(item_id),
        "baseline": False,
    }
    return {k: v for k, v in values.items() if k in columns}


def time_lookups(store: Store, rng: random.Random, reports: int) -> dict[str, float]:
    out: dict[str, float] = {}
    cases = {
        "fresh": lambda: facts(rng, NOW - timedelta(hours=rng.random() * 48)),
        "a week back": lambda: facts(rng, NOW - timedelta(days=7, hours=rng.random() * 48)),
        "undated": lambda: facts(rng, NOW, dated=False),
    }
    for name, make in cases.items():
        samples = []
        with store.engine.connect() as conn:
            for _ in range(reports):
                report = make()
                start = time.perf_counter()
                candidates = story_queries.candidates(conn, report.at, WINDOW)
                st.choose(report, candidates, WINDOW)
                samples.append(time.perf_counter() - start)
        out[name] = statistics.median(samples) * 1e6
    return out


ROOT = Path(__file__).resolve().parent.parent


def shipped() -> tuple[object, Alerting]:
    config = load_config(ROOT / "sources.yaml", env={}).config
    return compile_rules(config), Alerting.from_config(config)


def labelled(matcher: object) -> tuple[list[dict], list[dict]]:
    """The labelled rule fixtures, split into (matched, not matched) by the shipped rules."""
    matched, unmatched = [], []
    for name in ("corpus.jsonl", "heldout.jsonl"):
        path = ROOT / "tests" / "fixtures" / "rules" / name
        for line in path.read_text().splitlines():
            if line.strip():
                item = json.loads(line)
                verdict = matcher.match(item["title"], item["text"], lang=item["lang"])  # type: ignore[attr-defined]
                (matched if verdict.relevant else unmatched).append(item)
    return matched, unmatched


def make_item(raw: dict, key: str, source: str, published: datetime, now: datetime) -> Item:
    return Item(
        key=key,
        source_id=source,
        url=key,
        title=raw["title"],
        text=raw["text"],
        lang=raw["lang"],
        published_at=published,
        published_raw=None,
        fetched_at=now,
    )


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def time_saves(store: Store, n: int, reports: int) -> dict[str, float]:
    """Median ms to store one new matched report, with `n` stories in the database."""
    matcher, alerting = shipped()
    matched, _ = labelled(matcher)
    rng = random.Random(n)
    out: dict[str, float] = {}
    for name, back in (("fresh", timedelta(0)), ("a year back", timedelta(days=365))):
        samples = []
        for k in range(reports):
            raw = rng.choice(matched)
            published = NOW - back - timedelta(hours=rng.random() * 48)
            item = make_item(raw, f"https://save.example/{n}/{name}/{k}", "bench", published, NOW)
            records = match_items(matcher, [item], ())  # type: ignore[arg-type]
            start = time.perf_counter()
            store.save_items([item], NOW, matches=records, alerting=alerting)
            samples.append(time.perf_counter() - start)
        out[name] = statistics.median(samples) * 1000
    return out


def ingest(store: Store, rounds: int, per_round: int) -> None:
    matcher, alerting = shipped()
    matched, unmatched = labelled(matcher)
    rng = random.Random(5)
    sources = [
        type("S", (), {"id": f"feed-{k}", "kind": "feed", "url": f"https://f{k}.example/"})
        for k in range(300)
    ]
    store.sync_sources(sources, NOW)  # type: ignore[arg-type]
    two_years = timedelta(days=730).total_seconds()
    print(
        f"ingest: rounds of {per_round:,} fresh items, 30 per save, 1 in 10 matched, "
        "published over two years"
    )
    for r in range(rounds):
        now = NOW + timedelta(hours=r)
        cpu0, saving, stored_matches = time.process_time(), 0.0, 0
        for start in range(0, per_round, 30):
            batch = []
            for k in range(start, min(per_round, start + 30)):
                raw = rng.choice(matched if k % 10 == 0 else unmatched)
                published = now - timedelta(seconds=rng.random() * two_years)
                key = f"https://ingest.example/{r}/{k}"
                batch.append(make_item(raw, key, f"feed-{(start // 30) % 300}", published, now))
            records = match_items(matcher, batch, ())  # type: ignore[arg-type]
            s0 = time.process_time()
            saved = store.save_items(batch, now, matches=records, alerting=alerting)
            saving += time.process_time() - s0
            stored_matches += len({m.item_key for m in saved.matches})
        cpu = time.process_time() - cpu0
        with store.engine.connect() as conn:
            stories = conn.execute(text("SELECT count(*) FROM stories")).scalar()
        print(
            f"  round {r + 1}: cpu {cpu:6.2f} s (saves {saving:6.2f} s)  "
            f"{stored_matches:,} matched  {stories:,} stories  RSS {rss_mib():.0f} MiB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,10000,100000")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--reports", type=int, default=300)
    parser.add_argument("--what", choices=["lookup", "save", "ingest"], default="lookup")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--round-items", type=int, default=9000)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    schema = f"bench_{os.getpid()}"
    admin = None
    with tempfile.TemporaryDirectory() as folder:
        if args.db == "sqlite":
            url = f"sqlite:///{Path(folder) / 'bench.db'}"
        else:  # a schema of its own in the test database, dropped at the end
            admin = create_engine(POSTGRES)
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            url = f"{POSTGRES}?options=-csearch_path%3D{schema}"
        store = Store.open(url)
        store.ensure_schema()
        base: dict[str, float] = {}
        try:
            if args.what == "ingest":
                print(f"{args.db}: ", end="")
                ingest(store, args.rounds, args.round_items)
                return
            if args.what == "save":
                print(f"{args.db}: median ms to store one matched report ({args.reports} each)")
                for n in sizes:
                    fill(store, n, random.Random(n))
                    if args.db == "postgres":
                        store.analyze()
                    got = time_saves(store, n, args.reports)
                    base = base or got
                    print(
                        f"  {n:>7,} stories: "
                        + "  ".join(f"{k} {v:,.2f} ms ({v / base[k]:.2f}x)" for k, v in got.items())
                    )
                return
            print(f"{args.db}: median µs to find one report's story ({args.reports} reports each)")
            for n in sizes:
                rng = random.Random(n)
                fill(store, n, rng)
                if args.db == "postgres":
                    with store.engine.begin() as conn:
                        conn.exec_driver_sql("ANALYZE stories; ANALYZE story_items")
                got = time_lookups(store, rng, args.reports)
                base = base or got
                print(
                    f"  {n:>7,} stories: "
                    + "  ".join(f"{k} {v:,.0f} µs ({v / base[k]:.2f}x)" for k, v in got.items())
                )
        finally:
            store.close()
            if admin is not None:
                with admin.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()


if __name__ == "__main__":
    main()

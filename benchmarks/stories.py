"""Benchmark: the cost of finding a report's story as history grows.

Fills a database with N stories at a steady ten a day (so a larger N is a longer history, one
report each, as the daemon stores them), then times what `write_stories` does for one matched
report: look up the candidate stories on the event clock (`stories.event_at`, indexed) with
their founding facts, and choose. Reports are dated now, a week ago, and undated (fetched
now). Prints the median microseconds per report for each N, and the ratio to the smallest N:
flat means the lookup does not scan history.

    python benchmarks/stories.py [--sizes 100,10000,100000] [--db sqlite|postgres] [--reports 300]
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
from watcher.store import Store
from watcher.store import stories as story_queries
from watcher.store import tables as t

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,10000,100000")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--reports", type=int, default=300)
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
        print(f"{args.db}: median µs to find one report's story ({args.reports} reports each)")
        try:
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

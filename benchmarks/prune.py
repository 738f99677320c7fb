"""Benchmark: what `watcher db prune --older-than 180d` gives back on a year of items (SQLite).

Stores a year of news as the daemon does (`Store.save_items`: items, the sources that carried
them, the search index; matched items grouped into stories with their queued alerts): 36
sources, N items spread evenly over 365 days (English and Korean leads of 200-1,200
characters), 2 % matched, 1 % edited once (an earlier version kept). Then prints the database's
size, what a dry run counts, the prune itself, the size after it (the freed pages stay inside
the file, reused by new items) and after `--vacuum`.

    python benchmarks/prune.py [--items 100000] [--older-than 180d] [--db PATH]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from sqlalchemy import func, select

from watcher.config import Config, load_config_text, parse_duration
from watcher.routing import Alerting
from watcher.store import Store
from watcher.store import tables as t
from watcher.store.prune import database_size, prune
from watcher.types import Item, MatchRecord

NOW = datetime(2026, 12, 1, tzinfo=UTC)
SOURCES = 36
BATCH = 500

EN = (
    "the government said on tuesday that officials would meet again next week to discuss "
    "trade energy prices weather schools football election budget court police city council "
    "market shares rose fell according to a statement from the ministry spokesperson"
).split()
KO = (
    "정부는 화요일 관계자들이 다음 주 다시 만나 무역 에너지 가격 날씨 학교 축구 선거 예산 "
    "법원 경찰 시의회 시장 주가가 올랐다 내렸다 대변인 성명에 따르면 논의할 예정이라고 밝혔다"
).split()


def config(timezone: str = "Asia/Seoul") -> Config:
    doc = {
        "sources": [
            {"id": f"s{n}", "kind": "feed", "url": f"https://e{n}.example/feed"}
            for n in range(SOURCES)
        ],
        "channels": [{"id": "mail", "url": "mailto://u:p@example.org"}],
        "routes": [{"channels": ["mail"]}],
        "settings": {"timezone": timezone},
    }
    return load_config_text(yaml.safe_dump(doc), "bench.yaml", {}).config


def text_of(rng: random.Random, words: list[str], chars: int) -> str:
    out: list[str] = []
    while sum(len(w) + 1 for w in out) < chars:
        out.append(rng.choice(words))
    return " ".join(out)


def fill(store: Store, n: int, rng: random.Random) -> tuple[int, int]:
    """N items over the year before NOW; returns (matched, edited)."""
    cfg = config()
    alerting = Alerting.from_config(cfg)
    store.sync_sources(cfg.sources, NOW - timedelta(days=366))
    step = timedelta(days=365) / n
    matched = edited = 0
    for start in range(0, n, BATCH):
        items, matches = [], []
        at = NOW - timedelta(days=365) + step * start
        for i in range(start, min(n, start + BATCH)):
            korean = rng.random() < 0.3
            words = KO if korean else EN
            item = Item(
                key=f"https://e{i % SOURCES}.example/news/{i}",
                source_id=f"s{i % SOURCES}",
                url=f"https://e{i % SOURCES}.example/news/{i}",
                title=text_of(rng, words, rng.randint(40, 110)),
                text=text_of(rng, words, rng.randint(200, 1200)),
                lang="ko" if korean else "en",
                published_at=at,
                published_raw=None,
                fetched_at=at,
            )
            items.append(item)
            if rng.random() < 0.02:
                matched += 1
                matches.append(
                    MatchRecord(
                        item_key=item.key,
                        rule_id="return",
                        event="forced_repatriation",
                        severity="high",
                        people=rng.randint(3, 600),
                        places=("Dandong",),
                        why="북송 (sent back) near 탈북민 (North Korean escapees)",
                    )
                )
        store.save_items(items, now=at, matches=matches, alerting=alerting)
        edits = [i for i in items if rng.random() < 0.01]
        if edits:
            edited += len(edits)
            store.save_items([_edited(i) for i in edits], now=at)
    return matched, edited


def _edited(item: Item) -> Item:
    return replace(item, title=item.title + " (updated)", text=item.text + " 추가 보도.")


def mb(size: int | None) -> str:
    return "-" if size is None else f"{size / 1_000_000:,.1f} MB"


def file_size(path: Path) -> int:
    return sum(
        os.path.getsize(p)
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
        if os.path.exists(p)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--older-than", default="180d")
    parser.add_argument("--db", help="SQLite file to create (default: a temporary one)")
    args = parser.parse_args()
    age = parse_duration(args.older_than)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.db) if args.db else Path(tmp) / "bench.db"
        store = Store.open(f"sqlite:///{path}")
        store.upgrade()
        rng = random.Random(18)
        started = time.perf_counter()
        matched, edited = fill(store, args.items, rng)
        print(
            f"stored {args.items:,} items over 365 days from {SOURCES} sources "
            f"({matched:,} matched into stories, {edited:,} edited) in "
            f"{time.perf_counter() - started:.0f}s"
        )
        size = database_size(store)
        print(f"database before: {mb(size[0] if size else None)} (file {mb(file_size(path))})")

        started = time.perf_counter()
        dry = prune(store, older_than=age, now=NOW, dry_run=True)
        print(
            f"dry run ({time.perf_counter() - started:.1f}s): would drop {dry.items:,} items, "
            f"{dry.revisions:,} earlier versions, {dry.source_links:,} source links; keeps "
            f"{dry.kept_matched:,} older matched items and {dry.deliveries:,} outbox records"
        )
        started = time.perf_counter()
        done = prune(store, older_than=age, now=NOW)
        print(
            f"prune ({time.perf_counter() - started:.1f}s): dropped {done.items:,} items, "
            f"{done.revisions:,} earlier versions, {done.source_links:,} source links"
        )
        print(
            f"database after prune: {mb(done.size_after)} ({mb(done.free_after)} free inside "
            f"the file; file {mb(file_size(path))})"
        )
        started = time.perf_counter()
        vac = prune(store, older_than=age, now=NOW, vacuum=True)
        print(
            f"database after --vacuum ({time.perf_counter() - started:.1f}s): "
            f"{mb(vac.size_after)} (file {mb(file_size(path))})"
        )
        with store.engine.connect() as conn:
            left = conn.execute(select(func.count()).select_from(t.items)).scalar_one()
            tombs = conn.execute(select(func.count()).select_from(t.pruned_items)).scalar_one()
        print(f"items left: {left:,}; tombstones: {tombs:,}")
        store.close()


if __name__ == "__main__":
    main()

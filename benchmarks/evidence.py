"""What evidence costs: database bytes per 1,000 matched items, and the time to export and
verify them as WARC.

    python benchmarks/evidence.py [--items 1000] [--per-feed 30] [--article-share 0.3]

Feeds of `--per-feed` items (about 600 bytes of RSS each, so ~18 KB per response) carry the
matched items; a share of them also has its article page fetched (~40 KB of HTML each, as
news pages are). SQLite, in a temporary folder; prints the database's growth over the same
items stored without evidence.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from watcher.config import load_config_text
from watcher.evidence import Capture, verify, warc_records
from watcher.store import Store
from watcher.store.evidence import records
from watcher.types import Item, MatchRecord

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WORDS = "china north korean defectors repatriated border police detained dandong shenyang".split()


def text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) + str(rng.randrange(1000)) for _ in range(words))


def build(n: int, per_feed: int, article_share: float, with_evidence: bool, path: Path) -> int:
    rng = random.Random(7)
    store = Store.open(f"sqlite:///{path}")
    store.upgrade()
    doc = "sources: [{id: s, kind: feed, url: 'https://e.org/f'}]\n"
    store.sync_sources(load_config_text(doc, "bench.yaml", {}).config.sources, T0)
    for start in range(0, n, per_feed):
        items = [
            Item(
                key=f"https://e.org/{k}",
                source_id="s",
                url=f"https://e.org/{k}",
                title=f"North Korean defectors repatriated {k}",
                text=text(rng, 60),
                lang="en",
                published_at=T0 + timedelta(minutes=k),
                published_raw=None,
                fetched_at=T0 + timedelta(minutes=k),
            )
            for k in range(start, min(n, start + per_feed))
        ]
        feed = "".join(
            f"<item><title>{i.title}</title><link>{i.url}</link>"
            f"<description>{i.text}</description></item>"
            for i in items
        )
        body = f"<rss><channel>{feed}</channel></rss>".encode()
        when = items[0].fetched_at
        head = (("Content-Type", "application/rss+xml"), ("Server", "bench"))
        captures: dict[str, tuple[Capture, ...]] = {}
        for item in items:
            got = [
                Capture(
                    kind="feed",
                    url="https://e.org/f",
                    final_url="https://e.org/f",
                    status=200,
                    headers=head,
                    fetched_at=when,
                    body=body,
                )
            ]
            if rng.random() < article_share:
                page = f"<html><body><article>{text(rng, 5000)}</article></body></html>"
                got.append(
                    Capture(
                        kind="article",
                        url=item.url or "",
                        final_url=item.url or "",
                        status=200,
                        headers=head,
                        fetched_at=when,
                        body=page.encode(),
                    )
                )
            captures[item.key] = tuple(got)
        matches = [
            MatchRecord(item_key=i.key, rule_id="r", event="forced_repatriation", severity="high")
            for i in items
        ]
        store.save_items(
            items, now=when, matches=matches, captures=captures if with_evidence else None
        )
    store.close()
    return os.path.getsize(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--per-feed", type=int, default=30)
    ap.add_argument("--article-share", type=float, default=0.3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plain = build(args.items, args.per_feed, args.article_share, False, Path(tmp, "a.db"))
        kept = build(args.items, args.per_feed, args.article_share, True, Path(tmp, "b.db"))
        store = Store.open(f"sqlite:///{Path(tmp, 'b.db')}")
        out = io.BytesIO()
        started = time.perf_counter()
        with store.engine.connect() as conn:
            count = warc_records(records(conn), out)
        exported = time.perf_counter() - started
        started = time.perf_counter()
        checked = verify(io.BytesIO(out.getvalue()))
        verified = time.perf_counter() - started
        store.close()
    per = 1000 / args.items
    print(
        f"{args.items} matched items, {args.per_feed} per feed response, "
        f"{args.article_share:.0%} with an article page"
    )
    print(f"database without evidence: {plain / 1e6:.2f} MB; with: {kept / 1e6:.2f} MB")
    print(f"evidence: {(kept - plain) * per / 1e6:.2f} MB per 1,000 matched items")
    print(
        f"WARC export: {count} reports, {len(out.getvalue()) / 1e6:.2f} MB in {exported:.2f} s;"
        f" verify: {checked.digests} digests in {verified:.2f} s, "
        f"{len(checked.problems)} problems"
    )


if __name__ == "__main__":
    main()

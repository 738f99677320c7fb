"""Helpers the test modules share (no test module imports another): the `watcher` process
launcher, a polling wait with a deadline, and the web test data.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.httpserver import FeedServer
from watcher.config import load_config_text
from watcher.fetch import Fetcher, FetchLimits
from watcher.pipeline import match_items, run_cycle
from watcher.routing import Alerting
from watcher.rules import compile_rules
from watcher.store import Store
from watcher.types import Item

ROOT = Path(__file__).resolve().parent.parent


def watcher(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "watcher", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or ROOT,
        input=stdin,
        timeout=120,
    )


def wait_for(condition: Callable[[], bool], deadline: float, what: str) -> float:
    """Poll `condition` until it holds; return the seconds it took, fail at the deadline."""
    started = time.monotonic()
    while time.monotonic() - started < deadline:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    pytest.fail(f"timed out after {deadline}s waiting for {what}")


# --------------------------------------------------------------------------- web data

NOW = datetime.now(UTC).replace(microsecond=0)
HOSTILE = "<script>alert(1)</script><b>China</b> repatriates 60 North Korean defectors"

CONFIG = {
    "sources": [
        {"id": "yonhap", "name": "Yonhap", "kind": "feed", "url": "https://e.org/y", "lang": "en"},
        {
            "id": "dailynk-ko",
            "name": "데일리NK",
            "kind": "feed",
            "url": "https://e.org/d",
            "lang": "ko",
        },
    ],
    "concepts": {
        "nk_people": {"en": ["north korean*", "defector*"], "ko": ["탈북민"]},
        "sent_back": {"en": ["repatriat*"], "ko": ["북송"]},
        "arrested": {"en": ["detain*"], "ko": ["체포"]},
    },
    "rules": [
        {
            "id": "return",
            "event": "forced_repatriation",
            "severity": "high",
            "all_of": ["nk_people", "sent_back"],
        },
        {"id": "arrest", "event": "detention", "all_of": ["nk_people", "arrested"]},
    ],
    "settings": {"timezone": "Asia/Seoul"},
}


def item(key: str, source: str, title: str, lang: str, hours_ago: float, url: str | None) -> Item:
    return Item(
        key=key,
        source_id=source,
        url=url,
        title=title,
        text=f"Lead of {title}",
        lang=lang,
        published_at=NOW - timedelta(hours=hours_ago),
        published_raw=None,
        fetched_at=NOW - timedelta(hours=hours_ago),
    )


def seed(store: Store):
    """Three reports, two stories (the Korean one joins the English one); returns the config."""
    config = load_config_text(yaml.safe_dump(CONFIG, allow_unicode=True), "w.yaml", {}).config
    store.sync_sources(config.sources, NOW)
    matcher = compile_rules(config)
    alerting = Alerting.from_config(config)
    batches = [
        [item("https://e.org/1", "yonhap", HOSTILE, "en", 30, "https://e.org/1")],
        [
            item(
                "https://d.org/2",
                "dailynk-ko",
                "中, 탈북민 60여명 강제북송",
                "ko",
                29,
                "javascript:alert(2)",
            )
        ],
        [
            item(
                "https://e.org/3",
                "yonhap",
                "Police detain 7 North Korean defectors in Kunming",
                "en",
                2,
                "https://e.org/3",
            )
        ],
    ]
    for batch in batches:
        source = config.source(batch[0].source_id)
        store.save_items(
            batch,
            now=batch[0].fetched_at,
            matches=match_items(matcher, batch, source.tags),
            alerting=alerting,
        )
    return config


# --------------------------------------------------------------------------- polling

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def rss(items: list[tuple[str, str]], *, pub: str = "Mon, 23 Nov 2026 08:00:00 +0900") -> bytes:
    entries = "".join(
        f"<item><title>{t}</title><link>{link}</link><guid>{link}</guid>"
        f"<pubDate>{pub}</pubDate><description>&lt;p&gt;{t} lead&lt;/p&gt;</description></item>"
        for t, link in items
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>T</title>'
        f"<link>https://example.org/</link>{entries}</channel></rss>"
    ).encode()


def config_for(sources: list[dict[str, Any]], **settings: Any):
    """A config of these sources; the feeds are served on loopback, so private addresses
    are allowed (pass allow_private_addresses=False to see the refusal)."""
    doc = {
        "sources": sources,
        "settings": {"retries": 1, "jitter": 0, "allow_private_addresses": True, **settings},
    }
    return load_config_text(yaml.safe_dump(doc, allow_unicode=True), "test.yaml", {}).config


class Clock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


def cycle(
    config,
    store: Store,
    clock: Clock | None = None,
    *,
    only_due: bool = False,
    retry_base: float = 0.01,
    **limits: Any,
):
    async def go():
        lim = FetchLimits.from_settings(config.settings)
        lim = FetchLimits(**{**lim.__dict__, "retry_base": retry_base, **limits})
        async with Fetcher(lim) as fetcher:
            reports = await run_cycle(
                config.sources,
                store=store,
                fetcher=fetcher,
                settings=config.settings,
                clock=clock or Clock(),
                only_due=only_due,
            )
            return {r.source_id: r for r in reports}, fetcher.requests

    store.sync_sources(config.sources, T0)
    return asyncio.run(go())


def feed_source(server: FeedServer, sid: str, path: str, **kw: Any) -> dict[str, Any]:
    return {"id": sid, "kind": "feed", "url": server.url(path), "interval": "5m", **kw}

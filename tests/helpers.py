"""Helpers the test modules share (no test module imports another): the `watcher` process
launchers (one command to its end, or a daemon in the background), a polling wait with a
deadline, and the web test data.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
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


def watcher_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment without any WATCHER_ variable, plus `env`."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")}
    full_env.update(env or {})
    return full_env


def watcher(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one `watcher` command to its end (killed and reaped after 120 s)."""
    return subprocess.run(
        [sys.executable, "-m", "watcher", *args],
        capture_output=True,
        text=True,
        env=watcher_env(env),
        cwd=cwd or ROOT,
        input=stdin,
        timeout=120,
    )


def python(script: str) -> subprocess.CompletedProcess[str]:
    """Run `script` in a fresh interpreter from the project root (what it imports is what a
    new process imports), to its end: killed and reaped after 120 s."""
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def wait_for(condition: Callable[[], bool], deadline: float, what: str) -> float:
    """Poll `condition` until it holds; return the seconds it took, fail at the deadline."""
    started = time.monotonic()
    while time.monotonic() - started < deadline:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    pytest.fail(f"timed out after {deadline}s waiting for {what}")


def listening(port: int) -> bool:
    """Does something accept connections on 127.0.0.1:`port`?"""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


#: Every process `Started` started; conftest kills and reaps any still running after each test.
STARTED: list[Started] = []


class Started:
    """A `watcher` process in the background (`run`, `serve`), its stdout and stderr read line
    by line as they come (a pipe nobody reads would block it once full).

    `wait()` fails at once, with the tail of the log, if the process ends before the
    condition holds; `stop()` signals it and reaps it (kill -9 after a generous grace)."""

    def __init__(
        self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "watcher", *args],
            cwd=cwd or ROOT,
            env=watcher_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        STARTED.append(self)
        #: stderr (the log) and stdout, line by line, without their newlines.
        self.lines: list[str] = []
        self.out: list[str] = []
        assert self.proc.stderr is not None and self.proc.stdout is not None
        self._readers = [
            threading.Thread(target=_read, args=(self.proc.stderr, self.lines), daemon=True),
            threading.Thread(target=_read, args=(self.proc.stdout, self.out), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def err(self) -> str:
        """The log so far, as one text."""
        return "".join(f"{line}\n" for line in list(self.lines))

    def having(self, text: str) -> list[str]:
        return [line for line in list(self.lines) if text in line]

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.lines[-lines:])

    def wait(self, condition: Callable[[], object], what: str, deadline: float = 60) -> float:
        """Until `condition` holds; returns the seconds it took. Fails at the deadline, or as
        soon as the process has ended, with the tail of its log."""
        started = time.monotonic()
        while not condition():
            ended = self.proc.poll() is not None
            if ended or time.monotonic() - started > deadline:
                why = f"it exited with {self.proc.returncode}" if ended else "the deadline"
                pytest.fail(
                    f"no {what} after {time.monotonic() - started:.0f}s ({why}); "
                    f"log:\n{self.tail()}"
                )
            time.sleep(0.05)
        return time.monotonic() - started

    def stop(self, sig: int = signal.SIGTERM, grace: float = 60) -> int:
        """Signal the process (SIGTERM), wait for it to end, reap it; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._close()
        return self.proc.returncode

    def kill(self) -> None:
        """kill -9, and reap."""
        self.stop(signal.SIGKILL)

    def _close(self) -> None:
        for reader in self._readers:
            reader.join(timeout=10)  # a child it left may hold the pipe: not waited for long
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def _read(pipe: Any, into: list[str]) -> None:
    try:
        for line in pipe:
            into.append(line.rstrip("\n"))
    except (OSError, ValueError):  # closed under it by a kill
        pass


def reap_started() -> None:
    """Kill and reap every `Started` process still running (a test that failed before its
    own `stop()`), and close every pipe."""
    while STARTED:
        STARTED.pop().stop(signal.SIGKILL)


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

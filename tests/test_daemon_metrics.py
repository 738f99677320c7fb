"""/metrics keeps no series for sources the running configuration no longer polls: a reload
that removes, renames or disables a source takes every series labelled with it out of every
per-source metric (each outcome and problem), and a poll of it that ends after the reload adds
none back. In process, with the daemon's own registry."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.helpers import Clock
from watcher.config import load_config
from watcher.daemon import Daemon
from watcher.store import Store
from watcher.types import HealthChange, PollReport


def sources(*entries: str) -> str:
    return "settings: {parse_processes: 1}\nsources:\n" + "".join(
        f"  - {{id: {e}, kind: feed, url: 'https://e.org/{e.split(',')[0]}'}}\n" for e in entries
    )


def series(daemon: Daemon, source: str) -> list[str]:
    text = daemon.metrics.render().decode()
    return [line for line in text.splitlines() if f'source="{source}"' in line]


def test_a_reload_takes_removed_and_disabled_sources_out_of_every_series(
    tmp_path: Path, store: Store
) -> None:
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(sources("a", "b", "c", "keep"))
    daemon = Daemon(str(cfg), load_config(cfg, env={}), store, matcher=None, clock=Clock())
    for source in ("a", "b", "c", "keep"):
        for outcome in ("ok", "failed", "not_modified"):
            daemon._count(PollReport(source_id=source, outcome=outcome))
        daemon._health_metric(
            HealthChange(source_id=source, old=None, new="failing", reason="down")
        )
    before = series(daemon, "keep")
    assert len(series(daemon, "a")) == len(before) > 6  # _total and _created per outcome…
    # a removed, b renamed, c disabled
    cfg.write_text(sources("b2", "c, enabled: false", "keep"))
    assert asyncio.run(daemon.reload()) is True
    for gone in ("a", "b", "c"):
        assert series(daemon, gone) == [], gone
    assert series(daemon, "keep") == before
    daemon._count(PollReport(source_id="a", outcome="ok"))  # a poll in flight at the reload
    assert series(daemon, "a") == []
    daemon._count(PollReport(source_id="b2", outcome="ok"))
    assert len(series(daemon, "b2")) == 3  # polls _total and _created, last success

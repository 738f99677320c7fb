"""Command output an operator can read: times in settings.timezone naming their zone (UTC with
--utc), tables with a header, and one line when there is nothing to show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from tests.helpers import watcher
from watcher.store import Store
from watcher.store.outbox import Outbox

CONFIG = {
    "sources": [
        {"id": "one", "kind": "feed", "url": "https://news.example/feed.xml", "lang": "en"}
    ],
    "settings": {"timezone": "Asia/Seoul"},
}


@pytest.fixture
def setup(tmp_path: Path, db_url: str) -> tuple[Path, str]:
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    store = Store.open(db_url)
    store.upgrade()
    store.close()
    return cfg, db_url


def test_empty_lists_say_so(setup: tuple[Path, str]) -> None:
    cfg, db = setup
    for command, line in (
        (("silence", "list"), "no active silences"),
        (("silence", "list", "--all"), "no silences"),
        (("alerts", "list"), "no deliveries"),
        (("alerts", "list", "--status", "failed"), "no failed deliveries"),
    ):
        done = watcher("--config", str(cfg), "--db", db, *command)
        assert (done.returncode, done.stdout) == (0, f"{line}\n"), command


def test_times_follow_the_configured_zone_and_say_which(setup: tuple[Path, str]) -> None:
    cfg, db = setup
    store = Store.open(db)
    ends = datetime(2026, 12, 2, 9, 30, tzinfo=UTC) + timedelta(days=3650)
    Outbox(store).add_silence(
        {"source": "one"},
        reason="test",
        starts_at=ends - timedelta(days=3651),
        ends_at=ends,
        created_by="op",
    )
    store.close()
    local = watcher("--config", str(cfg), "--db", db, "silence", "list").stdout
    utc = watcher("--config", str(cfg), "--db", db, "--utc", "silence", "list").stdout
    assert f"{ends.astimezone(ZoneInfo('Asia/Seoul')):%Y-%m-%d %H:%M} KST" in local  # UTC+9
    assert f"{ends:%Y-%m-%d %H:%M} UTC" in utc
    assert "KST" not in utc

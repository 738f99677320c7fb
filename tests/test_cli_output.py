"""Command output an operator can read: times in settings.timezone naming their zone (UTC with
--utc), tables with a header, and one line when there is nothing to show."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from tests.helpers import ROOT, seed, watcher
from watcher.store import Store
from watcher.store.outbox import Outbox

#: Every test here starts a process.
pytestmark = pytest.mark.e2e

CONFIG = {
    "sources": [
        {"id": "one", "kind": "feed", "url": "https://news.example/feed.xml", "lang": "en"}
    ],
    "settings": {"timezone": "Asia/Seoul"},
}


@pytest.fixture
def setup(tmp_path: Path, db_url: str, store: Store) -> tuple[Path, str]:
    """The config, and the URL of a migrated, empty database."""
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
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


def _export(cfg: Path, db: str, *, terminal: bool) -> tuple[str, str]:
    """`export items` with stdout to a pipe and stderr to a terminal (a pty) or a pipe."""
    command = [sys.executable, "-m", "watcher", "--config", str(cfg), "--db", db]
    command += ["export", "items"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")}
    if not terminal:
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
        return done.stdout, done.stderr
    main, other = pty.openpty()
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=other, cwd=ROOT, env=env, text=True
    ) as proc:
        os.close(other)
        out = proc.stdout.read() if proc.stdout else ""
        proc.wait(timeout=120)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the terminal's other end is closed: all read
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    return out, seen.decode(errors="replace")


def test_long_work_shows_progress_on_a_terminal_and_nothing_in_a_pipe(
    setup: tuple[Path, str],
) -> None:
    cfg, db = setup
    store = Store.open(db)
    seed(store)
    store.close()
    piped_out, piped_err = _export(cfg, db, terminal=False)
    tty_out, tty_err = _export(cfg, db, terminal=True)
    assert len(piped_out.splitlines()) == 3 and piped_out == tty_out, "the data is the same"
    assert "exporting items" not in piped_err
    assert "exporting items" in tty_err and "3" in tty_err

"""Commands that fail clearly: one line that says what and where, and nothing created or
announced that is not so."""

from __future__ import annotations

import copy
import socket
import sqlite3
from pathlib import Path

import pytest
import yaml

from tests import helpers
from tests.helpers import watcher
from tests.tcpproxy import free_port
from watcher.store import Store

#: Every test here starts a process.
pytestmark = pytest.mark.e2e

CONFIG = {
    "sources": [{"id": "one", "kind": "feed", "url": "https://news.example/feed.xml", "lang": "en"}]
}


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return path


def test_serve_on_a_taken_port_says_so_and_never_announces(cfg: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'w.db'}"
    assert watcher("--config", str(cfg), "--db", db, "db", "upgrade").returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = watcher("--config", str(cfg), "--db", db, "serve", "--address", f"127.0.0.1:{port}")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines == [f"error: cannot serve on 127.0.0.1:{port}: the port is in use"]
    assert "serving on" not in done.stdout + done.stderr


@pytest.mark.parametrize(
    "command",
    [
        ("serve", "--address", "127.0.0.1:PORT"),  # a free port, found when the test runs
        ("sources", "list"),
        ("alerts", "list"),
        ("export", "alerts"),
        # these wrote to a stray database: the daemon's was not muted, nothing was replayed
        ("silence", "add", "--match", "source=one", "--for", "1h", "--reason", "t"),
        ("silence", "list"),
        ("silence", "expire", "1"),
        ("replay",),
        ("db", "current"),
    ],
)
def test_commands_but_run_and_upgrade_refuse_a_database_that_does_not_exist(
    cfg: Path, tmp_path: Path, command: tuple[str, ...]
) -> None:
    path = tmp_path / "nowhere" / "w.db"
    path.parent.mkdir()
    command = tuple(arg.replace("PORT", str(free_port())) for arg in command)
    done = watcher("--config", str(cfg), "--db", f"sqlite:///{path}", *command)
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith(f"error: no database at {path}: `watcher run` creates it")
    assert not path.exists(), "nothing was created"


def test_db_current_on_an_empty_database_says_empty(cfg: Path, tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    done = watcher("--config", str(cfg), "--db", f"sqlite:///{path}", "db", "current")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("empty: behind")


def test_db_upgrade_into_a_folder_that_does_not_exist_names_the_folder(
    cfg: Path, tmp_path: Path
) -> None:
    path = tmp_path / "nodir" / "w.db"
    done = watcher("--config", str(cfg), "--db", f"sqlite:///{path}", "db", "upgrade")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: cannot create the database {path}: its folder {path.parent} does not exist"
    ]


@pytest.mark.parametrize("command", [("db", "current"), ("sources", "list")])
def test_a_file_that_is_not_a_database_is_one_line(
    cfg: Path, tmp_path: Path, command: tuple[str, ...]
) -> None:
    path = tmp_path / "junk.db"
    path.write_text("garbage\n")
    done = watcher("--config", str(cfg), "--db", f"sqlite:///{path}", *command)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: database sqlite:///{path}: file is not a database"
    ]


def test_reading_commands_refuse_an_empty_database(cfg: Path, tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    done = watcher("--config", str(cfg), "--db", f"sqlite:///{path}", "sources", "list")
    assert done.returncode == 1
    assert "holds no watcher data yet" in done.stderr
    with sqlite3.connect(path) as conn:
        tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'")
        assert tables.fetchone() == (0,), "not migrated behind the operator's back"


def test_sources_test_without_an_answer_names_the_host(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    cfg = tmp_path / "sources.yaml"
    source = {"id": "one", "kind": "feed", "url": f"http://127.0.0.1:{port}/feed.xml"}
    settings = {"allow_private_addresses": True, "retries": 0}
    cfg.write_text(yaml.safe_dump({"sources": [{**source, "lang": "en"}], "settings": settings}))
    done = watcher("--config", str(cfg), "sources", "test", "one")
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: one: no answer from 127.0.0.1:{port} after ")
    assert "HTTP -" not in done.stdout + done.stderr


def test_sources_test_refused_by_the_address_policy_says_so(tmp_path: Path) -> None:
    # not "no answer after 0.0s": watcher itself did not ask, and says why
    cfg = tmp_path / "sources.yaml"
    source = {"id": "one", "kind": "feed", "url": "http://127.0.0.1:9/feed.xml", "lang": "en"}
    cfg.write_text(yaml.safe_dump({"sources": [source], "settings": {"retries": 0}}))
    done = watcher("--config", str(cfg), "sources", "test", "one")
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: one: not fetched: refused: ")
    assert line.endswith("set settings.allow_private_addresses to allow it")


@pytest.mark.parametrize(
    "command",
    [
        ("run", "--once", "--metrics-address", "off"),
        ("run", "--metrics-address", "off"),
        ("silence", "add", "--match", "source=yonhap", "--for", "1h", "--reason", "t"),
        ("story", "mark", "STORY", "--not-relevant", "--reason", "drill"),
    ],
)
def test_a_database_that_takes_no_writes_is_one_line(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """A file another account owns is read-only to watcher; as root (where permissions do not
    stop writes) a read-only URI gives the same error from SQLite."""
    config = copy.deepcopy(helpers.CONFIG)
    for source in config["sources"]:
        source["url"] = f"http://127.0.0.1:{free_port()}/feed.xml"  # never fetched
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    path = tmp_path / "w.db"
    store = Store.open(f"sqlite:///{path}")
    store.upgrade()
    helpers.seed(store)
    store.close()
    with sqlite3.connect(path) as conn:
        (story,) = conn.execute("SELECT min(id) FROM stories").fetchone()
    url = f"sqlite:///file:{path}?mode=ro&uri=true"
    command = tuple(arg.replace("STORY", str(story)) for arg in command)
    done = watcher("--config", str(cfg), "--db", url, *command)
    assert done.returncode == 1, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: database sqlite:///file")
    assert lines[0].endswith(
        ": attempt to write a readonly database (check the file's owner and permissions)"
    )

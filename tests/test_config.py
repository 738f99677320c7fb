"""sources.yaml loading: every problem as one file:line line, substitution, durations."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from watcher.config import (
    ConfigError,
    format_duration,
    load_config,
    load_config_text,
    parse_duration,
    parse_size,
)

ROOT = Path(__file__).resolve().parent.parent
CASES = yaml.safe_load((Path(__file__).parent / "cases" / "config_errors.yaml").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_config_reports_every_problem_on_its_line(case: dict) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(case["text"], "sources.yaml", case.get("env", {}))
    if "expect_prefix" in case:
        assert len(info.value.problems) == len(case["expect_prefix"])
        for problem, prefix in zip(info.value.problems, case["expect_prefix"], strict=True):
            assert problem.startswith(prefix) and len(problem) > len(prefix)
        for problem, suffix in zip(
            info.value.problems, case.get("expect_suffix", ()), strict=False
        ):
            assert problem.endswith(suffix), problem
    else:
        assert info.value.problems == case["expect"]


def test_a_file_that_is_not_utf8_says_where_and_what_to_do(tmp_path: Path) -> None:
    """A file saved as Latin-1 gave "'utf-8' codec can't decode byte 0xe9 in position 72":
    no line, and nothing to do."""
    path = tmp_path / "sources.yaml"
    path.write_bytes("sources:\n  - id: a\n    name: Café\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.problems == [
        f"{path}:3: cannot read: byte 0xe9 at column 14 is not UTF-8 (save the file as UTF-8)"
    ]


def test_shipped_sources_yaml_is_valid_without_environment() -> None:
    loaded = load_config(ROOT / "sources.yaml", env={})
    ids = [s.id for s in loaded.config.sources]
    assert len(ids) == len(set(ids)) >= 15
    assert {s.kind for s in loaded.config.sources} == {"feed", "html", "json"}
    assert {s.lang for s in loaded.config.sources} >= {"en", "ko"}
    assert loaded.warnings == ()


def test_environment_substitution_and_secrets() -> None:
    text = """
sources:
  - id: a
    kind: feed
    url: https://example.org/feed?key=${FEED_KEY}
    name: ${NAME:-Default name}
    headers: {X-Literal: "$${NOT_A_VAR}"}
channels:
  - id: c
    url: tgram://${BOT}/123
"""
    loaded = load_config_text(text, "f.yaml", {"FEED_KEY": "k-123", "BOT": "bot-secret-token"})
    source = loaded.config.sources[0]
    assert source.url == "https://example.org/feed?key=k-123"
    assert source.name == "Default name"
    assert source.headers == {"X-Literal": "${NOT_A_VAR}"}
    assert loaded.config.channels[0].url == "tgram://bot-secret-token/123"
    assert loaded.secrets == {"k-123", "bot-secret-token"}


def test_environment_value_cannot_change_structure() -> None:
    text = "sources:\n  - id: a\n    kind: feed\n    url: https://e.org/\n    name: ${X}\n"
    loaded = load_config_text(text, "f.yaml", {"X": "a\n  - id: injected"})
    assert [s.id for s in loaded.config.sources] == ["a"]
    assert loaded.config.sources[0].name == "a\n  - id: injected"


def test_short_interval_warns_but_loads() -> None:
    text = "sources:\n  - id: a\n    kind: feed\n    url: https://e.org/f\n    interval: 30s\n"
    loaded = load_config_text(text, "f.yaml", {})
    assert loaded.config.sources[0].interval == timedelta(seconds=30)
    assert loaded.warnings == (
        "f.yaml:5: sources[0].interval: interval 30s is under 5m: outlets may block frequent "
        "polling",
    )


def test_many_short_intervals_are_one_warning() -> None:
    sources = "".join(
        f"  - {{id: s{n}, kind: feed, url: 'https://e.org/{n}', interval: {60 - n}s}}\n"
        for n in range(5)
    )
    loaded = load_config_text(f"sources:\n{sources}", "f.yaml", {})
    assert loaded.warnings == (
        "f.yaml:2: sources[0].interval: 5 sources have an interval under 5m (the shortest "
        "56s; s0, s1, s2 and 2 more): outlets may block frequent polling",
    )


def test_missing_file_is_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("/nonexistent/sources.yaml")
    assert info.value.problems == [
        "/nonexistent/sources.yaml: no such file (give another with --config)"
    ]


def test_defaults() -> None:
    loaded = load_config_text(
        "sources:\n  - {id: a, kind: feed, url: 'https://e.org/f', lang: ko}\n", "f", {}
    )
    source = loaded.config.sources[0]
    assert source.interval == timedelta(minutes=15)
    assert source.zone == "Asia/Seoul"
    assert loaded.config.settings.per_host == 2
    assert loaded.config.settings.max_body == 10 * 1024 * 1024


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(minutes=90)),
        ("0", timedelta(0)),
        ("0s", timedelta(0)),
        ("250ms", timedelta(milliseconds=250)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["often", "15", "m", "-5m", "5 minutes", "", "1h 30"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration like 15m"):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10**7))
def test_duration_round_trip(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


@pytest.mark.parametrize(
    ("text", "expected"), [("10MiB", 10 * 1024**2), ("512KiB", 512 * 1024), ("1000", 1000)]
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def test_the_commented_channel_and_route_example_in_sources_yaml_is_valid() -> None:
    """Uncommented where it is, as the file says, and nothing else changed (the file ended with
    `channels: []` and `routes: []`, which then made each key written twice)."""
    text = (Path(__file__).resolve().parent.parent / "sources.yaml").read_text()
    head, example = text.split("# channels:", 1)
    example = "# channels:" + example
    uncommented = "\n".join(
        line.removeprefix("# ") if line != "#" else "" for line in example.splitlines()
    )
    env = {
        k: "x" * 8
        for k in (
            "SMTP_USER SMTP_PASSWORD SMTP_HOST ALERT_EMAIL_TO OPS_EMAIL_TO TELEGRAM_BOT_TOKEN "
            "TELEGRAM_CHAT_ID SLACK_TOKEN_A SLACK_TOKEN_B SLACK_TOKEN_C"
        ).split()
    }
    config = load_config_text(head + uncommented, "sources.yaml", env).config
    assert [c.id for c in config.channels] == ["advocates-mail", "telegram", "slack", "ops-mail"]
    assert [r.key(i) for i, r in enumerate(config.routes)] == ["ops", "urgent", "daily"]


@pytest.mark.parametrize(
    ("written", "read"), [('"9:30"', "09:30"), ('"09:30"', "09:30"), ("'23:05'", "23:05")]
)
def test_a_time_of_day_may_drop_its_leading_zero(written: str, read: str) -> None:
    """check tells an operator who wrote 9:30 unquoted to write "9:30": that is then taken."""
    text = f"sources: []\nsettings: {{heartbeat: {written}}}\nroutes: []\n"
    assert load_config_text(text, "s.yaml", {}).config.settings.heartbeat == read
    digest = (
        "sources: []\nchannels: [{id: c, url: 'json://x'}]\n"
        f"routes: [{{channels: [c], mode: digest, digest: {{at: {written}}}}}]\n"
    )
    route = load_config_text(digest, "s.yaml", {}).config.routes[0]
    assert route.digest is not None and route.digest.at == read


@pytest.mark.parametrize(
    ("key", "value", "read"),
    [
        ("database_url", '""', None),  # ${DB_URL:-} unset: --db, the environment or the default
        ("database_url", "sqlite+pysqlite:///w.db", "sqlite+pysqlite:///w.db"),
        ("database_url", "postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("contact", "http://localhost:8080", "http://localhost:8080"),
        ("contact", "ops@localhost", "ops@localhost"),
        ("contact", "HTTPS://EXAMPLE.ORG", "HTTPS://EXAMPLE.ORG"),
        ("contact", "mailto:ops@ngo.example", "mailto:ops@ngo.example"),
    ],
)
def test_settings_that_name_a_working_value_are_taken(key: str, value: str, read: str) -> None:
    text = f"sources: []\nsettings: {{{key}: {value}}}\n"
    assert getattr(load_config_text(text, "s.yaml", {}).config.settings, key) == read


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("database_url", "SQLITE:///w.db", "got SQLITE"),  # SQLAlchemy knows no such scheme
        ("database_url", "sqlitex:///w.db", "got sqlitex"),
        ("database_url", "sqlite://", "an in-memory database keeps nothing"),
        ("database_url", "mysql://u:hunter2@db/w", "got mysql"),
        ("contact", "ops@예시.kr", "expected a web address or an e-mail address"),
        ("contact", "https://예시.kr", "expected a web address or an e-mail address"),
    ],
)
def test_settings_that_would_fail_later_are_refused_now(key: str, value: str, says: str) -> None:
    text = f"sources: []\nsettings: {{{key}: '{value}'}}\n"
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "s.yaml", {})
    (problem,) = info.value.problems
    assert problem.startswith(f"s.yaml:2: settings.{key}: ") and says in problem
    assert "hunter2" not in problem


def test_metrics_address_off_unquoted_is_off() -> None:
    # YAML reads `off` as false; the docs write it so, and it means off
    text = "sources: []\nsettings:\n  metrics_address: off\n"
    assert load_config_text(text, "s.yaml", {}).config.settings.metrics_address == "off"
    text = "sources: []\nsettings:\n  metrics_address: '[::1]:9464'\n"
    assert load_config_text(text, "s.yaml", {}).config.settings.metrics_address == "[::1]:9464"


#: Lines an operator's file is made of, right and wrong: keys twice, merges, unset and set
#: variables, unquoted YAML booleans and times, bad indentation and quotes.
_LINES = [
    "sources:",
    "  - id: a",
    "  - &s {id: b, kind: feed, url: 'https://example.org/b'}",
    "  - <<: *s",
    "    id: c",
    "    kind: feed",
    "    kind: html",
    "    url: https://example.org/${WATCHER_T_SET}",
    "    url: https://example.org/${WATCHER_T_UNSET}",
    "    interval: often",
    "    interval: 9:30",
    "    lang: kr",
    '    name: "unclosed',
    "settings:",
    "  metrics_address: off",
    "  metrics_address: localhost",
    "  heartbeat:",
    "  timezone: Asia/Seoul",
    "concepts:",
    "  x: {kr: [탈북민], en: [defector*]}",
    "rules:",
    "  - {id: r, event: detention, all_of: [x]}",
    "   bad: indent",
    "? [complex, key]",
    "",
]


@given(st.lists(st.sampled_from(_LINES), max_size=14))
def test_any_mix_of_lines_gives_located_problems_or_a_config(lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    env = {"WATCHER_T_SET": "a-secret-value"}
    try:
        loaded = load_config_text(text, "s.yaml", env)
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.startswith("s.yaml:"), problem
            assert problem.split(":", 2)[1].isdigit(), problem
            assert "a-secret-value" not in problem and "\n" not in problem
    else:
        assert all(source.id for source in loaded.config.sources)

"""Docs and registries agree with the code: kinds, commands, settings, import layering."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from watcher import config as config_module
from watcher.cli import cli
from watcher.parsers import PARSER_KINDS, PARSERS, parser_for

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CONFIG_DOC = (ROOT / "docs" / "configuration.md").read_text()
RULES_DOC = (ROOT / "docs" / "rules.md").read_text()


def _table_rows(text: str, heading: str) -> list[str]:
    section = text.split(heading, 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        m = re.match(r"^\| `([^`]+)`", line)
        if m:
            rows.append(m.group(1))
    return rows


def test_source_kinds_agree_everywhere() -> None:
    documented = set(_table_rows(README, "## Source kinds"))
    assert set(config_module.SOURCE_KINDS) == set(PARSER_KINDS) == set(PARSERS) == documented
    assert all(callable(parser_for(kind)) for kind in PARSERS)


def _leaf_commands(group: click.Group, prefix: str = "watcher") -> set[str]:
    out = set()
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        if isinstance(command, click.Group):
            out |= _leaf_commands(command, f"{prefix} {name}")
        else:
            out.add(f"{prefix} {name}")
    return out


def test_every_command_is_documented_and_every_documented_command_exists() -> None:
    documented = {re.sub(r" [\[A-Z-].*$", "", row) for row in _table_rows(README, "| command |")}
    assert documented == _leaf_commands(cli)


@pytest.mark.parametrize(
    "model",
    [
        config_module.Settings,
        config_module.FeedSource,
        config_module.HtmlSource,
        config_module.JsonSource,
        config_module.HtmlSelectors,
        config_module.JsonFields,
        config_module.Channel,
        config_module.Route,
        config_module.Digest,
    ],
    ids=lambda m: m.__name__,
)
def test_every_config_key_is_documented(model: type) -> None:
    keys = [info.alias or name for name, info in model.model_fields.items()]
    missing = [f for f in keys if f"`{f}`" not in CONFIG_DOC]
    assert missing == []


@pytest.mark.parametrize(
    "model",
    [config_module.Rule, config_module.Near, config_module.Escalation, config_module.RuleExamples],
    ids=lambda m: m.__name__,
)
def test_every_rule_key_is_documented(model: type) -> None:
    missing = [f for f in model.model_fields if f"`{f}`" not in RULES_DOC]
    assert missing == []


def test_the_documented_event_types_are_the_shipped_ones() -> None:
    documented = set(_table_rows(RULES_DOC, "| event |"))
    shipped = {
        r.event for r in config_module.load_config(ROOT / "sources.yaml", env={}).config.rules
    }
    assert documented == set(config_module.EVENT_TYPES) == shipped


def test_the_readme_example_configuration_is_valid() -> None:
    # The first file a new operator copies: `watcher check` must accept it as printed.
    from watcher.config import load_config_text
    from watcher.rules import compile_rules

    block = README.split("```yaml\n", 1)[1].split("```", 1)[0]
    env = {
        "SMTP_USER": "user",
        "SMTP_PASSWORD": "password",
        "TELEGRAM_BOT_TOKEN": "123456789:abcdefghij",
        "TELEGRAM_CHAT_ID": "12345",
    }
    loaded = load_config_text(block, "README.md", env)
    assert {r.event for r in loaded.config.rules} >= {"forced_repatriation", "detention"}
    assert compile_rules(loaded.config).rule_count == len(loaded.config.rules)


#: An IANA zone name as docs write them: an area, then a city (`Asia/Seoul`, `Europe/Zurich`).
_ZONE = re.compile(
    r"\b(?:Africa|America|Antarctica|Arctic|Asia|Atlantic|Australia|Europe|Indian|Pacific|Etc)"
    r"/[A-Za-z_+-]+(?:/[A-Za-z_]+)?"
)


def test_every_zone_the_docs_name_exists() -> None:
    """An operator pastes a zone from the docs into `timezone:`; `Europe/Geneva`, which is no
    zone (Geneva keeps Zurich's time), was refused."""
    from zoneinfo import available_timezones

    zones = available_timezones()
    files = [ROOT / "README.md", ROOT / "sources.yaml", *sorted((ROOT / "docs").glob("*.md"))]
    named = {(f.name, m) for f in files for m in _ZONE.findall(f.read_text())}
    assert ("configuration.md", "Asia/Seoul") in named  # the pattern finds them
    assert sorted((f, zone) for f, zone in named if zone not in zones) == []

"""Every name a route or a silence uses is checked against what the configuration has: a
typo is an error with a did-you-mean (exit 2), not a route that never fires."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import watcher
from watcher.config import ConfigError, load_config_text
from watcher.config.loading import DETECTED_LANGS, Names
from watcher.items import detect_lang
from watcher.routing import nobody_hears, silence_problems

#: Two rules (forced_repatriation up to high, detention), sources tagged media/korea/un in
#: ko and en, a concept with Russian terms. The case's routes follow `routes:` (line 16).
BASE = """\
sources:
  - {id: dailynk-ko, kind: feed, url: "https://e.org/d", lang: ko, tags: [media, korea]}
  - {id: dailynk-en, kind: feed, url: "https://e.org/e", lang: en, tags: [media]}
  - {id: unhcr, kind: feed, url: "https://e.org/u", tags: [un]}
concepts:
  nk_people: {en: [north korean*], ko: [탈북민], ru: [северокорейц*]}
  sent_back: {en: [repatriat*], ko: [북송]}
  arrested: {en: [detain*]}
rules:
  - {id: return, event: forced_repatriation, severity: high, all_of: [nk_people, sent_back]}
  - {id: arrest, event: detention, all_of: [nk_people, arrested]}
channels:
  - {id: tg, url: "tgram://1:abc/2"}
  - {id: ops-mail, url: "mailto://u:p@example.org"}
routes:
  - {id: ops, channels: [ops-mail], ops: true}
"""
#: The same without rules: events can only be checked against the shipped vocabulary.
NO_RULES = BASE.replace(BASE[BASE.index("rules:") : BASE.index("channels:")], "")

ROUTE_LINE = BASE.count("\n") + 1  # the first case line: routes[1]

# (id, base, the routes after the ops route, the problems: (line offset, text))
CASES: list[tuple[str, str, str, list[tuple[int, str]]]] = [
    (
        "event typo",
        BASE,
        "  - {id: urgent, channels: [tg], events: [forced_repatriaton]}\n",
        [
            (
                0,
                "routes[1].events: unknown event 'forced_repatriaton' "
                "(did you mean 'forced_repatriation'?)",
            )
        ],
    ),
    (
        "language typo",
        BASE,
        "  - {id: korean, channels: [tg], langs: [kr]}\n",
        [(0, "routes[1].langs: unknown language 'kr' (did you mean 'ko'?)")],
    ),
    (
        "tag typo",
        BASE,
        "  - {id: press, channels: [tg], tags: [medai]}\n",
        [(0, "routes[1].tags: unknown tag 'medai' (did you mean 'media'?)")],
    ),
    (
        "a country code for a language",
        BASE,
        "  - {id: japanese, channels: [tg], langs: [jp]}\n",
        [(0, "routes[1].langs: unknown language 'jp' (did you mean 'ja'?)")],
    ),
    (
        "a tag like none",
        BASE,
        "  - {id: press, channels: [tg], tags: [zzz]}\n",
        [(0, "routes[1].tags: unknown tag 'zzz' (source tags: korea, media, un)")],
    ),
    (
        "a shipped event no rule reports",
        BASE,
        "  - {id: un, channels: [tg], events: [un_action]}\n",
        [
            (
                0,
                "routes[1].events: no rule reports event 'un_action' "
                "(events: detention, forced_repatriation)",
            )
        ],
    ),
    (
        "each problem on its own line",
        BASE,
        "  - id: many\n"
        "    channels: [tg]\n"
        "    events:\n"
        "      - detention\n"
        "      - detentoin\n"
        "    tags:\n"
        "      - medai\n",
        [
            (4, "routes[1].events: unknown event 'detentoin' (did you mean 'detention'?)"),
            (6, "routes[1].tags: unknown tag 'medai' (did you mean 'media'?)"),
        ],
    ),
    (
        "a severity no rule reaches",
        BASE,
        "  - {id: critical, channels: [tg], min_severity: critical}\n",
        [
            (
                0,
                "routes[1].min_severity: no rule reaches 'critical' (the highest is 'high'): "
                "this route never fires",
            )
        ],
    ),
    (
        "story filters on an ops route",
        BASE,
        "  - {id: ops2, channels: [tg], ops: true, events: [detention]}\n",
        [
            (
                0,
                "routes[1].events: events has no effect on an ops route: it gets operator "
                "notices, not stories (remove it, or remove ops: true)",
            )
        ],
    ),
    (
        "a route behind one that takes everything and stops",
        BASE,
        "  - {id: all, channels: [tg], continue: false}\n"
        "  - {id: later, channels: [tg], events: [detention]}\n",
        [
            (
                1,
                "routes[2]: route 'later' never fires: every story it takes stops at "
                "routes[1] ('all', continue: false) first",
            )
        ],
    ),
    (
        "a route behind a wider one that stops",
        BASE,
        "  - {id: media, channels: [tg], tags: [media, un], continue: false}\n"
        "  - {id: korea, channels: [tg], tags: [media], min_severity: high}\n",
        [
            (
                1,
                "routes[2]: route 'korea' never fires: every story it takes stops at "
                "routes[1] ('media', continue: false) first",
            )
        ],
    ),
    (
        "without rules: the shipped vocabulary",
        NO_RULES,
        "  - {id: urgent, channels: [tg], events: [detentoin]}\n",
        [(0, "routes[1].events: unknown event 'detentoin' (did you mean 'detention'?)")],
    ),
]

VALID: list[tuple[str, str, str]] = [
    ("every name exists", BASE, "  - {channels: [tg], events: [detention], tags: [un]}\n"),
    ("a language detected by script", BASE, "  - {channels: [tg], langs: [ja, zh]}\n"),
    ("a language of the rules' terms", BASE, "  - {channels: [tg], langs: [ru]}\n"),
    ("the highest severity a rule has", BASE, "  - {channels: [tg], min_severity: high}\n"),
    (
        "a narrower route before a wider one",
        BASE,
        "  - {channels: [tg], events: [detention], continue: false}\n"
        "  - {channels: [tg], events: [detention, forced_repatriation]}\n",
    ),
    ("without rules: a shipped event", NO_RULES, "  - {channels: [tg], events: [un_action]}\n"),
]


@pytest.mark.parametrize(
    ("base", "routes", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_name_that_does_not_exist_is_an_error_on_its_line(
    base: str, routes: str, expected: list[tuple[int, str]]
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(base + routes, "w.yaml", {})
    first = base.count("\n") + 1
    assert info.value.problems == [f"w.yaml:{first + n}: {text}" for n, text in expected]


@pytest.mark.parametrize(("base", "routes"), [c[1:] for c in VALID], ids=[c[0] for c in VALID])
def test_names_that_exist_load(base: str, routes: str) -> None:
    config = load_config_text(base + routes, "w.yaml", {}).config
    assert len(config.routes) == 1 + routes.count("- {")


def test_the_languages_watcher_detects_are_known_without_a_source() -> None:
    detected = {
        detect_lang(text) for text in ("탈북민 강제북송", "ひらがなカタカナ", "中国外交部", "Seoul")
    }
    assert detected <= set(DETECTED_LANGS)


# --------------------------------------------------------------------------- the CLI

BRIEF_TYPOS = [CASES[0], CASES[1], CASES[2]]


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("routes", "expected"), [c[2:] for c in BRIEF_TYPOS], ids=[c[0] for c in BRIEF_TYPOS]
)
def test_check_exits_2_with_a_did_you_mean(
    tmp_path: Path, routes: str, expected: list[tuple[int, str]]
) -> None:
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(BASE + routes)
    result = watcher("--config", str(cfg), "check")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        *(f"{cfg}:{ROUTE_LINE + n}: {text}" for n, text in expected),
        "1 problem found; nothing was changed.",
    ]


@pytest.mark.e2e
def test_run_refuses_the_same_file(tmp_path: Path) -> None:
    """`run` (and a SIGHUP reload) load through the same loader as `check`."""
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(BASE + CASES[0][2])
    result = watcher(
        "--config", str(cfg), "--db", f"sqlite:///{tmp_path / 'w.db'}", "run", "--once"
    )
    assert result.returncode == 2
    assert "unknown event 'forced_repatriaton'" in result.stderr
    assert not (tmp_path / "w.db").exists()


@pytest.mark.e2e
def test_check_warns_that_no_alert_will_be_sent(tmp_path: Path) -> None:
    cfg = tmp_path / "sources.yaml"
    cfg.write_text("sources:\n  - {id: a, kind: feed, url: 'https://e.org/f'}\n")
    result = watcher("--config", str(cfg), "check")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "warning: no enabled rule: no story is made, so no alert will be sent (see docs/rules.md)",
        "warning: no channels and no routes: no alert will ever be sent (see docs/alerts.md)",
        "warning: no ops route: nobody hears when a source breaks or goes quiet, or a delivery "
        "fails (add a route with `ops: true`)",
    ]
    # with every source disabled (or none), nothing is polled: that is said first
    cfg.write_text("sources:\n  - {id: a, kind: feed, url: 'https://e.org/f', enabled: false}\n")
    quiet = watcher("--config", str(cfg), "check")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr.splitlines()[0] == (
        "warning: no enabled source: nothing will be polled (see docs/sources.md)"
    )
    assert "  1 source (1 feed; 1 disabled)\n  languages: -\n" in quiet.stdout


# --------------------------------------------------------------------------- no alert

NOBODY = [
    ("no channels", "", ["no channels and no routes"]),
    (
        "no story route",
        "channels: [{id: tg, url: 'tgram://1:a/2'}]\nroutes: [{channels: [tg], ops: true}]\n",
        ["no route sends stories"],
    ),
    (
        "every story channel disabled",
        "channels: [{id: tg, url: 'tgram://1:a/2', enabled: false}, {id: m, url: 'mailto://u@e.org'}]\n"
        "routes: [{channels: [m], ops: true}, {channels: [tg]}]\n",
        ["every channel of the story routes is disabled"],
    ),
    (
        "someone hears",
        "channels: [{id: tg, url: 'tgram://1:a/2'}]\n"
        "routes: [{channels: [tg], ops: true}, {channels: [tg]}]\n",
        [],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in NOBODY], ids=[c[0] for c in NOBODY])
def test_nobody_hears_says_no_alert_will_be_sent(text: str, expected: list[str]) -> None:
    config = load_config_text("sources: []\n" + text, "w.yaml", {}).config
    stories = [w for w in nobody_hears(config) if not w.startswith("no ops route")]
    assert [w.split(":")[0] for w in stories] == expected
    assert all("no alert will" in w for w in stories)


# --------------------------------------------------------------------------- silences

SILENCE_ROUTES = "  - {id: urgent, channels: [tg], events: [detention]}\n"

SILENCES: list[tuple[str, dict[str, str], list[str]]] = [
    ("a source", {"source": "dailynk-ko"}, []),
    ("a wildcard", {"source": "dailynk-*", "tag": "MEDIA"}, []),
    (
        "every key that exists",
        {
            "event": "detention",
            "severity": "high",
            "rule": "arrest",
            "lang": "ko",
            "route": "urgent",
            "channel": "tg",
            "story": "42",
        },
        [],
    ),
    (
        "an unknown source",
        {"source": "nosuch"},
        ["source=nosuch: unknown source 'nosuch' (sources: dailynk-ko, dailynk-en, unhcr)"],
    ),
    (
        "a source typo",
        {"source": "dailynk-kr"},
        ["source=dailynk-kr: unknown source 'dailynk-kr' (did you mean 'dailynk-ko'?)"],
    ),
    (
        "a wildcard that matches nothing",
        {"source": "yonhap-*"},
        ["source=yonhap-*: matches no source (dailynk-ko, dailynk-en, unhcr)"],
    ),
    (
        "an event typo",
        {"event": "detentoin"},
        ["event=detentoin: unknown event 'detentoin' (did you mean 'detention'?)"],
    ),
    (
        "a severity typo",
        {"severity": "hihg"},
        ["severity=hihg: unknown severity 'hihg' (did you mean 'high'?)"],
    ),
    (
        "a tag typo and a language typo",
        {"tag": "medai", "lang": "kr"},
        [
            "tag=medai: unknown tag 'medai' (did you mean 'media'?)",
            "lang=kr: unknown language 'kr' (did you mean 'ko'?)",
        ],
    ),
    (
        "an ops route",
        {"route": "ops"},
        ["route=ops: 'ops' is an ops route: silences mute stories, not operator notices"],
    ),
    (
        "an unknown channel",
        {"channel": "telegram"},
        ["channel=telegram: unknown channel 'telegram' (channels: tg, ops-mail)"],
    ),
    (
        "a story that is not a number",
        {"story": "abc"},
        ["story=abc: expected a story number like 42"],
    ),
]


@pytest.mark.parametrize(
    ("matchers", "expected"), [c[1:] for c in SILENCES], ids=[c[0] for c in SILENCES]
)
def test_a_silence_must_match_something(matchers: dict[str, str], expected: list[str]) -> None:
    names = Names.of(load_config_text(BASE + SILENCE_ROUTES, "w.yaml", {}).config)
    assert silence_problems(matchers, names) == expected


@pytest.mark.e2e
def test_silence_add_refuses_a_matcher_that_matches_nothing(tmp_path: Path) -> None:
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(BASE + SILENCE_ROUTES)
    db = f"sqlite:///{tmp_path / 'w.db'}"
    assert watcher("--config", str(cfg), "--db", db, "db", "upgrade").returncode == 0
    args = ("--config", str(cfg), "--db", db, "silence", "add")
    refused = watcher(*args, "--match", "source=nosuch", "--for", "1h", "--reason", "x")
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        "error: --match source=nosuch: unknown source 'nosuch' "
        "(sources: dailynk-ko, dailynk-en, unhcr)"
    ]
    added = watcher(*args, "--match", "source=dailynk-*", "--for", "1h", "--reason", "x")
    assert added.returncode == 0, added.stderr
    listed = watcher("--config", str(cfg), "--db", db, "silence", "list").stdout
    assert listed.splitlines()[1].startswith("1 ") and "source=nosuch" not in listed

"""Stories and routing as pure decisions: which reports are one event, what is a material
change, which routes and channels a story goes to and when, what a silence mutes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from watcher.config import load_config_text
from watcher.stories import (
    Facts,
    Story,
    choose,
    joined,
    next_digest,
    parse_matchers,
    plan,
    silenced_by,
)

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
WINDOW = timedelta(hours=72)


def facts(**kw: object) -> Facts:
    values: dict = {
        "item_key": "k",
        "source_id": "yonhap-en",
        "title": "China repatriates about 60 North Korean defectors",
        "at": T0,
        "events": frozenset({"forced_repatriation"}),
        "severity": "high",
        "people": 60,
        "places": ("Dandong",),
    }
    values.update(kw)
    return Facts(**values)


def story(**kw: object) -> Story:
    values: dict = {
        "id": 1,
        "events": frozenset({"forced_repatriation"}),
        "severity": "high",
        "title": "China repatriates about 60 North Korean defectors",
        "people": 60,
        "places": ("Dandong",),
        "first_seen_at": T0,
        "updated_at": T0,
        "revision": 1,
        "item_count": 1,
        "titles": ("China repatriates about 60 North Korean defectors",),
    }
    values.update(kw)
    return Story(**values)


JOIN_CASES = [
    (
        "same place, other language",
        facts(title="中, 탈북민 60여명 강제북송", places=("Dandong",), people=None),
        True,
    ),
    ("count within 25%", facts(title="Dozens sent back", places=(), people=70), True),
    (
        "near-duplicate title",
        facts(
            title="China repatriates about 60 N. Korean defectors: activists",
            places=(),
            people=None,
        ),
        True,
    ),
    ("other event type", facts(events=frozenset({"detention"})), False),
    ("too late", facts(at=T0 + timedelta(hours=80)), False),
    (
        "nothing alike",
        facts(title="Border guards detain family", places=("Hunchun",), people=4),
        False,
    ),
    (
        "count far off, no place, other title",
        facts(title="Hundreds more sent back", places=(), people=600),
        False,
    ),
    (
        "Korean near-duplicate",
        facts(title="중국, 탈북민 60명 강제북송", places=(), people=None),
        False,
    ),
    (
        "alike titles, other place",
        facts(
            title="China repatriates about 60 North Korean defectors",
            places=("Kunming",),
            people=None,
        ),
        False,
    ),
    (
        "alike titles, another count",
        facts(title="China repatriates about 60 North Korean defectors", places=(), people=900),
        False,
    ),
]


@pytest.mark.parametrize(("name", "report", "joins"), JOIN_CASES, ids=[c[0] for c in JOIN_CASES])
def test_which_reports_join_a_story(name: str, report: Facts, joins: bool) -> None:
    assert (choose(report, [story()], WINDOW) is not None) == joins


def test_korean_titles_compare_by_characters() -> None:
    base = story(
        title="中, 탈북민 60여명 강제북송…대부분 여성",
        titles=("中, 탈북민 60여명 강제북송…대부분 여성",),
        places=(),
        people=None,
    )
    again = facts(title='中, 탈북민 60여명 강제북송…"대부분 여성"', places=(), people=None)
    assert choose(again, [base], WINDOW) is base


def test_the_two_stories_of_the_interface_stay_apart() -> None:
    detention = story(
        id=1,
        events=frozenset({"detention"}),
        title="Shenyang police detain 20 North Koreans",
        titles=("Shenyang police detain 20 North Koreans",),
        people=20,
        places=("Shenyang",),
    )
    repatriation = facts(
        title="China sends 60 North Koreans back from Jilin", people=60, places=("Jilin",)
    )
    assert choose(repatriation, [detention], WINDOW) is None


def test_most_recent_fitting_story_wins() -> None:
    old = story(id=1, updated_at=T0 - timedelta(hours=5))
    new = story(id=2, updated_at=T0 - timedelta(hours=1))
    assert choose(facts(), [old, new], WINDOW).id == 2


@pytest.mark.parametrize(
    ("report", "material", "people"),
    [
        (facts(), False, 60),
        (facts(people=65), False, 60),  # within 25 %: the same number
        (facts(people=600), True, 600),  # a new count: a new message
        (facts(people=None), False, 60),
        (facts(severity="critical"), True, 60),  # severity rose
        (facts(severity="medium"), False, 60),
    ],
)
def test_material_changes(report: Facts, material: bool, people: int) -> None:
    updated, changed = joined(story(), report, T0 + timedelta(hours=1))
    assert changed is material
    assert updated.revision == (2 if material else 1)
    assert updated.people == people
    assert updated.item_count == 2 and updated.updated_at == T0 + timedelta(hours=1)
    assert updated.severity == max(
        "high", report.severity, key=["low", "medium", "high", "critical"].index
    )


def test_people_appearing_where_there_were_none_is_material() -> None:
    assert joined(story(people=None), facts(people=40), T0)[1] is True


# --------------------------------------------------------------------------- routing

ROUTES = load_config_text(
    """
sources: []
channels:
  - {id: tg, url: "tgram://1:abc/2"}
  - {id: mail, url: "mailto://u:p@example.org"}
  - {id: slack, url: "slack://a/b/c"}
  - {id: ops-mail, url: "mailto://u:p@example.org?to=ops@example.org"}
routes:
  - {id: ops, channels: [ops-mail], ops: true}
  - id: critical-now
    channels: [tg, mail]
    min_severity: critical
    group_wait: 0s
    continue: false
  - id: detentions
    channels: [slack]
    events: [detention]
    group_wait: 10m
  - id: korean
    channels: [mail]
    langs: [ko]
  - id: daily
    channels: [mail]
    mode: digest
    digest: {at: "08:00"}
    timezone: Asia/Seoul
""",
    "routes.yaml",
    {},
).config.routes


def _plan(
    s: Story, kind: str = "alert", tags=(), langs=("en",)
) -> list[tuple[str, str, str, datetime]]:
    out = plan(ROUTES, s, kind=kind, tags=set(tags), langs=set(langs), now=T0, default_tz="UTC")
    return [(p.route, p.channel, p.kind, p.due_at) for p in out]


def test_critical_stops_the_walk_and_waits_nothing() -> None:
    assert _plan(story(severity="critical")) == [
        ("critical-now", "tg", "alert", T0),
        ("critical-now", "mail", "alert", T0),
    ]


def test_routes_filter_by_event_and_language_and_wait() -> None:
    planned = _plan(story(events=frozenset({"detention"})), langs=("ko",))
    seoul_8am_utc = datetime(2026, 11, 20, 23, 0, tzinfo=UTC)  # 08:00 KST next day
    assert planned == [
        ("detentions", "slack", "alert", T0 + timedelta(minutes=10)),
        ("korean", "mail", "alert", T0 + timedelta(minutes=2)),
        ("daily", "mail", "digest", seoul_8am_utc),
    ]


def test_ops_routes_never_take_stories() -> None:
    assert all(route != "ops" for route, *_ in _plan(story(severity="critical")))


def test_updates_are_due_at_once() -> None:
    assert _plan(story(events=frozenset({"detention"})), kind="update")[0] == (
        "detentions",
        "slack",
        "update",
        T0,
    )


def test_digest_on_weekdays_only() -> None:
    digest = ROUTES[4].digest.model_copy(update={"days": ("mon",)})
    route = ROUTES[4].model_copy(update={"digest": digest})
    friday = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)  # a Friday
    assert next_digest(route, friday, "UTC") == datetime(2026, 11, 22, 23, 0, tzinfo=UTC)


def test_unknown_channel_in_a_route_is_a_config_error() -> None:
    from watcher.config import ConfigError

    with pytest.raises(ConfigError) as info:
        load_config_text(
            "sources: []\nchannels: [{id: tg, url: 'tgram://1/2'}]\nroutes:\n  - channels: [tgg]\n",
            "r.yaml",
            {},
        )
    assert info.value.problems == [
        "r.yaml:4: routes[0].channels[0]: unknown channel 'tgg' (did you mean 'tg'?)"
    ]


# --------------------------------------------------------------------------- silences


@pytest.mark.parametrize(
    ("matchers", "muted"),
    [
        ({"source": "dailynk-*"}, True),
        ({"source": "yonhap-*"}, False),
        ({"source": "dailynk-ko", "event": "detention"}, True),
        ({"source": "dailynk-ko", "event": "un_action"}, False),
        ({"severity": "HIGH"}, True),
        ({"tag": "korean"}, False),
    ],
)
def test_silence_matchers(matchers: dict[str, str], muted: bool) -> None:
    labels = {"source": {"dailynk-ko", "voa-korean"}, "event": {"detention"}, "severity": {"high"}}
    assert silenced_by(matchers, labels) is muted


@pytest.mark.parametrize(
    ("texts", "error"),
    [
        (["source"], "expected KEY=VALUE"),
        (["colour=red"], "unknown key 'colour'"),
        ([], "at least one"),
    ],
)
def test_bad_silence_matchers(texts: list[str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_matchers(texts)

"""Stories and routing as pure decisions: which reports are one event, what is a material
change, which routes and channels a story goes to and when, what a silence mutes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from watcher.config import load_config_text
from watcher.routing import next_digest, parse_matchers, plan, silenced_by
from watcher.stories import (
    Facts,
    Grouping,
    Story,
    choose,
    evidence,
    founded,
    joined,
    materially_changed,
    names_in,
    stated_days,
    stated_weight,
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
    """A story founded by `facts()` (override the founding report with report=…)."""
    report = kw.pop("report", facts(item_key="founder"))
    assert isinstance(report, Facts)
    base = founded(1, report, T0)
    values = {
        "id": base.id,
        "events": base.events,
        "severity": base.severity,
        "title": base.title,
        "people": base.people,
        "places": base.places,
        "first_seen_at": T0,
        "updated_at": T0,
        "revision": 1,
        "item_count": 1,
        "event_at": report.at,
        "reports": (report,),
    }
    values.update(kw)
    return Story(**values)


JOIN_CASES = [
    (
        "same place, close date, other language",
        facts(title="中, 탈북민 60여명 강제북송", places=("Dandong",), people=None),
        True,
    ),
    (
        "same count and place, other language, two days later",
        facts(title="중국, 탈북민 60명 북송", at=T0 + timedelta(days=2), people=60),
        True,
    ),
    (
        "the same kind of event the same day, nothing disagreeing",
        facts(title="Dozens sent back", places=(), people=None),
        True,
    ),
    (
        "the same day, another kind of event, nothing else shared",
        facts(title="Dozens held", places=(), people=None, events=frozenset({"detention"})),
        False,
    ),
    (
        "the same kind of event two days apart, nothing else shared",
        facts(title="Dozens sent back", places=(), people=None, at=T0 + timedelta(hours=48)),
        False,
    ),
    (
        "the same day, places that disagree",
        facts(title="Dozens sent back", places=("Kunming",), people=None),
        False,
    ),
    (
        "near-duplicate title and close date",
        facts(
            title="China repatriates about 60 N. Korean defectors: activists",
            places=(),
            people=None,
        ),
        True,
    ),
    ("published later than the window", facts(at=T0 + timedelta(hours=80)), False),
    (
        "the same count five days later where the story began: a follow-up report",
        facts(title="N. Korean defectors' fate unknown", at=T0 + timedelta(days=5)),
        True,
        timedelta(days=7),
    ),
    (
        "the same count ten days later, nothing else: too far for the date to help",
        facts(title="Defectors' fate unknown", places=(), at=T0 + timedelta(days=10)),
        False,
        timedelta(days=14),
    ),
    (
        "the story's town named only in passing, two days later",
        facts(
            title="Defectors held in Kunming",
            places=("Kunming", "Dandong"),
            people=None,
            at=T0 + timedelta(days=2),
            events=frozenset({"detention"}),
        ),
        False,
    ),
    (
        "the story's town named first, two days later",
        facts(
            title="Defectors held in Dandong",
            places=("Dandong", "Kunming"),
            people=None,
            at=T0 + timedelta(days=2),
            events=frozenset({"detention"}),
        ),
        True,
    ),
    (
        "the same UN body and the same day, but of another kind of event",
        facts(
            title="UNHCR chief visits Seoul",
            places=(),
            people=None,
            events=frozenset({"un_action"}),
            names=frozenset({"UNHCR"}),
        ),
        False,
        WINDOW,
        {"names": frozenset({"UNHCR"})},
    ),
    (
        "the same rare name and the same day, of another kind of event",
        facts(
            title="Activist Kwon speaks to reporters",
            places=(),
            people=None,
            events=frozenset({"un_action"}),
            names=frozenset({"kwon"}),
        ),
        True,
        WINDOW,
        {"names": frozenset({"kwon"})},
    ),
    (
        "nothing alike",
        facts(title="Border guards detain family", places=("Hunchun",), people=4),
        False,
    ),
    (
        "another count, same place and day, same event: an update of the story",
        facts(title="Hundreds more sent back", places=("Dandong",), people=600),
        True,
    ),
    (
        "alike titles, other place: two events",
        facts(
            title="China repatriates about 60 North Korean defectors",
            places=("Kunming",),
            people=None,
        ),
        False,
    ),
    (
        "undated, its text states the story's day, same count: the date and the count agree",
        facts(
            title="탈북민 60명 강제북송",
            dated=False,
            at=T0 + timedelta(days=9),
            places=(),
            stated=("--11-20",),
        ),
        True,
    ),
    (
        "undated, same count, no day stated: one signal is not enough",
        facts(title="탈북민 60명 강제북송", dated=False, at=T0 + timedelta(days=9), places=()),
        False,
    ),
    (
        "undated, same count, a day stated months from the story's: background, no signal",
        facts(
            title="탈북민 60명 강제북송",
            dated=False,
            at=T0 + timedelta(days=9),
            places=(),
            stated=("2026-08-29",),
        ),
        False,
    ),
    (
        "a count many times the story's, the same day, a shared province only: another event",
        facts(
            title="China sent back about 600 North Koreans from Jilin and Liaoning",
            places=("Jilin", "Liaoning"),
            people=600,
        ),
        False,
        WINDOW,
        {
            "title": "Chinese police hold 20 North Koreans in Shenyang",
            "places": ("Shenyang", "Liaoning"),
            "people": 20,
            "events": frozenset({"detention", "forced_repatriation"}),
        },
    ),
    (
        "alike headlines of another kind of event, the town named in passing: apart",
        facts(
            title="North Korea and China resume passenger traffic across the Yalu at Dandong",
            places=("Yalu River", "Dandong", "Sinuiju"),
            people=None,
            events=frozenset({"border_reopening"}),
            at=T0 + timedelta(days=2, hours=6),
        ),
        False,
        WINDOW,
        {"title": "China sends 90 North Koreans back through Dandong", "people": 90},
    ),
    (
        "another count and another event type: apart",
        facts(
            title="Police detain North Koreans",
            people=8,
            places=("Dandong",),
            events=frozenset({"detention"}),
        ),
        False,
    ),
]


@pytest.mark.parametrize("case", JOIN_CASES, ids=[c[0] for c in JOIN_CASES])
def test_which_reports_join_a_story(case: tuple) -> None:
    """Each case: a report, whether it joins the story `facts()` founded, and optionally the
    story window and what differs in the founding report."""
    name, report, joins, *extra = case
    window, founder = (*extra, *(WINDOW, {})[len(extra) :])
    founding = story(report=facts(item_key="founder", **founder))
    assert (choose(report, [founding], window) is not None) == joins, name


def test_a_report_polled_ten_days_after_publication_joins_its_story() -> None:
    """One clock: the report's publication time, not the time it was polled."""
    grouping = Grouping(window=WINDOW)
    first = grouping.add(facts(item_key="a"), now=T0 + timedelta(hours=1))
    late = facts(item_key="b", title="중국, 탈북민 60명 단둥서 북송", at=T0 + timedelta(hours=6))
    joined_story = grouping.add(late, now=T0 + timedelta(days=10))
    assert joined_story.id == first.id and joined_story.item_count == 2


@pytest.mark.parametrize(
    ("undated", "other", "weight"),
    [
        # a day without a year is read in the year nearest the other report's day
        (("--11-19",), facts(), 1.0),
        (("--11-14",), facts(), 0.5),
        (("--11-01",), facts(), 0.0),
        (("--12-30",), facts(at=datetime(2027, 1, 2, tzinfo=UTC)), 1.0),
        # a stated year must agree
        (("2025-11-20",), facts(), 0.0),
        (("2026-11-21",), facts(), 1.0),
        # weeks and months say no day
        (("2026-11-16/2026-11-22", "2026-11"), facts(), 0.0),
        # a dated report's own written days never count: background as often as the event
        (("--10-09",), facts(stated=("2026-10-09",)), 0.0),
        # two undated reports: a day both state
        (("--11-20",), facts(dated=False, stated=("2026-11-20",)), 1.0),
        (("--11-20",), facts(dated=False, stated=("2026-11-21",)), 0.0),
        (("--11-20",), facts(dated=False), 0.0),
        # nothing stated
        ((), facts(), 0.0),
    ],
)
def test_a_day_an_undated_report_states_dates_it(
    undated: tuple[str, ...], other: Facts, weight: float
) -> None:
    report = facts(dated=False, at=T0 + timedelta(days=30), stated=undated)
    assert stated_weight(report, other) == weight
    assert stated_weight(other, report) == weight


def test_a_stated_day_is_compared_with_the_day_of_publication_where_it_was_published() -> None:
    """08:30 in Seoul on the 20th is 23:30 UTC on the 19th: the 23rd is three days on."""
    seoul = facts(at=datetime(2026, 11, 19, 23, 30, tzinfo=UTC), lang="ko")
    report = facts(dated=False, at=T0 + timedelta(days=30), stated=("--11-23",))
    assert stated_weight(report, seoul) == 1.0
    assert stated_weight(report, replace(seoul, lang="en")) == 0.5  # the 19th in UTC


@pytest.mark.parametrize(
    ("title", "text", "days"),
    [
        ("60 North Koreans repatriated on Oct. 9", "", ("--10-09",)),
        ("탈북민 60명 북송", "지난 10월 9일 밤 단둥에서", ("--10-09",)),
        ("中国遣返脱北者", "2023年10月9日晚", ("2023-10-09",)),
        # relative dates need the publication time an undated report lacks
        ("Sixty sent back on Tuesday", "They were caught last week.", ()),
    ],
)
def test_the_days_an_undated_report_writes_out(title: str, text: str, days: tuple) -> None:
    assert stated_days(title, text) == days


def test_two_dated_reports_are_compared_by_publication_not_by_stated_days() -> None:
    a, b = facts(stated=("--11-20",)), facts(at=T0 + timedelta(days=20), stated=("--11-20",))
    assert stated_weight(a, b) == 0.0


def test_stated_days_are_kept_with_a_reports_facts() -> None:
    report = facts(dated=False, stated=("--11-20", "2026-11-19"), lang="ko")
    again = Facts.from_json(report.as_json(), item_key="k")
    assert (again.stated, again.dated, again.lang) == (report.stated, False, "ko")


def test_facts_stored_before_stated_days_were_kept_still_load() -> None:
    old = {"title": "t", "at": T0.isoformat(), "dated": False, "events": ["detention"]}
    again = Facts.from_json(old)
    assert (again.stated, again.lang, again.dated) == ((), None, False)


def test_two_undated_reports_of_different_events_stay_apart() -> None:
    grouping = Grouping(window=WINDOW)
    a = facts(
        item_key="a",
        dated=False,
        title="Ten defectors detained in Shenyang",
        people=10,
        places=("Shenyang",),
        events=frozenset({"detention"}),
    )
    b = facts(
        item_key="b",
        dated=False,
        title="Border reopens to passenger buses at Dandong",
        people=None,
        places=("Dandong",),
        events=frozenset({"border_reopening"}),
    )
    assert grouping.add(a, T0).id != grouping.add(b, T0).id


def test_a_place_shared_by_two_different_events_does_not_merge_them() -> None:
    grouping = Grouping(window=WINDOW)
    first = facts(
        item_key="a",
        title="Police detain 7 North Koreans in Shenyang",
        people=7,
        places=("Shenyang",),
        events=frozenset({"detention"}),
    )
    other_year = replace(
        first,
        item_key="b",
        at=T0 + timedelta(days=400),
        people=None,
        title="Shenyang consulate raid draws protest",
    )
    undated = replace(
        first,
        item_key="c",
        dated=False,
        people=None,
        title="Shenyang border town sees more patrols",
        events=frozenset({"border_reopening"}),
    )
    ids = {grouping.add(f, T0).id for f in (first, other_year, undated)}
    assert len(ids) == 3


def test_the_same_event_in_english_and_korean_with_the_same_count_and_place_joins() -> None:
    grouping = Grouping(window=WINDOW)
    en = facts(item_key="en", dated=False, title="China repatriates 60 North Koreans via Dandong")
    ko = facts(item_key="ko", dated=False, title="중국, 탈북민 60명 단둥 통해 강제북송", lang="ko")
    assert grouping.add(en, T0).id == grouping.add(ko, T0).id


def test_the_best_fitting_story_wins_not_the_most_recent() -> None:
    strong = story(id=1, updated_at=T0 - timedelta(hours=5))
    weak = story(
        id=2,
        updated_at=T0 - timedelta(hours=1),
        report=facts(item_key="w", title="Other report", people=None, places=("Dandong",)),
    )
    assert choose(facts(), [weak, strong], WINDOW).id == 1


def test_grouping_does_not_depend_on_arrival_order_within_a_cycle() -> None:
    reports = [
        facts(item_key="a", title="China repatriates 60 North Koreans", places=("Dandong",)),
        facts(item_key="b", title="中, 탈북민 60여명 강제북송", places=("Dandong",), lang="ko"),
        facts(
            item_key="c",
            title="Kunming police detain 5",
            people=5,
            places=("Kunming",),
            events=frozenset({"detention"}),
        ),
    ]

    def partition(order: list[Facts]) -> set[frozenset[str]]:
        grouping = Grouping(window=WINDOW)
        for f in order:
            grouping.add(f, T0)
        groups: dict[int, set[str]] = {}
        for key, sid in grouping.assigned.items():
            groups.setdefault(sid, set()).add(key)
        return {frozenset(g) for g in groups.values()}

    assert partition(reports) == partition(list(reversed(reports)))
    assert frozenset({"a", "b"}) in partition(reports)


def test_evidence_names_what_two_reports_agree_on() -> None:
    a = facts(names=frozenset({"anshan"}))
    b = facts(item_key="b", title="Seven held", people=60, names=frozenset({"anshan"}))
    assert set(evidence(a, b, WINDOW)) == {"date", "place", "count", "names"}
    assert evidence(a, replace(b, at=T0 + timedelta(days=5)), WINDOW) == ()


def test_rare_names_skip_sentence_starts_and_common_words() -> None:
    names = names_in(
        "Seven detained, Human Rights Watch tells Quintana",
        "Police in Liaoning's Anshan city held them, Tomás Ojea Quintana said.",
    )
    assert "quintana" in names
    assert "anshan" not in names  # a place: its own signal
    assert not names & {"seven", "human", "rights", "watch", "police"}


@pytest.mark.parametrize(
    ("title", "text", "named", "not_named"),
    [
        (  # a Title Case headline capitalises every word: none of them is a name
            "China Appears to Have Repatriated Defectors Despite Pressure",
            "the report said on Monday that Pastor Chun was told.",
            {"chun"},
            {"appears", "repatriated", "despite", "pressure"},
        ),
        (  # a sentence-case headline keeps its names
            "Seoul asks China about defectors, says Pastor Chun",
            "",
            {"chun"},
            {"seoul", "asks"},
        ),
        (  # the opening is cut at a word's end: no stem of a common word ("Kore")
            "Defectors held",
            ("Officials said that Svetlana Kim was held" + " and more" * 80)[:593] + " in Korea",
            {"svetlana"},
            {"kore", "korea", "ko"},
        ),
        (  # institutions, capitals and nationalities are in every report of a country
            "Refugee loses appeal",
            "the Federal Migration Service in Moscow told Russian media that Svetlana Kim",
            {"svetlana"},
            {"federal", "migration", "moscow", "russian"},
        ),
    ],
)
def test_rare_names_are_names(title: str, text: str, named: set, not_named: set) -> None:
    names = names_in(title, text)
    assert named <= names
    assert not names & not_named


def test_a_story_is_compared_through_its_reports_not_an_accumulated_union() -> None:
    # A story whose reports between them name many places does not absorb a report that
    # shares one place with the second report only by a loose link of date alone.
    s = story()
    s, _ = joined(s, facts(item_key="b", places=("Dandong", "Hunchun")), T0)
    assert set(s.places) == {"Dandong", "Hunchun"}
    other = facts(
        item_key="c",
        title="Fence built at Hunchun",
        people=None,
        places=("Hunchun",),
        at=T0 + timedelta(days=30),
    )
    assert choose(other, [s], WINDOW) is None


@pytest.mark.parametrize(
    ("report", "material", "people"),
    [
        (facts(), False, 60),
        (facts(people=65), False, 60),  # within 10 % from 50 up: the same number
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


@pytest.mark.parametrize(
    ("founder", "report", "shown", "material"),
    [
        # the story's count is its founding report's, hedge and all
        (facts(people_approximate=True), facts(people=None), (60, True), False),
        # an exact count of the same number: the story's count is now exact, quietly
        (facts(people_approximate=True), facts(people=60), (60, False), False),
        (facts(people_approximate=True), facts(people=62), (62, False), False),
        # a hedged count never makes an exact one approximate
        (facts(), facts(people=60, people_approximate=True), (60, False), False),
        (facts(people_approximate=True), facts(people_approximate=True), (60, True), False),
        # a new count comes with its own hedge, either way
        (facts(), facts(people=600, people_approximate=True), (600, True), True),
        (facts(people_approximate=True), facts(people=600), (600, False), True),
    ],
)
def test_a_storys_count_and_its_hedge_come_from_one_report(
    founder: Facts, report: Facts, shown: tuple[int, bool], material: bool
) -> None:
    """ "about 60" then "60" is 60 exactly; "60" then "about 60" stays exact; a count that
    changes materially brings its report's hedge ("~600 people")."""
    founded_story = founded(1, founder, T0)
    assert (founded_story.people, founded_story.people_approximate) == (
        founder.people,
        founder.people_approximate,
    )
    updated, changed = joined(founded_story, report, T0 + timedelta(hours=1))
    assert (updated.people, updated.people_approximate) == shown
    assert changed is material


def test_a_reports_hedge_is_kept_with_the_facts_a_story_compares() -> None:
    hedged = facts(people_approximate=True)
    assert Facts.from_json(hedged.as_json(), item_key="k") == replace(
        hedged, source_id="", severity="low"
    )
    # facts kept before the hedge was: an exact count
    kept = {k: v for k, v in hedged.as_json().items() if k != "people_approximate"}
    assert Facts.from_json(kept, item_key="k").people_approximate is False


H6 = timedelta(hours=6)

#: (case, first report to arrive, the one after it, the story's count, is it news)
COUNT_ORDER_CASES = [
    (
        "a later report's new count is news",
        facts(people=60, people_approximate=True),
        facts(people=90, at=T0 + H6),
        (90, False),
        True,
    ),
    (
        "an older report arriving later does not take the count back",
        facts(people=90, at=T0 + H6),
        facts(people=60, people_approximate=True),
        (90, False),
        False,
    ),
    (
        "an older report's exact figure of the same number confirms an approximate count",
        facts(people=60, people_approximate=True, at=T0 + H6),
        facts(people=62),
        (62, False),
        False,
    ),
    (
        "published at once, a larger count after a smaller one is news",
        facts(people=60),
        facts(people=90, people_approximate=True),
        (90, True),
        True,
    ),
    (
        "published at once, a smaller count after a larger one is not",
        facts(people=90, people_approximate=True),
        facts(people=60),
        (90, True),
        False,
    ),
    (
        "published at once, both exact: the larger",
        facts(people=90),
        facts(people=60),
        (90, False),
        False,
    ),
]


@pytest.mark.parametrize(
    ("case", "first", "then", "shown", "news"),
    COUNT_ORDER_CASES,
    ids=[c[0] for c in COUNT_ORDER_CASES],
)
def test_a_storys_count_is_its_latest_published_reports(
    case: str, first: Facts, then: Facts, shown: tuple[int, bool], news: bool
) -> None:
    """The count comes from the latest-published report that gives one, whichever arrived
    first: arrived in the other order, the story says the same."""
    updated, material = joined(founded(1, first, T0), then, T0 + timedelta(hours=7))
    assert (updated.people, updated.people_approximate) == shown
    assert material is news
    assert updated.revision == (2 if news else 1)
    other_order, _ = joined(founded(1, then, T0), first, T0 + timedelta(hours=7))
    assert (other_order.people, other_order.people_approximate) == shown
    assert materially_changed(founded(1, first, T0), then) is news


def test_an_older_report_can_still_raise_the_severity() -> None:
    """Only its count is out of date: an older report that says the people were sent back is
    news for a detention story all the same."""
    detained = founded(1, facts(people=90, at=T0 + H6, events=frozenset({"detention"})), T0)
    older = facts(people=60, severity="critical")
    updated, material = joined(detained, older, T0 + timedelta(hours=7))
    assert material and updated.severity == "critical" and updated.people == 90


@pytest.mark.parametrize(
    ("story_events", "report_events", "material"),
    [
        # the detained were sent back: the gravest news, whatever the severity and count say
        ({"detention"}, {"detention", "forced_repatriation"}, True),
        ({"border_reopening"}, {"detention"}, True),
        # a Chinese statement about a repatriation is less grave than the repatriation itself
        ({"forced_repatriation"}, {"china_position"}, False),
        ({"detention"}, {"detention"}, False),
        # an operator's own event types never make a change material by themselves
        ({"detention"}, {"detention", "my_watchlist"}, False),
    ],
)
def test_a_graver_event_joining_is_material(
    story_events: set[str], report_events: set[str], material: bool
) -> None:
    founder = facts(item_key="founder", events=frozenset(story_events))
    report = facts(events=frozenset(report_events))
    assert joined(story(report=founder), report, T0)[1] is material


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


def test_bodies_and_officials_are_the_same_names_in_any_language() -> None:
    korean = names_in("유엔 고문방지위, 중국에 탈북자 강제북송 중단 권고")
    english = names_in("UN Committee against Torture urges China to stop returns")
    chinese = names_in("外交部發言人林劍表示")  # traditional script, folded
    assert "UN Committee against Torture" in korean & english
    assert "Lin Jian" in chinese and "Lin Jian" in names_in("린젠 대변인은 말했다")

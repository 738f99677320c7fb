"""Kinds of grouping mistakes found on real reports, each as pairs of made-up reports: a report
either joins the story another founded or opens its own. One case per kind, and its limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from watcher.stories import Facts, Grouping, founded, joined, materially_changed

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
WINDOW = timedelta(hours=72)


def report(key: str, **kw: object) -> Facts:
    values: dict[str, object] = {
        "item_key": key,
        "source_id": "wire",
        "title": "North Koreans sent back from China",
        "at": T0,
        "events": frozenset({"forced_repatriation"}),
        "severity": "high",
        "people": None,
        "places": (),
    }
    values.update(kw)
    return Facts(**values)  # type: ignore[arg-type]


#: (kind, founding report, later report, do they join)
CASES = [
    (
        "large counts within a fifth of each other are estimates of one wave",
        report("a", title="Rights group says 600 escapees were returned", people=600),
        report("b", title="約500人の脱北者が送還", people=500, at=T0 + timedelta(days=1)),
        True,
    ),
    (
        "large counts further apart than a fifth are other events",
        report("a", title="Rights group says 600 escapees were returned", people=600),
        report("b", title="約400人の脱北者が送還", people=400, at=T0 + timedelta(days=1)),
        False,
    ),
    (
        "one or two people can be part of the group another report counts",
        report(
            "a",
            title="Five asylum seekers seized at a consulate gate",
            people=5,
            places=("Shenyang",),
            events=frozenset({"detention"}),
        ),
        report(
            "b",
            title="Tokyo protests to Beijing over a raid",
            people=2,
            places=("Shenyang",),
            events=frozenset({"forced_repatriation"}),
            at=T0 + timedelta(days=1),
        ),
        True,
    ),
    (
        "counts of three or more that differ still count against",
        report(
            "a",
            title="Eight escapees held by border police",
            people=8,
            places=("Shenyang",),
            events=frozenset({"detention"}),
        ),
        report(
            "b",
            title="Police hold ten in a second sweep",
            people=10,
            places=("Shenyang",),
            events=frozenset({"forced_repatriation"}),
            at=T0 + timedelta(days=1),
        ),
        False,
    ),
    (
        "a transit country in one report and a province in the other do not disagree",
        report(
            "a",
            title="탈북민 어머니, 중국 공안에 체포",
            places=("Jilin",),
            events=frozenset({"detention"}),
        ),
        report(
            "b",
            title="탈북민 어머니, 미얀마 거쳐 가다 체포돼 구금",
            places=("Myanmar",),
            events=frozenset({"detention"}),
            at=T0 + timedelta(hours=20),
        ),
        True,
    ),
    (
        "towns that disagree still count against",
        report("a", title="Escapees held in a raid", places=("Kunming",)),
        report("b", title="Escapees held after a raid", places=("Hunchun",)),
        False,
    ),
]


@pytest.mark.parametrize(("kind", "first", "later", "joins"), CASES, ids=[c[0] for c in CASES])
def test_kinds_of_grouping_mistakes(kind: str, first: Facts, later: Facts, joins: bool) -> None:
    grouping = Grouping(window=WINDOW)
    a = grouping.add(first, T0)
    b = grouping.add(later, T0 + timedelta(days=2))
    assert (a.id == b.id) == joins


@pytest.mark.parametrize(
    ("before", "after", "material"),
    [(600, 500, True), (600, 580, False), (5, 2, True)],
    ids=["a sixth fewer is news", "a few fewer of hundreds is not", "any change of few is"],
)
def test_a_count_within_the_grouping_tolerance_can_still_be_news(
    before: int, after: int, material: bool
) -> None:
    """Grouping forgives estimates (500 and 600 are one wave); revisions do not: a count that
    moves by more than a tenth is a new message."""
    story = founded(1, report("a", people=before), T0)
    later = report("b", people=after, at=T0 + timedelta(hours=1))
    assert materially_changed(story, later) == material
    assert joined(story, later, T0)[1] == material

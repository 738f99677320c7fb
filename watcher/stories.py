"""Stories: which reports are one event. Pure decisions, made in the poll's transaction.

    matched item ──choose(facts, candidates)──▶ story (new, joined, or joined with a new revision)

(Routing a story revision to channels is `routing.py`.)

Grouping runs on one clock, the event's: a report's time is its publication time, or its fetch
time when it has none (and it is then *undated*). A report joins the story that fits it best,
scored against each report the story already has (their own facts, never a union that grows;
a later report counts half a signal less than the founding one): two agreeing signals are
needed, from

- **date**: both dated, within 72 hours of each other (the same event type on the same day
  counts one and a half; within a week, half);
- **place**: a place (or transit country) both name: the first place each names (where it
  happened) counts 1, a place one of them names only later (the route, the background) half;
- **count**: the same number of people (within 20 % from 50 people up: "500" and "600" are
  estimates of one wave); one or two count half;
- **title**: near-duplicate titles once numbers are folded (the same headline counts twice);
  titles merely alike count only for reports of a shared event type (alike headlines of a
  border reopening and a return "at Dandong" share their subject, not what happened);
- **names**: a rare proper name both name (a person, an official, a town off the gazetteer);
  a body many reports name (UNHCR, a UN committee, Human Rights Watch) counts half.

Two dated reports further apart than `window` never join; alike titles naming other places do
not count as alike. A shared event type adds half a signal; counts that disagree, and places that
disagree, each take half away (counts COUNTS_APART times apart, a whole one): "600 sent back via
Dandong" on the day of "60 sent back via Dandong" is the same wave with a new count (an update),
while a detention of 8 and another of 10 there need more to join, and "600 sent back from Jilin
and Liaoning" does not join "20 held in Shenyang" on a shared province alone. Only counts of
three or more disagree (one or two people are often part of the larger group another report
counts: "two of the five"), and only places that name towns both (a province or a transit
country is as often a route or background as the scene: "caught in Myanmar" and "held in
Jilin" can be one case).
Ties go to the more recently updated story. The decision depends on the reports, never on the
order of polls within a cycle, except through which report founded a story.

A joined report raises the story's revision (and so a new message) only when the severity
rises, a graver event joins (forced repatriation added to a detention) or the number of people
changes materially; otherwise it is attached and shows up in messages not yet sent, in digests
and on the web page (and routes it brings the story to get its alert: `routing.newly_planned`).
The count is the latest-published report's that gives one (`newer_count`): a report published
earlier, polled late, does not take it back. An outlet's edit of a report is judged by the
same rule (`edit_is_news`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

from rapidfuzz import fuzz

from watcher.config import EVENT_TYPES, SEVERITIES, event_rank
from watcher.extract import PLACE_WORDS, REGIONS, TITLE_END, entities, written_days
from watcher.rules import fold_chinese, is_cjk_text, normalize, publication_day
from watcher.types import Item, MatchRecord

#: The bodies of the multilingual list (as opposed to its named officials): many reports
#: name UNHCR or a UN committee, so sharing one is half a signal.
BODIES = frozenset(
    {
        "UN Committee against Torture",
        "UN Universal Periodic Review",
        "UN Third Committee",
        "UN Human Rights Council",
        "UN Special Rapporteur",
        "UNHCR",
        "OHCHR",
        "UN Commission of Inquiry",
        "CEDAW",
        "Human Rights Watch",
        "Amnesty International",
    }
)

#: Near-duplicate titles: rapidfuzz similarity (0–100) at or above this.
TITLE_SIMILARITY = 82
#: Titles this alike (0–100) are the same headline, a copy or a light rewrite: two signals.
TITLE_SAME = 90
#: Titles this alike (0–100) count as a signal when the two reports share their dates.
TITLE_ALIKE = 62
#: From this many people up, counts within PEOPLE_TOLERANCE of each other are the same event
#: (large counts are estimates: "500여 명" and "600" are one wave)...
PEOPLE_EXACT_BELOW = 50
PEOPLE_TOLERANCE = 0.20
#: ...but a count that moves by more than this is news: a new revision of the story.
MATERIAL_CHANGE = 0.10
#: Counts below this never disagree: one or two people are often part of a larger group.
DISAGREE_FROM = 3
#: Counts this many times apart (20 and 600) disagree twice as much: an estimate or a rising
#: toll moves a count, rarely by this much in one day (60 and 600 of one wave still join when
#: date, place and event agree).
COUNTS_APART = 5
#: Evidence a report needs to join a story (each signal counts 1, a shared event type 0.5).
JOIN_SCORE = 2.0
#: Reports published this close count as the same day (a stronger date signal)...
SAME_DAY = timedelta(hours=24)
#: ...this close as close in time (a full signal)...
CLOSE = timedelta(hours=72)
#: ...and this close as near (half a signal); further apart, within the story window, the
#: date says nothing either way.
NEAR = timedelta(days=7)
#: What a place shared by two reports counts when it is not the first both name.
SIDE_PLACE = 0.5
#: What a shared body (UNHCR, a UN committee) counts, against 1 for a rare proper name.
BODY_WEIGHT = 0.5

#: A story is compared through its first reports' facts, at most this many: the founding
#: report and the first outlets that followed it say what the event is; a wave covered by
#: forty outlets costs no more to join than one covered by eight.
REPORTS_COMPARED = 8
#: A report is compared with at most this many stories: those founded nearest to it on the
#: event clock, within the story window. A report's story is founded close to it (the date is
#: the strongest signal), so a crowded window costs no more than this however long the
#: history: the 17th nearest story of a fortnight is not the one a report is about. With
#: REPORTS_COMPARED, at most 128 comparisons per matched report.
CANDIDATES = 16
#: How many of the days its opening writes out an undated report keeps, in order of mention.
STATED_KEPT = 6
#: A stated day this close to the other report's day counts as a full date signal, this far
#: as half (the days CLOSE and NEAR are, in days).
STATED_CLOSE_DAYS = 3
STATED_NEAR_DAYS = 7

#: Evidence against a later report counts half a signal less than against the founding one,
#: so a story cannot drift by chaining (A like B, B like C, C nothing like A).
LATER_REPORT_PENALTY = 0.5


@dataclass(frozen=True, kw_only=True, slots=True)
class Facts:
    """What the rules said of one report, as stories need it."""

    item_key: str
    source_id: str
    title: str
    #: The event clock: publication time, or fetch time when the report has none.
    at: datetime
    events: frozenset[str]
    severity: str
    #: False when `at` is the fetch time (the report gave no date).
    dated: bool = True
    rules: tuple[str, ...] = ()
    people: int | None = None
    #: The report gave `people` as approximate ("about 600", 600여 명).
    people_approximate: bool = False
    places: tuple[str, ...] = ()
    lang: str | None = None
    tags: tuple[str, ...] = ()
    #: Rare proper names in the report (see `names_in`).
    names: frozenset[str] = frozenset()
    #: For an undated report, the days its opening writes out (`YYYY-MM-DD`, or `--MM-DD`
    #: without a year), at most STATED_KEPT: what dates it (see `stated_days`, `stated_weight`).
    stated: tuple[str, ...] = ()

    def as_json(self) -> dict[str, object]:
        """What a story keeps of each report to compare later ones with."""
        return {
            "title": self.title,
            "at": self.at.isoformat(),
            "dated": self.dated,
            "events": sorted(self.events),
            "people": self.people,
            "people_approximate": self.people_approximate,
            "places": list(self.places),
            "names": sorted(self.names),
            "stated": list(self.stated),
            "lang": self.lang,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object], *, item_key: str = "") -> Facts:
        events = data.get("events") or ()
        places = data.get("places") or ()
        names = data.get("names") or ()
        stated = data.get("stated") or ()
        people = data.get("people")
        lang = data.get("lang")
        assert isinstance(events, list | tuple) and isinstance(places, list | tuple)
        assert isinstance(names, list | tuple) and isinstance(stated, list | tuple)
        return cls(
            item_key=item_key,
            source_id="",
            title=str(data.get("title") or ""),
            at=datetime.fromisoformat(str(data["at"])),
            dated=bool(data.get("dated", True)),
            events=frozenset(str(e) for e in events),
            severity="low",
            people=people if isinstance(people, int) else None,
            people_approximate=data.get("people_approximate") is True,
            places=tuple(str(p) for p in places),
            names=frozenset(str(n) for n in names),
            stated=tuple(str(d) for d in stated),
            lang=lang if isinstance(lang, str) else None,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Story:
    id: int
    events: frozenset[str]
    severity: str
    title: str
    people: int | None
    places: tuple[str, ...]
    #: Processing times: when watcher first saw it and last changed it (routing, group_wait).
    first_seen_at: datetime
    updated_at: datetime
    revision: int
    item_count: int
    #: The event clock of its founding report (what the story window is measured on).
    event_at: datetime | None = None
    #: The facts of its reports, founding report first, to compare a new one with.
    reports: tuple[Facts, ...] = ()
    #: open, or not_relevant when an advocate said so (reports still join it, quietly).
    status: str = "open"
    #: `people` was taken from a report that gave it as approximate ("about 600", 600여 명).
    people_approximate: bool = False
    #: The event clock of the latest-published report that gave a count: an older report
    #: arriving later does not take the count back (see `newer_count`). None: no report
    #: gave one, or they were grouped before facts were kept.
    people_at: datetime | None = None


# --------------------------------------------------------------------------- evidence

_NUMBER = re.compile(r"\d[\d,.]*")
_CAPITALISED = re.compile(r"(?<![\w.'’-])([A-Z][a-z]+(?:[ -][A-Z][a-z]+)*)")
#: Capitalised words that say nothing about which event a report is on.
COMMON_NAMES = frozenset(
    """north south korea korean koreans dprk china chinese beijing seoul pyongyang japan japanese
    united nations states america american u.s us un the a an in on at of for to and but as by
    with from after before over under this that these those it its his her their they he she
    we our you i is are was were be been has have had will would can could may might not no
    yes new old more most some any all many much few first last next other another one two
    three four five six seven eight nine ten monday tuesday wednesday thursday friday saturday
    sunday january february march april may june july august september october november
    december jan feb mar apr jun jul aug sep sept oct nov dec government ministry minister
    foreign affairs unification president police officials official report reports reported
    news press agency committee council commission human rights watch refugee refugees defector
    defectors escapee escapees people rights group groups activist activists source sources
    according however meanwhile also still even only such when where while what who why how
    mr mrs ms dr photo file reuters ap afp yonhap kcna associated international national
    republic democratic asia asian east west world global state department secretary general
    assembly special rapporteur high commissioner office spokesman spokeswoman spokesperson
    lawmakers parliament congress senate korea's china's kim jong un daily radio free voice
    yonhap chosun donga joongang hankyoreh kyunghyang kbs mbc sbs ytn nhk kyodo xinhua reuters
    bloomberg guardian times post herald tribune insider network service province provincial city
    county district prefecture region regional autonomous border river bridge camp centre center
    detention prison police public security bureau embassy consulate church mission christian
    catholic foundation institute university club world federal federation migration
    immigration service services law laws act agency ministry's court tribunal moscow hanoi
    vientiane tokyo washington geneva beijing's russian russians vietnamese lao laotian thai
    mongolian cambodian burmese myanmar's japanese british european""".split()
)


def _title_case(title: str) -> bool:
    """Most of the title's longer words are capitalised ("China Appears to Have Repatriated")."""
    words = [w for w in re.findall(r"[A-Za-z]+", title) if len(w) >= 4]
    return len(words) >= 3 and sum(w[0].isupper() for w in words) >= 0.7 * len(words)


#: How much of a report's text is read for names: its opening, where the event is told.
OPENING = 600


def _opening(text: str) -> str:
    """The first OPENING characters, without a word cut in two at the end ("Kore")."""
    if len(text) <= OPENING:
        return text
    cut = text[:OPENING]
    if text[OPENING].isalnum() and cut[-1:].isalnum():
        head, space, _ = cut.rpartition(" ")
        return head if space else cut
    return cut


def _opening_norm(title: str, text: str) -> str:
    """The title and opening normalised for matching: what names and stated days are read from."""
    return fold_chinese(normalize(f"{title}{TITLE_END}{_opening(text)}"))


def names_in(title: str, text: str = "") -> frozenset[str]:
    """Who a report names: the bodies and officials of the multilingual list (the same in any
    language: 고문방지위 and "Committee against Torture" are one), and rare proper names:
    capitalised words of Latin-script text, not at a sentence start, that are not common in
    this field's news (countries at its centre, outlets, months, titles)."""
    opening = _opening(text)
    out: set[str] = set(entities(_opening_norm(title, text)))
    # A Title Case headline capitalises every word: its capitals say nothing of names.
    parts = (opening,) if _title_case(title) else (title, opening)
    for part in parts:
        for match in _CAPITALISED.finditer(part):
            start = match.start()
            before = part[:start].rstrip()
            if not before or before[-1] in '.!?:"“‘(':
                continue  # a sentence start: capitalised by grammar, not by name
            for word in re.split(r"[ -]", match.group(1)):
                low = word.lower()
                if len(low) >= 3 and low not in COMMON_NAMES and low not in PLACE_WORDS:
                    out.add(low)
    return frozenset(out)


def same_people(a: int | None, b: int | None, tolerance: float = PEOPLE_TOLERANCE) -> bool:
    if a is None or b is None:
        return False
    if max(a, b) < PEOPLE_EXACT_BELOW:
        return a == b
    return abs(a - b) <= tolerance * max(a, b)


@lru_cache(maxsize=4096)
def _title_key(title: str) -> tuple[str, bool]:
    """The title with numbers folded, for near-duplicate comparison, and whether it is
    Korean/Chinese/Japanese (compared by characters). Cached: a story's titles are compared
    with every new report."""
    key = _NUMBER.sub("#", normalize(title))
    cjk = is_cjk_text(key)
    return (key.replace(" ", "") if cjk else key), cjk


def title_similarity(a: str, b: str) -> float:
    """0–100: characters for Korean/Chinese/Japanese titles, word sets for the others;
    0 across scripts (places and counts carry that comparison)."""
    (a, a_cjk), (b, b_cjk) = _title_key(a), _title_key(b)
    if not a or not b or a_cjk != b_cjk:
        return 0.0
    if a_cjk:
        return float(fuzz.ratio(a, b))
    return float(fuzz.token_set_ratio(a, b))


def counts_disagree(a: Facts, b: Facts) -> bool:
    """Both give a count of three or more, and not the same one."""
    if a.people is None or b.people is None or min(a.people, b.people) < DISAGREE_FROM:
        return False
    return not same_people(a.people, b.people)


def places_disagree(a: Facts, b: Facts) -> bool:
    """Both name a town, and the two name no place in common."""
    if not (set(a.places) - REGIONS and set(b.places) - REGIONS):
        return False
    return not set(a.places) & set(b.places)


def evidence(report: Facts, other: Facts, window: timedelta) -> tuple[str, ...]:
    """The signals two reports agree on; () when they cannot be one event."""
    return tuple(name for name, _ in _signals(report, other, window))


def date_weight(report: Facts, other: Facts, window: timedelta) -> float | None:
    """The date signal of two reports: None when both are dated and further apart than
    `window` (they cannot be one event); 0 when either is undated or they are more than
    NEAR apart; otherwise more the closer they are."""
    if not (report.dated and other.dated):
        return 0.0
    gap = abs(report.at - other.at)
    if gap > window:
        return None
    if gap <= SAME_DAY and report.events & other.events:
        return 1.5  # the same kind of event on the same day
    if gap <= CLOSE:
        return 1.0
    if gap <= NEAR:
        return 0.5
    return 0.0


_DAY = re.compile(r"(\d{4}|-)-(\d\d)-(\d\d)$")


def _days(stated: Iterable[str]) -> list[tuple[int | None, int, int]]:
    """(year or None, month, day) of stated days, as `stated_days` writes them (`YYYY-MM-DD`,
    `--MM-DD`); a stored value of any other form is skipped."""
    out = []
    for text in stated:
        found = _DAY.match(text)
        if found:
            year = None if found.group(1) == "-" else int(found.group(1))
            out.append((year, int(found.group(2)), int(found.group(3))))
    return out


def _gap(day: tuple[int | None, int, int], on: date) -> int | None:
    """Days between a stated day and a date; a day stated without a year is read in the year
    that puts it nearest (Dec. 30 against 2 January is three days, not a year)."""
    year, month, number = day
    gaps = []
    for y in (year,) if year is not None else (on.year - 1, on.year, on.year + 1):
        try:
            gaps.append(abs((date(y, month, number) - on).days))
        except ValueError:  # 29 February of a common year
            continue
    return min(gaps, default=None)


def stated_days(title: str, text: str = "") -> tuple[str, ...]:
    """The days an undated report's opening writes out ("on April 28", 10월 9일, 10月9日), at
    most STATED_KEPT: only what the text says, so the daemon and `watcher eval` read the same
    days (a relative date, "on Tuesday", would need the publication time the report lacks)."""
    return written_days(_opening_norm(title, text))[:STATED_KEPT]


def stated_weight(report: Facts, other: Facts) -> float:
    """The date signal when a report is undated: a day its opening writes out against the
    other's publication day (the day where it was published), or, when both are undated, a
    day both write out. Within STATED_CLOSE_DAYS it counts 1, within STATED_NEAR_DAYS half.
    Only agreement counts: a written day far from the other report's is as often background
    ("closed since January 2020") as another event. A dated report's own written days never
    count: they are as often background as the event."""
    if report.dated and other.dated:
        return 0.0
    gaps: list[int] = []
    if report.dated or other.dated:
        undated, that = (other, report) if report.dated else (report, other)
        on = publication_day(that.at, that.lang or "")
        gaps.extend(g for d in _days(undated.stated) if (g := _gap(d, on)) is not None)
    else:
        for mine in _days(report.stated):
            for theirs in _days(other.stated):
                years = {mine[0], theirs[0]} - {None}
                if mine[1:] == theirs[1:] and len(years) <= 1:
                    gaps.append(0)
    if not gaps:
        return 0.0
    nearest = min(gaps)
    if nearest <= STATED_CLOSE_DAYS:
        return 1.0
    return 0.5 if nearest <= STATED_NEAR_DAYS else 0.0


def _signals(report: Facts, other: Facts, window: timedelta) -> list[tuple[str, float]]:
    """(signal, weight) for each agreement; [] when the two cannot be one event."""
    dated = date_weight(report, other, window)
    if dated is None:
        return []
    signals: list[tuple[str, float]] = []
    if dated:
        signals.append(("date", dated))
    else:
        dated = stated_weight(report, other)
        if dated:
            signals.append(("stated date", dated))
    shared_places = set(report.places) & set(other.places)
    if shared_places:
        # The place a report names first is where it happened; the others are often the
        # route or the background ("caught in Vietnam after crossing from Shenyang").
        main = report.places[0] == other.places[0]
        signals.append(("place", 1.0 if main else SIDE_PLACE))
    if same_people(report.people, other.people):
        # "two" or "a refugee" is common; "seven" or "600" is a fingerprint.
        signals.append(("count", 1.0 if (report.people or 0) >= 3 else 0.5))
    shared_names = report.names & other.names
    if shared_names:
        # A rare name is a fingerprint; a body every report in the field names is not.
        signals.append(("names", 1.0 if shared_names - BODIES else BODY_WEIGHT))
    # Near-duplicate titles; on the same days, titles that are merely alike will do.
    needed = TITLE_ALIKE if dated >= 1.0 else TITLE_SIMILARITY
    similarity = title_similarity(report.title, other.title)
    if similarity >= TITLE_SAME and (shared_places or not (report.places and other.places)):
        signals.append(("title", 2.0))  # the same headline: a copy or a rewrite of one report
    elif (
        similarity >= needed
        and (shared_places or not (report.places and other.places))
        and report.events & other.events
    ):
        # Alike headlines of different events are alike in their subject ("North Korea and
        # China … Dandong"), not in what happened: a border reopening is not the return there.
        signals.append(("title", 1.0))
    return signals


def _adjustments(report: Facts, other: Facts) -> list[tuple[str, float]]:
    """What adds to or takes from the signals: a shared event type, counts and places that
    disagree."""
    out = []
    if report.events & other.events:
        out.append(("same event", 0.5))
    if counts_disagree(report, other):
        low, high = sorted((report.people or 0, other.people or 0))
        weight = -1.0 if high >= COUNTS_APART * low else -0.5
        out.append((f"counts disagree ({report.people}, {other.people})", weight))
    if places_disagree(report, other):
        out.append(("places disagree", -0.5))  # Shenyang is not Kunming
    return out


def score(report: Facts, other: Facts, window: timedelta) -> float:
    """The evidence that two reports are one event (JOIN_SCORE or more: they are)."""
    signals = _signals(report, other, window)
    if not signals:
        return 0.0
    return sum(weight for _, weight in (*signals, *_adjustments(report, other)))


def breakdown(report: Facts, other: Facts, window: timedelta) -> tuple[float, tuple[str, ...]]:
    """`score` and, in words, what made it: ("date 1.5", "count 1 (9)", "same event +0.5",
    "places disagree -0.5"), or why the two can never join. For `watcher eval --misses`."""
    signals = _signals(report, other, window)
    if not signals:
        if date_weight(report, other, window) is None:
            days = round(abs(report.at - other.at) / timedelta(days=1), 1)
            limit = round(window / timedelta(days=1), 1)
            return 0.0, (f"{days:g} days apart, beyond the story window ({limit:g} days)",)
        return 0.0, ()
    shared_places = [p for p in report.places if p in other.places]
    detail = {
        "place": ", ".join(shared_places),
        "count": str(report.people),
        "names": ", ".join(sorted(report.names & other.names)),
    }
    parts = [
        f"{name} {weight:g}" + (f" ({detail[name]})" if detail.get(name) else "")
        for name, weight in signals
    ]
    adjustments = _adjustments(report, other)
    parts += [f"{name} {weight:+g}" for name, weight in adjustments]
    return sum(weight for _, weight in (*signals, *adjustments)), tuple(parts)


def fit(report: Facts, story: Story, window: timedelta) -> float:
    """How well a report fits a story: its score against the founding report, or against a
    later report less a half signal (so a story drifts from its first facts only on strong
    evidence: no chaining from A to B to an unrelated C)."""
    if not story.reports:
        return 0.0
    best = score(report, story.reports[0], window)
    for other in story.reports[1:REPORTS_COMPARED]:
        best = max(best, score(report, other, window) - LATER_REPORT_PENALTY)
    return best


def choose(facts: Facts, candidates: Iterable[Story], window: timedelta) -> Story | None:
    """The story the report joins (the best fitting one with enough evidence), or None."""
    best: tuple[float, datetime, int] | None = None
    chosen = None
    for story in candidates:
        score = fit(facts, story, window)
        if score < JOIN_SCORE:
            continue
        key = (score, story.updated_at, story.id)
        if best is None or key > best:
            best, chosen = key, story
    return chosen


def materially_changed(story: Story, facts: Facts) -> bool:
    """Does this report warrant a new message: higher severity, a graver event (the detained
    were sent back: forced repatriation joins a detention story), or a different count
    (from a report published no earlier than the one the story's count is from)?"""
    if SEVERITIES.index(facts.severity) > SEVERITIES.index(story.severity):
        return True
    if _gravest(facts.events) < _gravest(story.events):
        return True
    return _new_count(story, facts)


def newer_count(story: Story, facts: Facts) -> bool:
    """Is the report's count more recent than the story's? The story's count comes from the
    latest-published report that gives one: a report published earlier, however late it
    arrives, is older news ("about 60", then six hours later "90": the 60 arriving last does
    not take the count back). Published at the same time, the larger count wins (an advocate
    would rather check a high figure than miss it), then the exact one of an equal number, so
    the order of arrival does not decide."""
    if facts.people is None:
        return False
    if story.people is None or story.people_at is None:
        return True
    if facts.at != story.people_at:
        return facts.at > story.people_at
    mine = (facts.people, not facts.people_approximate)
    return mine > (story.people, not story.people_approximate)


def _new_count(story: Story, facts: Facts) -> bool:
    """The report brings a newer count that differs materially from the story's."""
    if not newer_count(story, facts):
        return False
    assert facts.people is not None
    return story.people is None or not same_people(facts.people, story.people, MATERIAL_CHANGE)


def edit_is_news(before: Story, after: Story) -> bool:
    """Is a story recomputed after an outlet edited one of its reports news? The rule a
    joining report is held to (`materially_changed`), with the recomputed story as the
    report: higher severity, a graver event, another count ("20여명" edited to "30여명")."""
    recomputed = Facts(
        item_key="",
        source_id="",
        title=after.title,
        at=after.updated_at,
        events=after.events,
        severity=after.severity,
        people=after.people,
        people_approximate=after.people_approximate,
    )
    return materially_changed(replace(before, people_at=None), recomputed)


def _gravest(events: Iterable[str]) -> int:
    """The rank of the gravest shipped event type among `events` (`event_rank`: 0 is forced
    repatriation); past the last one when none is shipped (an operator's own events never
    make a change material by themselves)."""
    return min((event_rank(e)[0] for e in events), default=len(EVENT_TYPES))


def founded(story_id: int, facts: Facts, now: datetime) -> Story:
    """The story a report opens."""
    return Story(
        id=story_id,
        events=facts.events,
        severity=facts.severity,
        title=facts.title,
        people=facts.people,
        people_approximate=facts.people_approximate,
        people_at=facts.at if facts.people is not None else None,
        places=facts.places,
        first_seen_at=now,
        updated_at=now,
        revision=1,
        item_count=1,
        event_at=facts.at,
        reports=(facts,),
    )


def joined(story: Story, facts: Facts, now: datetime) -> tuple[Story, bool]:
    """The story with the report attached, and whether that is a new revision."""
    material = materially_changed(story, facts)
    severity = max(story.severity, facts.severity, key=SEVERITIES.index)
    people, approximate, people_at = story.people, story.people_approximate, story.people_at
    if facts.people is not None:
        confirmed = (
            approximate
            and not facts.people_approximate
            and same_people(facts.people, people, MATERIAL_CHANGE)
        )
        if _new_count(story, facts) or confirmed:
            # a newer count that changed, or the exact figure of what the story gave as
            # approximate ("about 600", then "612", whenever published): a count and its
            # hedge come from one report
            people, approximate = facts.people, facts.people_approximate
        people_at = facts.at if people_at is None else max(people_at, facts.at)
    updated = replace(
        story,
        events=story.events | facts.events,
        severity=severity,
        people=people,
        people_approximate=approximate,
        people_at=people_at,
        # Shown to readers; grouping compares reports, never this growing list.
        places=tuple(dict.fromkeys((*story.places, *facts.places))),
        updated_at=now,
        revision=story.revision + (1 if material else 0),
        item_count=story.item_count + 1,
        reports=(*story.reports, facts),
    )
    return updated, material


@dataclass
class Grouping:
    """Stories in memory: what `watcher eval --stories` replays reports through, with the
    same `choose` and `joined` the daemon uses in the database."""

    window: timedelta
    stories: dict[int, Story] = field(default_factory=dict)
    assigned: dict[str, int] = field(default_factory=dict)

    def add(self, facts: Facts, now: datetime) -> Story:
        lo, hi = facts.at - self.window, facts.at + self.window
        if facts.dated:
            # As the database reads them: the CANDIDATES founded nearest within the window.
            near = [s for s in self.stories.values() if s.event_at and lo <= s.event_at <= hi]
            near.sort(key=lambda s: (abs((s.event_at or facts.at) - facts.at), s.id))
            candidates = near[:CANDIDATES]
        else:
            # An undated report of a replayed file has no fetch time of its own (the daemon
            # compares it within the window of when it was fetched): every story is a candidate.
            candidates = list(self.stories.values())
        story = choose(facts, candidates, self.window)
        if story is None:
            story = founded(len(self.stories) + 1, facts, now)
        else:
            story, _ = joined(story, facts, now)
        self.stories[story.id] = story
        self.assigned[facts.item_key] = story.id
        return story


def why_lines(found: Sequence[Any], item_order: Sequence[int]) -> list[str]:
    """One line per rule that fired on the story's reports, saying why with the words that
    fired ("forced-repatriation: 강제북송 (sent back) near 탈북민 (North Korean escapees)"),
    taken from the earliest report the rule fired on."""
    rank = {item_id: n for n, item_id in enumerate(item_order)}
    lines: dict[str, str] = {}
    for m in sorted(found, key=lambda m: (rank.get(m.item_id, len(rank)), m.rule_id)):
        if m.rule_id not in lines:
            lines[m.rule_id] = f"{m.rule_id}: {m.why}" if m.why else m.rule_id
    return [lines[r] for r in sorted(lines)]


def when(item: Item) -> datetime:
    """The event clock of a report: when it was published, else when it was fetched."""
    return item.published_at or item.fetched_at


def facts_of(item: Item, matches: Sequence[MatchRecord], tags: tuple[str, ...]) -> Facts:
    """What grouping compares of one matched report (its stored matches, its source's tags)."""
    first = matches[0]
    return Facts(
        item_key=item.key,
        source_id=item.source_id,
        title=item.title,
        at=when(item),
        dated=item.published_at is not None,
        events=frozenset(m.event for m in matches),
        severity=max((m.severity for m in matches), key=SEVERITIES.index),
        rules=tuple(m.rule_id for m in matches),
        people=first.people,
        people_approximate=first.people_approximate,
        places=first.places,
        lang=item.lang,
        tags=tags,
        names=names_in(item.title, item.text),
        stated=() if item.published_at else stated_days(item.title, item.text),
    )

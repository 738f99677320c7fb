"""Stories and routing: pure decisions, made in the poll's transaction by the store.

    matched item ──join_or_new(candidates)──▶ story (new, joined, or joined with a new revision)
    story ──routes_for(config routes)──▶ (route, channel, due time) deliveries

A report joins a story when they share an event type, are within the story window, and are
alike: a shared place, people counts within ±25 %, or near-duplicate titles (rapidfuzz) whose
facts do not disagree (titles alike but places or counts different are two events).
A joined report raises the story's revision (and so a new message) only when the severity
rises or the number of people changes materially; otherwise it is attached and shows up in
messages not yet sent, in digests and on the web page.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from rapidfuzz import fuzz

from watcher.config import SEVERITIES, Route
from watcher.rules import is_cjk_text, normalize

#: Near-duplicate titles: rapidfuzz similarity (0–100) at or above this.
TITLE_SIMILARITY = 82
#: People counts within this ratio of each other are "the same number".
PEOPLE_TOLERANCE = 0.25


@dataclass(frozen=True, kw_only=True, slots=True)
class Facts:
    """What the rules said of one item, as stories need it."""

    item_key: str
    source_id: str
    title: str
    at: datetime
    events: frozenset[str]
    severity: str
    rules: tuple[str, ...] = ()
    people: int | None = None
    places: tuple[str, ...] = ()
    lang: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class Story:
    id: int
    events: frozenset[str]
    severity: str
    title: str
    people: int | None
    places: tuple[str, ...]
    first_seen_at: datetime
    updated_at: datetime
    revision: int
    item_count: int
    #: Titles of its reports, to compare a new one with.
    titles: tuple[str, ...] = ()


def same_people(a: int | None, b: int | None) -> bool:
    if a is None or b is None:
        return False
    return abs(a - b) <= PEOPLE_TOLERANCE * max(a, b)


def similar_titles(a: str, b: str) -> bool:
    a, b = normalize(a), normalize(b)
    if not a or not b:
        return False
    if is_cjk_text(a) or is_cjk_text(b):
        score = fuzz.ratio(a.replace(" ", ""), b.replace(" ", ""))
    else:
        score = fuzz.token_set_ratio(a, b)
    return score >= TITLE_SIMILARITY


def belongs(facts: Facts, story: Story, window: timedelta) -> bool:
    if not facts.events & story.events:
        return False
    if abs(facts.at - story.updated_at) > window and abs(facts.at - story.first_seen_at) > window:
        return False
    if set(facts.places) & set(story.places):
        return True
    if same_people(facts.people, story.people):
        return True
    # Alike titles join, unless the facts disagree: other places, or another count.
    if facts.places and story.places:
        return False
    if facts.people is not None and story.people is not None:
        return False
    return any(similar_titles(facts.title, title) for title in story.titles)


def choose(facts: Facts, candidates: Iterable[Story], window: timedelta) -> Story | None:
    """The story the report joins (the most recently updated that fits), or None."""
    fitting = [s for s in candidates if belongs(facts, s, window)]
    return max(fitting, key=lambda s: (s.updated_at, s.id)) if fitting else None


def materially_changed(story: Story, facts: Facts) -> bool:
    """Does this report warrant a new message: higher severity, or a different count?"""
    if SEVERITIES.index(facts.severity) > SEVERITIES.index(story.severity):
        return True
    if facts.people is None:
        return False
    return story.people is None or not same_people(facts.people, story.people)


def joined(story: Story, facts: Facts, now: datetime) -> tuple[Story, bool]:
    """The story with the report attached, and whether that is a new revision."""
    material = materially_changed(story, facts)
    severity = max(story.severity, facts.severity, key=SEVERITIES.index)
    people = facts.people if material and facts.people is not None else story.people
    updated = replace(
        story,
        events=story.events | facts.events,
        severity=severity,
        people=people,
        places=tuple(dict.fromkeys((*story.places, *facts.places))),
        updated_at=now,
        revision=story.revision + (1 if material else 0),
        item_count=story.item_count + 1,
        titles=(*story.titles, facts.title),
    )
    return updated, material


# --------------------------------------------------------------------------- routing


@dataclass(frozen=True, kw_only=True, slots=True)
class Planned:
    """One delivery to write to the outbox."""

    route: str
    channel: str
    kind: str
    due_at: datetime
    seq: int = 0


def route_matches(route: Route, story: Story, tags: set[str], langs: set[str]) -> bool:
    if route.ops:
        return False
    if route.events and not (set(route.events) & story.events):
        return False
    if SEVERITIES.index(story.severity) < SEVERITIES.index(route.min_severity):
        return False
    if route.tags and not (set(route.tags) & tags):
        return False
    return not (route.langs and not (set(route.langs) & langs))


def plan(
    routes: Sequence[Route],
    story: Story,
    *,
    kind: str,
    tags: set[str],
    langs: set[str],
    now: datetime,
    default_tz: str,
) -> list[Planned]:
    """Deliveries for a story's new revision: walk the routes in order (Alertmanager style)."""
    out = []
    for index, route in enumerate(routes):
        if not route_matches(route, story, tags, langs):
            continue
        if route.mode == "digest":
            due = next_digest(route, now, default_tz)
            planned_kind = "digest"
        else:
            due = max(story.first_seen_at + route.group_wait, now) if kind == "alert" else now
            planned_kind = kind
        out += [
            Planned(route=route.key(index), channel=channel, kind=planned_kind, due_at=due)
            for channel in route.channels
        ]
        if not route.continue_:
            break
    return out


def next_digest(route: Route, now: datetime, default_tz: str) -> datetime:
    """The next time the route's digest goes out, after `now`."""
    from watcher.config import WEEKDAYS, Digest

    digest = route.digest or Digest()
    zone = ZoneInfo(route.timezone or default_tz)
    hour, minute = (int(x) for x in digest.at.split(":"))
    local = now.astimezone(zone)
    for days_ahead in range(0, 8):
        day = (local + timedelta(days=days_ahead)).date()
        candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
        if candidate <= local:
            continue
        if digest.days and WEEKDAYS[candidate.weekday()] not in digest.days:
            continue
        return candidate.astimezone(now.tzinfo)
    raise AssertionError("a weekly schedule always has a next time")  # pragma: no cover


# --------------------------------------------------------------------------- silences

SILENCE_KEYS = ("source", "event", "severity", "rule", "tag", "lang", "route", "channel", "story")


def parse_matchers(texts: Sequence[str]) -> dict[str, str]:
    """`source=dailynk-*` … → {"source": "dailynk-*"}; ValueError with what is wrong."""
    out: dict[str, str] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise ValueError(f"expected KEY=VALUE like source=dailynk-ko, got {text!r}")
        if key not in SILENCE_KEYS:
            raise ValueError(f"unknown key {key!r} (expected one of: {', '.join(SILENCE_KEYS)})")
        out[key] = value
    if not out:
        raise ValueError("a silence needs at least one --match KEY=VALUE")
    return out


def silenced_by(matchers: Mapping[str, str], labels: Mapping[str, Iterable[str]]) -> bool:
    """Every matcher must match one of the label's values (shell-style wildcards)."""
    for key, pattern in matchers.items():
        values = labels.get(key, ())
        if not any(fnmatch.fnmatchcase(str(v).lower(), pattern.lower()) for v in values):
            return False
    return True

"""Routing and silences: which routes and channels a story revision goes to and when, and
which silences mute a delivery. Pure decisions over frozen values; the clock is an argument.

    story revision ──plan(routes, now)──▶ [Planned] (route, channel, kind, due time)
    delivery labels ──silenced_by(matchers)──▶ muted or not

Routes are walked in order, as in Alertmanager: every matching route takes the story until one
without `continue` stops the walk; a digest route holds it until its next digest time.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from watcher.config import SEVERITIES, Config, Route
from watcher.config.loading import Names
from watcher.stories import Story, when
from watcher.types import Item

#: Messages that say a correction happened (`watcher story mark`, `undo`): each goes at once,
#: on digest routes too (an advocate may be forwarding the alert now), and only to channels
#: that were told of the story (`store.stories._insert_deliveries`).
NOTICES = ("retraction", "reinstated")


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
        if route.mode == "digest" and kind not in NOTICES:
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


def newly_planned(
    routes: Sequence[Route],
    before: Story,
    after: Story,
    *,
    labels_before: tuple[set[str], set[str]],
    labels_after: tuple[set[str], set[str]],
    now: datetime,
    default_tz: str,
) -> list[Planned]:
    """The story's alert for the routes it goes to only since a report joined it quietly
    (no new revision) with an event type, a language or a tag it lacked: a UN statement
    joining a repatriation story brings it to the `events: [un_action]` route, a Korean
    report to the `langs: [ko]` one. `labels_*` are (tags, languages) of its reports without
    and with the new one. Which channels were already told is the outbox's to say
    (`store.stories._insert_deliveries`)."""
    tags, langs = labels_before
    had = {
        p.route
        for p in plan(
            routes, before, kind="alert", tags=tags, langs=langs, now=now, default_tz=default_tz
        )
    }
    tags, langs = labels_after
    return [
        p
        for p in plan(
            routes, after, kind="alert", tags=tags, langs=langs, now=now, default_tz=default_tz
        )
        if p.route not in had
    ]


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


def silence_problems(matchers: Mapping[str, str], names: Names) -> list[str]:
    """One line per matcher that can match nothing in this configuration (a silence that mutes
    nothing is a typo): `source=nosuch`, `tag=medai`, a wildcard matching no name.

    Names are matched as `silenced_by` matches them (wildcards, any case). Stories are numbers
    kept in the database, so `story` is only checked to be one."""
    out = []
    for key, pattern in matchers.items():
        wildcard = any(c in pattern for c in "*?[")
        if key == "story":
            if not wildcard and not pattern.isdigit():
                out.append(f"story={pattern}: expected a story number like 42")
            continue
        known = names.values(key)
        if any(fnmatch.fnmatchcase(v.lower(), pattern.lower()) for v in known):
            continue
        ops = [r for r in names.ops_routes if fnmatch.fnmatchcase(r.lower(), pattern.lower())]
        if key == "route" and ops:
            why = f"{ops[0]!r} is an ops route: silences mute stories, not operator notices"
        elif wildcard:
            shown = ", ".join(known[:12]) + (", …" if len(known) > 12 else "")
            why = f"matches no {key} ({shown or 'there are none'})"
        else:
            why = names.problem(key, pattern)
        out.append(f"{key}={pattern}: {why}")
    return out


def silenced_by(matchers: Mapping[str, str], labels: Mapping[str, Iterable[str]]) -> bool:
    """Every matcher must match one of the label's values (shell-style wildcards)."""
    for key, pattern in matchers.items():
        values = labels.get(key, ())
        if not any(fnmatch.fnmatchcase(str(v).lower(), pattern.lower()) for v in values):
            return False
    return True


def ops_targets(routes: Sequence[Route]) -> list[tuple[str, str]]:
    """(route key, channel) of every channel of every ops route, in file order."""
    return [
        (route.key(index), channel)
        for index, route in enumerate(routes)
        if route.ops
        for channel in route.channels
    ]


def nobody_hears(config: Config) -> list[str]:
    """Warnings for a configuration in which stories or operator notices reach no one."""
    out = []
    stories = [route for route in config.routes if not route.ops]
    enabled = {c.id for c in config.channels if c.enabled}
    if not config.channels:
        out.append("no channels and no routes: no alert will ever be sent (see docs/alerts.md)")
    elif not stories:
        out.append("no route sends stories: no alert will ever be sent (see docs/alerts.md)")
    elif not any(set(route.channels) & enabled for route in stories):
        out.append(
            "every channel of the story routes is disabled: no alert will be sent "
            "(see docs/alerts.md)"
        )
    if not any(route.ops for route in config.routes):
        out.append(
            "no ops route: nobody hears when a source breaks or goes quiet, or a delivery "
            "fails (add a route with `ops: true`)"
        )
    return out


def last_slot(at: str, tz: str, now: datetime) -> datetime:
    """The latest `at` (HH:MM in `tz`) at or before `now` (a daily slot, e.g. the heartbeat)."""
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    hour, minute = (int(x) for x in at.split(":"))
    slot = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if slot > local:
        slot = (local - timedelta(days=1)).replace(
            hour=hour, minute=minute, second=0, microsecond=0
        )
    return slot.astimezone(now.tzinfo)


@dataclass(frozen=True)
class Alerting:
    """The alerting policy of one configuration: routes, story window, the age limit.

    `store.stories.write_stories` applies it in the poll's transaction."""

    routes: tuple[Route, ...]
    window: timedelta
    max_age: timedelta
    timezone: str
    tags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Config) -> Alerting:
        return cls(
            routes=config.routes,
            window=config.settings.story_window,
            max_age=config.settings.max_alert_age,
            timezone=config.settings.timezone,
            tags={s.id: s.tags for s in config.sources},
        )

    def alertable(self, item: Item, now: datetime) -> bool:
        """Baseline backlog never alerts, nor does news older than max_alert_age."""
        return not item.baseline and now - when(item) <= self.max_age

"""Source health: whether a source still sees, and if not, why, in one line an operator can act on.

A monitor that quietly stops seeing is worse than none: advocates read silence as "nothing
happened". So a source is unhealthy not only when it fails, but when it answers and sees
nothing:

    failing   it failed `failure_threshold` polls in a row (the last error says why)
    blocked   it answers a bot challenge or a login page instead of news
    empty     it has never yielded an item in `empty_polls` successful polls
    broken    most of the items of its last poll lack a title, a link or a date
    moved     a permanent redirect (301/308) leads elsewhere: the new address is given
    stale     its last new item was first seen longer ago than it usually goes quiet; or,
              while it has brought new items on one poll only, its newest item was
              published that long ago (a source added while already frozen is stale from
              its first polls, but one that keeps adding back-dated items is not stale)

Pure: values in, values out; the clock is an argument. `store.sources` keeps the inputs and
the assessed health (so successive `run --once` calls add up); `pipeline.check_health` applies
`assess`, keeps what `settled` says and queues one ops notice per change, recovery included.
A problem is kept, and told, at once; a recovery only after `RECOVERY_POLLS` clean polls in a
row, so that a problem that comes and goes is one episode and one message. Staleness alone
ends at once, on the poll that stores a new item dated within the limit: fresh news is no
intermittent symptom but proof the source works.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from watcher.items import future_date
from watcher.types import Item, SourceState

#: The problems, most urgent first (the first that applies is the one reported).
PROBLEMS = ("failing", "blocked", "empty", "broken", "moved", "stale")

#: How a fetch or a poll names a bot challenge or a login page (health reads it back).
BLOCKED = "blocked:"

#: Staleness: a source is stale after `STALE_FACTOR` times its median gap between polls that
#: brought something new, never sooner than `STALE_FLOOR`; `STALE_DEFAULT` until it has
#: `STALE_HISTORY` gaps of history.
STALE_FACTOR = 10
STALE_FLOOR = timedelta(days=3)
STALE_DEFAULT = timedelta(days=14)
STALE_HISTORY = 5
#: Hysteresis: an unhealthy source is told recovered only after `RECOVERY_POLLS` polls in a
#: row found nothing wrong. A challenge, redirect or broken page that comes and goes on
#: alternate polls is then one episode: one "unhealthy" message, and one "recovered" at its
#: end. Counted in polls, not time, so that it scales with the source's interval (three polls
#: of a daily source are three days; of a 5-minute one, a quarter of an hour): an intermittent
#: block seldom spares three polls in a row, and a source that has recovered is not shown
#: unhealthy for long after.
RECOVERY_POLLS = 3

#: A publication date further ahead than this is a wrong date (a year mistyped), not news:
#: it does not count as the source's newest, or it would hide a frozen feed for years.
FUTURE_SLACK = timedelta(days=2)


@dataclass(frozen=True, kw_only=True, slots=True)
class Health:
    #: ok | disabled | new (never polled) | one of PROBLEMS
    status: str
    reason: str = ""

    @property
    def problem(self) -> bool:
        return self.status in PROBLEMS

    @property
    def line(self) -> str:
        """`status: reason`, or the status alone."""
        return f"{self.status}: {self.reason}" if self.reason else self.status


OK = Health(status="ok")


def stored(state: SourceState | None) -> Health:
    """The health last assessed and kept for the source."""
    if state is None or not state.health:
        return OK
    return Health(status=state.health, reason=state.health_reason or "")


def current(state: SourceState | None, *, enabled: bool) -> Health:
    """What every view shows (`sources list`, the sources page): the health kept after the
    last poll, `disabled`, `new` (never polled), or `retrying` (failed, below the threshold)."""
    if not enabled:
        return Health(status="disabled")
    if state is None or state.last_polled_at is None:
        return Health(status="new", reason="never polled")
    if state.health:
        return stored(state)
    if state.consecutive_failures:
        # Below failure_threshold: not yet unhealthy (the ops routes have heard nothing).
        return Health(
            status=f"retrying ({state.consecutive_failures})", reason=state.last_error or ""
        )
    return OK


def assess(
    state: SourceState | None,
    *,
    enabled: bool,
    now: datetime,
    failure_threshold: int,
    empty_polls: int,
    stale_after: timedelta,
    keeps_adding: bool = False,
) -> Health:
    """The source's health now, from its stored state. `keeps_adding`: the source has stored
    new items on more than one poll; then it is judged by when its last new item came, not by
    publication dates (a listing that posts documents dated weeks back is alive)."""
    if not enabled:
        return Health(status="disabled")
    if state is None or state.last_polled_at is None:
        return Health(status="new")
    error = state.last_error or ""
    if state.consecutive_failures and error.startswith(BLOCKED):
        return Health(status="blocked", reason=error.removeprefix(BLOCKED).strip())
    if state.consecutive_failures >= failure_threshold:
        return Health(
            status="failing",
            reason=f"{state.consecutive_failures} failures in a row; last: {error}",
        )
    if state.items_seen_at is None and state.ok_polls >= empty_polls:
        return Health(
            status="empty",
            reason=f"parsed nothing in {state.ok_polls} polls: check the address and selectors",
        )
    if state.poll_problem:
        return Health(status="broken", reason=state.poll_problem)
    if state.moved_to:
        return Health(
            status="moved",
            reason=f"permanently redirected to {state.moved_to} (put it in sources.yaml)",
        )
    newest = state.newest_published_at
    if state.ok_polls and newest is not None and now - newest > stale_after and not keeps_adding:
        return Health(
            status="stale",
            reason=f"newest item published {newest:%Y-%m-%d}, {_days(now - newest)} ago; "
            f"expected within {_days(stale_after)}",
        )
    since = state.last_new_at or state.created_at
    if state.ok_polls and since is not None and now - since > stale_after:
        what = "no new item" if state.last_new_at else "no item at all"
        return Health(
            status="stale",
            reason=f"{what} since {since:%Y-%m-%d %H:%M} UTC ({_days(now - since)}); "
            f"expected within {_days(stale_after)}",
        )
    return OK


@dataclass(frozen=True, kw_only=True, slots=True)
class Settled:
    """The health to keep after an assessment, and the recovery counts to keep with it."""

    health: Health
    #: Polls in a row that found nothing wrong, while the source is still unhealthy.
    clean_polls: int = 0


def settled(
    kept: Health,
    new: Health,
    *,
    failures: int,
    clean_polls: int,
    fresh: bool = False,
) -> Settled:
    """What to keep when the source was `kept` and is assessed `new` now (`failures`: its
    failed polls in a row): a problem at once, but a recovery only once it has held for
    `RECOVERY_POLLS` polls; until then the problem is kept, and a problem of the same kind
    coming back is the same episode (nothing new to tell).

    `fresh`: the last poll stored a new item dated within the staleness limit (or undated).
    Staleness says the news is old, and a fresh item disproves it: a stale source recovers
    on that poll (a failure, block or breakage still waits for `RECOVERY_POLLS`)."""
    if new.problem:
        return Settled(health=new)
    if not kept.problem or new.status != "ok":
        return Settled(health=new)  # healthy already, or disabled: at once
    if kept.status == "stale" and fresh:
        return Settled(health=new)
    if failures:  # a failed poll below failure_threshold is not a clean one
        return Settled(health=kept)
    clean = clean_polls + 1
    if clean >= RECOVERY_POLLS:
        return Settled(health=new)
    return Settled(health=kept, clean_polls=clean)


def stale_limit(configured: timedelta | None, new_item_times: Sequence[datetime]) -> timedelta:
    """How long the source may go without a new item: as configured, else `STALE_FACTOR` times
    its median gap between polls that brought something new (at least `STALE_FLOOR`), else
    `STALE_DEFAULT` while there is too little history."""
    if configured is not None:
        return configured
    times = sorted(set(new_item_times))
    gaps = [(b - a).total_seconds() for a, b in pairwise(times)]
    if len(gaps) < STALE_HISTORY:
        return STALE_DEFAULT
    return max(STALE_FLOOR, timedelta(seconds=statistics.median(gaps) * STALE_FACTOR))


def newest_published(items: Sequence[Item], now: datetime) -> datetime | None:
    """The newest publication date among `items` (those dated more than `FUTURE_SLACK` ahead
    of `now` left out, and those whose date given was after their fetch: their fetch time
    says nothing of the news' age); None when none is dated."""
    return max(
        (
            i.published_at
            for i in items
            if i.published_at and i.published_at <= now + FUTURE_SLACK and not future_date(i)
        ),
        default=None,
    )


def item_problem(items: Sequence[Item], *, dated: bool) -> str | None:
    """'items look broken: …' when most items lack a title or a link (or a date, when the
    source's format promises one); None when most look whole."""
    if not items:
        return None
    missing = {
        # a parsed item without a title carries a placeholder, and says so
        "a title": sum(1 for i in items if i.untitled or not i.title.strip()),
        "a link": sum(1 for i in items if not i.url),
    }
    if dated:
        missing["a date"] = sum(1 for i in items if i.published_at is None)
    worst = max(missing, key=lambda k: missing[k])
    if missing[worst] * 2 <= len(items):
        return None
    return (
        f"items look broken: {missing[worst]} of {len(items)} lack {worst} "
        "(a selector or field mapping no longer fits)"
    )


def skip_problem(kept: int, skipped: Sequence[str]) -> str | None:
    """'items look broken: …' when more entries were unreadable than read."""
    if len(skipped) <= kept:
        return None
    return (
        f"items look broken: {len(skipped)} of {kept + len(skipped)} entries could not be read "
        f"(first: {skipped[0]})"
    )


#: How a poll names article pages that mostly fail (`article_problem`).
ARTICLES_FAILING = "article pages failing:"


def article_problem(errors: Sequence[str], tried: int) -> str | None:
    """'article pages failing: 4 of 5 blocked (Cloudflare); …' when most of the article pages
    a poll of a `fetch_article` source tried failed (for such a source the article is the
    news: its listing titles often say nothing); None when most arrived."""
    if not tried or len(errors) * 2 <= tried:
        return None
    kinds = Counter(_failure_kind(e) for e in errors)
    kind, _ = kinds.most_common(1)[0]
    return (
        f"{ARTICLES_FAILING} {len(errors)} of {tried} {kind}; their items keep the listing's "
        "text and are tried again on later polls"
    )


def _failure_kind(error: str) -> str:
    """A fetch error in a few words: `blocked (Cloudflare)`, `HTTP 403 Forbidden`, `timed out`."""
    if error.startswith(BLOCKED):
        who = " (Cloudflare)" if "(Cloudflare)" in error else ""
        what = "a login page" if "login page" in error else "blocked"
        return f"{what}{who}" if what == "blocked" else f"blocked ({what})"
    if error.startswith("HTTP "):
        return error.split(";")[0].split(" (after")[0]
    if error.startswith(("timed out", "no complete response")):
        return "timed out"
    return f"failed ({error.split(':')[0][:60]})"


_CHALLENGE = re.compile(
    rb"challenge-platform|cf-chl-|"
    rb"<title>\s*(just a moment\.\.\.|attention required!)[^<]{0,40}</title>|"
    rb"captcha-delivery\.com|_incapsula_resource|px-captcha|"
    rb"<title>[^<]{0,40}(access denied|bot verification|are you a robot)",
    re.IGNORECASE,
)
_LOGIN = re.compile(rb"<input[^>]+type=[\"']?password", re.IGNORECASE)


def blocked_page(status: int, headers: Mapping[str, str], head: bytes) -> str | None:
    """`blocked: …` when a response is a bot challenge rather than content (from its headers
    and first bytes); None otherwise."""
    if headers.get("cf-mitigated", "").lower() == "challenge" or _CHALLENGE.search(head):
        server = headers.get("server", "")
        who = " (Cloudflare)" if "cloudflare" in server.lower() or "cf-ray" in headers else ""
        return (
            f"{BLOCKED} a bot challenge page{who}, HTTP {status}: the site refuses automated "
            "clients from this address; try its feed or another address"
        )
    return None


def login_page(head: bytes) -> str | None:
    """`blocked: …` for a page that asks for a password (checked only when nothing parsed)."""
    if _LOGIN.search(head):
        return f"{BLOCKED} a login page: the address needs an account; use a public one"
    return None


def notice(source_id: str, name: str, old: Health, new: Health) -> tuple[str, str] | None:
    """The ops message (subject, body) for a change of health, or None when nothing to tell."""
    # The same problem in new words (a count went up) was told already.
    if new.problem and (not old.problem or old.status != new.status):
        return (
            f"watcher: source {source_id} is unhealthy ({new.status})",
            f"{name} ({source_id}): {new.reason}\nCheck it with: watcher sources test {source_id}",
        )
    if old.problem and not new.problem and new.status == "ok":
        return (
            f"watcher: source {source_id} recovered",
            f"{name} ({source_id}) works again (was {old.status}: {old.reason}).",
        )
    return None


def heartbeat(
    day: str,
    shown: Sequence[tuple[str, Health]],
    *,
    items: int,
    stories: int,
    failed: int,
) -> tuple[str, str]:
    """The daily ops summary: (subject, body). `shown`: (source id, health) of each source."""
    counts: dict[str, int] = {}
    for _, h in shown:
        key = h.status if h.problem else ("ok" if h.status == "ok" else "other")
        counts[key] = counts.get(key, 0) + 1
    problems = [(sid, h) for sid, h in shown if h.problem]
    lines = [
        f"sources: {counts.get('ok', 0)} ok, {len(problems)} unhealthy"
        + "".join(f", {n} {k}" for k, n in sorted(counts.items()) if k not in ("ok", "other")),
        f"last 24 h: {items} new items, {stories} new stories, {failed} failed deliveries",
    ]
    lines += [f"  {sid}: {h.line}" for sid, h in problems]
    return f"watcher: daily heartbeat {day}", "\n".join(lines)


def _days(delta: timedelta) -> str:
    days = delta.total_seconds() / 86400
    if days >= 1:
        return f"{days:.0f} day{'s' if round(days) != 1 else ''}"
    return f"{delta.total_seconds() / 3600:.0f} h"

"""The delivery worker: sends what the outbox holds, through apprise, and records every attempt.

At-least-once: a delivery is marked sent only after apprise says so, in the same transaction
as its attempt; a crash between the two can repeat that one message once, never lose it. A
send whose outcome cannot be recorded (the database went away) is kept in memory and recorded
before anything else is claimed or sent.

Each channel has its own queue: one slow or failing channel never holds another. An attempt
ends one of four ways:

- *sent*;
- *unreachable* (no connection, a 5xx or 429 answer): the channel is marked down and its whole
  queue waits, in order, for the channel's next try (backing off from `delivery_backoff` up to
  `delivery_max_backoff`); the first message that gets through lets the rest follow at once.
  Messages wait until their route's `give_up_after` (3 days), then expire; the ops routes hear
  when a channel's messages are `delivery_late_after` late, when it is back, and what expired;
- *failed* (the service answered and refused the message: a 4xx, an SMTP 5xx reply): retried
  on its own until `delivery_attempts`, then failed and reported to the ops routes;
- *uncertain* (a timeout, a mail server that cut the line mid-message: the message may
  have arrived): the channel waits as when unreachable, and the message is tried once more,
  then left alone and the ops routes told.

A 429 (the service limits our rate) waits at least what it asks, else RATE_LIMIT_WAIT. Each
send runs in a thread of its own; a channel whose previous send still runs (we stopped
waiting, it did not stop) gets no new one until it ends.
"""

from __future__ import annotations

import asyncio
import contextvars
import difflib
import hashlib
import logging
import random
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from watcher import log as logsetup
from watcher.clock import crash_point, utcnow
from watcher.config import Config, Route, format_duration
from watcher.routing import next_digest, ops_targets, silenced_by
from watcher.store import Store, is_database_error
from watcher.store.outbox import Outbox, Recorded
from watcher.types import ChannelStatus, Delivery, Message, Told

log = logging.getLogger(__name__)

_SWEEP_EVERY = timedelta(seconds=10)


@dataclass(frozen=True, kw_only=True, slots=True)
class SendResult:
    #: sent | failed (refused by the service) | unreachable | uncertain (a timeout: the
    #: message may have arrived)
    outcome: str
    error: str | None = None
    elapsed: float = 0.0
    #: Seconds the service asked us to wait before the next try (it limits our rate)
    retry_after: float | None = None


Sender = Callable[[str, Message, float], SendResult]

#: Schemes apprise sends over SMTP: one socket timeout (`cto`) covers their whole session.
_MAIL_SCHEMES = ("mailto", "mailtos")

#: The targets of a multi-target URL (several recipients, Telegram chats, Slack channels)
#: that took the message in an earlier attempt of the same delivery: apprise skips them.
#: Set by the Deliverer around each send; apprise_send hands it to apprise.
accepted_targets: contextvars.ContextVar[set[Any] | None] = contextvars.ContextVar(
    "watcher_accepted_targets", default=None
)


def _with_read_timeout(url: str, timeout: float) -> str:
    """Let apprise's plugin wait longer than we do, unless the URL says otherwise: then a slow
    service ends in our timeout (uncertain), not in a socket timeout of its own that its
    plugins report as a generic failure. For HTTP that is the read timeout (`rto`); for mail
    the session's one socket timeout (`cto`, 15 s by default: a server that answers the end of
    DATA after 17 s got a copy on every attempt)."""
    extra = []
    if "rto=" not in url:
        extra.append(f"rto={timeout + 5:g}")
    scheme = url.partition("://")[0].lower()
    if scheme in _MAIL_SCHEMES and "cto=" not in url:
        extra.append(f"cto={timeout + 5:g}")
    if not extra:
        return url
    return f"{url}{'&' if '?' in url else '?'}{'&'.join(extra)}"


def unreadable_channels(config: Config) -> list[tuple[int, str]]:
    """(index, what is wrong) for each enabled channel whose URL apprise cannot read (an
    unknown scheme, `mailto//` for `mailto://`): found when the file is checked, not when the
    first alert fails. Nothing is sent; the URL is not shown (it may carry a secret)."""
    channels = [(i, c) for i, c in enumerate(config.channels) if c.enabled]
    if not channels:
        return []  # and apprise (a fifth of a second to import) stays unloaded
    import apprise

    known = set(apprise.NotificationManager().schemas())  # type: ignore[no-untyped-call]
    out = []
    # apprise's own complaint would be a second, vaguer line: dropped, for this thread only (a
    # send in another thread reads its errors from the same logger)
    apprise_log = logging.getLogger("apprise")
    quiet = _ThisThreadOnly()
    apprise_log.addFilter(quiet)
    try:
        for index, channel in channels:
            scheme, sep, _ = channel.url.partition("://")
            if not sep:
                out.append(
                    (
                        index,
                        "not an apprise URL: expected SCHEME://… (mailto://, "
                        "slack://, tgram://, json://…)",
                    )
                )
            elif scheme.lower() not in known:
                close = difflib.get_close_matches(scheme.lower(), sorted(known), 1, 0.6)
                hint = f"did you mean {close[0]!r}?" if close else "see apprise's list of services"
                out.append((index, f"apprise knows no scheme {scheme!r} ({hint})"))
            elif not apprise.Apprise().add(channel.url):
                out.append(
                    (
                        index,
                        f"apprise cannot read this {scheme}:// URL (see apprise's "
                        f"page for {scheme}:// on what it needs)",
                    )
                )
    finally:
        apprise_log.removeFilter(quiet)
    return out


class _ThisThreadOnly(logging.Filter):
    """Drops the records logged by the thread that made it."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self.thread


#: apprise's notification type by a message's severity: services that show it (Slack and
#: Discord colours, ntfy tags, Pushover and Gotify icons) tell a critical story from a routine one.
NOTIFY_TYPES = {"critical": "failure", "high": "warning", "medium": "info", "low": "info"}


def apprise_send(url: str, message: Message, timeout: float) -> SendResult:
    """Send one message to one channel. What apprise logged while it sent says how it went
    (`classify`): apprise reports every failure of a mail server with the same warning, and
    only its debug lines carry the server's reply.

    The send runs in a thread of its own, and is waited for `timeout` seconds: one that runs
    on (a server trickling its answer) keeps its channel busy, and the channel's next send
    is not started until it ends (`_start_send`).

    The targets of a multi-target URL that took the message in an earlier attempt of the
    same delivery (`accepted_targets`, kept by the Deliverer) are skipped: a refusal by one
    recipient does not resend to the others."""
    import apprise
    from apprise.result import AppriseResultStatus

    tracker: contextvars.ContextVar[Any] | None
    try:  # apprise's per-target memory (private: without it a retry goes to every target)
        from apprise.plugins.base import _delivery_tracker as tracker
    except ImportError:
        tracker = None

    started = time.monotonic()
    # apprise's own deadline would send through its one pool of threads shared by every
    # channel, which the sends it abandons fill: the send runs in a thread of its own here,
    # inline (no deadline, not async), and we stop waiting for it after `timeout`.
    app = apprise.Apprise(asset=apprise.AppriseAsset(async_mode=False, service_timeout=0))
    if not app.add(_with_read_timeout(url, timeout)):
        return SendResult(outcome="failed", error="not a valid apprise URL")
    # The causes are logged at debug level: apprise's logger must not drop them (log.setup
    # sets it so in the daemon; a command or a test may not have)
    apprise_log = logging.getLogger("apprise")
    if not apprise_log.isEnabledFor(logging.DEBUG):
        apprise_log.setLevel(logging.DEBUG)
    heard: list[tuple[str, str]] = []  # (level, message), live: a send that timed out too

    def hear(entry: Any, service: Any) -> None:
        heard.append((entry.level, entry.message))

    took = accepted_targets.get()
    outcome: list[Any] = []  # apprise's result, or the exception it raised

    def run() -> None:  # in a copy of the caller's context
        # apprise keeps it only within one notify() (and only with its own retries on);
        # across our attempts it is ours.
        if took is not None and tracker is not None:
            tracker.set(took)
        try:
            outcome.append(
                app.notify(
                    title=message.title,
                    body=message.body,
                    body_format=message.format,
                    notify_type=NOTIFY_TYPES.get(message.severity or "", "info"),
                    log_level=logging.DEBUG,
                    log_callback=hear,
                )
            )
        except Exception as exc:  # a plugin bug: a failed attempt, not a crash
            outcome.append(exc)

    thread = _start_send(url, run)
    if isinstance(thread, str):  # never started: nothing can have arrived
        return SendResult(outcome="unreachable", error=thread)
    thread.join(timeout)
    if thread.is_alive():
        result = None  # it goes on in its thread, and may yet arrive
    elif isinstance(outcome[0], Exception):
        exc = outcome[0]
        return SendResult(
            outcome="failed",
            error=f"{type(exc).__name__}: {exc}",
            elapsed=time.monotonic() - started,
        )
    else:
        result = outcome[0]
    elapsed = time.monotonic() - started
    if result is not None and result.status == AppriseResultStatus.SUCCESS:
        return SendResult(outcome="sent", elapsed=elapsed)
    scheme = url.partition("://")[0].lower()
    verdict, error = classify(
        list(heard),
        timed_out=result is None or result.status == AppriseResultStatus.TIMEOUT,
        mail=scheme in _MAIL_SCHEMES,
    )
    error = error or f"no answer within {timeout:g}s"
    # the service's own words only: the debug lines quote the message, which may say anything
    warnings = [m for level, m in heard if level in ("WARNING", "ERROR")]
    reached = _target_names(took or ())
    if reached:
        error = f"{error}; it reached {', '.join(reached)} (not sent to them again)"
    return SendResult(
        outcome=verdict,
        error=error,
        elapsed=elapsed,
        retry_after=rate_limited(warnings) if verdict == "unreachable" else None,
    )


#: The least wait after a service said we send too fast, when it does not say how long
#: (apprise does not pass on an HTTP `Retry-After` header).
RATE_LIMIT_WAIT = 60.0

_TOO_MANY = re.compile(r"error=429\b|too many requests|rate.?limit", re.IGNORECASE)
_RETRY_AFTER = re.compile(r"retry.?after:? (\d+(?:\.\d+)?)", re.IGNORECASE)


def rate_limited(messages: Sequence[str]) -> float | None:
    """Seconds to wait at least before the next try when apprise's log lines say the service
    limits our rate (a 429 answer): the wait it names (Telegram's "retry after 30"), else
    RATE_LIMIT_WAIT; None when they do not.

    Usage::

        rate_limited(["Failed to send Telegram notification to 12: Too Many Requests: "
                      "retry after 30, error=429."])                            # 30.0
        rate_limited(["Failed to send JSON notification: Too Many Requests - error=429."])
        # 60.0
        rate_limited(["Failed to send JSON notification: Bad Gateway - error=502."])  # None
    """
    if not any(_TOO_MANY.search(m) for m in messages):
        return None
    named = [float(m.group(1)) for line in messages for m in _RETRY_AFTER.finditer(line)]
    return max(named) if named else RATE_LIMIT_WAIT


#: The send under way to each channel (by URL): its thread and when it started. A send we
#: stopped waiting for (a server trickling its answer, a mail tarpit) may run on for long;
#: the channel gets no other send until it ends.
_sending: dict[str, tuple[threading.Thread, datetime]] = {}
_sending_lock = threading.Lock()


def _start_send(url: str, run: Callable[[], None]) -> threading.Thread | str:
    """Start `run` in a thread of its own as the send under way to `url`, its thread; or,
    while the previous send there still runs, start nothing and say why (the channel is busy: it is
    treated as unreachable, and tried again on its back-off)."""
    context = contextvars.copy_context()

    def thread_main() -> None:
        try:
            context.run(run)
        finally:
            with _sending_lock:
                if _sending.get(url, (None,))[0] is threading.current_thread():
                    del _sending[url]

    with _sending_lock:
        previous = _sending.get(url)
        if previous is not None and previous[0].is_alive():
            return f"previous send still running since {previous[1]:%Y-%m-%d %H:%M:%S} UTC"
        thread = threading.Thread(target=thread_main, name="watcher-send", daemon=True)
        _sending[url] = (thread, utcnow())
        thread.start()
    return thread


def _target_names(took: Iterable[Any]) -> list[str]:
    """The targets in apprise's memory of who took the message: (piece, (type, repr(key)));
    the whole-message marker is a bare `object`."""
    names = []
    for slot in took:
        kind, shown = slot[1]
        if kind is not object:
            names.append(shown.strip("'\""))
    return sorted(set(names))


#: An SMTP reply in the cause of a failure: smtplib's exceptions read "(451, b'4.3.0 …')" or
#: "{'a@b.example': (550, b'…')}"; apprise's partial refusal "… was refused: 550 b'…'".
_SMTP_REPLY = re.compile(r"\((\d{3}), b['\"]|was refused: (\d{3})\b")


def classify(
    lines: Sequence[tuple[str, str]], *, timed_out: bool, mail: bool = False
) -> tuple[str, str | None]:
    """(outcome, error) of a send apprise did not report a success, from the (level,
    message) lines it logged while sending.

    - An HTTP service: a 4xx answer other than 408/425/429 is a refusal (*failed*); other
      failures are *unreachable*.
    - A mail server: only a 5xx reply is a refusal. A 4xx reply (451 at the end of DATA, 452
      at RCPT, 421 closing) or a connection that fails is *unreachable*: the channel is down
      and its queue waits. A reply that cannot be read is unreachable too, never a refusal
      (a refusal is given up after `delivery_attempts`). A connection that drops or times
      out with no reply while the message is being handed over is *uncertain*: the server
      may have taken it (one that cuts the line after DATA would get a copy per retry).
    - A timeout is *uncertain* once the message was on its way (a mail server that took the
      message may answer after we stopped waiting); a mail server still being connected to
      when the time ran out is unreachable.

    Usage::

        classify([("WARNING", 'Sending email to "a@b.example" failed.'),
                  ("DEBUG", "Socket Exception: (451, b'4.3.0 try later')")],
                 timed_out=False, mail=True)   # ("unreachable", "… (Socket Exception: …)")
        classify([("WARNING", "Failed to send JSON notification: Bad Request - error=400.")],
                 timed_out=False)               # ("failed", …)
    """
    warnings = [m for level, m in lines if level in ("WARNING", "ERROR")]
    causes = [m for _, m in lines if m.startswith("Socket Exception") or " was refused: " in m]
    error = warnings[-1] if warnings else None
    if causes:
        error = f"{error} ({causes[-1]})" if error else causes[-1]
    if timed_out:
        if mail and not _mail_in_flight(lines):
            return "unreachable", error
        return "uncertain", error
    if not mail:
        return ("failed" if refused(warnings + causes) else "unreachable"), error
    codes = [int(m.group(1) or m.group(2)) for c in causes for m in _SMTP_REPLY.finditer(c)]
    if any(400 <= c < 500 for c in codes):
        return "unreachable", error  # come back later: nothing is refused yet
    if any(500 <= c < 600 for c in codes):
        return "failed", error
    if causes and not codes and any(w.startswith("Sending email to") for w in warnings):
        # the session timed out or the line dropped with no reply while the message was
        # being handed over: the server had it, maybe all of it (smtplib cannot say at
        # which command the line dropped)
        return "uncertain", error
    return "unreachable", error


def _mail_in_flight(lines: Sequence[tuple[str, str]]) -> bool:
    """Was a message being handed to the mail server (connected, its recipient named, no
    answer yet) when apprise stopped waiting?"""
    last = None
    for _, m in lines:
        if m.startswith(("Email To:", "Sent Email to", "Sending email to")):
            last = m
    return last is not None and last.startswith("Email To:")


#: A service's answer that refuses this message (retrying will not help): an HTTP 4xx other
#: than 408 (timeout), 425 and 429 (come back later); an SMTP 5xx reply ("(550, b'…')").
_HTTP_REFUSED = re.compile(r"error=(4(?!08|25|29)\d\d)\b")
_SMTP_REFUSED = re.compile(r"\(5\d\d, b['\"]|was refused: 5\d\d\b")


def refused(messages: Sequence[str]) -> bool:
    """Do apprise's log lines say the service refused the message (as opposed to not being
    reachable)? apprise's bare `Sending email to "…" failed.` says neither: not a refusal.

    Usage::

        refused(["Failed to send JSON notification: Bad Request - error=400."])   # True
        refused(["Failed to send JSON notification: Service Unavailable - error=503."])  # False
        refused(["Socket Exception: {'a@b.example': (550, b'no such user')}"])  # True
        refused(['Sending email to "a@b.example" failed.'])  # False: it may be a 4xx, a cut
    """
    return any(_HTTP_REFUSED.search(m) or _SMTP_REFUSED.search(m) for m in messages)


def _fingerprint(message: Message) -> str:
    """Which message this is, to know the targets that took it (`Deliverer._took`)."""
    return hashlib.sha256(f"{message.title}\0{message.body}".encode()).hexdigest()


class Deliverer:
    def __init__(
        self,
        store: Store,
        config: Config,
        *,
        clock: Callable[[], datetime] = utcnow,
        send: Sender = apprise_send,
        on_attempt: Callable[[str, str], None] | None = None,
    ) -> None:
        self.outbox = Outbox(store)
        self.config = config
        self.clock = clock
        self.send = send
        self.on_attempt = on_attempt
        self.channels = {c.id: c for c in config.channels}
        self.routes = {r.key(i): r for i, r in enumerate(config.routes)}
        self.names = {s.id: s.display_name for s in config.sources}
        # Sends that happened but could not be recorded: recorded before anything else.
        self._unrecorded: list[Callable[[], object]] = []
        self._swept_at: datetime | None = None
        # Per delivery being retried (by its group's first id): the targets of its channel
        # that took it already (apprise's memory, `accepted_targets`), skipped next time.
        self._took: dict[tuple[int, str], set[Any]] = {}
        self._stopping = False
        self._previous: Deliverer | None = None
        #: Each channel's batch being sent (`run_due`), by channel id: no new claim for it
        #: until it ends.
        self._running: dict[str, asyncio.Task[int]] = {}

    def stop(self) -> None:
        """Take no further message: each channel finishes the send under way (and records
        it), gives the rest of its claim back, and `run_due` returns. For a graceful stop
        (SIGTERM), before waiting for the delivery job."""
        self._stopping = True
        if self._previous is not None:
            self._previous.stop()

    def inherit(self, previous: Deliverer) -> None:
        """Take over what `previous` (the Deliverer of the configuration a reload replaces)
        remembers: sends still to be recorded (dropped, they would be sent again), and the
        targets that took a delivery being retried."""
        self._unrecorded = previous._unrecorded
        self._swept_at = previous._swept_at
        self._took = previous._took
        self._running = previous._running  # its channels still sending are busy for this one
        # a stop reaches a run `previous` may still have under way (one step back only)
        self._previous, previous._previous = previous, None

    async def record_sent(self, *, wait: bool = True) -> int:
        """At the end of a run (a stop, `run --once`): once the sends under way have ended
        (with `wait`), try once more to record the sends the database refused; how many still
        could not be (they may be sent again)."""
        if wait:
            await self.sends_ended()
        await self._record_unrecorded()
        return len(self._unrecorded)

    @property
    def lease(self) -> timedelta:
        """How long a claim holds a delivery: longer than one send can take (`_send` waits
        `delivery_timeout` + 10 s), renewed before each message of a claimed batch. A process
        that dies mid-send frees its deliveries when it passes (on SQLite, at once on
        restart)."""
        timeout = self.config.settings.delivery_timeout.total_seconds()
        return timedelta(seconds=2 * timeout + 15)

    # ------------------------------------------------------------------ loop

    async def replan_digests(self) -> int:
        """Re-plan the digest lines already queued from the routes as configured now (at start
        and on each reload taken): a line queued when the digest was at 08:00 goes with the
        digest at 05:55 once the route says so, not in a second digest at the old time.

        A line is due at the route's first digest time after it was queued (one already past
        is due at once); a route no longer in digest mode sends its lines at once (one
        message, as a digest); the lines of a route no longer configured keep their time, and
        go to their channel then (skipped if it is gone). One transaction per route, and
        idempotent (replicas may do it together). How many lines moved."""
        now = self.clock()
        zone = self.config.settings.timezone
        total = 0
        for key, route in self.routes.items():
            if route.ops:
                continue
            digest = route.mode == "digest"

            def due(queued: datetime, route: Route = route, digest: bool = digest) -> datetime:
                return next_digest(route, queued, zone) if digest else queued

            moved = await asyncio.to_thread(self.outbox.replan_digests, key, due, now)
            if moved:
                total += len(moved)
                news = sorted({new for _, new in moved})
                log.info(
                    "route %s: %d digest line(s) re-planned from its schedule: now due %s",
                    key,
                    len(moved),
                    ", ".join(f"{when:%Y-%m-%d %H:%M} UTC" for when in news[:3])
                    + (" …" if len(news) > 3 else ""),
                    extra={"action": "deliver", "route": key},
                )
        return total

    async def run_due(self, *, wait: bool = True) -> int:
        """Send everything due now, each channel's batch in a task of its own; returns how
        many deliveries were handled (with `wait`), or claimed (without: the daemon's
        every-second run, which does not wait for a slow channel's backlog; the next run
        claims for the channels not still busy)."""
        if self._stopping or not await self._record_unrecorded():
            return 0
        now = self.clock()
        await self._sweep(now)
        busy = [ch for ch, task in self._running.items() if not task.done()]
        due = await asyncio.to_thread(partial(self.outbox.claim_due, now, self.lease, busy=busy))
        if not due:
            return 0
        down = await asyncio.to_thread(self.outbox.channels_down)
        by_channel: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in due:
            by_channel[delivery.channel].append(delivery)
        tasks = [self._start(ch, ds, down.get(ch)) for ch, ds in by_channel.items()]
        if not wait:
            return len(due)
        return sum(await asyncio.gather(*tasks))

    def _start(
        self, channel_id: str, deliveries: Sequence[Delivery], down: ChannelStatus | None
    ) -> asyncio.Task[int]:
        """The channel's batch as a task of its own, the channel busy while it runs."""
        task = asyncio.create_task(self._channel(channel_id, deliveries, down))
        self._running[channel_id] = task

        def ended(task: asyncio.Task[int]) -> None:
            if self._running.get(channel_id) is task:
                del self._running[channel_id]
            exc = None if task.cancelled() else task.exception()
            if exc is not None:
                log.error(
                    "deliveries to %s stopped: %s (their claim lapses; they are due again)",
                    channel_id,
                    logsetup.one_line(exc),
                    exc_info=exc,
                    extra={"action": "deliver", "channel": channel_id},
                )

        task.add_done_callback(ended)
        return task

    async def sends_ended(self) -> None:
        """Wait for the channels' batches under way (told to `stop`, each ends with the send
        it has begun, recorded)."""
        running = [task for task in self._running.values() if not task.done()]
        if running:
            await asyncio.wait(running)

    async def _record_unrecorded(self) -> bool:
        """Record the sends whose outcome could not be recorded; False while the database
        still refuses (then nothing else is claimed or sent)."""
        while self._unrecorded:
            try:
                done = await asyncio.to_thread(self._unrecorded[0])
                if isinstance(done, Recorded) and not done.held:
                    log.error(
                        "a send kept to be recorded was no longer this process's to record "
                        "(it is %s now: another replica took it when its claim lapsed, and "
                        "may have sent it too)",
                        done.status,
                        extra={"action": "deliver"},
                    )
            except Exception as exc:
                if is_database_error(exc):
                    return False
                log.error(
                    "could not record a send: %s",
                    logsetup.one_line(exc),
                    extra={"action": "deliver"},
                )
            self._unrecorded.pop(0)
            if not self._unrecorded:
                log.info("every send is recorded again", extra={"action": "deliver"})
        return True

    # ------------------------------------------------------------------ give up, tell late

    async def _sweep(self, now: datetime) -> None:
        """Expire what waited past its route's `give_up_after`; tell the ops routes which
        channels' messages are late. At most every ten seconds."""
        if self._swept_at is not None and timedelta(0) <= now - self._swept_at < _SWEEP_EVERY:
            return
        self._swept_at = now
        down = await asyncio.to_thread(self.outbox.channels_down)
        expired: list[Delivery] = []
        # Each route's own limit; deliveries of routes no longer configured get the default.
        limits: list[tuple[str | None, timedelta]] = [
            (key, route.give_up_after) for key, route in self.routes.items()
        ]
        limits.append((None, Route.model_fields["give_up_after"].default))
        for key, limit in limits:
            expired += await asyncio.to_thread(
                partial(self.outbox.expire, other_than=list(self.routes)),
                key,
                now - limit,
                now,
                f"gave up after {format_duration(limit)}",
            )
        by_channel: dict[str, list[Delivery]] = defaultdict(list)
        for d in expired:
            by_channel[d.channel].append(d)
        for channel, lost in by_channel.items():
            status = down.get(channel)
            cause = (
                f"unreachable since {status.down_since:%Y-%m-%d %H:%M} UTC: {status.last_error}"
                if status
                else (lost[-1].last_error or "not sent")
            )
            log.error(
                "%d message(s) to %s expired unsent: %s",
                len(lost),
                channel,
                cause,
                extra={"action": "deliver", "channel": channel},
            )
            stories = [d for d in lost if d.kind != "ops"]
            if stories:
                ids = ", ".join(str(d.id) for d in stories[:20])
                await self.notify_ops(
                    f"watcher: {len(stories)} message(s) to {channel} expired unsent",
                    f"Channel {channel} could not be reached in time ({cause}).\n"
                    f"Expired deliveries: {ids}\n"
                    "Send them anyway with: watcher alerts retry ID",
                    now,
                    skip=channel,
                )
        late_after = self.config.settings.delivery_late_after
        for status, waiting in await asyncio.to_thread(self.outbox.late, now, late_after):
            subject = f"watcher: messages to {status.channel} are late"
            body = (
                f"Channel {status.channel} cannot be reached since "
                f"{status.down_since:%Y-%m-%d %H:%M} UTC ({status.failures} tries; last error: "
                f"{status.last_error}).\n{waiting} message(s) wait and will be sent, in order, "
                f"when it is back; next try at {status.next_try_at:%H:%M:%S} UTC."
            )
            targets = self._ops_targets(skip=status.channel)
            told = await asyncio.to_thread(
                self.outbox.tell_late, status.channel, targets, subject, body, now
            )
            if told:
                log.warning(
                    "%d message(s) to %s are late: unreachable since %s (%s)",
                    waiting,
                    status.channel,
                    f"{status.down_since:%H:%M:%S}",
                    status.last_error,
                    extra={"action": "deliver", "channel": status.channel},
                )

    # ------------------------------------------------------------------ one channel

    async def _channel(
        self, channel_id: str, deliveries: Sequence[Delivery], down: ChannelStatus | None
    ) -> int:
        """The channel's due deliveries, in queue order. Before each message the claim on
        those left is renewed (a long backlog outlives one lease; another replica must not
        take its tail); one another replica took meanwhile is left to it. When a send finds
        the channel unreachable, or the Deliverer is told to stop, the rest are given back
        untried."""
        handled = 0
        done: set[int] = set()
        later = _superseded(deliveries)
        done.update(d.id for ds in later.values() for d in ds)
        mine = {d.id: d for d in deliveries}  # still held, with this process's claim
        for delivery in deliveries:  # in the order they were queued
            if delivery.id in done:
                continue
            if self._stopping:
                await self._release([d for d in mine.values() if d.id not in done])
                break
            group: list[Delivery] = [delivery]
            covered: list[Delivery] = []
            try:
                await self._renew(mine)
                if delivery.id not in mine:
                    continue
                group, covered = [mine[delivery.id]], []
                if delivery.kind == "digest":  # every due story of this digest, in one message
                    group = [
                        d
                        for d in mine.values()
                        if d.kind == "digest" and d.route == delivery.route and d.id not in done
                    ]
                    # each revision of a story queued its own line; the digest shows the story
                    # as it is when sent, so one line per story and the others are covered by it
                    first: dict[int | None, Delivery] = {}
                    for d in group:
                        first.setdefault(d.story_id, d)
                    covered = [d for d in group if first[d.story_id] is not d]
                    group = list(first.values())
                done.update(d.id for d in (*group, *covered))
                behind = [mine[d.id] for d in later.get(delivery.id, ()) if d.id in mine]
                outcome = await self._deliver(channel_id, group, down)
                await self._supersede(group[0], [*behind, *covered], outcome)
                for handled_one in (*group, *covered, *behind):  # settled: renewed no more
                    mine.pop(handled_one.id, None)
            except Exception as exc:
                if is_database_error(exc):  # nothing was sent: the claim lapses, and it is due
                    log.warning(
                        "delivery %d waits for the database: %s",
                        delivery.id,
                        logsetup.one_line(exc),
                        extra={"action": "deliver", "alert": delivery.id},
                    )
                    break
                await self._internal_error(delivery, group, exc)
                outcome = None
            handled += len(group) + len(covered)  # a digest's covered lines are settled too
            if outcome in ("unreachable", "uncertain"):
                await self._release([d for d in mine.values() if d.id not in done])
                break
            if outcome == "sent":
                down = None
        return handled

    async def _renew(self, mine: dict[int, Delivery]) -> None:
        """Extend the claim on the channel's deliveries still held (`mine`, updated); those
        another process took over are dropped from it, and said so."""
        if not mine:
            return
        held = await asyncio.to_thread(
            self.outbox.renew, list(mine.values()), self.clock(), self.lease
        )
        kept = {d.id for d in held}
        for lost in [i for i in mine if i not in kept]:
            d = mine.pop(lost)
            log.warning(
                "delivery %d to %s: no longer held by this process (its claim lapsed and "
                "another replica took it, or it was settled meanwhile); left to it",
                d.id,
                d.channel,
                extra={"action": "deliver", "alert": d.id, "channel": d.channel},
            )
        mine.update((d.id, d) for d in held)

    async def _release(self, deliveries: Sequence[Delivery]) -> None:
        if deliveries:
            await asyncio.to_thread(self.outbox.release, deliveries)

    async def _supersede(
        self, sent: Delivery, later: Sequence[Delivery], outcome: str | None
    ) -> None:
        """Messages about the same story that waited behind `sent`: it was rendered from the
        story as it is now, so they would repeat it. Recorded as superseded once it is sent;
        otherwise given back to be tried in their turn."""
        if not later:
            return
        if outcome != "sent":
            await self._release(later)
            return
        why = f"superseded: delivery {sent.id} carried the story as it was when sent"
        for d in later:
            await self._not_sent(d, "superseded", why, self.clock())

    async def _internal_error(
        self, delivery: Delivery, group: Sequence[Delivery], exc: Exception
    ) -> None:
        """A template or plugin fault: an attempt that failed (it counts)."""
        error = f"internal error: {type(exc).__name__}: {logsetup.one_line(exc)}"
        log.error(
            "delivery %d: %s", delivery.id, error, extra={"action": "deliver", "alert": delivery.id}
        )
        try:
            for d in group:
                status, due = self._next_state(d, SendResult(outcome="failed"))
                await asyncio.to_thread(
                    self.outbox.record,
                    d,
                    outcome="failed",
                    status=status,
                    now=self.clock(),
                    error=error,
                    due_at=due,
                )
        except Exception as again:  # the database is away too: the claim lapses, it is due
            log.warning(
                "delivery %d: could not record the failure (%s); it is retried when its "
                "claim expires",
                delivery.id,
                logsetup.one_line(again),
                extra={"action": "deliver", "alert": delivery.id},
            )

    async def _deliver(
        self, channel_id: str, group: Sequence[Delivery], down: ChannelStatus | None
    ) -> str | None:
        """Render and send one message for the group; the send's outcome (None: not sent)."""
        from watcher import render

        now = self.clock()
        lead = group[0]
        channel = self.channels.get(channel_id)
        if channel is None or not channel.enabled:
            why = "is not configured" if channel is None else "is disabled"
            for d in group:
                await self._not_sent(d, "skipped", f"channel {channel_id} {why}", now)
            return None
        route = self.routes.get(lead.route)
        tz = (route.timezone if route else None) or self.config.settings.timezone
        locale = route.locale if route else "en"
        fmt = render.channel_format(channel.url)
        templates = self.config.settings.templates_dir
        active = await asyncio.to_thread(self.outbox.silences, now)
        if lead.kind == "ops":
            message = render.render_ops(  # told text may quote a source's URL: redacted
                logsetup.redact(lead.subject or "watcher"),
                logsetup.redact(lead.body or "").splitlines(),
                fmt,
                templates_dir=templates,
            )
            return await self._send(channel.url, group, message, now, down)
        views = []
        for d in group:
            found = await asyncio.to_thread(
                self.outbox.view, d, self.names, self.config.settings.public_url
            )
            if found is None:
                await self._not_sent(
                    d, "skipped", "the story no longer exists or was withdrawn", now
                )
                continue
            view, labels = found
            labels["tag"] = {
                tag for s in self.config.sources if s.id in labels["source"] for tag in s.tags
            }
            silence = next((s for s in active if silenced_by(s.matchers, labels)), None)
            if silence is not None:
                await self._not_sent(
                    d, "silenced", f"silenced by #{silence.id}: {silence.reason}", now
                )
                continue
            views.append((d, view))
        if not views:
            return None
        if lead.kind == "digest":
            name = lead.route
            message = render.render_digest(
                [v for _, v in views],
                name,
                fmt,
                tz,
                templates_dir=templates,
                locale=locale,
                timeline_url=self.config.settings.public_url,
            )
        else:
            message = render.render_alert(
                views[0][1], fmt, tz, templates_dir=templates, locale=locale
            )
        # what the channel was told of each story it was shown (a digest cut to fit shows
        # fewer): the next update on it compares with that
        told = {d.id: view.told for d, view in views if view.story_id in message.stories}
        return await self._send(channel.url, [d for d, _ in views], message, now, down, told)

    async def _send(
        self,
        url: str,
        group: Sequence[Delivery],
        message: Message,
        now: datetime,
        down: ChannelStatus | None,
        told: Mapping[int, Told] | None = None,
    ) -> str:
        """Send one message for the group and record the outcome of each delivery; `told`
        is what the message said of each delivery's story (kept once sent).

        A cancellation (a stop past its grace) never comes between the send and its record:
        they go on to the end, then the cancellation is passed on."""
        task = asyncio.ensure_future(self._send_now(url, group, message, now, down, told))
        cancelled = False
        while True:
            try:
                outcome = await asyncio.shield(task)
                break
            except asyncio.CancelledError:
                if task.cancelled():
                    raise
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError
        return outcome

    async def _send_now(
        self,
        url: str,
        group: Sequence[Delivery],
        message: Message,
        now: datetime,
        down: ChannelStatus | None,
        told: Mapping[int, Told] | None = None,
    ) -> str:
        timeout = self.config.settings.delivery_timeout.total_seconds()
        # The targets that took this very message: a message rendered anew since (the story
        # escalated between attempts) goes to every target again, or those who took the
        # first version would never read the escalation.
        key = (group[0].id, _fingerprint(message))
        for stale in [k for k in self._took if k[0] == key[0] and k != key]:
            del self._took[stale]
        took = self._took.setdefault(key, set())

        def call() -> SendResult:  # in to_thread's copy of the context
            accepted_targets.set(took)
            return self.send(url, message, timeout)

        try:
            result = await asyncio.wait_for(asyncio.to_thread(call), timeout + 10)
        except TimeoutError:  # the send goes on in its thread; it may yet arrive
            result = SendResult(
                outcome="uncertain", error=f"no answer within {timeout:g}s", elapsed=timeout
            )
        crash_point("after_send")
        # Some of the channel's targets took it and another answered "later" (a full
        # mailbox): the channel is not down for the others, whose next messages go at once;
        # this one is tried again for the rest on its own back-off (pending, as for a
        # channel that is down: nothing is given up before `give_up_after`).
        later = result.outcome == "unreachable" and bool(took)
        channel_id = group[0].channel
        if self.on_attempt is not None:
            self.on_attempt(channel_id, result.outcome)
        error = cause = logsetup.redact(result.error) if result.error else None
        if result.outcome == "uncertain":
            error = f"uncertain (the message may have arrived): {error}"
        elif result.outcome == "unreachable":
            error = f"unreachable: {error}"
        still_down = None
        if result.outcome in ("unreachable", "uncertain") and not later:
            failures = (down.failures if down else 0) + 1
            still_down = ChannelStatus(
                channel=channel_id,
                down_since=down.down_since if down else now,
                next_try_at=self.clock() + self._backoff(failures, result.retry_after),
                failures=failures,
                last_error=cause if result.outcome == "unreachable" else error,
            )
        if result.outcome == "sent" or self._next_state(group[0], result)[0] != "pending":
            self._took.pop(key, None)  # nothing more to send it to
        for d in group:
            status, due = self._next_state(d, result)
            if later:
                due = self.clock() + self._backoff(d.attempts + 1, result.retry_after)
            record = partial(
                self.outbox.record,
                d,
                outcome=result.outcome,
                status=status,
                now=self.clock(),
                error=error,
                elapsed=result.elapsed,
                subject=message.title,
                body=message.body,
                due_at=due,
                channel=still_down,
                channel_up=result.outcome == "sent",
                told=(told or {}).get(d.id),
            )
            try:
                recorded = await asyncio.to_thread(record)
            except Exception as exc:
                if not is_database_error(exc):
                    raise
                # The send happened: record it before anything is sent again.
                self._unrecorded.append(record)
                log.error(
                    "delivery %d to %s was %s, but the database cannot record it (%s): it is "
                    "recorded before anything else is sent",
                    d.id,
                    d.channel,
                    result.outcome,
                    logsetup.one_line(exc),
                    extra={"action": "deliver", "alert": d.id, "channel": d.channel},
                )
                continue
            extra = {"action": "deliver", "alert": d.id, "channel": d.channel}
            if not recorded.held:
                log.error(
                    "delivery %d to %s was %s by this process, but it was no longer its to "
                    "record (it is %s now: its claim lapsed and another replica took it, and "
                    "may have sent it too); not recorded a second time",
                    d.id,
                    d.channel,
                    result.outcome,
                    recorded.status,
                    extra=extra,
                )
                continue
            if recorded.was is not None:
                await self._back(recorded.was, now)
            if status == "sent":
                log.info("delivery %d sent to %s", d.id, d.channel, extra=extra)
                await self._schedule_reminder(d, now)
            elif status == "pending":
                when = still_down.next_try_at if still_down else due
                log.warning(
                    "delivery %d to %s: %s (attempt %d; next try at %s)",
                    d.id,
                    d.channel,
                    error,
                    d.attempts + 1,
                    f"{when:%H:%M:%S}" if when else "-",
                    extra=extra,
                )
            else:
                log.error(
                    "delivery %d to %s %s after %d attempts: %s",
                    d.id,
                    d.channel,
                    status,
                    d.attempts + 1,
                    error,
                    extra=extra,
                )
                if d.kind != "ops":
                    await self._tell_ops(d, status, error or status, now)
        return "later" if later else result.outcome

    async def _back(self, was: ChannelStatus, now: datetime) -> None:
        """A channel that was down took a message: say so (and tell ops if they heard it
        was late)."""
        log.info(
            "channel %s is reachable again (down since %s, %d tries); its waiting messages "
            "follow in order",
            was.channel,
            f"{was.down_since:%H:%M:%S}",
            was.failures,
            extra={"action": "deliver", "channel": was.channel},
        )
        if was.late_told_at is not None:
            await self.notify_ops(
                f"watcher: {was.channel} is reachable again",
                f"Channel {was.channel} took a message again at {now:%Y-%m-%d %H:%M} UTC "
                f"(unreachable since {was.down_since:%Y-%m-%d %H:%M} UTC); the messages that "
                "waited are being sent, in order.",
                now,
                skip=was.channel,
            )

    async def _not_sent(self, d: Delivery, status: str, why: str, now: datetime) -> None:
        """Record a delivery that will not be sent (skipped or silenced), and why."""
        await asyncio.to_thread(
            self.outbox.record, d, outcome=status, status=status, now=now, error=why, counts=False
        )

    def _next_state(self, d: Delivery, result: SendResult) -> tuple[str, datetime | None]:
        """(new status, next due time) after an attempt. An unreachable channel keeps its
        messages pending as they are: the channel's next try decides when they go."""
        if result.outcome == "sent":
            return "sent", None
        if result.outcome == "unreachable":
            return "pending", None
        if result.outcome == "uncertain":
            # A timeout may hide a message that arrived: try once more, then stop.
            if d.last_error is not None and d.last_error.startswith("uncertain"):
                return "uncertain", None
            return "pending", None
        if d.attempts + 1 >= self.config.settings.delivery_attempts:
            return "failed", None
        return "pending", self.clock() + self._backoff(d.attempts + 1)

    def _backoff(self, attempt: int, retry_after: float | None = None) -> timedelta:
        """The wait before try `attempt` + 1; at least what a service that limits our rate
        asked for (`retry_after`)."""
        base = self.config.settings.delivery_backoff.total_seconds()
        cap = self.config.settings.delivery_max_backoff.total_seconds()
        delay = min(cap, base * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)
        return timedelta(seconds=max(delay, retry_after or 0))

    async def _schedule_reminder(self, d: Delivery, now: datetime) -> None:
        route = self.routes.get(d.route)
        if route is None or route.repeat_interval is None or d.story_id is None:
            return
        if d.kind not in ("alert", "update", "reminder"):
            return
        updated = await asyncio.to_thread(self.outbox.story_updated_at, d.story_id)
        if updated is None or now - updated > self.config.settings.story_window:
            return  # the story is closed: no more reminders
        await asyncio.to_thread(
            self.outbox.add,
            story_id=d.story_id,
            revision=d.revision,
            route=d.route,
            channel=d.channel,
            kind="reminder",
            seq=d.seq + 1,
            due_at=now + route.repeat_interval,
            now=now,
        )

    async def _tell_ops(self, d: Delivery, status: str, error: str, now: datetime) -> None:
        """A delivery ended unsent (`failed`) or unsure (`uncertain`: it may have arrived,
        or not; it is not tried again on its own)."""
        what = "failed" if status == "failed" else "may not have arrived"
        subject = f"watcher: delivery to {d.channel} {what}"
        body = (
            f"Delivery {d.id} ({d.kind} of story {d.story_id}, route {d.route}) to channel "
            f"{d.channel} {status} after {d.attempts + 1} attempts.\nLast error: {error}\n"
        )
        if status == "uncertain":
            body += "It is not tried again: check with the recipients whether it arrived.\n"
        body += f"Retry with: watcher alerts retry {d.id}"
        await self.notify_ops(subject, body, now)

    async def notify_ops(
        self, subject: str, body: str, now: datetime, *, skip: str | None = None
    ) -> int:
        """Queue an operator alert on every channel of every ops route (but `skip`, a channel
        that is down); returns how many."""
        targets = self._ops_targets(skip=skip)
        return await asyncio.to_thread(self.outbox.add_ops, targets, subject, body, now)

    def _ops_targets(self, *, skip: str | None = None) -> list[tuple[str, str]]:
        return [(r, c) for r, c in ops_targets(self.config.routes) if c != skip]


def _superseded(deliveries: Sequence[Delivery]) -> dict[int, list[Delivery]]:
    """Among one channel's due deliveries, the later messages about a story that an earlier
    due one (of the same route) already covers, by that earlier one's id: a message shows
    the story as it is when sent, so after an outage nine queued updates would be nine copies.

    A "removed" message (a report gone at its source) is news of its own: it neither covers
    nor is covered by an alert, update or reminder, only by an earlier "removed" one (which
    lists every report removed by the time it is sent).

    Usage::

        _superseded([alert(story=1), update(story=1), update(story=2)])
        # {alert.id: [update of story 1]}
    """
    first: dict[tuple[int, str, bool], Delivery] = {}
    later: dict[int, list[Delivery]] = defaultdict(list)
    for d in deliveries:
        if d.story_id is None or d.kind not in ("alert", "update", "reminder", "removed"):
            continue
        key = (d.story_id, d.route, d.kind == "removed")
        if key in first:
            later[first[key].id].append(d)
        else:
            first[key] = d
    return dict(later)


def send_test(config: Config, channel_ids: Sequence[str], send: Sender = apprise_send) -> list[Any]:
    """`watcher notify test`: (channel id, SendResult) per channel, sent directly."""
    from watcher import render

    out = []
    for channel in config.channels:
        if channel_ids and channel.id not in channel_ids:
            continue
        message = render.render_test(render.channel_format(channel.url))
        timeout = config.settings.delivery_timeout.total_seconds()
        out.append((channel.id, send(channel.url, message, timeout)))
    return out

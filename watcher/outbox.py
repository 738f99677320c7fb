"""The delivery worker: sends what the outbox holds, through apprise, and records every attempt.

At-least-once: a delivery is marked sent only after apprise says so, in the same transaction
as its attempt; a crash between the two can repeat that one message once, never lose it.
Each channel has its own queue (one slow or failing channel never holds another), retries
back off exponentially with jitter, and a delivery that keeps failing is marked failed and
reported to the `ops` routes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from watcher import log as logsetup
from watcher.clock import crash_point, utcnow
from watcher.config import Config
from watcher.routing import ops_targets, silenced_by
from watcher.store import Store
from watcher.store.outbox import Outbox
from watcher.types import Delivery, Message

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class SendResult:
    #: sent | failed | uncertain (a timeout: the message may have arrived)
    outcome: str
    error: str | None = None
    elapsed: float = 0.0


Sender = Callable[[str, Message, float], SendResult]


def _with_read_timeout(url: str, timeout: float) -> str:
    """Let apprise's plugin wait longer than we do (`rto`), unless the URL says otherwise:
    then a slow service ends in apprise's TIMEOUT, which we can tell apart from a refusal,
    instead of a read timeout that its plugins report as a generic connection error."""
    if "rto=" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}rto={timeout + 5:g}"


def apprise_send(url: str, message: Message, timeout: float) -> SendResult:
    """Send one message to one channel; apprise 2.x reports per target. A send that timed
    out is *uncertain*: it may have arrived."""
    import apprise
    from apprise.result import AppriseResultStatus

    started = time.monotonic()
    app = apprise.Apprise()
    if not app.add(_with_read_timeout(url, timeout)):
        return SendResult(outcome="failed", error="not a valid apprise URL")
    try:
        result = app.notify(
            title=message.title, body=message.body, body_format=message.format, timeout=timeout
        )
    except Exception as exc:  # a plugin bug: a failed attempt, not a crash
        return SendResult(
            outcome="failed",
            error=f"{type(exc).__name__}: {exc}",
            elapsed=time.monotonic() - started,
        )
    elapsed = time.monotonic() - started
    if result.status == AppriseResultStatus.SUCCESS:
        return SendResult(outcome="sent", elapsed=elapsed)
    errors = [
        entry.message
        for target in result.results
        for entry in target.logs()
        if entry.level in ("WARNING", "ERROR")
    ]
    error = errors[-1] if errors else f"no answer within {timeout:g}s"
    timed_out = result.status == AppriseResultStatus.TIMEOUT
    return SendResult(outcome="uncertain" if timed_out else "failed", error=error, elapsed=elapsed)


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

    # ------------------------------------------------------------------ loop

    async def run_due(self) -> int:
        """Send everything due now; returns how many deliveries were handled."""
        now = self.clock()
        # Held while sending: twice the send timeout and a margin. A process that dies
        # mid-send frees its deliveries when this passes (on SQLite, at once on restart).
        timeout = self.config.settings.delivery_timeout.total_seconds()
        lease = now + timedelta(seconds=2 * timeout + 5)
        due = await asyncio.to_thread(self.outbox.claim_due, now, lease)
        if not due:
            return 0
        by_channel: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in due:
            by_channel[delivery.channel].append(delivery)
        counts = await asyncio.gather(*(self._channel(ch, ds) for ch, ds in by_channel.items()))
        return sum(counts)

    # ------------------------------------------------------------------ one channel

    async def _channel(self, channel_id: str, deliveries: Sequence[Delivery]) -> int:
        handled = 0
        done: set[int] = set()
        for delivery in deliveries:  # in the order they were queued
            if delivery.id in done:
                continue
            if delivery.kind != "digest" and await self._held(channel_id, delivery.id):
                break  # an earlier message of this channel just failed: keep the order
            group = [delivery]
            if delivery.kind == "digest":  # every due story of this digest, in one message
                group = [d for d in deliveries if d.kind == "digest" and d.route == delivery.route]
            done.update(d.id for d in group)
            try:
                await self._deliver(channel_id, group)
            except Exception as exc:  # a template or database fault: count it as an attempt
                error = f"internal error: {type(exc).__name__}: {logsetup.one_line(exc)}"
                log.error(
                    "delivery %d: %s",
                    delivery.id,
                    error,
                    extra={"action": "deliver", "alert": delivery.id},
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
                except Exception as again:  # the database is away too: the next round retries
                    log.warning(
                        "delivery %d: could not record the failure (%s); it stays claimed "
                        "and is retried when its claim expires",
                        delivery.id,
                        logsetup.one_line(again),
                        extra={"action": "deliver", "alert": delivery.id},
                    )
            handled += len(group)
        return handled

    async def _held(self, channel_id: str, delivery_id: int) -> bool:
        """Is an earlier delivery of this channel waiting for a retry?"""
        return await asyncio.to_thread(self.outbox.held, channel_id, delivery_id, self.clock())

    async def _deliver(self, channel_id: str, group: Sequence[Delivery]) -> None:
        from watcher import render

        now = self.clock()
        lead = group[0]
        channel = self.channels.get(channel_id)
        if channel is None or not channel.enabled:
            why = "is not configured" if channel is None else "is disabled"
            for d in group:
                await self._not_sent(d, "skipped", f"channel {channel_id} {why}", now)
            return
        route = self.routes.get(lead.route)
        tz = (route.timezone if route else None) or self.config.settings.timezone
        fmt = render.channel_format(channel.url)
        templates = self.config.settings.templates_dir
        active = await asyncio.to_thread(self.outbox.silences, now)
        if lead.kind == "ops":
            message = render.render_ops(
                lead.subject or "watcher",
                (lead.body or "").splitlines(),
                fmt,
                templates_dir=templates,
            )
            await self._send(channel.url, group, message, now)
            return
        views = []
        for d in group:
            found = await asyncio.to_thread(self.outbox.view, d, self.names)
            if found is None:
                await self._not_sent(d, "skipped", "the story no longer exists", now)
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
            return
        if lead.kind == "digest":
            name = lead.route
            message = render.render_digest(
                [v for _, v in views], name, fmt, tz, templates_dir=templates
            )
        else:
            message = render.render_alert(views[0][1], fmt, tz, templates_dir=templates)
        await self._send(channel.url, [d for d, _ in views], message, now)

    async def _send(
        self, url: str, group: Sequence[Delivery], message: Message, now: datetime
    ) -> None:
        timeout = self.config.settings.delivery_timeout.total_seconds()
        try:
            result = await asyncio.wait_for(
                asyncio.to_thread(self.send, url, message, timeout), timeout + 10
            )
        except TimeoutError:  # the send goes on in its thread; it may yet arrive
            result = SendResult(
                outcome="uncertain", error=f"no answer within {timeout:g}s", elapsed=timeout
            )
        crash_point("after_send")
        if self.on_attempt is not None:
            self.on_attempt(group[0].channel, result.outcome)
        error = logsetup.redact(result.error) if result.error else None
        if result.outcome == "uncertain":
            error = f"uncertain (timed out; the message may have arrived): {error}"
        for d in group:
            status, due = self._next_state(d, result)
            await asyncio.to_thread(
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
            )
            extra = {"action": "deliver", "alert": d.id, "channel": d.channel}
            if status == "sent":
                log.info("delivery %d sent to %s", d.id, d.channel, extra=extra)
                await self._schedule_reminder(d, now)
            elif status == "pending":
                log.warning(
                    "delivery %d to %s: %s (attempt %d; retrying at %s)",
                    d.id,
                    d.channel,
                    error,
                    d.attempts + 1,
                    f"{due:%H:%M:%S}",
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
                if status == "failed" and d.kind != "ops":
                    await self._tell_ops(d, error or "failed", now)

    async def _not_sent(self, d: Delivery, status: str, why: str, now: datetime) -> None:
        """Record a delivery that will not be sent (skipped or silenced), and why."""
        await asyncio.to_thread(
            self.outbox.record, d, outcome=status, status=status, now=now, error=why, counts=False
        )

    def _next_state(self, d: Delivery, result: SendResult) -> tuple[str, datetime | None]:
        """(new status, next due time) after an attempt."""
        if result.outcome == "sent":
            return "sent", None
        now = self.clock()
        attempt = d.attempts + 1
        if result.outcome == "uncertain":
            # A timeout may hide a message that arrived: try once more, then stop.
            if d.last_error is not None and d.last_error.startswith("uncertain"):
                return "uncertain", None
            return "pending", now + self._backoff(attempt)
        if attempt >= self.config.settings.delivery_attempts:
            return "failed", None
        return "pending", now + self._backoff(attempt)

    def _backoff(self, attempt: int) -> timedelta:
        base = self.config.settings.delivery_backoff.total_seconds()
        cap = self.config.settings.delivery_max_backoff.total_seconds()
        delay = min(cap, base * 2 ** (attempt - 1))
        return timedelta(seconds=delay * random.uniform(0.8, 1.2))

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

    async def _tell_ops(self, d: Delivery, error: str, now: datetime) -> None:
        subject = f"watcher: delivery to {d.channel} failed"
        body = (
            f"Delivery {d.id} ({d.kind} of story {d.story_id}, route {d.route}) to channel "
            f"{d.channel} failed after {d.attempts + 1} attempts.\nLast error: {error}\n"
            f"Retry with: watcher alerts retry {d.id}"
        )
        await self.notify_ops(subject, body, now)

    async def notify_ops(self, subject: str, body: str, now: datetime) -> int:
        """Queue an operator alert on every channel of every ops route; returns how many."""
        targets = ops_targets(self.config.routes)
        return await asyncio.to_thread(self.outbox.add_ops, targets, subject, body, now)


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

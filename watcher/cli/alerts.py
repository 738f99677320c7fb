"""`watcher alerts` (list, retry) and `watcher notify test`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from watcher import log as logsetup
from watcher.cli.base import Context, cli, config_exists, fail, one_line_text, pass_ctx, table

if TYPE_CHECKING:
    from watcher.types import ChannelStatus, Delivery


@cli.group()
def alerts() -> None:
    """The outbox: what was sent, what waits, what failed."""


@alerts.command("list")
@click.option(
    "--status",
    type=click.Choice(
        [
            *("pending", "sent", "failed", "uncertain", "expired"),
            *("superseded", "silenced", "skipped", "withdrawn"),
        ]
    ),
    help="Only deliveries in this state.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Show at most this many (the newest).",
)
@pass_ctx
def alerts_list(ctx: Context, status: str | None, limit: int) -> None:
    """Deliveries, newest first: id, status, kind, story, route, channel, due or sent time,
    attempts, and the last error or why a pending one waits."""
    from watcher.store.outbox import Outbox

    with ctx.open_store(existing=True, need_config=config_exists(ctx)) as store:
        outbox = Outbox(store)
        rows = outbox.listing(status, limit)
        down = outbox.channels_down()
    shown = [
        (
            str(d.id),
            d.status,
            d.kind,
            str(d.story_id or "-"),
            d.route,
            d.channel,
            ctx.when(d.sent_at or d.due_at),
            str(d.attempts),
            one_line_text(_why(ctx, d, down.get(d.channel)) or d.last_error or "", 100),
        )
        for d in rows
    ]
    header = ("ID", "STATUS", "KIND", "STORY", "ROUTE", "CHANNEL", "WHEN", "TRIES", "LAST ERROR")
    table(header, shown, empty=f"no {status or ''} deliveries".replace("  ", " "))


def _why(ctx: Context, d: Delivery, down: ChannelStatus | None) -> str | None:
    """Why a pending delivery waits, when its channel is down."""
    if d.status != "pending" or down is None:
        return None
    return (
        f"waiting: {d.channel} unreachable since {ctx.when(down.down_since)}, next try "
        f"{ctx.when(down.next_try_at, seconds=True)} ({down.failures} tries): "
        f"{down.last_error or ''}"
    )


@alerts.command("retry")
@click.argument("delivery_id", type=int, required=False)
@click.option(
    "--channel",
    "channel_id",
    metavar="CHANNEL",
    help="Send this channel's waiting messages now, without waiting out its backoff.",
)
@pass_ctx
def alerts_retry(ctx: Context, delivery_id: int | None, channel_id: str | None) -> None:
    """Queue a failed (or any finished) delivery again, or make a pending one due now; with
    --channel, make every message waiting for CHANNEL due now. A channel that was down is
    tried again at once (its backoff is cleared). The running daemon sends them within a
    second, or the next `watcher run --once`."""
    from watcher.clock import utcnow
    from watcher.store.outbox import Outbox

    if (delivery_id is None) == (channel_id is None):
        fail("give a delivery ID or --channel CHANNEL (see `watcher alerts list`)", code=2)
    with ctx.open_store(existing=True, need_config=config_exists(ctx)) as store:
        outbox = Outbox(store)
        if channel_id is not None:
            waiting, was = outbox.due_now(utcnow(), channel=channel_id)
            if not waiting and was is None:
                fail(f"no message waits for channel {channel_id!r} (see `watcher alerts list`)")
            click.echo(
                f"{_count(waiting, 'message')} for {channel_id} due now"
                + (f" ({channel_id} was down since {ctx.when(was.down_since)})" if was else "")
            )
            return
        assert delivery_id is not None
        delivery = outbox.get(delivery_id)
        if delivery is None:
            fail(f"no delivery {delivery_id} (see `watcher alerts list`)")
        if delivery.status == "pending":
            waiting, was = outbox.due_now(utcnow(), delivery_id=delivery_id)
            if waiting:
                click.echo(
                    f"delivery {delivery_id} due now"
                    + (f" ({delivery.channel} is tried again at once)" if was else "")
                )
                return
        if not outbox.retry(delivery_id, utcnow()):
            fail(f"delivery {delivery_id} changed meanwhile; try again")
    click.echo(f"delivery {delivery_id} queued again (was {delivery.status})")


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@cli.group()
def notify() -> None:
    """Channels: check that they reach people."""


@notify.command("test")
@click.argument("channel_ids", nargs=-1, metavar="[CHANNEL]...")
@pass_ctx
def notify_test(ctx: Context, channel_ids: tuple[str, ...]) -> None:
    """Send a test message to every channel (or those named) and report each result. A
    channel that was down and took the test message is tried again at once (its waiting
    messages no longer wait out its backoff). Exit code 1 when any failed."""
    from watcher.outbox import send_test

    config = ctx.config().config
    known = {c.id for c in config.channels}
    unknown = [c for c in channel_ids if c not in known]
    if unknown:
        fail(
            f"unknown channel {unknown[0]!r} (channels: {', '.join(sorted(known)) or 'none'})",
            code=2,
        )
    if not config.channels:
        fail("no channels configured (add some under `channels:` in sources.yaml)")
    failed = 0
    reached = []
    for channel_id, result in send_test(config, channel_ids):
        if result.outcome == "sent":
            reached.append(channel_id)
            click.echo(f"{channel_id}: sent ({result.elapsed:.1f}s)")
        else:
            failed += 1
            said = one_line_text(logsetup.redact(result.error or ""), None)
            click.echo(f"{channel_id}: {result.outcome}: {said}")
    if reached:
        _channels_up(ctx, reached)
    if failed:
        sys.exit(1)


def _channels_up(ctx: Context, channel_ids: list[str]) -> None:
    """Channels a test message reached are up: their waiting messages go at once instead of
    after their backoff. Without a database (none yet, or unavailable) there is nothing to
    clear; the test's result stands."""
    from watcher.store import Store, is_database_error, missing_file
    from watcher.store.outbox import Outbox

    url = ctx.database_url(need_config=True)
    if missing_file(url):
        return
    try:
        store = Store.open(url)
    except Exception:
        return
    try:
        outbox = Outbox(store)
        for channel_id in channel_ids:
            was = outbox.channel_up(channel_id)
            if was is not None:
                click.echo(
                    f"{channel_id}: was down since {ctx.when(was.down_since)}; its waiting "
                    "messages are due now"
                )
    except Exception as exc:
        if not is_database_error(exc):
            raise
    finally:
        store.close()

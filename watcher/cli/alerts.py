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
@click.argument("delivery_id", type=int)
@pass_ctx
def alerts_retry(ctx: Context, delivery_id: int) -> None:
    """Queue a failed (or any finished) delivery again; the running daemon sends it within
    a second, or the next `watcher run --once`."""
    from watcher.clock import utcnow
    from watcher.store.outbox import Outbox

    with ctx.open_store(existing=True, need_config=config_exists(ctx)) as store:
        outbox = Outbox(store)
        delivery = outbox.get(delivery_id)
        if delivery is None:
            fail(f"no delivery {delivery_id} (see `watcher alerts list`)")
        if not outbox.retry(delivery_id, utcnow()):
            fail(f"delivery {delivery_id} is already pending")
    click.echo(f"delivery {delivery_id} queued again (was {delivery.status})")


@cli.group()
def notify() -> None:
    """Channels: check that they reach people."""


@notify.command("test")
@click.argument("channel_ids", nargs=-1, metavar="[CHANNEL]...")
@pass_ctx
def notify_test(ctx: Context, channel_ids: tuple[str, ...]) -> None:
    """Send a test message to every channel (or those named) and report each result.
    Exit code 1 when any failed."""
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
    for channel_id, result in send_test(config, channel_ids):
        if result.outcome == "sent":
            click.echo(f"{channel_id}: sent ({result.elapsed:.1f}s)")
        else:
            failed += 1
            said = one_line_text(logsetup.redact(result.error or ""), None)
            click.echo(f"{channel_id}: {result.outcome}: {said}")
    if failed:
        sys.exit(1)

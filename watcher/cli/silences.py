"""`watcher silence`: mute deliveries that match, for a while, with a reason."""

from __future__ import annotations

from datetime import timedelta

import click

from watcher.cli.base import Context, cli, config_exists, fail, one_line_text, pass_ctx, table
from watcher.cli.base import who as who_made


@cli.group()
def silence() -> None:
    """Mute stories for a while: they are recorded but not sent."""


@silence.command("add")
@click.option(
    "--match",
    "matchers",
    multiple=True,
    required=True,
    metavar="KEY=VALUE",
    help="source, event, severity, rule, tag, lang, route, channel or story; shell wildcards "
    "allowed (source=dailynk-*). Several --match must all hold. Each must match something "
    "sources.yaml names.",
)
@click.option("--for", "duration", required=True, metavar="DURATION", help="e.g. 6h, 2d.")
@click.option("--reason", required=True, help="Why (shown in `silence list` and the log).")
@click.option("--by", "created_by", help="Who (default: the account running the command).")
@pass_ctx
def silence_add(
    ctx: Context, matchers: tuple[str, ...], duration: str, reason: str, created_by: str | None
) -> None:
    """Mute matching stories from now for DURATION.

    A matcher that matches nothing sources.yaml names (source=nosuch, a wildcard that
    matches no source) is refused, with exit code 2.
    """
    import sys

    from watcher.clock import utcnow
    from watcher.config import parse_duration
    from watcher.routing import parse_matchers, silence_problems
    from watcher.store.outbox import Outbox

    try:
        parsed = parse_matchers(matchers)
    except ValueError as exc:
        fail(str(exc), code=2)
    try:
        length = parse_duration(duration)
    except ValueError as exc:
        fail(f"--for: {exc}", code=2)
    if length < timedelta(minutes=1):  # 0s would be over before it began
        fail(f"--for: must be at least 1m, got {duration!r}", code=2)
    if config_exists(ctx):
        problems = silence_problems(parsed, ctx.config().names)
        for problem in problems:
            click.echo(f"error: --match {problem}", err=True)
        if problems:
            sys.exit(2)
    else:
        click.echo(
            f"warning: no {ctx.config_path}: the matchers are not checked against it", err=True
        )
    now = utcnow()
    with ctx.open_store(existing=True, need_config=config_exists(ctx)) as store:
        sid = Outbox(store).add_silence(
            parsed,
            reason=reason,
            starts_at=now,
            ends_at=now + length,
            created_by=who_made(created_by),
        )
    click.echo(f"silence {sid} active until {ctx.when(now + length)}")


@silence.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include expired silences.")
@pass_ctx
def silence_list(ctx: Context, show_all: bool) -> None:
    """Active silences (all with --all): id, matchers, until, who, why."""
    from watcher.clock import utcnow
    from watcher.store.outbox import Outbox

    now = utcnow()
    with ctx.open_store(existing=True, need_config=config_exists(ctx)) as store:
        rows = Outbox(store).silences(None if show_all else now)
    shown = [
        (
            str(s.id),
            "active" if s.starts_at <= now < s.ends_at else "expired",
            ctx.when(s.ends_at),
            " ".join(f"{k}={v}" for k, v in s.matchers.items()),
            s.created_by or "-",
            one_line_text(s.reason, 80),
        )
        for s in rows
    ]
    header = ("ID", "STATE", "UNTIL", "MATCHERS", "BY", "REASON")
    table(header, shown, empty="no silences" if show_all else "no active silences")


@silence.command("expire")
@click.argument("silence_id", type=int)
@pass_ctx
def silence_expire(ctx: Context, silence_id: int) -> None:
    """End a silence now."""
    from watcher.clock import utcnow
    from watcher.store.outbox import Outbox

    with ctx.open_store(existing=True, need_config=config_exists(ctx)) as store:
        ok = Outbox(store).expire_silence(silence_id, utcnow())
    if not ok:
        fail(f"no active silence {silence_id} (see `watcher silence list --all`)")
    click.echo(f"silence {silence_id} expired")


# --------------------------------------------------------------------------- web

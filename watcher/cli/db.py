"""`watcher db`: apply and show migrations; drop old unmatched items (retention)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import click

from watcher import log as logsetup
from watcher.cli.base import Context, cli, config_exists, fail, pass_ctx
from watcher.errors import StoreError

if TYPE_CHECKING:
    from watcher.store.prune import PruneReport


@cli.group()
def db() -> None:
    """Database schema: migrations (applied automatically by `watcher run`); retention."""


@db.command("upgrade")
@pass_ctx
def db_upgrade(ctx: Context) -> None:
    """Apply pending migrations to the database (a no-op when it is current)."""
    with ctx.open_store(migrate=False, need_config=config_exists(ctx)) as store:
        try:
            before, after = store.upgrade()
        except StoreError as exc:
            fail(str(exc))
        except Exception as exc:
            fail(f"migration failed: {logsetup.one_line(exc)}")
    if before == after:
        click.echo(f"database is current (revision {after})")
    else:
        click.echo(f"database upgraded from {before or 'empty'} to {after}")


@db.command("current")
@pass_ctx
def db_current(ctx: Context) -> None:
    """Print the applied migration revision and whether it is the newest."""
    from watcher.store import SCHEMA_HEAD

    # An existing database without watcher's tables is "empty"; a file that is not there is
    # not created to say so.
    ctx.refuse_missing(ctx.database_url(need_config=config_exists(ctx)))
    with ctx.open_store(migrate=False, need_config=config_exists(ctx)) as store:
        try:
            revision = store.current_revision()
        except StoreError as exc:
            fail(str(exc))
    state = "current" if revision == SCHEMA_HEAD else f"behind (newest is {SCHEMA_HEAD})"
    click.echo(f"{revision or 'empty'}: {state}")


#: `db prune` keeps at least a day: a younger item may still be in its feed's next poll.
_MIN_AGE = timedelta(days=1)


@db.command("prune")
@click.option(
    "--older-than",
    "older_than",
    required=True,
    metavar="AGE",
    help="Drop unmatched items stored longer ago than this (e.g. 180d, 26w).",
)
@click.option("--dry-run", is_flag=True, help="Count what would go; change nothing.")
@click.option(
    "--vacuum",
    is_flag=True,
    help="Then give the space back (SQLite: rewrites the file; needs that much free disk).",
)
@pass_ctx
def db_prune(ctx: Context, older_than: str, dry_run: bool, vacuum: bool) -> None:
    """Drop items no rule matched that are older than AGE, with their earlier versions.

    Items of stories, matches, stories and the outbox (what was sent) are always kept. A
    dropped item's key is remembered, so an outlet that still carries it never makes it new
    again: nothing is re-stored or re-sent.
    """
    from watcher.clock import utcnow
    from watcher.config import parse_duration
    from watcher.store.prune import prune

    try:
        age = parse_duration(older_than, example="180d")
    except ValueError as exc:
        fail(f"--older-than: {exc}", code=2)
    if age < _MIN_AGE:
        fail(
            f"--older-than {older_than}: at least 1d (younger items are still in the feeds)",
            code=2,
        )
    with ctx.open_store(existing=True, need_config=config_exists(ctx)) as store:
        try:
            report = prune(store, older_than=age, now=utcnow(), dry_run=dry_run, vacuum=vacuum)
        except Exception as exc:
            fail(f"prune failed: {logsetup.one_line(exc)}")
    for line in _prune_lines(report, ctx):
        click.echo(line)


def _prune_lines(report: PruneReport, ctx: Context) -> list[str]:
    verb = "would drop" if report.dry_run else "dropped"
    lines = [
        f"items stored before {ctx.when(report.cutoff)} that no rule matched: {verb} "
        f"{report.items:,} ({report.revisions:,} earlier versions, "
        f"{report.source_links:,} source links)",
        f"kept: {report.kept_matched:,} older items that matched a rule, every match and "
        f"story, and all {report.deliveries:,} outbox records",
    ]
    if not report.dry_run and report.items:
        lines.append(
            f"remembered {report.items:,} dropped keys: an outlet that still carries one does "
            "not make it new"
        )
    if report.trimmed_revisions:
        from watcher.store.prune import KEEP_REVISIONS

        lines.append(
            f"earlier versions of kept items beyond the first and the latest {KEEP_REVISIONS} "
            f"of each: {'would trim' if report.dry_run else 'trimmed'} "
            f"{report.trimmed_revisions:,}"
        )
    if report.size_before is not None and report.size_after is not None:
        size = f"database: {_mb(report.size_before)}"
        if not report.dry_run:
            size += f" → {_mb(report.size_after)}"
            if report.vacuumed:
                size += " (vacuumed)"
            elif report.free_after:
                size += (
                    f" ({_mb(report.free_after)} free inside the file, reused by new items; "
                    "--vacuum gives it back to the disk)"
                )
        lines.append(size)
    return lines


def _mb(size: int) -> str:
    return f"{size / 1_000_000:,.1f} MB"


# --------------------------------------------------------------------------- run

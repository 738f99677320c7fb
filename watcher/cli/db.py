"""`watcher db`: apply and show migrations."""

from __future__ import annotations

import click

from watcher import log as logsetup
from watcher.cli.base import Context, cli, config_exists, fail, pass_ctx
from watcher.errors import StoreError


@cli.group()
def db() -> None:
    """Database schema: migrations (applied automatically by `watcher run`)."""


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

    with ctx.open_store(migrate=False, need_config=config_exists(ctx)) as store:
        try:
            revision = store.current_revision()
        except StoreError as exc:
            fail(str(exc))
    state = "current" if revision == SCHEMA_HEAD else f"behind (newest is {SCHEMA_HEAD})"
    click.echo(f"{revision or 'empty'}: {state}")


# --------------------------------------------------------------------------- run

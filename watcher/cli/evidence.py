"""`watcher evidence`: the first-seen record of matched reports, as WARC files, and checks."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from watcher.cli.base import Context, cli, config_exists, fail, pass_ctx, progress


@cli.group()
def evidence() -> None:
    """The bytes watcher fetched for each matched report, as standard WARC files.

    For every item a rule matches, watcher keeps what it fetched, as fetched: the feed
    response (and the article page when it was fetched), its status, final URL, headers and
    fetch time, the text the rules read, and the SHA-256 of each (docs/evidence.md).
    """


@evidence.command("export")
@click.option("--story", "story_id", type=int, help="Only the reports of this story.")
@click.option(
    "--since",
    metavar="DATE",
    help="Only reports first seen at or after DATE (2026-11-01 or an ISO time; UTC unless "
    "it has an offset).",
)
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="The WARC file to write (.warc.gz compressed, .warc plain).",
)
@pass_ctx
def evidence_export(ctx: Context, story_id: int | None, since: str | None, output: Path) -> None:
    """Write the evidence as a WARC 1.1 file: a request and response record per capture
    (payload digests in SHA-256) and a metadata record per report (item, story, fetch time,
    the text the rules read and its SHA-256)."""
    from watcher import log as logsetup
    from watcher.evidence import warc_records
    from watcher.items import parse_date
    from watcher.store.evidence import records

    since_at = None
    if since:
        since_at = parse_date(since, "UTC")
        if since_at is None:
            fail(f"--since: expected a date like 2026-11-01, got {since!r}", code=2)
    partial = output.with_name(output.name + ".part")
    if config_exists(ctx):
        # the keys its ${VAR}s name are redacted from evidence kept before they were redacted
        # when stored, whichever way the database is given (--db, WATCHER_DATABASE_URL)
        ctx.config()
    with ctx.open_store(existing=True, need_config=config_exists(ctx)) as store:
        with store.engine.connect() as conn, partial.open("wb") as out:
            found = records(conn, story_id=story_id, since=since_at)
            with progress(found, "exporting evidence") as shown:
                count = warc_records(
                    shown, out, gzip=not output.name.endswith(".warc"), redact=logsetup.redact_whole
                )
    if not count:
        partial.unlink()
        what = f"story {story_id}" if story_id is not None else "the database"
        fail(f"no evidence in {what}{' since ' + since if since else ''}: nothing written")
    partial.replace(output)
    click.echo(f"{count} report{'s' if count != 1 else ''} written to {output}")


@evidence.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def evidence_verify(file: Path) -> None:
    """Recompute every digest in a WARC file (.warc or .warc.gz): block and payload digests
    and the SHA-256 of each report's text. Exit 1 on any mismatch."""
    from watcher.evidence import verify

    with file.open("rb") as stream:
        checked = verify(stream)
    for problem in checked.problems:
        click.echo(f"{file}: {problem}", err=True)
    if checked.problems:
        sys.exit(1)
    click.echo(f"{file}: {checked.records} records, {checked.digests} digests verified")

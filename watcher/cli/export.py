"""`watcher export`: items (CSV, JSON Lines) and alerts with their attempts."""

from __future__ import annotations

import sys

import click

from watcher.cli.base import Context, cli, config_exists, fail, pass_ctx, progress


@cli.group()
def export() -> None:
    """Write stored data to stdout."""


@export.command("items")
@click.option(
    "--since",
    metavar="DATE",
    help="Only items fetched at or after DATE "
    "(2026-11-01 or an ISO time; UTC unless it has an offset).",
)
@click.option(
    "--source", "source_id", metavar="ID", help="Only items first carried by this source."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv"]),
    default="jsonl",
    show_default=True,
    help="One JSON object per line, or CSV with a header row.",
)
@pass_ctx
def export_items(ctx: Context, since: str | None, source_id: str | None, fmt: str) -> None:
    """Every stored item (baseline included) as UTF-8 JSON Lines or CSV.

    JSON Lines gives each value exactly as stored. CSV is for spreadsheets: each cell is one
    line without control characters, and a cell that would start with = + - or @ starts with
    ' instead, so that no title a source wrote runs as a formula when the file is opened."""
    import csv
    import json

    from watcher.items import parse_date, published_day, published_fields

    since_at = None
    if since:
        since_at = parse_date(since, "UTC")
        if since_at is None:
            fail(f"--since: expected a date like 2026-11-01, got {since!r}", code=2)
    fields = [
        "source",
        "key",
        "url",
        "title",
        "text",
        "lang",
        "published_at",
        "published_precision",
        "published_day",
        "published_raw",
        "fetched_at",
        "baseline",
    ]
    out = sys.stdout
    writer = csv.DictWriter(out, fieldnames=fields) if fmt == "csv" else None
    if writer:
        writer.writeheader()
    with ctx.open_store(existing=True, need_config=config_exists(ctx)) as store:
        if source_id is not None:
            # the file's sources, and those only the database still knows (removed ones)
            configured = (
                {s.id for s in ctx.config().config.sources} if config_exists(ctx) else set()
            )
            known = sorted(configured | set(store.source_states()))
            if source_id not in known:
                import difflib

                close = difflib.get_close_matches(source_id, known, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"sources: {', '.join(known)}"
                fail(f"--source: no source {source_id!r} ({hint})", code=2)
        found = store.iter_items(since=since_at, source_id=source_id)
        with progress(found, "exporting items") as shown:
            for item in shown:
                row = {
                    "source": item.source_id,
                    "key": item.key,
                    "url": item.url,
                    "title": item.title,
                    "text": item.text,
                    "lang": item.lang,
                    **published_fields(item.published_at, published_day(item)),
                    "published_raw": item.published_raw,
                    "fetched_at": item.fetched_at.isoformat(),
                    "baseline": item.baseline,
                }
                if writer:
                    writer.writerow({name: _csv_cell(value) for name, value in row.items()})
                else:
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")


#: What makes a spreadsheet read a cell as a formula (OWASP's list; tab and carriage return
#: cannot start a cleaned cell).
_FORMULA_START = ("=", "+", "-", "@")


def _csv_cell(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: one line, control characters and bidi overrides
    removed (`render.clean`), and a leading ' before a formula's first character (OWASP's
    advice on CSV injection). None and booleans are written as they are."""
    if not isinstance(value, str):
        return value
    from watcher.render import clean

    cell = clean(value)
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


# --------------------------------------------------------------------------- rules


@export.command("alerts")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl"]),
    default="jsonl",
    show_default=True,
    help="One JSON object per story, a line each.",
)
@pass_ctx
def export_alerts(ctx: Context, fmt: str) -> None:
    """Every story with its items, routes, deliveries and their attempts, as JSON Lines."""
    import json

    from watcher.store.outbox import Outbox

    out = sys.stdout
    with ctx.open_store(existing=True, need_config=config_exists(ctx)) as store:
        with progress(Outbox(store).export(), "exporting stories") as stories:
            for row in stories:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------- silences


# --------------------------------------------------------------------------- labels


@export.command("labels")
@click.option(
    "--all-stories",
    "every_story",
    is_flag=True,
    help="Every story's reports, not only those of corrected stories.",
)
@pass_ctx
def export_labels(ctx: Context, every_story: bool) -> None:
    """The reports of corrected stories as labelled items for `watcher eval`, as JSON Lines
    (id, url, source, lang, published, title, text, labels, relevant, story).

    A story marked not relevant gives `relevant: false`; the others give the events their
    reports matched and `story-ID` as the cluster, as merged or split by advocates. So
    corrections become a test set: `watcher export labels > mine.jsonl && watcher eval
    mine.jsonl --stories`.
    """
    import json

    from watcher.store.corrections import Corrections

    out = sys.stdout
    with ctx.open_store(existing=True, need_config=config_exists(ctx)) as store:
        with progress(Corrections(store).labels(every_story=every_story), "exporting") as rows:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")

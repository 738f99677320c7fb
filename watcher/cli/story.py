"""`watcher story`: correct the machine's grouping and judgement, with who, when and why."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from watcher.cli.base import Context, cli, config_exists, fail, one_line_text, pass_ctx, table
from watcher.cli.base import who as who_made

_BY = click.option(
    "--by", help="Who made the correction (default: the account running the command)."
)
_REASON = click.option("--reason", required=True, help="Why (kept with the correction).")


@cli.group()
def story() -> None:
    """Correct stories: mark one not relevant, merge two, split a report out, undo.

    Each correction is recorded with who, when and why (`watcher story corrections`) and
    can be undone. Messages not yet sent for a story that is marked or merged away are
    withdrawn; nothing already sent is sent again. Channels that were sent a message about
    a story marked not relevant get one retraction.
    """


def _run(ctx: Context, action: Callable[[Any, str], Any], by: str | None) -> None:
    """Open the store and the routes, apply one correction, print what it did."""

    from watcher.routing import Alerting
    from watcher.store.corrections import CorrectionError, Corrections, NotFound

    who = who_made(by)
    alerting = Alerting.from_config(ctx.config().config) if config_exists(ctx) else None
    with ctx.open_store(existing=True, need_config=config_exists(ctx)) as store:
        corrections = Corrections(store, alerting)
        try:
            done = action(corrections, who)
        except NotFound as exc:
            fail(str(exc), code=1)  # nothing found
        except CorrectionError as exc:
            fail(str(exc), code=2)  # asked for what cannot be done
    queued = len(done.detail.get("queued", []))
    withdrawn = len(done.detail.get("withdrawn", []))
    extra = []
    if withdrawn:
        extra.append(f"{withdrawn} message{'s' if withdrawn != 1 else ''} not yet sent withdrawn")
    if queued:
        noun = "retraction" if done.action == "not_relevant" else "message"
        extra.append(f"{queued} {noun}{'s' if queued != 1 else ''} queued")
    tail = f" ({'; '.join(extra)})" if extra else ""
    what = one_line_text(done.describe(), None)  # a split names a report by its key
    click.echo(f"correction {done.id}: {what}{tail}; undo with `watcher story undo {done.id}`")


@story.command("mark")
@click.argument("story_id", type=int)
@click.option(
    "--not-relevant",
    "not_relevant",
    is_flag=True,
    required=True,
    help="The story is not what the rules took it for: it sends nothing more.",
)
@_REASON
@_BY
@pass_ctx
def story_mark(
    ctx: Context, story_id: int, not_relevant: bool, reason: str, by: str | None
) -> None:
    """Mark STORY_ID not relevant: its messages not yet sent are withdrawn, and reports that
    join it later are kept, quietly. Each channel that was already sent a message about it
    gets one short retraction ("Retracted: <headline> — marked not relevant by <who>:
    <reason>", with the story's link), on the story's routes, at once; a channel that was
    sent nothing gets nothing."""
    from watcher.clock import utcnow

    # --not-relevant is required (click refuses the command without it): the one mark so far,
    # named so that a later kind of mark is a new flag, not a change of meaning.
    _run(ctx, lambda c, who: c.mark_not_relevant(story_id, by=who, reason=reason, now=utcnow()), by)


@story.command("merge")
@click.argument("into_id", type=int)
@click.argument("other_id", type=int)
@_REASON
@_BY
@pass_ctx
def story_merge(ctx: Context, into_id: int, other_id: int, reason: str, by: str | None) -> None:
    """Merge OTHER_ID into INTO_ID: one event reported as two stories. OTHER_ID's reports
    move to INTO_ID and OTHER_ID is closed; if either had a message sent, one update goes to
    INTO_ID's routes naming what was added."""
    from watcher.clock import utcnow

    _run(ctx, lambda c, who: c.merge(into_id, other_id, by=who, reason=reason, now=utcnow()), by)


@story.command("split")
@click.argument("story_id", type=int)
@click.option(
    "--item",
    "item_key",
    required=True,
    metavar="KEY",
    help="The report's key (its URL or id: `watcher export items`, the story page).",
)
@_REASON
@_BY
@pass_ctx
def story_split(ctx: Context, story_id: int, item_key: str, reason: str, by: str | None) -> None:
    """Split the report KEY out of STORY_ID: it founds a story of its own, alerted on its
    routes like any new story (unless it is older than max_alert_age)."""
    from watcher.clock import utcnow

    _run(
        ctx,
        lambda c, who: c.split(story_id, item_key, by=who, reason=reason, now=utcnow()),
        by,
    )


@story.command("undo")
@click.argument("correction_id", type=int)
@click.option("--by", help="Who undid it (default: the account running the command).")
@pass_ctx
def story_undo(ctx: Context, correction_id: int, by: str | None) -> None:
    """Undo correction CORRECTION_ID (the latest on the same stories first): reports move
    back and withdrawn messages return to the queue; what it queued and is not yet sent is
    withdrawn. A mark whose retraction was sent is followed by a "reinstated" notice there."""

    from watcher.clock import utcnow
    from watcher.store.corrections import CorrectionError, Corrections, NotFound

    who = who_made(by)
    with ctx.open_store(existing=True, need_config=config_exists(ctx)) as store:
        try:
            done = Corrections(store).undo(correction_id, by=who, now=utcnow())
        except NotFound as exc:
            fail(str(exc), code=1)  # nothing found
        except CorrectionError as exc:
            fail(str(exc), code=2)
    click.echo(f"correction {done.id} undone: {one_line_text(done.describe(), None)}")


@story.command("corrections")
@click.option("--story", "story_id", type=int, help="Only corrections of this story.")
@pass_ctx
def story_corrections(ctx: Context, story_id: int | None) -> None:
    """Every correction: id, when, who, what, why, and whether it was undone."""
    from watcher.store.corrections import Corrections

    with ctx.open_store(existing=True, need_config=config_exists(ctx)) as store:
        found = Corrections(store).listing(story_id)
    table(
        ["ID", "WHEN", "BY", "WHAT", "WHY", "UNDONE"],
        [
            [
                str(c.id),
                ctx.when(c.at),
                c.by,
                one_line_text(c.describe(), None),  # a split names a report by its key
                one_line_text(c.reason, 60),
                f"{ctx.when(c.undone_at)} by {c.undone_by}" if c.undone_at else "-",
            ]
            for c in found
        ],
        empty="no corrections",
    )

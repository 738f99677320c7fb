"""Day-only reports: an item whose outlet gave its day but no time of day ("2026-11-20")
keeps that day, and a story founded by one keeps it as its event's day, so that the pages',
feeds' and API's `since`/`until` compare that day (not its stored midnight) and lists order
it at the day's end, in any zone.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from watcher.items import written_day

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

#: (table, its new column)
COLUMNS = (("items", "published_day"), ("stories", "event_day"))
#: Items read and written per round trip while the days are filled in.
BATCH = 5000


def upgrade() -> None:
    conn = op.get_bind()
    for table, name in COLUMNS:
        # (a database built at a newer schema and stamped back, as tests of older migrations
        # do, has the column already)
        if name in {c["name"] for c in sa.inspect(conn).get_columns(table)}:
            continue
        # a plain ADD COLUMN on both databases (see 0018)
        op.add_column(table, sa.Column(name, sa.Date(), nullable=True))
    # The day alone is read from the date as the outlet wrote it, as every view read it so far.
    items = sa.table(
        "items",
        sa.column("id", sa.Integer),
        sa.column("published_at", sa.DateTime),
        sa.column("published_raw", sa.Text),
        sa.column("published_day", sa.Date),
    )
    last = 0
    while True:
        found = conn.execute(
            sa.select(items.c.id, items.c.published_raw)
            .where(items.c.id > last, items.c.published_at.is_not(None))
            .order_by(items.c.id)
            .limit(BATCH)
        ).all()
        if not found:
            break
        last = found[-1].id
        days = [{"i": r.id, "d": written_day(r.published_raw)} for r in found]
        days = [d for d in days if d["d"] is not None]
        if days:
            conn.execute(
                items.update()
                .where(items.c.id == sa.bindparam("i"))
                .values(published_day=sa.bindparam("d")),
                days,
            )
    # A story's event is a day alone when every report that gave its time gave that day only.
    op.execute(
        "UPDATE stories SET event_day = (SELECT max(items.published_day) FROM story_items"
        " JOIN items ON items.id = story_items.item_id WHERE story_items.story_id = stories.id"
        " AND items.published_at = stories.event_at)"
        " WHERE NOT EXISTS (SELECT 1 FROM story_items JOIN items ON items.id = story_items.item_id"
        " WHERE story_items.story_id = stories.id AND items.published_at = stories.event_at"
        " AND items.published_day IS NULL)"
    )


def downgrade() -> None:
    for table, name in COLUMNS:
        # a plain DROP COLUMN on both databases (SQLite 3.35+): a batch copy of `items` would
        # lose its search triggers and expression index
        op.execute(f"ALTER TABLE {table} DROP COLUMN {name}")

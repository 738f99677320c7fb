"""Staleness by publication date: each source keeps the newest publication date of what its
last parsed poll yielded, so a source added while its feed is already frozen (old items only)
is stale from its first polls rather than 14 days later.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # (a database built at a newer schema and stamped back, as tests of older migrations do,
    # has the column already)
    if "newest_published_at" in {
        c["name"] for c in sa.inspect(op.get_bind()).get_columns("sources")
    }:
        return
    with op.batch_alter_table("sources") as batch:
        batch.add_column(
            sa.Column("newest_published_at", sa.DateTime(timezone=True), nullable=True)
        )
    # Sources polled before: the newest publication date among the items each carried.
    op.execute(
        "UPDATE sources SET newest_published_at = (SELECT max(items.published_at) FROM items"
        " JOIN item_sources ON item_sources.item_id = items.id"
        " WHERE item_sources.source_id = sources.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("sources") as batch:
        batch.drop_column("newest_published_at")

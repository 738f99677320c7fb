"""Source health that sees silence: successful polls counted, when items were last parsed and
last new, what the last poll found wrong, a permanent redirect's target, and the assessed
health (so that successive `run --once` calls add up and each change is told once).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sources") as batch:
        batch.add_column(sa.Column("ok_polls", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("items_seen_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_new_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("poll_problem", sa.Text(), nullable=True))
        batch.add_column(sa.Column("moved_to", sa.Text(), nullable=True))
        batch.add_column(sa.Column("health", sa.String(20), nullable=True))
        batch.add_column(sa.Column("health_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("health_since", sa.DateTime(timezone=True), nullable=True))
    # Sources polled before: what is stored says when they last brought something new.
    op.execute(
        "UPDATE sources SET last_new_at = (SELECT max(fetched_at) FROM items"
        " WHERE items.source_id = sources.id),"
        " items_seen_at = (SELECT max(fetched_at) FROM items WHERE items.source_id = sources.id)"
    )
    op.create_index("ix_items_source_id_fetched_at", "items", ["source_id", "fetched_at"])


def downgrade() -> None:
    op.drop_index("ix_items_source_id_fetched_at", table_name="items")
    with op.batch_alter_table("sources") as batch:
        for column in (
            "health_since",
            "health_reason",
            "health",
            "moved_to",
            "poll_problem",
            "last_new_at",
            "items_seen_at",
            "ok_polls",
        ):
            batch.drop_column(column)

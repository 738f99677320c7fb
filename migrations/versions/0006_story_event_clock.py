"""Stories on the event's clock: `stories.event_at` (indexed), each report's facts, and why
each rule fired (`matches.why`).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stories") as batch:
        batch.add_column(sa.Column("event_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_stories_event_at", ["event_at"])
    # Stories made before: their founding time is the best clock known.
    op.execute("UPDATE stories SET event_at = first_seen_at WHERE event_at IS NULL")
    with op.batch_alter_table("story_items") as batch:
        batch.add_column(sa.Column("facts", sa.Text(), nullable=True))
    with op.batch_alter_table("matches") as batch:
        batch.add_column(sa.Column("why", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("matches") as batch:
        batch.drop_column("why")
    with op.batch_alter_table("story_items") as batch:
        batch.drop_column("facts")
    with op.batch_alter_table("stories") as batch:
        batch.drop_index("ix_stories_event_at")
        batch.drop_column("event_at")

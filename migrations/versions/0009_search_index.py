"""Search: an index of every item's words (English stemmed) and CJK character bigrams (an
FTS5 table on SQLite; a tsvector table with a GIN index on PostgreSQL), built from the items
already stored; and each source's stored-item count, kept as items are stored, so pages do not
count history on every view.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from watcher.store import search

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sources") as batch:
        batch.add_column(sa.Column("item_count", sa.Integer(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE sources SET item_count = (SELECT count(*) FROM items"
        " WHERE items.source_id = sources.id)"
    )
    conn = op.get_bind()
    search.create_index(conn)
    search.rebuild(conn)


def downgrade() -> None:
    search.drop_index(op.get_bind())
    with op.batch_alter_table("sources") as batch:
        batch.drop_column("item_count")

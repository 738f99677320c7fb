"""Pruned items: `watcher db prune` drops old unmatched items and keeps a hash of each one's
key, so an item it dropped is never new again (never re-stored, re-matched or re-sent).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pruned_items",
        sa.Column("key_hash", sa.String(32), primary_key=True),
        sa.Column("pruned_at", sa.DateTime(timezone=True), nullable=False),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("pruned_items")

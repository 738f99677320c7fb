"""Which sources carried each item, and the earlier versions of edited items.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "item_sources",
        sa.Column("item_id", ID, nullable=False),
        sa.Column("source_id", sa.String(100), nullable=False),
        sa.Column("first_seen_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], ondelete="CASCADE", name="fk_item_sources_item_id_items"
        ),
        sa.ForeignKeyConstraint(
            ["source_id"], ["sources.id"], name="fk_item_sources_source_id_sources"
        ),
        sa.PrimaryKeyConstraint("item_id", "source_id", name="pk_item_sources"),
    )
    op.create_table(
        "item_revisions",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("item_id", ID, nullable=False),
        sa.Column("changed_at", TS, nullable=False),
        sa.Column("old_title", sa.Text(), nullable=False),
        sa.Column("old_text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], ondelete="CASCADE", name="fk_item_revisions_item_id_items"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_item_revisions"),
    )
    op.create_index("ix_item_revisions_item_id", "item_revisions", ["item_id"])


def downgrade() -> None:
    op.drop_index("ix_item_revisions_item_id", table_name="item_revisions")
    op.drop_table("item_revisions")
    op.drop_table("item_sources")

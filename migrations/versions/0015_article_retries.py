"""Article pages still to fetch: an item of a `fetch_article` source whose page failed (blocked,
403, timed out) keeps its listing text, and its page is tried again on later polls until it
arrives or the tries run out. One row per such item, gone when its page arrives.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "article_retries",
        sa.Column("item_id", ID, sa.ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("source_id", sa.String(100), sa.ForeignKey("sources.id"), nullable=False),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("last_tried_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_article_retries_source_id", "article_retries", ["source_id"])


def downgrade() -> None:
    op.drop_index("ix_article_retries_source_id", table_name="article_retries")
    op.drop_table("article_retries")

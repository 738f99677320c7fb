"""Story corrections (an advocate marks a story not relevant, merges two stories or splits a
report out, recorded with who, when and why, and undoable) and evidence (the bytes and
headers of what was fetched for each matched item, content-addressed and compressed), and
the re-checks that find a report removed or changed at its source.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("stories") as batch:
        batch.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="open"))
        batch.add_column(sa.Column("merged_into", ID, nullable=True))
    op.create_table(
        "story_corrections",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("story_id", ID, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("other_story_id", ID, nullable=True),
        sa.Column("by", sa.String(100), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("undone_by", sa.String(100), nullable=True),
    )
    op.create_index("ix_story_corrections_story_id", "story_corrections", ["story_id"])
    op.create_table(
        "evidence_blobs",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "evidence",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("item_id", ID, sa.ForeignKey("items.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("final_url", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("text_sha256", sa.String(64), nullable=False),
        sa.UniqueConstraint("item_id", "kind", name="uq_evidence_item_kind"),
    )

    op.create_table(
        "item_checks",
        sa.Column("item_id", ID, sa.ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("last_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("page_sha256", sa.String(64), nullable=True),
        sa.Column("page_text", sa.Text(), nullable=True),
    )
    op.create_index("ix_item_checks_due_at", "item_checks", ["due_at"])


def downgrade() -> None:
    op.drop_index("ix_item_checks_due_at", table_name="item_checks")
    op.drop_table("item_checks")
    op.drop_table("evidence")
    op.drop_table("evidence_blobs")
    op.drop_index("ix_story_corrections_story_id", table_name="story_corrections")
    op.drop_table("story_corrections")
    with op.batch_alter_table("stories") as batch:
        batch.drop_column("merged_into")
        batch.drop_column("status")

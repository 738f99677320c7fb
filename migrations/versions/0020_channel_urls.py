"""Channel URLs: a hash of the URL each channel had when a daemon last started or reloaded, so
that a channel whose URL was fixed is tried at once instead of waiting out the backoff its
old URL earned.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "channel_urls",
        sa.Column("channel", sa.String(100), primary_key=True),
        sa.Column("url_hash", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("channel_urls")

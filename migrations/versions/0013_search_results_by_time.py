"""Search results newest first by publication time (else fetch time), not by storage order:
an index of the items in that order, `search.ORDER_INDEX`, which search walks for a common
word.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

from watcher.store import search

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    search.create_order_index(op.get_bind())


def downgrade() -> None:
    op.get_bind().execute(text(f"DROP INDEX IF EXISTS {search.ORDER_INDEX}"))

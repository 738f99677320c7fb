"""Health with hysteresis: an unhealthy source is told recovered only after several clean
polls in a row, so a challenge or redirect that comes and goes is one episode and one message.
Each source keeps its clean polls in a row.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # (a database built at a newer schema and stamped back, as tests of older migrations do,
    # has the column already)
    if "clean_polls" in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("sources")}:
        return
    with op.batch_alter_table("sources") as batch:
        batch.add_column(sa.Column("clean_polls", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("sources") as batch:
        batch.drop_column("clean_polls")

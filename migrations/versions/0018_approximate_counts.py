"""Approximate counts: a report's count given with a hedge ("about 600", 600여 명, 约500名,
約600人) is kept as approximate with its match, and a story's count with whether the report it
came from hedged it, so that alerts, pages, feeds and the API show "~600 people".

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

#: The tables that keep a count of people, and with it now whether it was approximate.
TABLES = ("matches", "stories")


def upgrade() -> None:
    for table in TABLES:
        # (a database built at a newer schema and stamped back, as tests of older migrations
        # do, has the column already)
        if "people_approximate" in {
            c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)
        }:
            continue
        # A plain ADD COLUMN on both databases: no batch copy, which on SQLite would reflect
        # `matches`' foreign key to `items` and its expression index. Counts stored before were
        # read as exact, and stay so.
        op.add_column(
            table,
            sa.Column(
                "people_approximate", sa.Boolean(), nullable=False, server_default=sa.false()
            ),
        )


def downgrade() -> None:
    for table in TABLES:
        # (SQLite copies the table; reflecting `items`, which `matches` refers to, skips its
        # expression index, as it may: the copy keeps only `matches`' own columns)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression")
            with op.batch_alter_table(table) as batch:
                batch.drop_column("people_approximate")

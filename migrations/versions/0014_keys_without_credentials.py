"""Item keys and links without a user name: a link's `user@` was kept in its canonical form
(the password was not), and watcher now drops both. An item stored under such a key would
come back as a new item and could alert again; its key and link lose the user name here.
An item already stored again under the new key keeps both rows as they are.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_ITEMS = sa.table("items", sa.column("id"), sa.column("key"), sa.column("url"))


def without_user(url: str | None) -> str | None:
    """`url` without the user name (and password) of its address; unchanged otherwise."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        if "@" not in parts.netloc or not parts.hostname:
            return url
        host = parts.netloc.rpartition("@")[2]
    except ValueError:
        return url
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def upgrade() -> None:
    conn = op.get_bind()
    found = conn.execute(
        sa.select(_ITEMS.c.id, _ITEMS.c.key, _ITEMS.c.url).where(_ITEMS.c.key.like("%://%@%"))
    ).all()
    for row in found:
        key = without_user(row.key)
        if key == row.key:
            continue  # an "@" in the path or query, not in the address
        taken = conn.execute(sa.select(_ITEMS.c.id).where(_ITEMS.c.key == key)).first()
        if taken is None:
            conn.execute(
                sa.update(_ITEMS)
                .where(_ITEMS.c.id == row.id)
                .values(key=key, url=without_user(row.url))
            )


def downgrade() -> None:
    pass  # the user names are gone; nothing to put back

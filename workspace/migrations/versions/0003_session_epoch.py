"""users: session_epoch, which a session cookie must carry: signing out, a new password or disabling the user
raises it, so every session issued before ends on the server, not only in the browser that signed out

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 15:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Sessions issued before the upgrade carry no epoch and end: their users sign in once more.
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_epoch", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("session_epoch")

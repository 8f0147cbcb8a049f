"""users: local_only, a sign-in accepted only from the machine the service runs on (the demo's login)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 13:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing users keep signing in from anywhere: the column arrives false for every row.
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("local_only", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("local_only")

"""scored_accounts: open_pipeline, the amount of an account's deals open at the scoring's as_of (from the export
the scoring was published with; empty without one)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 15:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Scorings published before the upgrade never knew their open pipeline: the column arrives empty for them.
    with op.batch_alter_table("scored_accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("open_pipeline", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scored_accounts", schema=None) as batch_op:
        batch_op.drop_column("open_pipeline")

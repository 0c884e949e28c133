"""The estimator of a combined result (``integrating`` or ``counting``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("asymmetry_results") as batch:
        batch.add_column(sa.Column("estimator", sa.String(16)))


def downgrade() -> None:
    with op.batch_alter_table("asymmetry_results") as batch:
        batch.drop_column("estimator")

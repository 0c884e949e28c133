"""The beam polarization measured by the muon polarimeter, per minirun and run.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None
MEASURED = (
    "plus", "plus_error", "minus", "minus_error", "effective", "effective_error",
    "flip_quality", "flip_quality_error", "balance_measured",
)  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "polarization_results",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run", sa.Integer(), sa.ForeignKey("runs.number"), nullable=False),
        sa.Column("minirun", sa.Integer(), nullable=False),
        *(sa.Column(name, sa.Float()) for name in MEASURED),
        sa.Column("forward_counts", sa.BigInteger(), nullable=False),
        sa.Column("backward_counts", sa.BigInteger(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("configured_value", sa.Float()),
        sa.Column("configured_error", sa.Float()),
        sa.UniqueConstraint("run", "minirun"),
    )
    op.create_index("ix_polarization_results_run", "polarization_results", ["run"])


def downgrade() -> None:
    op.drop_table("polarization_results")

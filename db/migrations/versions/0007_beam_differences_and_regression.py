"""Beam differences, regression slopes, the beam cut and regression note of a minirun, the
regressed asymmetry in result snapshots.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _per_minirun(name: str, *columns: sa.Column, key: tuple[str, ...]) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run", sa.Integer(), sa.ForeignKey("runs.number"), nullable=False),
        sa.Column("minirun", sa.Integer(), nullable=False),
        *columns,
        sa.UniqueConstraint("run", "minirun", *key),
    )
    op.create_index(f"ix_{name}_run", name, ["run"])


def upgrade() -> None:
    with op.batch_alter_table("miniruns") as batch:
        batch.add_column(
            sa.Column("patterns_beam_cut", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("regression_note", sa.Text()))
    with op.batch_alter_table("result_snapshots") as batch:
        batch.add_column(sa.Column("regressed", sa.Float()))
        batch.add_column(sa.Column("regressed_error", sa.Float()))
    _per_minirun(
        "beam_differences",
        sa.Column("variable", sa.String(16), nullable=False),
        sa.Column("value", sa.Float()),
        sa.Column("error", sa.Float()),
        sa.Column("width", sa.Float()),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("unit", sa.String(8), nullable=False),
        key=("variable",),
    )
    _per_minirun(
        "regression_slopes",
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("variable", sa.String(16), nullable=False),
        sa.Column("value", sa.Float()),
        sa.Column("error", sa.Float()),
        sa.Column("n", sa.BigInteger(), nullable=False),
        key=("channel", "variable"),
    )


def downgrade() -> None:
    with op.batch_alter_table("result_snapshots") as batch:
        batch.drop_column("regressed_error")
        batch.drop_column("regressed")
    op.drop_table("regression_slopes")
    op.drop_table("beam_differences")
    with op.batch_alter_table("miniruns") as batch:
        batch.drop_column("regression_note")
        batch.drop_column("patterns_beam_cut")

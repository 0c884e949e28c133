"""Beam-modulation cycles, the coils' responses per cycle and the dithering sensitivities
(per cycle and for the run), with the regression-minus-dithering slope differences.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "modulation_cycles",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run", sa.Integer(), sa.ForeignKey("runs.number"), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("minirun", sa.Integer(), nullable=False),
        sa.Column("windows", sa.BigInteger(), nullable=False),
        sa.Column("coils", sa.Integer(), nullable=False),
        sa.Column("dead_coils", sa.String(256), nullable=False),
        sa.Column("skipped", sa.Text()),
        sa.UniqueConstraint("run", "cycle"),
    )
    op.create_index("ix_modulation_cycles_run", "modulation_cycles", ["run"])
    op.create_table(
        "coil_responses",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run", sa.Integer(), sa.ForeignKey("runs.number"), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("coil", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("value", sa.Float()),
        sa.Column("error", sa.Float()),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("run", "cycle", "coil", "kind", "target"),
    )
    op.create_index("ix_coil_responses_run", "coil_responses", ["run"])
    op.create_table(
        "dither_sensitivities",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run", sa.Integer(), sa.ForeignKey("runs.number"), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("variable", sa.String(16), nullable=False),
        sa.Column("value", sa.Float()),
        sa.Column("error", sa.Float()),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("difference", sa.Float()),
        sa.Column("difference_error", sa.Float()),
        sa.UniqueConstraint("run", "cycle", "channel", "variable"),
    )
    op.create_index("ix_dither_sensitivities_run", "dither_sensitivities", ["run"])


def downgrade() -> None:
    op.drop_table("dither_sensitivities")
    op.drop_table("coil_responses")
    op.drop_table("modulation_cycles")

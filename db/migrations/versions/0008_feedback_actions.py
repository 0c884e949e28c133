"""Feedback actions (every decision of a feedback loop) and run-time mode switches; the
patterns of a minirun cut for beam modulation.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("miniruns") as batch:
        batch.add_column(
            sa.Column("patterns_modulation", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.create_table(
        "feedback_actions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run", sa.Integer(), sa.ForeignKey("runs.number"), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("loop", sa.String(16), nullable=False),
        sa.Column("actuator", sa.String(16), nullable=False),
        sa.Column("patterns", sa.BigInteger(), nullable=False),
        sa.Column("window_end", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float()),
        sa.Column("error", sa.Float()),
        sa.Column("before", sa.Float(), nullable=False),
        sa.Column("after", sa.Float(), nullable=False),
        sa.Column("acted", sa.Boolean(), nullable=False),
        sa.Column("saturated", sa.Boolean(), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
    )
    op.create_index("ix_feedback_actions_run", "feedback_actions", ["run"])
    op.create_table(
        "feedback_mode_changes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run", sa.Integer(), sa.ForeignKey("runs.number"), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("loop", sa.String(16), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
    )
    op.create_index("ix_feedback_mode_changes_run", "feedback_mode_changes", ["run"])


def downgrade() -> None:
    with op.batch_alter_table("miniruns") as batch:
        batch.drop_column("patterns_modulation")
    op.drop_index("ix_feedback_mode_changes_run", "feedback_mode_changes")
    op.drop_table("feedback_mode_changes")
    op.drop_index("ix_feedback_actions_run", "feedback_actions")
    op.drop_table("feedback_actions")

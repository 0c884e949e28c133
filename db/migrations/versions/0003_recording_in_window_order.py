"""Recorded blocks read in window order (a run recorded across IOC restarts has several
window streams, each numbering its blocks from 0).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_recorded_blocks_run_first_seq", "recorded_blocks", ["run", "first_seq"])


def downgrade() -> None:
    op.drop_index("ix_recorded_blocks_run_first_seq", "recorded_blocks")

"""The monitor lease and end reason of a run; the decoder state in result snapshots.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("end_reason", sa.Text()))
        batch.add_column(sa.Column("monitor_token", sa.String(32)))
        batch.add_column(sa.Column("monitor_host", sa.String(255)))
        batch.add_column(sa.Column("monitor_pid", sa.Integer()))
        batch.add_column(sa.Column("heartbeat", _TZ))
    with op.batch_alter_table("result_snapshots") as batch:
        batch.add_column(sa.Column("decoder", sa.String(16)))
        batch.add_column(sa.Column("windows_held", sa.BigInteger()))


def downgrade() -> None:
    with op.batch_alter_table("result_snapshots") as batch:
        batch.drop_column("windows_held")
        batch.drop_column("decoder")
    with op.batch_alter_table("runs") as batch:
        for column in ("heartbeat", "monitor_pid", "monitor_host", "monitor_token", "end_reason"):
            batch.drop_column(column)

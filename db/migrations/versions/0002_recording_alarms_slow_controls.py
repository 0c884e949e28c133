"""Run configuration columns, restorable minirun state, monitor checkpoints, the lossless
recording, alarms with their history, slow-control samples.

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-20
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_RUN_COLUMNS = (
    ("provenance", sa.JSON()),
    ("target_z", sa.Integer()),
    ("momentum", sa.Float()),
    ("pattern", sa.String(32)),
    ("delay_patterns", sa.Integer()),
    ("channel_map", sa.JSON()),
    ("blinding_checksum", sa.String(64)),
    ("slow_controls", sa.JSON()),
)


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for name, type_ in _RUN_COLUMNS:
            batch.add_column(sa.Column(name, type_))
        batch.add_column(
            sa.Column("reversal", sa.String(16), nullable=False, server_default="fast")
        )
    with op.batch_alter_table("miniruns") as batch:
        batch.add_column(sa.Column("state", sa.LargeBinary()))

    op.create_table(
        "monitor_checkpoints",
        sa.Column("run", sa.Integer(), sa.ForeignKey("runs.number"), primary_key=True),
        sa.Column("time", _TZ, nullable=False),
        sa.Column("stream_id", sa.BigInteger(), nullable=False),
        sa.Column("next_block", sa.BigInteger(), nullable=False),
        sa.Column("accumulator", sa.JSON(), nullable=False),
        sa.Column("decoder", sa.JSON(), nullable=False),
    )
    op.create_table(
        "recorded_blocks",
        sa.Column("id", _BIG_ID, primary_key=True),
        sa.Column("run", sa.Integer(), sa.ForeignKey("runs.number"), nullable=False),
        sa.Column("stream_id", sa.BigInteger(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("n_windows", sa.Integer(), nullable=False),
        sa.Column("n_channels", sa.Integer(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.UniqueConstraint("run", "stream_id", "block_number"),
    )
    op.create_index("ix_recorded_blocks_run", "recorded_blocks", ["run"])
    op.create_table(
        "alarms",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run", sa.Integer(), sa.ForeignKey("runs.number")),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("since", _TZ, nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("acknowledged", sa.Boolean(), nullable=False),
        sa.Column("shelved_until", _TZ),
    )
    op.create_index("ix_alarms_run", "alarms", ["run"])
    op.create_index("ix_alarms_name_since", "alarms", ["name", "since"])
    op.create_table(
        "alarm_transitions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("alarm_id", sa.Integer(), sa.ForeignKey("alarms.id"), nullable=False),
        sa.Column("time", _TZ, nullable=False),
        sa.Column("from_state", sa.String(16)),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("from_severity", sa.String(16)),
        sa.Column("to_severity", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("who", sa.String(64), nullable=False),
    )
    op.create_index("ix_alarm_transitions_alarm_id", "alarm_transitions", ["alarm_id"])
    op.create_table(
        "slow_control_samples",
        sa.Column("id", _BIG_ID, primary_key=True),
        sa.Column("pv", sa.String(128), nullable=False),
        sa.Column("time", _TZ, nullable=False),
        sa.Column("value", sa.Float()),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
    )
    op.create_index("ix_slow_control_samples_pv_time", "slow_control_samples", ["pv", "time"])


def downgrade() -> None:
    for table in (
        "slow_control_samples",
        "alarm_transitions",
        "alarms",
        "recorded_blocks",
        "monitor_checkpoints",
    ):
        op.drop_table(table)
    with op.batch_alter_table("miniruns") as batch:
        batch.drop_column("state")
    with op.batch_alter_table("runs") as batch:
        for name, _ in (*_RUN_COLUMNS, ("reversal", None)):
            batch.drop_column(name)

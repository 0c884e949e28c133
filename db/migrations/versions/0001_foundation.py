"""Foundation schema: runs, miniruns, helicity-sorted counts, results, snapshots.

Revision ID: 0001
Revises:
Create Date: 2026-05-20
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def _run_fk() -> sa.Column:
    return sa.Column("run", sa.Integer(), sa.ForeignKey("runs.number"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("number", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("replay_of", sa.Integer(), sa.ForeignKey("runs.number")),
        sa.Column("start", _TZ, nullable=False),
        sa.Column("end", _TZ),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("blinded", sa.Boolean(), nullable=False),
        sa.Column("windows", sa.BigInteger(), nullable=False),
        sa.Column("lost_windows", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "miniruns",
        sa.Column("id", sa.Integer(), primary_key=True),
        _run_fk(),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("patterns_good", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("run", "index"),
    )
    op.create_table(
        "helicity_counts",
        sa.Column("id", sa.Integer(), primary_key=True),
        _run_fk(),
        sa.Column("minirun", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("helicity", sa.Integer(), nullable=False),
        sa.Column("counts", sa.BigInteger(), nullable=False),
        sa.Column("windows", sa.BigInteger(), nullable=False),
        sa.Column("beam_monitor", sa.Float(), nullable=False),
        sa.UniqueConstraint("run", "minirun", "channel", "helicity"),
    )
    op.create_table(
        "asymmetry_results",
        sa.Column("id", sa.Integer(), primary_key=True),
        _run_fk(),
        sa.Column("minirun", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("value", sa.Float()),
        sa.Column("error", sa.Float()),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("chi2_ndf", sa.Float()),
        sa.UniqueConstraint("run", "minirun", "channel"),
    )
    op.create_table(
        "helicity_errors",
        sa.Column("id", sa.Integer(), primary_key=True),
        _run_fk(),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("run", "kind"),
    )
    op.create_table(
        "result_snapshots",
        sa.Column("id", sa.Integer(), primary_key=True),
        _run_fk(),
        sa.Column("time", _TZ, nullable=False),
        sa.Column("patterns_good", sa.BigInteger(), nullable=False),
        sa.Column("windows", sa.BigInteger(), nullable=False),
        sa.Column("lost_windows", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float()),
        sa.Column("error", sa.Float()),
        sa.Column("charge_asymmetry", sa.Float()),
    )
    for table in ("miniruns", "helicity_counts", "asymmetry_results", "helicity_errors"):
        op.create_index(f"ix_{table}_run", table, ["run"])
    op.create_index("ix_result_snapshots_run", "result_snapshots", ["run"])


def downgrade() -> None:
    for table in (
        "result_snapshots",
        "helicity_errors",
        "asymmetry_results",
        "helicity_counts",
        "miniruns",
        "runs",
    ):
        op.drop_table(table)

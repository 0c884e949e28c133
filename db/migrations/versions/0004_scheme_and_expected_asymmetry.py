"""One name for the reversal scheme (column ``runs.reversal`` -> ``runs.scheme``, run
configuration key likewise) and the expected asymmetry stored with the run.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_RUNS = sa.table("runs", sa.column("number", sa.Integer()), sa.column("config", sa.JSON()))


def _rename_config_key(old: str, new: str) -> None:
    """Rename a key of every run's configuration (JSON, rewritten row by row)."""
    connection = op.get_bind()
    rows = connection.execute(sa.select(_RUNS.c.number, _RUNS.c.config)).all()
    for number, config in rows:
        if isinstance(config, dict) and old in config:
            config = {(new if key == old else key): value for key, value in config.items()}
            connection.execute(_RUNS.update().where(_RUNS.c.number == number).values(config=config))


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.alter_column("reversal", new_column_name="scheme")
        batch.add_column(sa.Column("expected_asymmetry", sa.Float()))
    _rename_config_key("reversal", "scheme")


def downgrade() -> None:
    _rename_config_key("scheme", "reversal")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("expected_asymmetry")
        batch.alter_column("scheme", new_column_name="reversal")

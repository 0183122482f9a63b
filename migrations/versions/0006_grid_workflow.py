"""吹哨报到 in the grid: the handling grid, the whistle, where a case was resolved, 核查

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HANDLING_GRID_FK = "fk_case_handling_grid_code_grid"


def upgrade() -> None:
    with op.batch_alter_table("case", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "handling_grid_code", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column("started_in_grid", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("whistled_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("whistled_by", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("whistle_level", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True)
        )
        batch_op.add_column(
            sa.Column("resolved_level", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True)
        )
        batch_op.add_column(sa.Column("verify_by", sa.DateTime(), nullable=True))
        batch_op.create_foreign_key(HANDLING_GRID_FK, "grid", ["handling_grid_code"], ["code"])


def downgrade() -> None:
    with op.batch_alter_table("case", schema=None) as batch_op:
        batch_op.drop_constraint(HANDLING_GRID_FK, type_="foreignkey")
        for column in (
            "verify_by",
            "resolved_level",
            "whistle_level",
            "whistled_by",
            "whistled_at",
            "started_in_grid",
            "handling_grid_code",
        ):
            batch_op.drop_column(column)

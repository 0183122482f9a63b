"""cases located in grids: Case.located_by and out_of_grid, Reporter's home grid

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HOME_GRID_FK = "fk_reporter_home_grid_code_grid"


def upgrade() -> None:
    with op.batch_alter_table("case", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("located_by", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=True)
        )
        batch_op.add_column(
            sa.Column("out_of_grid", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("reporter", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("home_grid_code", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=True)
        )
        batch_op.add_column(
            sa.Column("home_place", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True)
        )
        batch_op.create_foreign_key(HOME_GRID_FK, "grid", ["home_grid_code"], ["code"])


def downgrade() -> None:
    with op.batch_alter_table("reporter", schema=None) as batch_op:
        batch_op.drop_constraint(HOME_GRID_FK, type_="foreignkey")
        batch_op.drop_column("home_place")
        batch_op.drop_column("home_grid_code")
    with op.batch_alter_table("case", schema=None) as batch_op:
        batch_op.drop_column("out_of_grid")
        batch_op.drop_column("located_by")

"""learning loop and duplicates (#16): the model registry, case followers

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "modelversion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("file", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("gate", sa.JSON(), nullable=False),
        sa.Column("corrections_seen", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("promoted_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_modelversion"),
        sa.UniqueConstraint("version", name="uq_modelversion_version"),
    )
    op.create_table(
        "casefollower",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("reporter_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("merged_from_id", sa.Integer(), nullable=True),
        sa.Column("satisfaction", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column("rated_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["case.id"], name="fk_casefollower_case_id_case"),
        sa.ForeignKeyConstraint(
            ["merged_from_id"], ["case.id"], name="fk_casefollower_merged_from_id_case"
        ),
        sa.ForeignKeyConstraint(
            ["reporter_id"], ["reporter.id"], name="fk_casefollower_reporter_id_reporter"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_casefollower"),
        sa.UniqueConstraint("case_id", "reporter_id", name="uq_casefollower_case_reporter"),
    )
    with op.batch_alter_table("casefollower", schema=None) as batch_op:
        batch_op.create_index("ix_casefollower_case_id", ["case_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("casefollower", schema=None) as batch_op:
        batch_op.drop_index("ix_casefollower_case_id")
    op.drop_table("casefollower")
    op.drop_table("modelversion")

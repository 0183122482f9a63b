"""攻坚哨: CasePart (a co-department's share of a hard case), Case.is_hard, hard_decision, hard_at

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PART_CASE_FK = "fk_casepart_case_id_case"
PART_DEPARTMENT_FK = "fk_casepart_department_code_department"


def upgrade() -> None:
    with op.batch_alter_table("case", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("is_hard", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("hard_decision", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("hard_at", sa.DateTime(), nullable=True))

    op.create_table(
        "casepart",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("department_code", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("dispatched_at", sa.DateTime(), nullable=False),
        sa.Column("sign_by", sa.DateTime(), nullable=False),
        sa.Column("resolve_by", sa.DateTime(), nullable=False),
        sa.Column("signed_at", sa.DateTime(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("yellow_notified_at", sa.DateTime(), nullable=True),
        sa.Column("red_notified_at", sa.DateTime(), nullable=True),
        sa.Column("escalated_at", sa.DateTime(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["case.id"], name=PART_CASE_FK),
        sa.ForeignKeyConstraint(["department_code"], ["department.code"], name=PART_DEPARTMENT_FK),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id", "department_code", name="uq_casepart_case_department"),
    )
    with op.batch_alter_table("casepart", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_casepart_case_id"), ["case_id"], unique=False)
        batch_op.create_index("ix_casepart_status", ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("casepart", schema=None) as batch_op:
        batch_op.drop_index("ix_casepart_status")
        batch_op.drop_index(batch_op.f("ix_casepart_case_id"))
    op.drop_table("casepart")
    with op.batch_alter_table("case", schema=None) as batch_op:
        batch_op.drop_column("hard_at")
        batch_op.drop_column("hard_decision")
        batch_op.drop_column("is_hard")

"""grid indexes (#13): the grid tree's parent links, and open cases by grid with their light
and the map's red points

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_BY_GRID = (
    "status",
    "grid_code",
    "sign_by",
    "resolve_by",
    "verify_by",
    "dispatched_at",
    "resolved_at",
    "latitude",
    "longitude",
    "department_code",
    "ref",
)


def upgrade() -> None:
    op.create_index("ix_grid_parent", "grid", ["parent_code"])
    op.create_index("ix_case_status_grid", "case", list(OPEN_BY_GRID))


def downgrade() -> None:
    op.drop_index("ix_case_status_grid", table_name="case")
    op.drop_index("ix_grid_parent", table_name="grid")

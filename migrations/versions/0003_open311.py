"""Open311: API clients, and a case's channel, client and external id

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "apiclient",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("key_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("callback_url", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("key_hash"),
    )
    with op.batch_alter_table("case") as batch:
        # Every case before this migration came through the bot.
        batch.add_column(
            sa.Column(
                "channel",
                sqlmodel.sql.sqltypes.AutoString(length=20),
                nullable=False,
                server_default="telegram",
            )
        )
        batch.add_column(sa.Column("api_client_id", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("external_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True)
        )
        batch.add_column(sa.Column("caller", sa.JSON(), nullable=True))
        batch.create_foreign_key("fk_case_api_client", "apiclient", ["api_client_id"], ["id"])
        batch.create_unique_constraint("uq_case_client_external", ["api_client_id", "external_id"])


def downgrade() -> None:
    with op.batch_alter_table("case") as batch:
        batch.drop_constraint("uq_case_client_external", type_="unique")
        batch.drop_constraint("fk_case_api_client", type_="foreignkey")
        batch.drop_column("caller")
        batch.drop_column("external_id")
        batch.drop_column("api_client_id")
        batch.drop_column("channel")
    op.drop_table("apiclient")

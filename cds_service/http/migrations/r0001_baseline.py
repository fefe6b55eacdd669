"""The JWT replay cache as the release before revisions created it.

Revision ID: r0001
Revises:
"""

from alembic import op

revision = "r0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE TABLE used_jti (iss TEXT NOT NULL, jti TEXT NOT NULL, "
            "expires_at REAL NOT NULL, PRIMARY KEY (iss, jti))"
        )
    else:
        op.execute(
            "CREATE TABLE twin_cds_used_jti (iss TEXT NOT NULL, jti TEXT NOT NULL, "
            "expires_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (iss, jti))"
        )


def downgrade() -> None:
    op.drop_table("used_jti" if op.get_bind().dialect.name == "sqlite" else "twin_cds_used_jti")

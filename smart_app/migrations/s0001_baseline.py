"""The app's sessions as the release before revisions created them.

Revision ID: s0001
Revises:
"""

from alembic import op

revision = "s0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            """CREATE TABLE app_session (
                id_hash  TEXT PRIMARY KEY,
                kind     TEXT NOT NULL,
                expires  REAL NOT NULL,
                sealed   BLOB NOT NULL
            )"""
        )
    else:
        op.execute(
            "CREATE TABLE twin_cds_app_session (id_hash TEXT PRIMARY KEY, "
            "kind TEXT NOT NULL, expires DOUBLE PRECISION NOT NULL, sealed BYTEA NOT NULL)"
        )


def downgrade() -> None:
    op.drop_table(
        "app_session" if op.get_bind().dialect.name == "sqlite" else "twin_cds_app_session"
    )

"""The twin store as the release before revisions created it.

Revision ID: t0001
Revises:
"""

from alembic import op

revision = "t0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """CREATE TABLE twin_versions (
            patient_id   TEXT    NOT NULL,
            version      INTEGER NOT NULL,
            content_hash TEXT    NOT NULL,
            created_at   TEXT    NOT NULL,
            as_of        TEXT,
            twin_json    TEXT    NOT NULL,
            PRIMARY KEY (patient_id, version)
        )"""
    )


def downgrade() -> None:
    op.drop_table("twin_versions")

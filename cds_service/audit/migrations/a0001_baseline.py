"""The audit trail as the release before revisions created it: the chain, its head,
the card and feedback indexes, the card parts, and the append-only triggers.

Revision ID: a0001
Revises:
"""

from alembic import op

revision = "a0001"
down_revision = None
branch_labels = None
depends_on = None

GENESIS = "0" * 64

# One schema for SQLite and PostgreSQL. recorded_at is ISO 8601 UTC text with
# microseconds, so text order is time order in both. The body is kept as the exact
# canonical JSON text (not jsonb, which would renormalise it).
TABLES = (
    """CREATE TABLE IF NOT EXISTS audit_chain (
        seq BIGINT PRIMARY KEY,
        kind TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        hook_instance TEXT,
        service_id TEXT,
        patient_id TEXT,
        status TEXT,
        model_id TEXT,
        model_version TEXT,
        body TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        record_hash TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS audit_chain_patient ON audit_chain (patient_id, recorded_at)",
    "CREATE INDEX IF NOT EXISTS audit_chain_time ON audit_chain (recorded_at)",
    "CREATE INDEX IF NOT EXISTS audit_chain_hook ON audit_chain (hook_instance)",
    "CREATE INDEX IF NOT EXISTS audit_chain_model ON audit_chain (model_id, model_version)",
    # The chain's tip, read under a lock by every append. Not part of the hashed chain;
    # verify compares it with the last record, which catches a naive truncation.
    """CREATE TABLE IF NOT EXISTS audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL,
        record_hash TEXT NOT NULL,
        checkpoint_seq BIGINT NOT NULL
    )""",
    # GENESIS is a constant of 64 zeros, not input.
    "INSERT INTO audit_head VALUES (1, 0, '"  # noqa: S608
    + GENESIS
    + "', 0) ON CONFLICT DO NOTHING",
    # Indexes derived from the chain: which record sent a card, and which feedback is
    # already stored (idempotency). Both are rebuilt-able from the chain bodies.
    """CREATE TABLE IF NOT EXISTS audit_card (
        card_uuid TEXT PRIMARY KEY,
        seq BIGINT NOT NULL,
        service_id TEXT NOT NULL
    )""",
    # Card material every call repeats, stored once by its sha256 (audit_parts). The
    # chained body names each part, so a changed part no longer matches its name.
    """CREATE TABLE IF NOT EXISTS audit_part (
        sha256 TEXT PRIMARY KEY,
        content TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS audit_feedback (
        card_uuid TEXT NOT NULL,
        outcome TEXT NOT NULL,
        outcome_timestamp TEXT NOT NULL,
        seq BIGINT NOT NULL,
        PRIMARY KEY (card_uuid, outcome, outcome_timestamp)
    )""",
)

_SQLITE_APPEND_ONLY = (
    """CREATE TRIGGER IF NOT EXISTS audit_chain_no_update BEFORE UPDATE ON audit_chain
       BEGIN SELECT RAISE(ABORT, 'the audit chain is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_chain_no_delete BEFORE DELETE ON audit_chain
       BEGIN SELECT RAISE(ABORT, 'the audit chain is append-only'); END""",
)


_PG_APPEND_ONLY = (
    """CREATE OR REPLACE FUNCTION audit_chain_append_only() RETURNS trigger
       LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'the audit chain is append-only'; END $$""",
    """CREATE OR REPLACE TRIGGER audit_chain_no_change BEFORE UPDATE OR DELETE
       ON audit_chain FOR EACH ROW EXECUTE FUNCTION audit_chain_append_only()""",
)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in (*TABLES, *(_SQLITE_APPEND_ONLY if sqlite else _PG_APPEND_ONLY)):
        op.execute(statement)


def downgrade() -> None:
    for table in ("audit_feedback", "audit_part", "audit_card", "audit_head", "audit_chain"):
        op.drop_table(table)

"""Each store's schema revision, with Alembic: which revision a database is at, and
bringing it to the head revision this release needs (``twin-cds db upgrade``).

Every store ships its own revisions (a package directory of Alembic scripts, no
``alembic.ini``, no ``env.py``: they run from here, without network) and keeps its
revision in its own version table, so four stores can share one PostgreSQL schema.

A database written by the release before revisions existed holds the baseline's
tables and no version table: ``upgrade`` adopts it (stamps the baseline) when every
baseline table is there with its columns, and refuses a partial one.

The service never changes an existing schema: a store opened on a database behind the
head raises ``SchemaNotCurrent``, whose message names the command that fixes it. Only
an empty database (no table of the store) is created at the head when a store opens,
so the embedded SQLite default needs no setup step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

from twin_engine.store.db import Database

UPGRADE_COMMAND = "twin-cds db upgrade"
#: Two processes starting on one empty PostgreSQL database create it one at a time.
_PG_LOCK = 7_451_002


class SchemaNotCurrent(Exception):
    """The database's schema is not the revision this release needs (one line)."""


@dataclass(frozen=True, slots=True)
class StoreSchema:
    """What ``twin-cds db`` needs to know of one store's schema."""

    name: str
    #: The directory of the store's Alembic revision scripts.
    versions: Path
    version_table: str
    #: The tables (and their columns) the baseline revision creates, per dialect.
    baseline: dict[str, dict[str, frozenset[str]]]

    def script(self) -> ScriptDirectory:
        return ScriptDirectory(str(self.versions), version_locations=[str(self.versions)])

    def head(self) -> str:
        head = self.script().get_current_head()
        if head is None:
            raise RuntimeError(f"the {self.name} store ships no revision scripts")
        return head


def current(conn: Connection, schema: StoreSchema) -> str | None:
    ctx = MigrationContext.configure(conn, opts={"version_table": schema.version_table})
    return ctx.get_current_revision()


def _existing(conn: Connection, schema: StoreSchema) -> dict[str, frozenset[str]]:
    """The store's baseline tables present in the database, with their columns."""
    wanted = schema.baseline[conn.dialect.name]
    inspector = inspect(conn)
    present = set(inspector.get_table_names()) & set(wanted)
    return {t: frozenset(c["name"] for c in inspector.get_columns(t)) for t in present}


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})


def describe(db: Database, schema: StoreSchema) -> str:
    """The revision a database is at, as ``twin-cds db current`` prints it."""

    def read(conn: Connection) -> str:
        rev = current(conn, schema)
        if rev is not None:
            return rev + (" (head)" if rev == schema.head() else f" (head is {schema.head()})")
        if _existing(conn, schema):
            return f"no revision: written by an earlier release (run `{UPGRADE_COMMAND}`)"
        return "empty"

    return db.read(read)


def upgrade(db: Database, schema: StoreSchema, *, only_if_empty: bool = False) -> str | None:
    """Bring the database to the head revision; the revision it was at before.

    ``only_if_empty``: create an empty database at the head, and do nothing else.
    Raises SchemaNotCurrent for tables that are not the baseline's shape.
    """

    def work(conn: Connection) -> str | None:
        _lock(conn)
        before = current(conn, schema)
        if before is None:
            existing = _existing(conn, schema)
            if existing and only_if_empty:
                return None
            if existing:
                _adopt(conn, schema, existing)
                before = "baseline (adopted)"
        elif only_if_empty:
            return before
        script = schema.script()
        with EnvironmentContext(
            Config(),
            script,
            fn=lambda rev, _ctx: script._upgrade_revs("head", rev),
            destination_rev="head",
        ) as env:
            env.configure(connection=conn, version_table=schema.version_table)
            env.run_migrations()
        return before

    return db.write(work)


def _adopt(conn: Connection, schema: StoreSchema, existing: dict[str, frozenset[str]]) -> None:
    """Stamp a database of the release before revisions at the baseline, when its
    tables are exactly the baseline's (each there, with every baseline column)."""
    wanted = schema.baseline[conn.dialect.name]
    problems = [
        t for t, columns in wanted.items() if t not in existing or not columns <= existing[t]
    ]
    if problems:
        raise SchemaNotCurrent(
            f"the {schema.name} database has tables but not the baseline's "
            f"({', '.join(sorted(problems))} missing or different): not adopted"
        )
    script = schema.script()
    ctx = MigrationContext.configure(conn, opts={"version_table": schema.version_table})
    ctx.stamp(script, script.get_base() or "base")


def ensure_current(db: Database, schema: StoreSchema) -> None:
    """At a store's start: create an empty database at the head; refuse any other
    database that is not at the head, naming the command that fixes it (and closing
    the store's connections: the store is not opened)."""
    try:
        at = _current_or_created(db, schema)
    except BaseException:
        db.close()
        raise
    head = schema.head()
    if at == head:
        return
    db.close()
    raise SchemaNotCurrent(
        f"the {schema.name} database is at revision {at or 'none (an earlier release)'} "
        f"but this release needs {head}: run `{UPGRADE_COMMAND}`"
    )


def _current_or_created(db: Database, schema: StoreSchema) -> str | None:
    at = db.read(lambda conn: current(conn, schema))
    if at is None:
        upgrade(db, schema, only_if_empty=True)
        at = db.read(lambda conn: current(conn, schema))
    return at


def schema_check(db: Database, schema: StoreSchema) -> dict[str, str]:
    """Readiness: the database answers and is at the head revision (else raises)."""
    at = db.read(lambda conn: current(conn, schema))
    if at != schema.head():
        raise SchemaNotCurrent(
            f"{schema.name}: revision {at} is not {schema.head()}: run `{UPGRADE_COMMAND}`"
        )
    return {"revision": at}

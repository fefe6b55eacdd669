"""The twin store's table, the same on SQLite and PostgreSQL (SQLAlchemy Core), and what
``twin-cds db`` knows of its revisions (``twin_engine/store/migrations``)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, Table, Text

from twin_engine.store.migrate import StoreSchema

metadata = MetaData()

twin_versions = Table(
    "twin_versions",
    metadata,
    Column("patient_id", Text, primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("content_hash", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("as_of", Text),
    Column("twin_json", Text, nullable=False),
)

_COLUMNS = frozenset(c.name for c in twin_versions.columns)

SCHEMA = StoreSchema(
    name="twins",
    versions=Path(__file__).parent / "migrations",
    version_table="twin_cds_revision_twins",
    baseline={
        "sqlite": {"twin_versions": _COLUMNS},
        "postgresql": {"twin_versions": _COLUMNS},
    },
)

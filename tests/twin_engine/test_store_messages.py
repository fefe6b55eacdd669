"""A store outage's message (logged with the 503 at the HTTP edge) never carries a password."""

from __future__ import annotations

import pytest

from twin_engine.errors import StoreError, TwinStoreUnavailable
from twin_engine.store.db import Database


def test_an_unreachable_postgres_is_named_without_its_password() -> None:
    """The error says which store failed; the password in the URL is not in it."""
    db = Database(
        "postgresql://twin:s3cret-pw@127.0.0.1:1/twins?connect_timeout=2",
        "twin store",
        TwinStoreUnavailable,
        StoreError,
    )
    try:
        with pytest.raises(TwinStoreUnavailable) as caught:
            db.read(lambda conn: conn.exec_driver_sql("SELECT 1").scalar())
    finally:
        db.close()
    assert "twin store" in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)


def test_an_unreachable_postgres_on_the_hot_path_is_named_without_its_password() -> None:
    """A driver-level write that cannot connect is a 503 naming the store, not the URL."""
    db = Database(
        "postgresql://twin:s3cret-pw@127.0.0.1:1/twins?connect_timeout=2",
        "twin store",
        TwinStoreUnavailable,
        StoreError,
    )
    try:
        with pytest.raises(TwinStoreUnavailable) as caught:
            db.write_driver(lambda tx: tx.rows("SELECT 1"))
    finally:
        db.close()
    assert "cannot connect to the twin store database" in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)
    assert "s3cret-pw" not in str(caught.value.__cause__)

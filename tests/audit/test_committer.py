"""Group commit (``cds_service.audit.committer``): a batch writes exactly the records that
appending one by one writes, each call returns only once its record is committed, a
failed batch fails every call of it and writes none, and closing drains."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from cds_service.audit.committer import AuditCommitter
from cds_service.audit.log import (
    AuditEntry,
    AuditSigner,
    AuditUnavailable,
    ChainedAuditLog,
    StoredAuditRecord,
    Tx,
)
from cds_service.audit.sql import SqliteAuditLog
from cds_service.http.failures import unavailable_message
from tests.audit.conftest import entry
from tests.audit.stores import StoreSpec


def _ticks() -> Callable[[], str]:
    """A clock that gives the same times to every log made with it."""
    seconds = itertools.count(1)
    return lambda: f"2026-01-01T00:00:{next(seconds):02d}.000000+00:00"


def _stored(log: ChainedAuditLog) -> list[tuple[Any, ...]]:
    """Every record as stored (fields and hashes), with its card index."""
    return [
        (r.seq, r.kind, r.recorded_at, r.body, r.prev_hash, r.record_hash, log.cards_of(r.seq))
        for r in log.records(kind=None)
    ]


def _slowed(log: ChainedAuditLog, seconds: float) -> list[int]:
    """Make each batch take ``seconds`` longer; returns the batch sizes as they commit."""
    sizes: list[int] = []
    write = log.record_many

    def slow(entries: Sequence[AuditEntry]) -> list[StoredAuditRecord]:
        time.sleep(seconds)
        records = write(entries)
        sizes.append(len(entries))
        return records

    log.record_many = slow  # type: ignore[method-assign]
    return sizes


def test_a_batch_writes_byte_for_byte_what_one_by_one_writes(
    store: StoreSpec, signer: AuditSigner, tmp_path: Path
) -> None:
    """Five calls in one batch (with two checkpoints inside it) equal five single appends."""
    entries = [entry(n, patient=f"p{n % 2}") for n in range(5)]
    one_by_one = SqliteAuditLog(
        tmp_path / "one-by-one.sqlite", signer=signer, checkpoint_every=2, clock=_ticks()
    )
    for e in entries:
        one_by_one.record(e)
    batched = store.open(signer=signer, checkpoint_every=2, clock=_ticks())
    batched.record_many(entries)
    try:
        assert _stored(batched) == _stored(one_by_one)
        assert [r.kind for r in batched.records(kind=None)].count("checkpoint") == 2
        report = batched.verify(signer.public_key)
        assert report.ok and report.signatures_checked == 2
    finally:
        one_by_one.close()


async def test_concurrent_calls_are_each_committed_before_they_return(store: StoreSpec) -> None:
    """Twenty calls at once share batches, and each finds its record in the store (read
    through another connection) as soon as it returns."""
    log = store.open()
    reader = store.open()
    sizes = _slowed(log, 0.05)
    committer = AuditCommitter(log)

    async def call(n: int) -> int:
        await committer.record(entry(n))
        return len(reader.records(hook_instance=f"hook-{n}"))

    found = await asyncio.gather(*(call(n) for n in range(20)))
    await committer.close()
    assert found == [1] * 20
    assert sum(sizes) == 20 and len(sizes) < 20, sizes
    assert log.verify().ok


async def test_a_failed_batch_answers_each_call_503_unrecorded_and_writes_none(
    store: StoreSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The storage fails on the batch's last record: every call of it gets its own
    AuditUnavailable (the 503 saying it was not recorded) and none of them is stored."""
    log = store.open()
    hook_work = log._hook_work
    gate = threading.Event()

    def failing_last(e: AuditEntry) -> Callable[[Tx], StoredAuditRecord]:
        work = hook_work(e)
        if e.hook_instance != "hook-4":
            return work

        def fail(tx: Tx) -> StoredAuditRecord:
            raise AuditUnavailable("the disk is full")

        return fail

    monkeypatch.setattr(log, "_hook_work", failing_last)
    write = log.record_many

    def held(entries: Sequence[AuditEntry]) -> list[StoredAuditRecord]:
        gate.wait(5)  # the first call's batch waits for the others to queue behind it
        return write(entries)

    monkeypatch.setattr(log, "record_many", held)
    committer = AuditCommitter(log)
    first = asyncio.ensure_future(committer.record(entry(0, patient="first")))
    await asyncio.sleep(0.05)
    rest = [asyncio.ensure_future(committer.record(entry(n))) for n in range(1, 5)]
    await asyncio.sleep(0.05)
    gate.set()
    await first
    outcomes = await asyncio.gather(*rest, return_exceptions=True)
    await committer.close()
    assert all(isinstance(o, AuditUnavailable) for o in outcomes), outcomes
    assert len({id(o) for o in outcomes}) == 4  # each call its own exception
    for failed in outcomes:
        assert "it was not recorded" in unavailable_message(failed)
    assert [r.body["hookInstance"] for r in log.records()] == ["hook-0"]


async def test_closing_drains_every_record_handed_over(store: StoreSpec) -> None:
    """Closed while a batch commits and more wait: close returns only when every call has
    its answer and every record is stored."""
    log = store.open()
    _slowed(log, 0.1)
    committer = AuditCommitter(log)
    calls = [asyncio.ensure_future(committer.record(entry(0)))]
    await asyncio.sleep(0.02)  # the first batch is committing
    calls += [asyncio.ensure_future(committer.record(entry(n))) for n in range(1, 6)]
    await asyncio.sleep(0)  # the rest are waiting
    await committer.close()
    assert all(c.done() and c.exception() is None for c in calls)
    assert len(log.records()) == 6

"""Group commit of the hook calls' audit records: one transaction (one fsync) for every
record waiting, written off the event loop.

A hook call is computed on the event loop and answered only once its audit record is
durable. Written on the loop, each call's commit (an fsync under SQLite's
``synchronous=FULL``, a round trip to PostgreSQL) and each wait for another worker's
write lock stopped every other call of the worker. With the committer, a call hands its
``AuditEntry`` over and awaits it; one drain task takes every entry waiting, appends
them on one thread in ONE transaction (``ChainedAuditLog.record_many``: the chain in
order, each record exactly as ``record`` writes it alone), and resolves each call's
future. While one batch commits, the next calls' records gather for the next one.

Nothing is answered unrecorded: a call's future resolves only after its batch
committed. A batch is all or nothing: when its write fails, no record of it is written
and every call of it gets the failure (its own copy: ``AuditUnavailable`` is the 503
saying the call was not recorded, as when written alone). ``close`` (the app's
shutdown) waits for the batch in flight and every entry still waiting.
"""

from __future__ import annotations

import asyncio
import copy
import time
from concurrent.futures import ThreadPoolExecutor

from cds_service.audit.log import AuditEntry, ChainedAuditLog, StoredAuditRecord

_Waiting = tuple[AuditEntry, "asyncio.Future[StoredAuditRecord]"]


class AuditCommitter:
    """One per process (and event loop): hook records appended in batches."""

    def __init__(self, audit: ChainedAuditLog) -> None:
        self._audit = audit
        self._waiting: list[_Waiting] = []
        self._drain: asyncio.Task[None] | None = None
        # One thread: batches are appended one after the other, in the order taken.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-commit")

    async def record(self, entry: AuditEntry) -> StoredAuditRecord:
        """Append ``entry`` with whatever else is waiting; return once it is committed."""
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[StoredAuditRecord] = loop.create_future()
        self._waiting.append((entry, done))
        if self._drain is None or self._drain.done():
            self._drain = loop.create_task(self._drain_waiting())
        rec = await done
        # Told here, in the call's own context (its trace), not on the committer's thread.
        if self._audit.on_append is not None:
            self._audit.on_append(rec.kind, rec.body, rec.seq, time.perf_counter() - started)
        return rec

    async def _drain_waiting(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            batch, self._waiting = self._waiting, []
            entries = [entry for entry, _ in batch]
            try:
                records = await loop.run_in_executor(self._thread, self._audit.record_many, entries)
            except asyncio.CancelledError:
                for _, done in batch:
                    done.cancel()
                raise
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(_own_copy(exc))
                continue
            for (_, done), rec in zip(batch, records, strict=True):
                if not done.done():  # a caller cancelled meanwhile: its record stands
                    done.set_result(rec)

    async def close(self) -> None:
        """Wait until every entry handed over is committed (or failed), then stop."""
        while self._drain is not None and not self._drain.done():
            await asyncio.wait({self._drain})
        self._thread.shutdown(wait=True)


def _own_copy(exc: Exception) -> Exception:
    """The batch's failure as one caller raises it: a copy (same class, message and
    ``recorded``), so no two calls' answers share one exception object."""
    try:
        mine = copy.copy(exc)
    except Exception:
        return exc
    mine.__cause__ = exc
    return mine

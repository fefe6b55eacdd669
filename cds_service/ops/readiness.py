"""Liveness and readiness: may this replica be sent hook calls now?

``/healthz`` (liveness) answers while the process runs. ``/readyz`` (readiness) runs
every registered check and answers 503, naming each failure, unless all pass:
  - each store is reachable (one read each: twin versions, the audit chain, app sessions;
    the JWT replay cache lives in the same database or data directory);
  - the models are loaded, each with the sha256 of its file;
  - each store's database is at this release's schema revision (``schema``, added by
    the app): an older one makes the replica unready and says `twin-cds db upgrade`.

A check runs in a worker thread with a deadline, so an unreachable database that
swallows packets makes the replica unready instead of hanging its probe. Failures name
the store and the kind of error, never the database URL (it may hold a password).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twin_engine.store.migrate import SchemaNotCurrent

#: A check returns details to show (e.g. model shas) or raises when not ready.
CheckFn = Callable[[], dict[str, Any] | None]


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: dict[str, Any] | str | None


@dataclass(slots=True)
class Readiness:
    """The replica's readiness checks, in the order they are reported."""

    timeout_s: float = 2.0
    checks: list[tuple[str, CheckFn]] = field(default_factory=list)

    def add(self, name: str, check: CheckFn) -> None:
        self.checks.append((name, check))

    async def run(self) -> tuple[bool, list[CheckResult]]:
        results = [await self._one(name, check) for name, check in self.checks]
        return all(r.ok for r in results), results

    async def _one(self, name: str, check: CheckFn) -> CheckResult:
        try:
            detail = await asyncio.wait_for(asyncio.to_thread(check), self.timeout_s)
        except TimeoutError:
            return CheckResult(name, False, f"no answer within {self.timeout_s:g} s")
        except SchemaNotCurrent as exc:  # names the store, its revision and the fix
            return CheckResult(name, False, str(exc))
        except Exception as exc:  # any failure makes the replica unready, and says which
            return CheckResult(name, False, f"unreachable: {type(exc).__name__}")
        return CheckResult(name, True, detail)


def report(ready: bool, results: list[CheckResult]) -> dict[str, Any]:
    """The ``/readyz`` body: overall status, then each check with its detail."""
    return {
        "status": "ready" if ready else "not ready",
        "checks": {
            r.name: {"ok": r.ok, **({"detail": r.detail} if r.detail is not None else {})}
            for r in results
        },
    }

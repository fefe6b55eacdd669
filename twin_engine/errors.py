"""The twin engine's errors.

Bad data inside a bundle is *not* an error: it becomes an `IngestIssue` and the entry
is skipped.  These exceptions are for what cannot be worked around.
"""

from __future__ import annotations

from twin_engine.storage import StorageUnavailable


class TwinEngineError(Exception):
    """Base class of every error raised by `twin_engine`.

    Hierarchy::

        TwinEngineError
        ├── IngestError          payload unusable as a whole (not FHIR, no/ambiguous Patient)
        └── StoreError           the twin store failed
            ├── TwinNotFoundError  no stored twin (or version) for that patient
            ├── TwinStateError     a stored state is not a twin state (field missing, wrong
            │                      type, unreadable time, unknown key)
            └── TwinStoreUnavailable  the storage itself failed (also a StorageUnavailable)
    """


class IngestError(TwinEngineError):
    """The payload cannot be turned into a twin at all."""


class StoreError(TwinEngineError):
    """The twin store could not read or write."""


class TwinNotFoundError(StoreError):
    """No stored twin for the patient, or no such version."""


class TwinStateError(StoreError):
    """A stored twin state does not validate; the message names every field at fault."""


class TwinStoreUnavailable(StoreError, StorageUnavailable):
    """The twin store's storage failed (database unreachable, disk full, read-only)."""

"""Parsed records remembered by the exact content of the entry they came from.

An EHR sends the same resources on every chart open; the memo makes a resource seen
before cost one serialisation and one hash. ``set_parse_memo(False)`` switches it off
(bench/load.py and bench/hook_latency.py measure new patients that way).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

import orjson

from twin_engine.fhir.entries import Entry, IngestIssue

#: Parsed records by the content of the entry they came from. An EHR sends the same
#: resources on every chart open; validation is ~25x the cost of parsing the JSON, so
#: a resource seen before costs one serialisation and one hash instead. Records are
#: frozen and small; the bound keeps memory flat (about 20k records, a few MB).
_MEMO_MAX: Final = 20_000
_memo_records: OrderedDict[bytes, tuple[Any, tuple[IngestIssue, ...]]] = OrderedDict()
_memo_lock = threading.Lock()

_R = TypeVar("_R")
_P = ParamSpec("_P")


_memo_enabled = True


def clear_parse_memo() -> None:
    """Forget every remembered record (benchmarks measure the cold path with it)."""
    with _memo_lock:
        _memo_records.clear()


def set_parse_memo(enabled: bool) -> None:
    """Switch the memo on (default) or off: off, every entry is parsed and nothing is
    kept, which is how bench/load.py measures patients never seen before."""
    global _memo_enabled
    _memo_enabled = enabled
    if not enabled:
        clear_parse_memo()


def memo(
    parse: Callable[Concatenate[Entry, list[IngestIssue], _P], _R],
    entry: Entry,
    issues: list[IngestIssue],
    *args: _P.args,
    **kwargs: _P.kwargs,
) -> _R:
    """``parse(entry, issues, *args, **kwargs)``, remembered by the entry's exact content.

    The key covers the parser, the fullUrl and the resource's JSON text, so two
    entries share a record only when everything the parser reads is the same: any
    further arguments must be drawn from the entry alone (what the caller already
    read of it, so that the parser need not read it again).
    """
    if not _memo_enabled:
        return parse(entry, issues, *args, **kwargs)
    # orjson: ~10x json.dumps on the cold path, where every entry is keyed and missed.
    # (It writes NaN as null; JSON off the wire has no NaN: orjson.loads refuses it.)
    try:
        text = orjson.dumps(entry.resource, default=str)
    except TypeError:  # an integer beyond 64 bits, from json.loads (the command line)
        text = json.dumps(entry.resource, separators=(",", ":"), default=str).encode()
    key = hashlib.blake2b(
        f"{parse.__name__}\x00{entry.full_url}\x00".encode() + text, digest_size=16
    ).digest()
    with _memo_lock:
        hit = _memo_records.get(key)
        if hit is not None:
            _memo_records.move_to_end(key)
    if hit is not None:
        issues.extend(hit[1])
        return hit[0]  # type: ignore[no-any-return]
    found: list[IngestIssue] = []
    record = parse(entry, found, *args, **kwargs)
    issues.extend(found)
    with _memo_lock:
        _memo_records[key] = (record, tuple(found))
        if len(_memo_records) > _MEMO_MAX:
            _memo_records.popitem(last=False)
    return record

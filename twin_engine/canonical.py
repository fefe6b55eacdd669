"""The canonical JSON text of a twin's state: keys sorted, no spaces, non-ASCII as is.

It is what a stored twin version holds and what its content hash is the sha256 of, so
its bytes may never change: states and hashes written by earlier releases must come out
the same. Those releases wrote ``json.dumps(state, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)``. orjson writes the same bytes for JSON data several times faster
(a hook call builds this text on every call), except in three cases, which therefore go
to ``json.dumps`` as before: a float of magnitude below 1e-4 (``1e-05`` in Python's
repr, ``0.00001`` in orjson's), a NaN or infinity (``NaN``, orjson's ``null``), and an
integer beyond 64 bits (orjson refuses it). tests/twin_engine/test_canonical.py holds
the two to the same bytes over generated data and the Synthea corpus.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

#: Python's float repr switches to an exponent below this magnitude, orjson does not.
_SMALLEST_PLAIN = 1e-4


def state_text(state: Any) -> str:
    """The canonical text of JSON data (``Twin.to_state`` output)."""
    if _orjson_writes_it_alike(state):
        try:
            return orjson.dumps(state, option=orjson.OPT_SORT_KEYS).decode()
        except orjson.JSONEncodeError:
            pass  # an integer beyond 64 bits, or data that is not JSON
    return json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _orjson_writes_it_alike(value: Any) -> bool:
    """No float that orjson would write otherwise than ``json.dumps`` (see above)."""
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            continue
        if kind is dict:
            extend(item.values())
        elif kind is list:
            extend(item)
        elif kind is not float or not (_SMALLEST_PLAIN <= abs(item) < math.inf or item == 0.0):
            return False  # and a tuple, a subclass, anything else: as json.dumps writes it
    return True

"""Hook bodies keep the stored bytes they were written with (the chain hashes them).

``data/written_records.json``: hook bodies as the service recorded them (one of each kind
the audit and service tests and generated patients gave: services, statuses, formats 0 to
2, cards with and without resources, fallbacks to format 1), with the sha256 of the stored
text, of what the chain hashes and the names of the parts, as ``stored_form`` wrote them
when they were captured. Format 2's rules are fixed forever: a faster or tidier writer
must give the same bytes, or the chain of every record already written breaks.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from cds_service.audit.stored import record_format, stored_form

WRITTEN = json.loads((Path(__file__).parent / "data" / "written_records.json").read_text())


@pytest.mark.parametrize("case", WRITTEN, ids=lambda c: f"{c['body'].get('service')}-{c['format']}")
def test_a_hook_body_is_stored_in_the_bytes_it_was(case: dict[str, Any]) -> None:
    w = stored_form(case["body"], case["format"])
    assert record_format(w.body) == case["storedFormat"]
    assert hashlib.sha256(w.text).hexdigest() == case["textSha256"]
    assert hashlib.sha256(w.chained).hexdigest() == case["chainedSha256"]
    assert sorted(w.parts) == case["parts"]

"""A hook record's stored form, by format, and the way back to the record as written.

Every stored hook body says by a marker which format it is in; the formats are fixed
forever (the chain hashes the stored form, and a reader of one record recomputes it
from the record as read, so a format's rules can never change once records use it):

- format 0, no marker: the body exactly as recorded (the first releases);
- format 1, ``"cardStorage": "parts"``: card material every call repeats (override
  reasons, the model-card paragraph) stored once as a part (``cds_service.audit.parts``);
- format 2, ``"recordFormat": 2``: format 1's card parts, plus
  - ``inputs`` and ``explanation`` as tables: the field names once, one row of values
    per entry. The inputs' names and units, which the model card fixes, go with the field
    names into one part shared by every call of that model;
  - a suggestion's resource (a drafted order: medication, dosage, reason, as the
    service's catalogue writes it) as a part, its identity (``id``, ``subject``) inline;
  - the detail paragraph of the dosing card's targets and model (``Target AUC24 ...``)
    as a part, like format 1's model paragraph;
  - ``otherModels`` (ids, versions, sha256 of the further models) as a part.

Nothing a call alone holds leaves the record: values, source resource ids, times,
contributions, the patient's paragraphs, uuids and the query fields (hookInstance,
service, patient, status, model, client) stay inline and readable in the row. Parts
live in the audit store itself (``audit_part``), named by their sha256 and checked by
``verify``: reading a record never needs the twin store or the model registry.

The writer stores format 2 only when the stored form reads back to the body as
recorded, byte for byte, and is its own stored form; any body that does not (a shape
no release writes today) is stored in format 1, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from cds_service.audit.parts import (
    MARK,
    MARK_VALUE,
    MIN_PART_BYTES,
    SHARED_PARAGRAPHS,
    canonical,
    join_parts,
    part_name,
    split_parts,
)
from cds_service.audit.parts import (
    part_refs as card_part_refs,
)

#: The marker of format 2 (format 1's is ``parts.MARK``).
FORMAT_KEY: Final = "recordFormat"
#: The format new hook records are written in.
CURRENT_FORMAT: Final = 2

# -- format 2's rules (never to change: records in format 2 are hashed by them)
_PARAGRAPHS_2: Final = (*SHARED_PARAGRAPHS, "Target AUC24")
#: Table fields and their columns held in the shared header (the model card's).
_TABLES_2: Final = {"inputs": ("name", "unit"), "explanation": ()}
#: A resource's identity: stays inline beside the reference to its shared content.
_IDENTITY_2: Final = ("id", "subject")
_WHOLE_2: Final = ("otherModels",)


def record_format(body: Mapping[str, Any]) -> int:
    """The format a stored (or read) hook body is in: 0, 1 or 2."""
    if body.get(FORMAT_KEY) == 2:
        return 2
    return 1 if body.get(MARK) == MARK_VALUE else 0


@dataclass(frozen=True, slots=True)
class Written:
    """A record's body as the chain writes it, with its bytes dumped once."""

    body: dict[str, Any]
    #: The body's canonical JSON: the stored text.
    text: bytes
    #: The canonical JSON of the body's chain form, which the record hash covers: ``text``
    #: itself when the body is its own chain form (every body but a format 1 one).
    chained: bytes
    #: The parts a hook body names (sha256 → canonical JSON).
    parts: dict[str, bytes]


def written(body: dict[str, Any], parts: dict[str, bytes] | None = None) -> Written:
    """Any record's body as written (a hook body: ``stored_form``'s)."""
    text = canonical(body)
    chain = chain_form(body)
    return Written(body, text, text if chain is body else canonical(chain), parts or {})


def stored_form(body: dict[str, Any], fmt: int = CURRENT_FORMAT) -> Written:
    """The body of a hook record as written in format ``fmt`` (0, 1 or 2), and the parts
    it names. Format 2 falls back to 1 when its stored form would not read back exactly."""
    if fmt >= 2:
        marked = {**body, FORMAT_KEY: 2}
        stored, parts = _split_2(marked)
        text = _checked_text(marked, stored, parts)
        if text is not None:
            return Written(stored, text, text, parts)
    if fmt >= 1 and body.get("cards"):
        stored, parts = split_parts({**body, MARK: MARK_VALUE})
        if parts:  # marked only when some card material is a part
            return written(stored, parts)
    return written(body)


def chain_form(body: dict[str, Any]) -> dict[str, Any]:
    """The form the chain hashes: the stored one, whether ``body`` is the stored form
    (verify) or the record as read (a reader of one record)."""
    fmt = record_format(body)
    if fmt == 2:
        return _split_2(body)[0]
    return split_parts(body)[0] if fmt == 1 else body


def part_refs(body: Mapping[str, Any]) -> set[str]:
    """The names of the parts a stored hook body refers to."""
    if record_format(body) != 2:
        return card_part_refs(body)
    names = card_part_refs(body)
    for value in (
        *_resources(body),
        *(_table_header(body.get(f)) for f in _TABLES_2),
        *(body.get(f) for f in _WHOLE_2),
    ):
        if isinstance(value, dict) and isinstance(value.get("$part"), str):
            names.add(value["$part"])
    return names


def read_form(body: dict[str, Any], parts: Mapping[str, Any]) -> dict[str, Any]:
    """The hook body as recorded, from its stored form and its (parsed) parts."""
    fmt = record_format(body)
    if fmt == 0:
        return body
    joined = join_parts(body, parts)
    return _join_2(joined, parts) if fmt == 2 else joined


# -- format 2


def _ref(parts: dict[str, bytes]) -> Callable[[Any], Any]:
    def ref(value: Any) -> Any:
        content = canonical(value)
        if len(content) < MIN_PART_BYTES:
            return value
        name = part_name(content)
        parts[name] = content
        return {"$part": name}

    return ref


def _split_2(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bytes]]:
    stored, parts = split_parts(body, shared_paragraphs=_PARAGRAPHS_2)
    parts = dict(parts)
    ref = _ref(parts)
    out = dict(stored)
    if "cards" in out:
        out["cards"] = _map_resources(out["cards"], lambda r: _template(r, ref))
    for field, fixed in _TABLES_2.items():
        if field in out:
            out[field] = _table(out[field], fixed, ref)
    for field in _WHOLE_2:
        value = out.get(field)
        if value is not None and not _is_ref(value):
            out[field] = ref(value)
    return out, parts


def _join_2(body: dict[str, Any], parts: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(body)
    if "cards" in out:
        out["cards"] = _map_resources(out["cards"], lambda r: _untemplate(r, parts))
    for field in _TABLES_2:
        if field in out:
            out[field] = _untable(out[field], parts)
    for field in _WHOLE_2:
        if _is_ref(out.get(field)):
            out[field] = parts[out[field]["$part"]]
    return out


def _checked_text(
    marked: dict[str, Any], stored: dict[str, Any], parts: dict[str, bytes]
) -> bytes | None:
    """The canonical JSON of ``stored`` if it reads back as ``marked`` byte for byte and is
    its own stored form (a body holding what looks like a reference of ours, say, is not);
    else None. Its own stored form, those bytes are also what the chain hashes."""
    parsed = {n: orjson.loads(c) for n, c in parts.items()}
    try:
        read = _join_2(join_parts(stored, parsed), parsed)
        again = _split_2(stored)[0]
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None
    if canonical(read) != canonical(marked):
        return None
    text = canonical(stored)
    return text if canonical(again) == text else None


def _is_ref(value: object) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("$part"), str)


def _table(value: Any, fixed: tuple[str, ...], ref: Callable[[Any], Any]) -> Any:
    """A list of objects of one shape as ``{"$table": header, "$rows": [[...], ...]}``:
    the header names the row fields (``keys``) and holds the ``fixed`` columns whole."""
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        return value
    keys = set(value[0])
    if any(set(v) != keys for v in value):
        return value
    held = [k for k in fixed if k in keys]
    row_keys = sorted(keys - set(held))
    header = {"keys": row_keys, **{k: [v[k] for v in value] for k in held}}
    return {"$table": ref(header), "$rows": [[v[k] for k in row_keys] for v in value]}


def _is_table(value: object) -> bool:
    return isinstance(value, dict) and set(value) == {"$table", "$rows"}


def _table_header(value: Any) -> Any:
    return value["$table"] if _is_table(value) else None


def _untable(value: Any, parts: Mapping[str, Any]) -> Any:
    if not _is_table(value):
        return value
    header = value["$table"]
    if _is_ref(header):
        header = parts[header["$part"]]
    rows = value["$rows"]
    keys = header["keys"]
    columns = {k: v for k, v in header.items() if k != "keys"}
    if any(len(row) != len(keys) for row in rows) or any(
        len(col) != len(rows) for col in columns.values()
    ):
        raise ValueError("a table's rows and columns differ in length")
    at = {k: j for j, k in enumerate(keys)}
    order = sorted([*keys, *columns])  # as a body parsed from canonical JSON has them
    return [
        {k: row[at[k]] if k in at else columns[k][i] for k in order} for i, row in enumerate(rows)
    ]


def _template(resource: Any, ref: Callable[[Any], Any]) -> Any:
    """A suggestion's resource as a reference to its content and its identity inline."""
    if not isinstance(resource, dict) or "$part" in resource:
        return resource
    shared = ref({k: v for k, v in resource.items() if k not in _IDENTITY_2})
    if not _is_ref(shared):
        return resource
    return {**shared, **{k: resource[k] for k in _IDENTITY_2 if k in resource}}


def _untemplate(resource: Any, parts: Mapping[str, Any]) -> Any:
    if not isinstance(resource, dict) or not isinstance(resource.get("$part"), str):
        return resource
    whole = {**parts[resource["$part"]], **{k: v for k, v in resource.items() if k != "$part"}}
    return {k: whole[k] for k in sorted(whole)}


def _resources(body: Mapping[str, Any]) -> Iterator[Any]:
    """The resources of the cards' suggestions' actions."""
    for card in body.get("cards") or []:
        for suggestion in (card.get("suggestions") or []) if isinstance(card, dict) else []:
            for action in (suggestion.get("actions") or []) if isinstance(suggestion, dict) else []:
                if isinstance(action, dict) and "resource" in action:
                    yield action["resource"]


def _map_resources(cards: Any, change: Callable[[Any], Any]) -> Any:
    """``cards`` with every suggestion action's resource replaced by ``change(resource)``."""
    if not isinstance(cards, list):
        return cards

    def action(a: Any) -> Any:
        if not isinstance(a, dict) or "resource" not in a:
            return a
        return {**a, "resource": change(a["resource"])}

    def suggestion(s: Any) -> Any:
        if not isinstance(s, dict) or not isinstance(s.get("actions"), list):
            return s
        return {**s, "actions": [action(a) for a in s["actions"]]}

    def card(c: Any) -> Any:
        if not isinstance(c, dict) or not isinstance(c.get("suggestions"), list):
            return c
        return {**c, "suggestions": [suggestion(s) for s in c["suggestions"]]}

    return [card(c) for c in cards]

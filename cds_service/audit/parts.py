"""Card material that every call repeats, stored once and named by its sha256.

A hook record keeps the cards exactly as sent (an auditor must see what the clinician
saw). Part of a card's bytes are the same on every call of a service: the coded
override reasons, and (in cards that carry it) the paragraph of the detail text that
comes from the model card. bench/audit_size.py measures what this saves.

In the stored body such a value is replaced by ``{"$part": sha256}`` (a card's
``detail`` by ``{"$paragraphs": [...]}`` whose model-card paragraph is a part), and the value
goes once into ``audit_part`` (sha256 → canonical JSON). The chain hashes the stored
body, so every reference is inside the hash; a part's content is checked against its
name by ``verify``. Readers (queries, the auditor API, exports) get the cards back
byte for byte: ``join_parts`` undoes ``split_parts`` exactly.

These are the card rules of stored format 1, which format 2 builds on; which format a
record is in, and how the chain hashes each, is ``cds_service.audit.stored``'s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Final

import orjson

# The constants below are the rules of stored formats 1 and 2 (``audit.stored``): records
# are hashed in the form they give, so they never change; a new rule is a new format.

#: Card fields stored as parts whole (the same on every call of a service and model).
_WHOLE: Final = ("overrideReasons", "source")
#: Detail paragraphs stored as parts: the model card's own text, the same on every call
#: of a model version (a patient's own paragraphs never repeat, and stay inline).
SHARED_PARAGRAPHS: Final = ("**Model**",)
_SEP: Final = "\n\n"
#: A value is worth a reference (~75 bytes stored) only when it is longer than this.
MIN_PART_BYTES: Final = 128


def canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def part_name(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


#: The body key that says a hook record's cards are stored with parts (records written
#: before parts existed lack it and are hashed as they are).
MARK: Final = "cardStorage"
MARK_VALUE: Final = "parts"


def split_parts(
    body: dict[str, Any], *, shared_paragraphs: tuple[str, ...] = SHARED_PARAGRAPHS
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The body to store (repeating card material by reference) and the parts it names.
    Values already stored by reference stay as they are. ``shared_paragraphs``: the
    detail paragraphs stored as parts (format 1's by default; ``stored`` has format 2's)."""
    cards = body.get("cards")
    if not isinstance(cards, list) or not cards:
        return body, {}
    parts: dict[str, bytes] = {}

    def ref(value: Any) -> Any:
        content = canonical(value)
        if len(content) < MIN_PART_BYTES:
            return value  # inline is smaller
        name = part_name(content)
        parts[name] = content
        return {"$part": name}

    stored_cards = []
    for card in cards:
        if not isinstance(card, dict):
            stored_cards.append(card)
            continue
        stored = dict(card)
        for key in _WHOLE:
            if key in stored and not _is_ref(stored[key]):
                stored[key] = ref(stored[key])
        detail = stored.get("detail")
        if isinstance(detail, str):
            paragraphs = [
                ref(p) if p.lstrip("\n").startswith(shared_paragraphs) else p
                for p in detail.split(_SEP)
            ]
            if any(_is_ref(p) for p in paragraphs):
                stored["detail"] = {"$paragraphs": paragraphs}
        stored_cards.append(stored)
    return {**body, "cards": stored_cards}, parts


def part_refs(body: Mapping[str, Any]) -> set[str]:
    """The names of the parts a stored body refers to."""
    names: set[str] = set()
    for card in body.get("cards") or []:
        if not isinstance(card, dict):
            continue
        for value in card.values():
            if _is_ref(value):
                names.add(value["$part"])
            elif isinstance(value, dict) and isinstance(value.get("$paragraphs"), list):
                names.update(p["$part"] for p in value["$paragraphs"] if _is_ref(p))
    return names


def join_parts(body: dict[str, Any], parts: Mapping[str, Any]) -> dict[str, Any]:
    """The body as recorded: every reference replaced by its (parsed) part."""
    cards = body.get("cards")
    if not isinstance(cards, list) or not cards:
        return body
    joined = []
    for card in cards:
        if not isinstance(card, dict):
            joined.append(card)
            continue
        out = {}
        for key, value in card.items():
            if _is_ref(value):
                out[key] = parts[value["$part"]]
            elif isinstance(value, dict) and isinstance(value.get("$paragraphs"), list):
                out[key] = _SEP.join(
                    parts[p["$part"]] if _is_ref(p) else p for p in value["$paragraphs"]
                )
            else:
                out[key] = value
        joined.append(out)
    return {**body, "cards": joined}


def _is_ref(value: object) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("$part"), str)

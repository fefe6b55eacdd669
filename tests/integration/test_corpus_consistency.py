"""On every shared Synthea patient, the patient-view services never contradict each
other, and every card is short enough to read in an EHR."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from cds_service.http.cards import Card, Link
from cds_service.pipeline.patient_view import patient_view
from cds_service.services.ascvd_cards import ascvd_cards
from cds_service.services.card_text import DETAIL_MAX
from cds_service.services.cardio_renal_cards import cardio_renal_cards
from onnx_models.registry import ModelRegistry
from tests.conftest import load_json, synthea_bundles, with_ids
from twin_engine import build_twin_from_fhir, derive_features
from twin_engine.twin import Twin

pytestmark = pytest.mark.corpus

BUNDLES = synthea_bundles()
LINK = Link(label="twin", url="http://127.0.0.1/app/launch", type="smart")
CURRENT_PCE = re.compile(r"^10-year ASCVD risk \d")
PREVENT_NUMBER = re.compile(r"^10-year cardiovascular risk \d")
LIPIDS_UNUSABLE = re.compile(r"lipids from \d{4} (are|is) too old|no (eGFR or )?lipids")


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return ModelRegistry.load()


def _dates(twin: Twin) -> list[date]:
    """Today's date, and the day after the last lipid panel (when the data were fresh)."""
    out = [date(2026, 6, 1)]
    totals = twin.observations.get("total_cholesterol", ())
    if totals:
        out.append(totals[-1].time.date() + timedelta(days=1))
    return out


def _cards(registry: ModelRegistry, path: Path) -> list[tuple[date, list[Card], list[Card]]]:
    bundle: dict[str, Any] = with_ids(load_json(path))
    twin = build_twin_from_fhir(bundle)
    out = []
    for on in _dates(twin):
        view = patient_view(registry, twin, derive_features(twin, on))
        out.append((on, ascvd_cards(view, LINK), cardio_renal_cards(view, LINK)))
    return out


def _contradictions(ascvd: list[str], renal: list[str]) -> list[str]:
    found = []
    shows_pce = any(CURRENT_PCE.match(s) for s in ascvd)
    shows_prevent = any(PREVENT_NUMBER.match(s) for s in renal)
    if shows_pce and any(LIPIDS_UNUSABLE.search(s) for s in renal):
        found.append("ascvd-risk shows a risk from lipids cardio-renal calls unusable")
    if shows_prevent and any(LIPIDS_UNUSABLE.search(s) for s in ascvd):
        found.append("cardio-renal shows a risk from lipids ascvd-risk calls unusable")
    if any(s.startswith("Clinical ASCVD") for s in ascvd) and shows_prevent:
        found.append("secondary prevention, yet a primary-prevention PREVENT number")
    if any(s.startswith("Acute kidney injury") for s in renal) and len(renal) > 1:
        found.append("an AKI card beside a kidney-based risk")
    return found


@pytest.mark.skipif(not BUNDLES, reason="shared Synthea corpus not present")
@pytest.mark.parametrize("path", BUNDLES, ids=[p.name.split("_")[0] for p in BUNDLES])
def test_patient_view_services_never_contradict(registry: ModelRegistry, path: Path) -> None:
    """Today and when the data were fresh, one service never shows a number the other
    declines (stale or not applicable), nor a score in secondary prevention or AKI."""
    for on, ascvd, renal in _cards(registry, path):
        problems = _contradictions([c.summary for c in ascvd], [c.summary for c in renal])
        assert not problems, (on, [c.summary for c in ascvd + renal], problems)


@pytest.mark.skipif(not BUNDLES, reason="shared Synthea corpus not present")
@pytest.mark.parametrize("path", BUNDLES, ids=[p.name.split("_")[0] for p in BUNDLES])
def test_every_card_is_short(registry: ModelRegistry, path: Path) -> None:
    """Summary under 140 characters, detail at most 700, no UCUM codes shown."""
    for _, ascvd, renal in _cards(registry, path):
        for card in ascvd + renal:
            assert len(card.summary) < 140, card.summary
            assert len(card.detail or "") <= DETAIL_MAX, card.detail
            for code in ("mm[Hg]", "{1.73_m2}"):
                assert code not in card.summary + (card.detail or "")

"""What the app shows equals what the cards say, on many patients; the curves add up."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cds_service.audit.log import AuditEntry
from cds_service.audit.sql import SqliteAuditLog
from cds_service.http.cards import Card, Link
from cds_service.ops.log_redaction import redact_url
from cds_service.pipeline.patient_view import patient_view
from cds_service.pipeline.render import pct
from cds_service.services.ascvd_cards import ascvd_cards
from cds_service.services.cardio_renal import CardioRenalAssessments, what_ifs
from cds_service.services.cardio_renal_cards import cardio_renal_cards
from cds_service.services.vancomycin import dosing_cards, simulator_for
from ehr_sim.patients import vancomycin_patient
from onnx_models.registry import ModelRegistry
from smart_app import dose_view, history_view, risk_view, twin_view
from smart_app.errors import WhatIfRefused
from tests.conftest import with_ids
from twin_engine import FeatureSet, build_twin_from_fhir, derive_features
from twin_engine.pk.curve import concentration_curve
from twin_engine.pk.types import Regimen

TODAY = datetime(2026, 1, 15, tzinfo=UTC)
LINK = Link(label="twin", url="http://127.0.0.1/app/launch", type="smart")


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return ModelRegistry.load()


def _resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in with_ids(bundle)["entry"]]


def _card_and_app(
    registry: ModelRegistry, bundle: dict[str, Any]
) -> tuple[FeatureSet, list[Card], CardioRenalAssessments]:
    """One patient's patient-view cards, and the runs the app's risk panel shows."""
    twin = build_twin_from_fhir(_resources(bundle))
    features = derive_features(twin, TODAY)
    view = patient_view(registry, twin, features)
    cards = ascvd_cards(view, LINK) + cardio_renal_cards(view, LINK)
    runs = risk_view.risk_assessments(registry, twin, features, kfre_model="kfre")
    return features, cards, runs


def test_the_risk_panel_shows_the_cards_numbers(
    registry: ModelRegistry, demo_bundles: list[dict[str, Any]]
) -> None:
    """For every generated patient, each PREVENT, PCE and KFRE number on the cards
    appears, identically formatted, among the app's outputs for that model."""
    compared = 0
    for bundle in demo_bundles:
        _, cards, runs = _card_and_app(registry, bundle)
        shown = {
            m.id: {o.name: o.display for o in m.outputs}
            for m in risk_view.risk_view(runs, 1, TODAY).models
        }
        for card in cards:
            numbers = re.findall(r"\d+\.\d%", card.summary)
            if card.summary.startswith("10-year cardiovascular risk"):
                prevent = shown["prevent"]
                assert numbers[:3] == [
                    prevent["risk_10y_cvd"],
                    prevent["risk_10y_ascvd"],
                    prevent["risk_10y_hf"],
                ]
                compared += 1
            if re.match(r"(Untreated )?10-year ASCVD risk \d", card.summary):
                assert numbers[0] == shown["pce"]["risk_10y_ascvd"]
                compared += 1
            if "kidney failure risk" in card.summary and numbers:
                assert numbers[0] == shown["kfre"]["risk_5y_kidney_failure"]
                compared += 1
    assert compared >= 4


def test_the_what_if_gives_the_cards_treatment_response(
    registry: ModelRegistry, demo_bundles: list[dict[str, Any]]
) -> None:
    """The what-if answers with the treatment effects the service computes for the same
    patient (`what_ifs`: a statin where not on one, SBP 130 where above it)."""
    checked = 0
    for bundle in demo_bundles:
        features, _, runs = _card_and_app(registry, bundle)
        if runs.prevent.status != "computed":
            continue
        risk = runs.prevent.outputs["risk_10y_ascvd"]
        for effect in what_ifs(features, risk):
            choice: tuple[str, float | None] = (
                ("none", 130.0)
                if effect.description.startswith("SBP")
                else (effect.description.split("-")[0], None)
            )
            answer = risk_view.whatif(runs, features, choice[0], choice[1])  # type: ignore[arg-type]
            assert answer.display_after == pct(effect.risk_after)
            assert answer.display_before == pct(effect.risk_before)
            checked += 1
    assert checked >= 4


def test_a_what_if_the_data_cannot_answer_is_refused(
    registry: ModelRegistry, demo_bundles: list[dict[str, Any]]
) -> None:
    twin = build_twin_from_fhir(_resources(demo_bundles[0]))
    features = derive_features(twin, TODAY)
    runs = risk_view.risk_assessments(registry, twin, features, kfre_model="kfre")
    if runs.prevent.status != "computed":
        pytest.skip("first demo patient has no PREVENT")
    on_statin = replace(
        features,
        features={
            **features.features,
            "statin": replace(features.get("statin"), value=1.0),
        },
    )
    with pytest.raises(WhatIfRefused, match="already on a statin"):
        risk_view.whatif(runs, on_statin, "moderate", None)
    no_ldl = replace(
        features,
        features={
            **features.features,
            "ldl_cholesterol_mg_dl": replace(
                features.get("ldl_cholesterol_mg_dl"), value=None, quality="missing"
            ),
        },
    )
    with pytest.raises(WhatIfRefused, match="LDL"):
        risk_view.whatif(runs, no_ldl, "high", None)
    unchanged = risk_view.whatif(runs, features, "none", None)
    assert unchanged.risk_after == unchanged.risk_before


def test_timelines_never_draw_a_value_in_an_unknown_unit() -> None:
    """A cholesterol in an unknown unit is not on the chart (it would be a wrong number on
    a mg/dL axis); the issues list names it."""
    resources = [
        {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-01-01"},
        {
            "resourceType": "Observation",
            "id": "tc-ok",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2093-3"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2025-06-01T08:00:00Z",
            "valueQuantity": {
                "value": 5.2,
                "unit": "mmol/L",
                "system": "http://unitsofmeasure.org",
                "code": "mmol/L",
            },
        },
        {
            "resourceType": "Observation",
            "id": "tc-odd",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2093-3"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2025-07-01T08:00:00Z",
            "valueQuantity": {"value": 190, "unit": "mg per deciliter"},
        },
    ]
    twin = build_twin_from_fhir(resources)
    lipids = next(c for c in twin_view.timelines(twin) if c.id == "lipids")
    total = next(s for s in lipids.series if s.name == "Total")
    assert [p.source for p in total.points] == ["Observation/tc-ok"]
    assert lipids.unit == "mg/dL"
    assert total.points[0].v == pytest.approx(5.2 * 38.67, rel=1e-3)
    assert any("Observation/tc-odd" in i for i in twin_view.issues(twin))


def _vancomycin_resources(now: datetime) -> list[dict[str, Any]]:
    resources = _resources(vancomycin_patient(now))
    patient = resources[0]["id"]
    for r in resources[1:]:
        r["subject"] = {"reference": f"Patient/{patient}"}
    return resources


def test_the_dose_simulator_gives_the_dosing_cards_numbers() -> None:
    """simulate() is recommend() with the regimen as the draft: the same AUC24, interval
    and attainment the dosing card prints for that regimen."""
    now = datetime(2026, 3, 2, 12, tzinfo=UTC)
    resources = _vancomycin_resources(now)
    regimen = Regimen(dose_mg=1250, interval_h=12, infusion_h=1.5)
    shown = dose_view.simulate(resources, now, "vancomycin_goti2018", regimen).regimen
    draft = {
        "resourceType": "MedicationRequest",
        "id": "d1",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "11124"}]
        },
        "dosageInstruction": [
            {
                "timing": {
                    "repeat": {
                        "period": 12,
                        "periodUnit": "h",
                        "duration": 1.5,
                        "durationUnit": "h",
                    }
                },
                "doseAndRate": [{"doseQuantity": {"value": 1250, "unit": "mg", "code": "mg"}}],
            }
        ],
    }
    context = {"draftOrders": {"resourceType": "Bundle", "entry": [{"resource": draft}]}}
    card = dosing_cards(
        resources, context, as_of=now, model_id="vancomycin_goti2018", link=LINK
    ).cards[0]
    match = re.search(r"AUC24 (\d+), (\d+%) in", card.summary)
    assert match is not None, card.summary
    assert (shown.auc24_display, shown.pta_display) == match.groups()
    drafted = f"| {shown.auc24_display} ({shown.interval_display}) |"
    assert drafted in (card.detail or "")
    assert f"| P(AUC24 > 600) | {shown.p_above_display} |" in (card.detail or "")
    assert f"mg/L | {shown.peak_trough_display} |" in (card.detail or "")


def test_the_pk_curve_adds_up() -> None:
    """Linear PK: the curve of history + a new regimen is the history's curve plus the
    regimen's alone (per posterior sample), and nothing of the regimen precedes its start."""
    now = datetime(2026, 3, 2, 12, tzinfo=UTC)
    result = dose_view._dose(_vancomycin_resources(now), now, "vancomycin_goti2018", None)
    assert result.timeline is not None and result.posterior is not None
    sim = simulator_for("vancomycin_goti2018")
    one = replace(result.posterior, params_samples=result.posterior.params_samples[:1])
    start, end = now - timedelta(hours=24), now + timedelta(hours=48)
    regimen = Regimen(dose_mg=1000, interval_h=8, infusion_h=1)
    both = concentration_curve(
        sim, result.timeline, one, start=start, end=end, regimen=regimen, regimen_start=now
    )
    history = concentration_curve(sim, result.timeline, one, start=start, end=end)
    empty = replace(result.timeline, doses=np.zeros((0, 3)))
    alone = concentration_curve(
        sim, empty, one, start=start, end=end, regimen=regimen, regimen_start=now
    )
    # Each curve adds its own infusion edges to a shared even grid: compare where all
    # three have a point (at least the grid).
    h, a, b = (dict(zip(c.times, c.median, strict=True)) for c in (history, alone, both))
    common = sorted(h.keys() & a.keys() & b.keys())
    assert len(common) >= 100
    total = np.array([h[t] + a[t] for t in common])
    assert np.allclose([b[t] for t in common], total, rtol=1e-9, atol=1e-9)
    # The regimen's infusion ends are drawn points: its peaks are the model's own.
    assert now + timedelta(hours=1) in a
    before = [c for t, c in zip(alone.times, alone.median, strict=True) if t <= now]
    assert max(before) == 0.0
    assert max(alone.median) > 10.0  # 1 g q8h reaches well above 10 mg/L

    band = concentration_curve(
        sim,
        result.timeline,
        result.posterior,
        start=start,
        end=end,
        regimen=regimen,
        regimen_start=now,
    )
    low, mid, high = (np.array(x) for x in (band.low, band.median, band.high))
    assert np.all(low <= mid + 1e-12) and np.all(mid <= high + 1e-12)
    assert np.any(high - low > 1.0)  # the posterior has spread


def test_no_vancomycin_is_said_and_no_dialysis_record_is_stated() -> None:
    """No vancomycin: said so. No dialysis record: dosed as not on dialysis, and shown."""
    now = datetime(2026, 3, 2, 12, tzinfo=UTC)
    patient = {"resourceType": "Patient", "id": "p", "gender": "male", "birthDate": "1960-01-01"}
    none = dose_view.vancomycin_view([patient], now, "vancomycin_goti2018")
    assert isinstance(none, dose_view.VancomycinUnavailable)
    assert "no vancomycin" in none.reason
    resources = [r for r in _vancomycin_resources(now) if r["resourceType"] != "Condition"]
    silent = dose_view.vancomycin_view(resources, now, "vancomycin_goti2018")
    assert isinstance(silent, dose_view.VancomycinPanel)
    assert silent.covariates.dialysis is False


def test_history_shows_only_this_ehrs_records(tmp_path: Path) -> None:
    """Patient ids are unique only within one EHR: another tenant's patient "123" is not
    this one's history."""
    log = SqliteAuditLog(tmp_path / "audit.sqlite")
    base = AuditEntry(
        hook_instance="h",
        hook="patient-view",
        service_id="ascvd-risk",
        patient_id="123",
        status="ok",
        duration_ms=1.0,
        cards=({"uuid": "c-a", "summary": "ours", "indicator": "info"},),
        client_iss="https://ehr-a.example",
        client_tenant="hospital-a",
    )
    log.record(base)
    log.record(
        replace(
            base,
            hook_instance="h2",
            cards=({"uuid": "c-b", "summary": "theirs", "indicator": "info"},),
            client_iss="https://ehr-b.example",
            client_tenant="hospital-b",
        )
    )
    ours = history_view.history(log, "123", "hospital-a").records
    assert [c.summary for r in ours for c in r.cards] == ["ours"]
    assert history_view.history(log, "123", None).records == []


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            '"GET /app/callback?code=abc&state=xyz HTTP/1.1"',
            '"GET /app/callback?code=[redacted]&state=[redacted] HTTP/1.1"',
        ),
        (
            "/app/launch?iss=https://ehr/fhir&launch=L1",
            "/app/launch?iss=https://ehr/fhir&launch=[redacted]",
        ),
        (
            "/authorize?response_type=code&nonce=n&code_challenge=c",
            "/authorize?response_type=code&nonce=[redacted]&code_challenge=[redacted]",
        ),
        ("/fhir/Patient/123", "/fhir/Patient/123"),
        # Names as the application decodes them (the attack: launc%68 is launch).
        ("/app/launch?iss=x&launc%68=SECRET", "/app/launch?iss=x&launc%68=[redacted]"),
        ("/app/callback?%63ode=C&st%61te=S", "/app/callback?%63ode=[redacted]&st%61te=[redacted]"),
        ("/app/launch?launch+=L", "/app/launch?launch+=[redacted]"),
        ("/app/launch?relaunch=x&codes=y", "/app/launch?relaunch=x&codes=y"),
    ],
)
def test_secrets_in_urls_are_redacted(line: str, expected: str) -> None:
    assert redact_url(line) == expected

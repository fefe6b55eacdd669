"""Batched model runs of a partition: the same views, numbers and rows as the patient-view
path one patient at a time, each model run once per batch, for patients to whom different
models apply."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

import pytest

from cds_service.pipeline.patient_view import patient_view, plan_view, run_views
from cds_service.population.rows import output_columns, row_of_view
from onnx_models.registry import BATCH_ROWS, ModelRegistry
from tests.onnx_models.test_shapley import CountingRunner
from tests.support.fhir import SNOMED, condition, obs, patient, smoking
from twin_engine import build_twin_from_fhir, derive_features
from twin_engine.twin import Twin

AS_OF = date(2026, 6, 1)
WHEN = "2026-03-01T09:00:00Z"


def _labs(pid: str, *, egfr: float = 85.0, uacr: float | None = None) -> list[dict[str, Any]]:
    out = [
        obs(f"{pid}-tc", "2093-3", 210, "mg/dL", WHEN, pid=pid),
        obs(f"{pid}-hdl", "2085-9", 45, "mg/dL", WHEN, pid=pid),
        obs(f"{pid}-sbp", "8480-6", 150, "mm[Hg]", WHEN, pid=pid),
        obs(f"{pid}-egfr", "98979-8", egfr, "mL/min/{1.73_m2}", WHEN, pid=pid),
        obs(f"{pid}-bmi", "39156-5", 27.0, "kg/m2", WHEN, pid=pid),
        {**smoking(f"{pid}-smk", "266919005", WHEN), "subject": {"reference": f"Patient/{pid}"}},
    ]
    if uacr is not None:
        out.append(obs(f"{pid}-acr", "9318-7", uacr, "mg/g", WHEN, pid=pid))
    return out


def _of(pid: str, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "subject": {"reference": f"Patient/{pid}"}} for r in resources]


def _heterogeneous(demo_bundles: list[dict[str, Any]]) -> list[Twin]:
    """Every model computed; CKD (KFRE too); clinical ASCVD (no primary prevention);
    too young for every equation; no labs at all; and the demo's synthetic patients."""
    made = {
        "all": [patient("all", gender="male", birth="1976-01-01", race=["2106-3"]), *_labs("all")],
        "ckd": [
            patient("ckd", gender="female", birth="1958-04-01", race=["2106-3"]),
            *_labs("ckd", egfr=38.0, uacr=420.0),
            # Chronic: the same kidney function a year before (KDIGO: > 3 months).
            obs("ckd-egfr0", "98979-8", 40.0, "mL/min/{1.73_m2}", "2025-03-01", pid="ckd"),
            obs("ckd-acr0", "9318-7", 380.0, "mg/g", "2025-03-01", pid="ckd"),
        ],
        "mi": [
            patient("mi", gender="male", birth="1955-01-01"),
            *_labs("mi"),
            *_of("mi", [condition("mi-mi", SNOMED, "22298006", onset="2019-05-01")]),
        ],
        "young": [patient("young", gender="female", birth="2002-01-01"), *_labs("young")],
        "bare": [patient("bare", gender="male", birth="1970-01-01")],
    }
    twins = [build_twin_from_fhir(r, patient_id=pid) for pid, r in made.items()]
    return twins + [build_twin_from_fhir(b) for b in demo_bundles]


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return ModelRegistry.load()


def test_a_batch_of_different_patients_equals_each_patient_alone(
    registry: ModelRegistry, demo_bundles: list[dict[str, Any]]
) -> None:
    """The batched views equal ``patient_view`` of each patient alone, outputs and exact
    Shapley factors included, and so do their table rows."""
    twins = _heterogeneous(demo_bundles)
    features = [derive_features(t, AS_OF) for t in twins]
    batched = run_views([plan_view(registry, t, f) for t, f in zip(twins, features, strict=True)])
    alone = [patient_view(registry, t, f) for t, f in zip(twins, features, strict=True)]
    assert batched == alone
    columns = output_columns(registry, "kfre")
    rows = [row_of_view(v, AS_OF, columns) for v in batched]
    assert rows == [row_of_view(v, AS_OF, columns) for v in alone]
    # The batch really is heterogeneous: models apply to some patients and not others.
    by_pid = {r["patient_id"]: r for r in rows}
    assert by_pid["all"]["applicable_models"] == ["prevent", "prevent_30y", "pce"]
    assert "kfre" in by_pid["ckd"]["applicable_models"]
    assert by_pid["all"]["kfre_status"] == "not-run"
    assert by_pid["mi"]["pce_status"] == by_pid["mi"]["prevent_status"] == "not-applicable"
    assert by_pid["young"]["prevent_status"] == "not-applicable"
    assert by_pid["bare"]["pce_status"] == "missing-inputs"
    assert by_pid["bare"]["applicable_models"] == []
    assert all(v.pce.factors for v in batched if v.pce.status == "computed")


def test_each_model_runs_on_the_whole_batch_in_few_runs(
    registry: ModelRegistry, demo_bundles: list[dict[str, Any]]
) -> None:
    """Each model runs on all the batch's patients it is computed for, their coalitions
    (2^M rows each) stacked, as few onnxruntime runs as ``BATCH_ROWS`` allows."""
    counters = {i: CountingRunner(m.session) for i, m in registry.models.items()}
    counted = ModelRegistry(
        {i: dataclasses.replace(m, session=counters[i]) for i, m in registry.models.items()}
    )
    twins = _heterogeneous(demo_bundles)
    plans = [plan_view(counted, t, derive_features(t, AS_OF)) for t in twins]
    views = run_views(plans)
    for model_id in ("pce", "prevent", "prevent_30y", "kfre"):
        computed = sum(
            1 for v in views if (a := getattr(v, model_id)) is not None and a.status == "computed"
        )
        n = 1 << len(registry.get(model_id).card.explained_inputs)
        per_run = BATCH_ROWS // n
        assert computed > 0, model_id
        assert sum(counters[model_id].rows) == computed * n, model_id
        assert counters[model_id].calls == -(-computed // per_run), model_id

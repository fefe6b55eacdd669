"""One partition of patients to rows of the population table, by the hooks' own code.

Each patient's resources go through the one FHIR reader (``build_twin_from_fhir``),
their features are derived as of the run's date (``derive_features``), and the models
and clinical rules run through the patient-view services' own entry point
(``patient_view``: the clinical state, every applicability rule, the model runs, the
statin decision; with the deployment's KFRE calibration), so a patient's numbers in
the table are the numbers its patient-view cards show, by construction: whatever rule
the services apply, the table applies too. Care gaps come from
``twin_engine.population.care_gaps`` on the same statin decision.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final

import orjson
import pyarrow as pa

from cds_service.pipeline.patient_view import PatientView, ViewPlan, plan_view, run_views
from cds_service.pipeline.predict import Assessment
from cds_service.services.card_text import outside_ages
from onnx_models.registry import ModelRegistry
from twin_engine import build_twin_from_fhir, derive_features
from twin_engine.derive import FeatureSet
from twin_engine.errors import IngestError
from twin_engine.population.care_gaps import care_gaps

#: Model slots of the table: (column prefix, how to find the run).
SLOTS: Final = ("prevent", "prevent_30y", "pce", "kfre")
#: Clinical state columns: feature name -> column (usable values only, else null).
VALUE_COLUMNS: Final = {
    "age_years": "age_years",
    "systolic_bp_mm_hg": "sbp_mm_hg",
    "ldl_cholesterol_mg_dl": "ldl_mg_dl",
    "total_cholesterol_mg_dl": "total_cholesterol_mg_dl",
    "hdl_cholesterol_mg_dl": "hdl_cholesterol_mg_dl",
    "egfr_ml_min_1_73m2": "egfr_ml_min_1_73m2",
    "uacr_mg_g": "uacr_mg_g",
    "hba1c_percent": "hba1c_percent",
}
FLAG_COLUMNS: Final = {
    "female": "female",
    "statin": "on_statin",
    "diabetes": "diabetes",
    "clinical_ascvd": "clinical_ascvd",
    "current_smoker": "current_smoker",
    "treated_hypertension": "treated_hypertension",
    "heart_failure": "heart_failure",
}


@functools.lru_cache(maxsize=4)
def worker_registry(model_dir: str | None) -> ModelRegistry:
    """The models, loaded once per worker process (sessions are not shipped over the wire)."""
    return ModelRegistry.load(Path(model_dir) if model_dir else None)


def output_columns(registry: ModelRegistry, kfre_model: str) -> dict[str, tuple[str, str]]:
    """column -> (slot, output name), from the model cards."""
    ids = {"prevent": "prevent", "prevent_30y": "prevent_30y", "pce": "pce", "kfre": kfre_model}
    return {
        f"{slot}_{o.name}": (slot, o.name)
        for slot in SLOTS
        for o in registry.get(ids[slot]).card.outputs
    }


def table_schema(registry: ModelRegistry, kfre_model: str) -> pa.Schema:
    fields: list[pa.Field] = [
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("twin_hash", pa.string(), nullable=False),
        pa.field("as_of", pa.date32(), nullable=False),
        pa.field("deceased", pa.bool_()),
    ]
    fields += [pa.field(c, pa.float64()) for c in VALUE_COLUMNS.values()]
    fields += [pa.field(c, pa.bool_()) for c in FLAG_COLUMNS.values()]
    fields += [pa.field("ckd", pa.bool_()), pa.field("aki", pa.bool_())]
    fields += [
        pa.field("ckd_category", pa.string()),
        pa.field("statin_group", pa.string()),
        pa.field("statin_decision", pa.string()),
        pa.field("statin_indicated_intensity", pa.string()),
    ]
    fields += [pa.field(f"{slot}_status", pa.string()) for slot in SLOTS]
    fields += [pa.field(f"{slot}_shown", pa.bool_()) for slot in ("prevent", "kfre")]
    fields += [pa.field(c, pa.float64()) for c in output_columns(registry, kfre_model)]
    fields += [
        pa.field("applicable_models", pa.list_(pa.string())),
        pa.field("care_gaps", pa.list_(pa.string())),
        pa.field("care_gap_reasons", pa.list_(pa.string())),
        pa.field("stale_inputs", pa.list_(pa.string())),
        pa.field("data_problems", pa.list_(pa.string())),
    ]
    return pa.schema(fields)


@dataclass(slots=True)
class PartitionStats:
    patients: int = 0
    rows: int = 0
    unknown_patient_resources: Counter[str] = field(default_factory=Counter)
    unknown_patients: int = 0
    unknown_patients_named: list[str] = field(default_factory=list)
    ingest_failures: int = 0
    ingest_failures_named: list[str] = field(default_factory=list)
    duplicates_replaced: int = 0
    care_gaps: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {
            "patients": self.patients,
            "rows": self.rows,
            "unknownPatients": self.unknown_patients,
            "unknownPatientsNamed": self.unknown_patients_named,
            "unknownPatientResources": dict(sorted(self.unknown_patient_resources.items())),
            "ingestFailures": self.ingest_failures,
            "ingestFailuresNamed": self.ingest_failures_named,
            "duplicatesReplaced": self.duplicates_replaced,
            "careGaps": dict(sorted(self.care_gaps.items())),
            "modelStatus": dict(sorted(self.statuses.items())),
        }


def _usable(features: FeatureSet, name: str) -> float | None:
    f = features.get(name)
    return f.value if f.usable else None


def _prevent_shown(view: PatientView) -> bool:
    """The cardio-renal card shows the PREVENT number (cds_service.services.cardio_renal_cards)."""
    p = view.prevent
    return (
        p is not None
        and not view.deceased
        and view.state.aki is None
        and view.prevent_excluded is None
        and p.status == "computed"
        and not outside_ages(view, p)
        and not view.lab_blockers(p)
    )


def _ckd_category(view: PatientView) -> str | None:
    """KDIGO 'G3a A2' when the kidney abnormality is chronic (> 3 months), else None."""
    k = view.state.kidney
    if not k.chronic or k.g_category is None:
        return None
    return f"{k.g_category} {k.a_category}" if k.a_category else k.g_category


def _kfre_shown(view: PatientView) -> bool:
    k = view.kfre
    return (
        k is not None
        and not view.deceased
        and view.state.aki is None
        and k.status == "computed"
        and not view.lab_blockers(k)
    )


def plan_patient(
    resources: list[dict[str, Any]],
    patient_id: str,
    as_of: date,
    registry: ModelRegistry,
    kfre_model: str,
) -> ViewPlan:
    """One patient's twin, features and model runs, as the patient-view hook plans them."""
    twin = build_twin_from_fhir(resources, patient_id=patient_id)
    features = derive_features(twin, as_of)
    return plan_view(registry, twin, features, kfre_model=kfre_model, with_prevent=True)


def row_of_view(
    view: PatientView, as_of: date, columns: dict[str, tuple[str, str]]
) -> dict[str, Any]:
    """The table's row of one patient's view."""
    twin, features = view.twin, view.features
    by_slot: dict[str, Assessment | None] = {
        "prevent": view.prevent,
        "prevent_30y": view.prevent_30y,
        "pce": view.pce,
        "kfre": view.kfre,
    }
    runs = tuple(a for a in by_slot.values() if a is not None)
    gaps = care_gaps(features, view.advice)
    row: dict[str, Any] = {
        "patient_id": twin.patient_id,
        "twin_hash": twin.content_hash(),
        "as_of": as_of,
        "deceased": twin.demographics.deceased,
    }
    for name, column in VALUE_COLUMNS.items():
        row[column] = _usable(features, name)
    for name, column in FLAG_COLUMNS.items():
        row[column] = features.get(name).value == 1.0
    egfr, uacr = row["egfr_ml_min_1_73m2"], row["uacr_mg_g"]
    row["ckd"] = (egfr is not None and egfr < 60.0) or (uacr is not None and uacr >= 30.0)
    row["aki"] = view.state.aki is not None
    row["ckd_category"] = _ckd_category(view)
    row["statin_group"] = view.advice.group
    row["statin_decision"] = view.advice.decision
    row["statin_indicated_intensity"] = view.advice.indicated
    for slot, a in by_slot.items():
        row[f"{slot}_status"] = a.status if a is not None else "not-run"
    row["prevent_shown"] = _prevent_shown(view)
    row["kfre_shown"] = _kfre_shown(view)
    for column, (slot, output) in columns.items():
        a = by_slot[slot]
        row[column] = a.outputs.get(output) if a is not None and a.status == "computed" else None
    row["applicable_models"] = [
        a.model.card.id for a in by_slot.values() if a is not None and a.status == "computed"
    ]
    row["care_gaps"] = [g.kind for g in gaps]
    row["care_gap_reasons"] = [g.reason for g in gaps]
    row["stale_inputs"] = sorted({i.name for a in runs for i in a.stale})
    problems = [f"{i.resource_type}/{i.resource_id or '?'}: {i.reason}" for i in twin.issues]
    problems += [p for a in runs if a.status != "not-applicable" for p in a.problems]
    row["data_problems"] = problems
    return row


def read_partition(
    part_dir: Path, shared_dir: Path | None
) -> tuple[dict[str, dict[tuple[str, str], bytes]], dict[str, dict[str, Any]], int]:
    """Resources of one partition grouped by patient (later files win), and Medications.

    Each resource is kept as its NDJSON line and parsed again when its patient's twin is
    built: a partition's lines cost their bytes, where parsed they cost ~5x (the bound
    on a worker's memory is the partition's size, ``job.PARTITION_BYTES``).
    """
    from cds_service.population.split import patient_id_of

    by_patient: dict[str, dict[tuple[str, str], bytes]] = {}
    replaced = 0
    anonymous = 0
    for path in sorted(part_dir.glob("*.ndjson")):
        with path.open("rb") as f:
            for line in f:
                if not line.strip():
                    continue
                resource = orjson.loads(line)
                pid = patient_id_of(resource)
                if pid is None:  # pragma: no cover - the split wrote only patients' resources
                    continue
                rid = resource.get("id")
                if not isinstance(rid, str) or not rid:
                    anonymous += 1
                    rid = f"#anonymous-{anonymous}"
                key = (resource["resourceType"], rid)
                group = by_patient.setdefault(pid, {})
                if key in group:
                    replaced += 1  # an incremental export's newer version of the resource
                group[key] = line
    medications: dict[str, dict[str, Any]] = {}
    if shared_dir is not None and shared_dir.is_dir():
        for path in sorted(shared_dir.glob("*.ndjson")):
            with path.open("rb") as f:
                for line in f:
                    if line.strip():
                        r = orjson.loads(line)
                        if isinstance(r.get("id"), str):
                            medications[f"Medication/{r['id']}"] = r
    return by_patient, medications, replaced


def _referenced_medications(
    resources: list[dict[str, Any]], medications: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    out = []
    for r in resources:
        ref = (r.get("medicationReference") or {}).get("reference")
        if isinstance(ref, str):
            key = "Medication/" + ref.rsplit("Medication/", 1)[-1]
            if key in medications:
                out.append(medications[key])
    return out


MAX_NAMED: Final = 20


#: Patients whose model runs go to onnxruntime together: enough rows per run to amortise
#: the call, few enough that a batch's views stay small whatever the partition's size.
BATCH_PATIENTS: Final = 256


def build_partition_rows(
    part_dir: Path,
    shared_dir: Path | None,
    as_of: date,
    kfre_model: str,
    model_dir: str | None,
    batch_patients: int = BATCH_PATIENTS,
) -> tuple[pa.Table, PartitionStats]:
    """Every patient of one partition to rows; unknown patients and failures counted.

    Patients are planned one by one (an ingest failure is one patient's), and their
    model runs are batched ``batch_patients`` at a time (``run_views``).
    """
    registry = worker_registry(model_dir)
    columns = output_columns(registry, kfre_model)
    schema = table_schema(registry, kfre_model)
    by_patient, medications, replaced = read_partition(part_dir, shared_dir)
    stats = PartitionStats(duplicates_replaced=replaced)
    # Each batch's rows become columnar at once: a partition's rows stay a few bytes
    # per value, not Python dicts for every patient.
    batches: list[pa.RecordBatch] = []
    plans: list[ViewPlan] = []

    def flush() -> None:
        rows = [row_of_view(view, as_of, columns) for view in run_views(plans)]
        plans.clear()
        for row in rows:
            stats.care_gaps.update(row["care_gaps"])
            for slot in SLOTS:
                stats.statuses[f"{slot}:{row[f'{slot}_status']}"] += 1
        stats.rows += len(rows)
        if rows:
            batches.append(pa.RecordBatch.from_pylist(rows, schema=schema))

    for pid in sorted(by_patient):
        group = by_patient.pop(pid)
        if ("Patient", pid) not in group:
            stats.unknown_patients += 1
            if len(stats.unknown_patients_named) < MAX_NAMED:
                stats.unknown_patients_named.append(f"Patient/{pid}")
            for rtype, _ in group:
                stats.unknown_patient_resources[rtype] += 1
            continue
        stats.patients += 1
        resources = [orjson.loads(line) for line in group.values()]
        resources += _referenced_medications(resources, medications)
        try:
            plans.append(plan_patient(resources, pid, as_of, registry, kfre_model))
        except IngestError as exc:
            stats.ingest_failures += 1
            if len(stats.ingest_failures_named) < MAX_NAMED:
                stats.ingest_failures_named.append(f"Patient/{pid}: {exc}")
            continue
        if len(plans) >= batch_patients:
            flush()
    flush()
    return pa.Table.from_batches(batches, schema=schema), stats

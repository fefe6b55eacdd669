"""twin_engine: the patient digital twin, pure domain.

FHIR R4 in (`ingest`), the twin's own state (`build_twin`), features as of a date
(`derive_features`), and a versioned store (`SqliteTwinStore`).  Never imports the
service layer (cds_service, fastapi, httpx).
"""

from twin_engine.clinical.staleness import STALE_AFTER
from twin_engine.derive import FEATURE_NAMES, FeatureSet, derive_features
from twin_engine.egfr import ckd_epi_2021
from twin_engine.errors import (
    IngestError,
    StoreError,
    TwinEngineError,
    TwinNotFoundError,
    TwinStateError,
)
from twin_engine.features import USABLE, Feature, Quality
from twin_engine.fhir.entries import IngestIssue
from twin_engine.fhir.read import IngestResult, ingest
from twin_engine.store import SqliteTwinStore, StoredTwin, TwinStore, TwinVersion
from twin_engine.twin import (
    ConditionEntry,
    Demographics,
    MedicationEntry,
    ObservationPoint,
    SmokingEntry,
    Twin,
    build_twin,
    build_twin_from_fhir,
)

__all__ = [
    "FEATURE_NAMES",
    "STALE_AFTER",
    "USABLE",
    "ConditionEntry",
    "Demographics",
    "Feature",
    "FeatureSet",
    "IngestError",
    "IngestIssue",
    "IngestResult",
    "MedicationEntry",
    "ObservationPoint",
    "Quality",
    "SmokingEntry",
    "SqliteTwinStore",
    "StoreError",
    "StoredTwin",
    "Twin",
    "TwinEngineError",
    "TwinNotFoundError",
    "TwinStateError",
    "TwinStore",
    "TwinVersion",
    "build_twin",
    "build_twin_from_fhir",
    "ckd_epi_2021",
    "derive_features",
    "ingest",
]

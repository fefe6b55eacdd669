"""Population twins, the pure parts: care gaps, eligibility expressions, in-silico trials.

The distributed job, the Bulk Data client and the table I/O live in
``cds_service.population``; nothing here imports them.
"""

from twin_engine.population.care_gaps import GAP_KINDS, CareGap, care_gaps
from twin_engine.population.eligibility import EligibilityError, evaluate
from twin_engine.population.trial import (
    INTERVENTIONS,
    TrialError,
    TrialPatient,
    TrialResult,
    run_trial,
)

__all__ = [
    "GAP_KINDS",
    "INTERVENTIONS",
    "CareGap",
    "EligibilityError",
    "TrialError",
    "TrialPatient",
    "TrialResult",
    "care_gaps",
    "evaluate",
    "run_trial",
]

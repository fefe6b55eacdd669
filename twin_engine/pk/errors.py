"""Why a vancomycin dose was not computed: one hierarchy under `TwinEngineError`.

```
TwinEngineError                      (twin_engine.errors)
└── DosingError                      no dose is computed; the message says which fact is missing
    │                                (also: not exactly one Patient; CL <= 0 for the model)
    ├── MissingCovariateError        no usable weight, serum creatinine, age or sex, or one
    │                                outside the plausible/adult range
    ├── DialysisUnknownError         nothing records dialysis status and the caller did not say
    ├── DoseRecordError              a vancomycin dose or order lacks a positive amount, time
    │                                or duration, or a relevant resource is malformed FHIR
    └── LevelError                   a measured level cannot be used
        ├── LevelsWithoutDosesError  levels but no dose times
        ├── LevelBeforeFirstDoseError a level drawn before the first recorded dose
        └── ImplausibleLevelError    <= 0, censored ("<"), or above the plausible maximum
```

Every message names the resource and the missing fact, and carries no number for a dose.
"""

from __future__ import annotations

from twin_engine.errors import TwinEngineError


class DosingError(TwinEngineError):
    """No vancomycin dose is computed (see the module docstring for the tree)."""


class MissingCovariateError(DosingError):
    """A covariate the model needs (weight, creatinine, age, sex) is not available."""


class DialysisUnknownError(DosingError):
    """Dialysis status is neither recorded nor stated by the caller."""


class DoseRecordError(DosingError):
    """A vancomycin administration record cannot be placed on the time line."""


class LevelError(DosingError):
    """A vancomycin level cannot be used."""


class LevelsWithoutDosesError(LevelError):
    """Levels are present but no dose times are."""


class LevelBeforeFirstDoseError(LevelError):
    """A level was drawn before the first recorded dose: the dose history is incomplete."""


class ImplausibleLevelError(LevelError):
    """A level outside the plausible range, or censored."""

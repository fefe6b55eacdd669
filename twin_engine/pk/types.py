"""The dosing core's own small types, and the two ports it is given from outside.

`PkSimulator` (the structural model) and `PkModelSpec` (a population model) are protocols:
`onnx_models.pk` satisfies them structurally, so this package never imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
LevelKind = Literal["trough", "peak", "random"]
Sex = Literal["female", "male"]
ResidualForm = Literal["sum", "root_sum_square"]


@dataclass(frozen=True, slots=True)
class DoseEvent:
    """One intravenous infusion as given (or, from an order, as planned)."""

    start: datetime
    duration_h: float
    amount_mg: float
    source: str


@dataclass(frozen=True, slots=True)
class LevelObservation:
    """One measured vancomycin serum concentration."""

    time: datetime
    value_mg_l: float
    kind: LevelKind
    source: str


@dataclass(frozen=True, slots=True)
class Covariates:
    """What the population model needs, with CrCl computed by the model's own rules."""

    weight_kg: float
    crcl_ml_min: float
    dialysis: bool | None
    age: float
    sex: Sex
    creatinine_mg_dl: float
    weight_source: str = ""
    creatinine_source: str = ""
    dialysis_source: str = ""
    # When the weight and creatinine used were measured (None: not from a record).
    weight_time: datetime | None = None
    creatinine_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class Regimen:
    """A maintenance regimen, optionally after one loading dose given at `start`."""

    dose_mg: float
    interval_h: float
    infusion_h: float
    loading_dose_mg: float | None = None
    # None: start at the as-of time of the recommendation.
    start: datetime | None = None

    def short(self) -> str:
        """As a ward writes it: "1000 mg q12h", "loading 2000 mg, then 1000 mg q12h"."""
        text = f"{self.dose_mg:g} mg q{self.interval_h:g}h"
        if self.loading_dose_mg:
            text = f"loading {self.loading_dose_mg:g} mg, then {text}"
        return text

    def describe(self) -> str:
        text = f"{self.dose_mg:g} mg every {self.interval_h:g} h over {self.infusion_h:g} h"
        if self.loading_dose_mg:
            text = f"loading {self.loading_dose_mg:g} mg, then {text}"
        return text


class PkSimulator(Protocol):
    """The structural model: concentrations and cumulative AUC at times, batched, float64."""

    def simulate(
        self, params: FloatArray, doses: FloatArray, times: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """params [N,4] CL, V1, Q, V2; doses [N,D,3] start h, duration h, mg; times [N,T]."""
        ...


class PkModelSpec(Protocol):
    """A population PK model: covariate model, eta covariance, residual error, CrCl rules."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def eta_names(self) -> tuple[str, ...]: ...
    @property
    def omega(self) -> tuple[tuple[float, ...], ...]: ...
    @property
    def residual_additive_mg_l(self) -> float: ...
    @property
    def residual_proportional(self) -> float: ...
    @property
    def residual_form(self) -> ResidualForm: ...
    @property
    def crcl_cap_ml_min(self) -> float | None: ...
    @property
    def elderly_creatinine_floor(self) -> tuple[float, float] | None: ...
    @property
    def supports_dialysis(self) -> bool: ...

    def individual_parameters(
        self, *, weight_kg: float, crcl_ml_min: float, dialysis: bool, eta: FloatArray
    ) -> FloatArray:
        """[N, 4] CL, V1, Q, V2 for eta [N, K]."""
        ...

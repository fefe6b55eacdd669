"""The model cards: what a model is for, whom, which inputs in which units and ranges.

`ModelCard` describes a risk equation ([N, F] inputs with ranges, a Shapley baseline);
`PkModelCard` a population PK model (the simulator's tensors, the covariate model).

The card travels inside the .onnx file (metadata key `model_card`, JSON) so that the file
alone is enough to review a prediction's basis (FDA CDS guidance 2022, criterion 4).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any, Literal

from pydantic import ConfigDict, TypeAdapter, ValidationError

from onnx_models.errors import ModelFileError

InputKind = Literal["continuous", "binary"]
#: A card is read strictly: every field present, of its type (no "1" for 1.0), no other.
_STRICT = ConfigDict(strict=True, extra="forbid")

# Keys of the ONNX metadata_props this package writes and reads.
CARD_KEY = "model_card"
ID_KEY = "model_id"
VERSION_KEY = "model_version"


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One named input: a column of the model's `x`, in the card's order."""

    __pydantic_config__ = _STRICT

    name: str
    description: str
    # None where the value does not come from an Observation (e.g. sex, race).
    loinc: str | None
    # Where the twin finds it in FHIR, in words a mapper can follow.
    fhir_source: str
    unit: str
    min: float
    max: float
    kind: InputKind


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """One named output of the graph."""

    __pydantic_config__ = _STRICT

    name: str
    description: str
    unit: str


@dataclass(frozen=True, slots=True)
class Baseline:
    """The reference profile explanations are measured from (values for explained inputs)."""

    __pydantic_config__ = _STRICT

    description: str
    values: dict[str, float]


@dataclass(frozen=True, slots=True)
class ModelCard:
    """Everything a clinician or auditor needs to judge a model, stored in its file."""

    __pydantic_config__ = _STRICT

    id: str
    name: str
    version: str
    intended_use: str
    population: str
    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputSpec, ...]
    source: str
    validation: str
    baseline: Baseline
    # Inputs held at the patient's own value in explanations (e.g. those selecting an equation).
    held_fixed: tuple[str, ...]
    license: str

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.outputs)

    @property
    def explained_inputs(self) -> tuple[str, ...]:
        """Inputs that get a Shapley value, in card order."""
        return tuple(n for n in self.input_names if n not in self.held_fixed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        # sort_keys and fixed separators: the same card always gives the same bytes.
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        """Read and validate a card: every field present, of its type, and no other."""
        try:
            card = _card_adapter().validate_json(text)
        except ValidationError as exc:
            raise ModelFileError(f"model card is not valid: {_problems(exc)}") from exc
        card.validate()
        return card

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """A card from its JSON data (``to_dict``'s form), validated as ``from_json``."""
        return cls.from_json(json.dumps(data))

    def validate(self) -> None:
        """Refuse a card that contradicts itself; the registry must not serve one."""
        names = self.input_names
        if len(set(names)) != len(names):
            raise ModelFileError(f"{self.id}: duplicate input names in card")
        unknown_fixed = set(self.held_fixed) - set(names)
        if unknown_fixed:
            raise ModelFileError(
                f"{self.id}: held_fixed names unknown inputs {sorted(unknown_fixed)}"
            )
        if set(self.baseline.values) != set(self.explained_inputs):
            raise ModelFileError(
                f"{self.id}: baseline must give exactly the explained inputs "
                f"{list(self.explained_inputs)}"
            )
        for spec in self.inputs:
            if not spec.min <= spec.max:
                raise ModelFileError(f"{self.id}: {spec.name} has min > max")
            if spec.kind == "binary" and (spec.min, spec.max) != (0.0, 1.0):
                raise ModelFileError(f"{self.id}: binary input {spec.name} must range 0-1")
            base = self.baseline.values.get(spec.name)
            if base is not None and not spec.min <= base <= spec.max:
                raise ModelFileError(f"{self.id}: baseline {spec.name} outside its range")


# -- The population PK card ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Iiv:
    """Between-subject variability: eta names, their covariance (log scale) and CV %."""

    eta: tuple[str, ...]
    omega: tuple[tuple[float, ...], ...]
    cv_percent: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class ResidualError:
    additive_mg_l: float
    proportional: float
    form: Literal["sum", "root_sum_square"]


@dataclass(frozen=True, slots=True)
class CreatinineClearance:
    """How the model's data set computed CrCl (the covariate must be computed the same way)."""

    equation: str
    cap_ml_min: float | None
    # (age above which, creatinine floor in mg/dL) or None.
    elderly_creatinine_floor: tuple[float, float] | None


@dataclass(frozen=True, slots=True)
class PkModelCard:
    """A population PK model's card, the sibling of `ModelCard` for the vancomycin graphs.

    The same review fields (identity, intended use, population, source, validation,
    license), under the same metadata key; instead of an [N, F] input list with ranges and
    a Shapley baseline, the graph's fixed tensors and the covariate model behind them.
    """

    __pydantic_config__ = ConfigDict(strict=True, extra="forbid")

    id: str
    name: str
    version: str
    kind: Literal["population_pk"]
    intended_use: str
    population: str
    source: str
    structural_model: str
    # Tensor name -> shape and meaning.
    inputs: dict[str, str]
    outputs: dict[str, str]
    covariate_equations: tuple[str, ...]
    # As printed, in the paper's own parameterisation (see covariate_equations).
    typical_values: dict[str, float]
    iiv: Iiv
    residual_error: ResidualError
    creatinine_clearance: CreatinineClearance
    supports_dialysis: bool
    notes: tuple[str, ...]
    validation: str
    license: str

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = _pk_card_adapter().dump_python(self, mode="json")
        return data

    def to_json(self) -> str:
        # sort_keys and fixed separators: the same card always gives the same bytes.
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    @classmethod
    def from_json(cls, text: str) -> PkModelCard:
        """Read and validate a card: every field present, of its type, and no other."""
        try:
            return _pk_card_adapter().validate_json(text)
        except ValidationError as exc:
            raise ModelFileError(f"PK model card is not valid: {_problems(exc)}") from exc


def _problems(exc: ValidationError) -> str:
    """Each problem with the field it is in (``inputs.2.min: Input should be ...``)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'card'}: {e['msg']}"
        for e in exc.errors(include_url=False)
    )


@cache
def _card_adapter() -> TypeAdapter[ModelCard]:
    return TypeAdapter(ModelCard)


@cache
def _pk_card_adapter() -> TypeAdapter[PkModelCard]:
    return TypeAdapter(PkModelCard)

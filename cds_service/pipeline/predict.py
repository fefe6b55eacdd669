"""Bind a twin's derived features to a model's inputs, then predict and explain.

The model card names its inputs; the twin derives features of the same names. An
input is used only when its feature is usable (present, plausible, in a known
unit; a stale value is used and reported as stale). What cannot be used is named,
with the twin's reason, so the card can say what was missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from cds_service.ops.metrics import MODEL_RUN_DURATION, timed
from onnx_models.errors import MissingInputsError, OutOfRangeError, RangeViolation
from onnx_models.registry import Explanation, LoadedModel
from twin_engine.derive import FeatureSet
from twin_engine.features import Feature, Quality

AssessmentStatus = Literal["computed", "missing-inputs", "out-of-range", "not-applicable"]

#: Inputs that define the model's population rather than measure the patient: a
#: value outside their range means the model does not apply, not that data is bad.
POPULATION_INPUTS = frozenset({"age_years"})


@dataclass(frozen=True, slots=True)
class InputUsed:
    """One model input as the patient's data gave it."""

    name: str
    description: str
    value: float
    unit: str
    time: datetime | None
    sources: tuple[str, ...]
    quality: Quality
    note: str


@dataclass(frozen=True, slots=True)
class InputNotUsed:
    """A model input the twin could not supply, and why."""

    name: str
    description: str
    quality: Quality
    reason: str


@dataclass(frozen=True, slots=True)
class Factor:
    """One input's exact Shapley contribution to the primary output, in risk units."""

    name: str
    description: str
    value: float
    unit: str
    time: datetime | None
    baseline_value: float
    contribution: float


@dataclass(frozen=True, slots=True)
class Assessment:
    """A model run on one twin: the result, its basis, and what was missing."""

    model: LoadedModel
    status: AssessmentStatus
    inputs: tuple[InputUsed, ...]
    not_used: tuple[InputNotUsed, ...]
    problems: tuple[str, ...]
    outputs: dict[str, float]
    baseline_outputs: dict[str, float]
    factors_by_output: dict[str, tuple[Factor, ...]]
    #: The inputs outside the card's ranges, when the status is out-of-range.
    violations: tuple[RangeViolation, ...] = ()

    @property
    def factors(self) -> tuple[Factor, ...]:
        """Contributions to the model's first (primary) output."""
        if not self.factors_by_output:
            return ()
        return self.factors_by_output[self.model.card.outputs[0].name]

    def inputs_json(self) -> list[dict[str, object]]:
        """The inputs used, as the CLI prints them and the audit trail stores them."""
        return [
            {
                "name": i.name,
                "value": i.value,
                "unit": i.unit,
                "time": i.time.isoformat() if i.time else None,
                "sources": list(i.sources),
                "quality": i.quality,
            }
            for i in self.inputs
        ]

    @property
    def stale(self) -> tuple[InputUsed, ...]:
        return tuple(i for i in self.inputs if i.quality == "stale")


@dataclass(frozen=True, slots=True)
class PendingRun:
    """An assessment whose inputs passed every check: only the model run is left.

    ``assess`` runs it at once; the population build gathers a partition's pending runs
    and runs each model once on all of them (``LoadedModel.predict_and_explain_batch``),
    then finishes each with ``finish``: the same Assessment either way.
    """

    model: LoadedModel
    used: tuple[InputUsed, ...]
    not_used: tuple[InputNotUsed, ...]
    values: dict[str, float]


def assess(
    model: LoadedModel,
    features: FeatureSet,
    *,
    excluded_by: tuple[str, ...] = (),
    deceased: bool = False,
    population_inputs: frozenset[str] = POPULATION_INPUTS,
    excluded_because: str | None = None,
) -> Assessment:
    """Predict and explain with the patient's usable features, or say why not.

    ``excluded_by`` names features that, when present (1.0), put the patient outside
    the model's population; a deceased patient is outside every model's. A value out of
    range for one of ``population_inputs`` means the model does not apply (no card);
    for any other input it is a value the clinician should see named.
    """
    prepared = prepare(
        model,
        features,
        excluded_by=excluded_by,
        deceased=deceased,
        population_inputs=population_inputs,
        excluded_because=excluded_because,
    )
    if isinstance(prepared, Assessment):
        return prepared
    with timed(MODEL_RUN_DURATION, model.card.id):
        explanation = model.predict_and_explain(prepared.values).explanation
    return finish(prepared, explanation)


def prepare(
    model: LoadedModel,
    features: FeatureSet,
    *,
    excluded_by: tuple[str, ...] = (),
    deceased: bool = False,
    population_inputs: frozenset[str] = POPULATION_INPUTS,
    excluded_because: str | None = None,
) -> Assessment | PendingRun:
    """``assess`` up to the model run: the Assessment when no run is due, else the run."""
    card = model.card
    exclusions = tuple(
        f"{name}: {features.get(name).note}"
        for name in excluded_by
        if features.get(name).value == 1.0
    )
    if deceased:
        exclusions = ("the patient is recorded as deceased", *exclusions)
    if excluded_because is not None:
        # A guideline rule (twin_engine.clinical) put the patient outside the population.
        exclusions = (excluded_because, *exclusions)
    used: list[InputUsed] = []
    not_used: list[InputNotUsed] = []
    values: dict[str, float | None] = {}
    for spec in card.inputs:
        feature: Feature = features.get(spec.name)
        if feature.usable and feature.value is not None:
            values[spec.name] = feature.value
            used.append(
                InputUsed(
                    spec.name,
                    spec.description,
                    feature.value,
                    spec.unit,
                    feature.time,
                    feature.sources,
                    feature.quality,
                    feature.note,
                )
            )
        else:
            values[spec.name] = None
            not_used.append(
                InputNotUsed(spec.name, spec.description, feature.quality, feature.note)
            )

    def result(
        status: AssessmentStatus,
        problems: tuple[str, ...],
        violations: tuple[RangeViolation, ...] = (),
    ) -> Assessment:
        return Assessment(
            model, status, tuple(used), tuple(not_used), problems, {}, {}, {}, violations
        )

    if exclusions:
        return result("not-applicable", exclusions)
    try:
        model.check_inputs(values)
    except MissingInputsError as exc:
        return result("missing-inputs", (str(exc),))
    except OutOfRangeError as exc:
        problems = tuple(v.describe(card.id) for v in exc.violations)
        if any(v.name in population_inputs for v in exc.violations):
            return result("not-applicable", problems, exc.violations)
        return result("out-of-range", problems, exc.violations)
    complete = {k: v for k, v in values.items() if v is not None}
    return PendingRun(model, tuple(used), tuple(not_used), complete)


def finish(run: PendingRun, explanation: Explanation) -> Assessment:
    """The computed Assessment of a pending run, from the model's explanation."""
    by_name = {i.name: i for i in run.used}
    factors = {
        output: tuple(
            Factor(
                c.feature,
                by_name[c.feature].description,
                c.value,
                by_name[c.feature].unit,
                by_name[c.feature].time,
                c.baseline_value,
                c.contribution,
            )
            for c in contributions
        )
        for output, contributions in explanation.contributions.items()
    }
    return Assessment(
        run.model,
        "computed",
        run.used,
        run.not_used,
        (),
        dict(explanation.outputs),
        dict(explanation.baseline_outputs),
        factors,
    )

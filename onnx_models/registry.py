"""Load the model artifacts, check inputs against their cards, predict and explain."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from onnx_models.artifact import open_artifact, read_artifact
from onnx_models.card import ModelCard
from onnx_models.errors import (
    MissingInputsError,
    ModelFileError,
    OutOfRangeError,
    RangeViolation,
    UnknownModelError,
)
from onnx_models.shapley import (
    MAX_EXPLAINED,
    BoolArray,
    CoalitionPlan,
    FloatArray,
    coalition_mask,
    coalition_matrix,
    coalition_plan,
    shapley_values,
)

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
INPUT_NAME = "x"
#: Rows per onnxruntime run of a batch (8 PREVENT patients' 2^10 coalitions): enough to
#: amortise the call; more only grows onnxruntime's memory arena, which keeps its peak
#: (65536 rows cost a worker ~100 MB more RSS for the same speed, bench/population.py).
BATCH_ROWS = 8192


class Runner(Protocol):
    """The part of `onnxruntime.InferenceSession` we use (tests wrap it to count runs)."""

    def run(self, output_names: list[str] | None, input_feed: dict[str, Any]) -> list[Any]: ...


@dataclass(frozen=True, slots=True)
class Prediction:
    """A model's outputs for one patient, with the inputs and model identity behind them."""

    model_id: str
    version: str
    sha256: str
    inputs: dict[str, float]
    outputs: dict[str, float]


@dataclass(frozen=True, slots=True)
class Contribution:
    """One input's exact Shapley value for one output, in the output's own units."""

    feature: str
    value: float
    baseline_value: float
    contribution: float


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why the outputs differ from the baseline profile's; contributions sum to the gap."""

    model_id: str
    version: str
    sha256: str
    inputs: dict[str, float]
    baseline_description: str
    baseline_inputs: dict[str, float]
    baseline_outputs: dict[str, float]
    outputs: dict[str, float]
    # Per output, sorted by |contribution|, largest first.
    contributions: dict[str, tuple[Contribution, ...]]
    held_fixed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ExplainedPrediction:
    """A prediction and its explanation, from the same single model run."""

    prediction: Prediction
    explanation: Explanation


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """One model ready to serve: its card, the file's identity and an inference session."""

    card: ModelCard
    path: Path
    sha256: str
    session: Runner
    # Derived from the card once: a call must not rebuild the card's name tuples.
    _input_names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _output_names: list[str] = field(init=False, repr=False, compare=False)
    _explained_names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _explained_index: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _explained_baseline: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _baseline_row: FloatArray = field(init=False, repr=False, compare=False)
    _takes_patient: BoolArray = field(init=False, repr=False, compare=False)
    _plan: CoalitionPlan = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = self.card.input_names
        explained = self.card.explained_inputs
        if not 1 <= len(explained) <= MAX_EXPLAINED:
            raise ModelFileError(
                f"{self.card.id}: explains {len(explained)} inputs; "
                f"exact Shapley supports 1..{MAX_EXPLAINED}"
            )
        index = tuple(names.index(n) for n in explained)
        explained_baseline = tuple(self.card.baseline.values[n] for n in explained)
        # Held-fixed columns are NaN here and always take the patient's value instead.
        baseline = np.full(len(names), np.nan, dtype=np.float64)
        baseline[list(index)] = explained_baseline
        plan = coalition_plan(len(explained))
        object.__setattr__(self, "_input_names", names)
        object.__setattr__(self, "_output_names", list(self.card.output_names))
        object.__setattr__(self, "_explained_names", explained)
        object.__setattr__(self, "_explained_index", index)
        object.__setattr__(self, "_explained_baseline", explained_baseline)
        object.__setattr__(self, "_baseline_row", baseline)
        object.__setattr__(self, "_takes_patient", coalition_mask(plan, index, len(names)))
        object.__setattr__(self, "_plan", plan)

    @property
    def model_id(self) -> str:
        return self.card.id

    @property
    def version(self) -> str:
        return self.card.version

    def check_inputs(self, values: Mapping[str, float | None]) -> None:
        """Refuse missing or out-of-range inputs, naming each; extra keys are ignored."""
        missing = tuple(
            spec.name for spec in self.card.inputs if _is_missing(values.get(spec.name))
        )
        if missing:
            raise MissingInputsError(self.card.id, missing)
        violations = []
        for spec in self.card.inputs:
            value = float(values[spec.name])  # type: ignore[arg-type]  # checked above
            # Binary inputs are flags: 0.5 is a mapping bug upstream, not a half-smoker.
            ok = value in (0.0, 1.0) if spec.kind == "binary" else spec.min <= value <= spec.max
            if not ok:
                violations.append(
                    RangeViolation(spec.name, value, spec.unit, spec.min, spec.max, spec.kind)
                )
        if violations:
            raise OutOfRangeError(self.card.id, tuple(violations))

    def predict(self, values: Mapping[str, float | None]) -> Prediction:
        """Check the inputs against the card, then run the model on them."""
        row = self._row(values)
        outputs = self.predict_batch(row[None, :])
        return self._prediction(row.tolist(), {name: float(v[0]) for name, v in outputs.items()})

    def predict_batch(self, x: FloatArray) -> dict[str, FloatArray]:
        """Bare run on an [N, F] float64 matrix in card order: no checks (benchmarks, tests)."""
        results = self.session.run(
            self._output_names, {INPUT_NAME: np.ascontiguousarray(x, np.float64)}
        )
        return {
            name: np.asarray(result, dtype=np.float64).reshape(-1)
            for name, result in zip(self._output_names, results, strict=True)
        }

    def explain(self, values: Mapping[str, float | None]) -> Explanation:
        """Exact Shapley values of every explained input, for every output, in one run."""
        return self.predict_and_explain(values).explanation

    def predict_and_explain(self, values: Mapping[str, float | None]) -> ExplainedPrediction:
        """Prediction and explanation from one batched run over all coalitions."""
        row = self._row(values)
        matrix = coalition_matrix(row, self._baseline_row, self._takes_patient)
        return self._explained(row, matrix, self.predict_batch(matrix))

    def predict_and_explain_batch(
        self, batch: Sequence[Mapping[str, float | None]], max_rows: int = BATCH_ROWS
    ) -> list[ExplainedPrediction]:
        """``predict_and_explain`` for many patients in few runs: every patient's
        coalition matrix stacked, ``max_rows`` rows per onnxruntime run at most.

        Each patient's block holds the very rows its own run would, at an offset that is
        a multiple of 2^M, so the results are those of ``predict_and_explain`` one by one.
        """
        rows = [self._row(values) for values in batch]
        n = 1 << self._plan.n_features
        per_run = max(1, max_rows // n)
        results: list[ExplainedPrediction] = []
        for start in range(0, len(rows), per_run):
            group = rows[start : start + per_run]
            matrices = [
                coalition_matrix(row, self._baseline_row, self._takes_patient) for row in group
            ]
            outputs = self.predict_batch(np.concatenate(matrices))
            for i, (row, matrix) in enumerate(zip(group, matrices, strict=True)):
                block = {name: v[i * n : (i + 1) * n] for name, v in outputs.items()}
                results.append(self._explained(row, matrix, block))
        return results

    def _explained(
        self, row: FloatArray, matrix: FloatArray, outputs: dict[str, FloatArray]
    ) -> ExplainedPrediction:
        """Prediction and Shapley values of one patient from its coalitions' outputs."""
        plan = self._plan
        # Python floats from here: per-element numpy scalars cost more than the values.
        patient = row.tolist()
        values = [patient[i] for i in self._explained_index]
        # An input at its baseline value has phi = 0 exactly (dummy axiom); onnxruntime's
        # SIMD Log/Exp can give identical rows last-bit differences, so say 0, not 1e-16.
        at_baseline = [v == b for v, b in zip(values, self._explained_baseline, strict=True)]
        contributions: dict[str, tuple[Contribution, ...]] = {}
        for output, column in outputs.items():
            phi = shapley_values(column, plan).tolist()
            items = [
                Contribution(feature, value, baseline, 0.0 if same else p)
                for feature, value, baseline, same, p in zip(
                    self._explained_names,
                    values,
                    self._explained_baseline,
                    at_baseline,
                    phi,
                    strict=True,
                )
            ]
            # Stable sort: ties keep card order, so the same inputs give the same card text.
            contributions[output] = tuple(sorted(items, key=lambda c: -abs(c.contribution)))
        prediction = self._prediction(
            patient, {name: float(v[plan.full]) for name, v in outputs.items()}
        )
        baseline_inputs = dict(zip(self._input_names, matrix[plan.empty].tolist(), strict=True))
        explanation = Explanation(
            model_id=self.card.id,
            version=self.card.version,
            sha256=self.sha256,
            inputs=prediction.inputs,
            baseline_description=self.card.baseline.description,
            baseline_inputs=baseline_inputs,
            baseline_outputs={name: float(v[plan.empty]) for name, v in outputs.items()},
            outputs=prediction.outputs,
            contributions=contributions,
            held_fixed=self.card.held_fixed,
        )
        return ExplainedPrediction(prediction=prediction, explanation=explanation)

    def _row(self, values: Mapping[str, float | None]) -> FloatArray:
        self.check_inputs(values)
        return np.array(
            [float(values[n]) for n in self._input_names],  # type: ignore[arg-type]
            dtype=np.float64,
        )

    def _prediction(self, row: list[float], outputs: dict[str, float]) -> Prediction:
        return Prediction(
            model_id=self.card.id,
            version=self.card.version,
            sha256=self.sha256,
            inputs=dict(zip(self._input_names, row, strict=True)),
            outputs=outputs,
        )


def load_model(path: Path) -> LoadedModel:
    """Load one artifact: read its card, hash its bytes, open a single-threaded session."""
    opened = open_artifact(read_artifact(path), str(path))
    card = ModelCard.from_json(opened.card_json)
    _check_signature(path, card, opened.session)
    return LoadedModel(card=card, path=path, sha256=opened.sha256, session=opened.session)


def _check_signature(path: Path, card: ModelCard, session: Any) -> None:
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME or inputs[0].type != "tensor(double)":
        raise ModelFileError(f"{path}: graph must take one float64 input '{INPUT_NAME}'")
    width = inputs[0].shape[-1]
    if width != len(card.inputs):
        raise ModelFileError(f"{path}: graph takes {width} features, card lists {len(card.inputs)}")
    outputs = tuple(o.name for o in session.get_outputs())
    if outputs != card.output_names:
        raise ModelFileError(
            f"{path}: graph outputs {outputs} differ from card {card.output_names}"
        )


@dataclass(frozen=True, slots=True)
class ModelRegistry:
    """All models of a directory, loaded once at start and shared by every request."""

    models: dict[str, LoadedModel]

    @classmethod
    def load(cls, directory: Path | None = None) -> ModelRegistry:
        """Load every `.onnx` file in `directory` (default: the package's artifacts)."""
        folder = ARTIFACTS_DIR if directory is None else directory
        models: dict[str, LoadedModel] = {}
        for path in sorted(folder.glob("*.onnx")):
            model = load_model(path)
            if model.model_id in models:
                raise ModelFileError(
                    f"{path}: model id {model.model_id!r} also in {models[model.model_id].path}"
                )
            models[model.model_id] = model
        return cls(models=models)

    def ids(self) -> list[str]:
        return sorted(self.models)

    def get(self, model_id: str) -> LoadedModel:
        try:
            return self.models[model_id]
        except KeyError:
            raise UnknownModelError(model_id, tuple(self.ids())) from None


def _is_missing(value: object) -> bool:
    # NaN is how dataframes and numpy spell "not measured"; it must not pass the range check.
    return value is None or (isinstance(value, float) and math.isnan(value))

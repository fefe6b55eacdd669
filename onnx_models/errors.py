"""The errors of `onnx_models`, one hierarchy.

```
ModelError                  anything this package refuses or cannot do
├── UnknownModelError       no model with that id in the registry
├── ModelFileError          an .onnx file that is not a well-formed model of ours
└── InputError              the caller's inputs do not fit the model card
    ├── MissingInputsError  required inputs absent (None, NaN or not given)
    └── OutOfRangeError     inputs outside the card's valid range, or binary not 0/1
```

`InputError` is bad data (the service answers it as a clinical "cannot compute"); the others
are faults of deployment or of the caller's code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


class ModelError(Exception):
    """Base of every error raised by `onnx_models` (see the module docstring for the tree)."""


class UnknownModelError(ModelError):
    """The registry holds no model with this id."""

    def __init__(self, model_id: str, known: tuple[str, ...]) -> None:
        self.model_id = model_id
        self.known = known
        super().__init__(f"no model {model_id!r}; known models: {', '.join(known) or 'none'}")


class ModelFileError(ModelError):
    """An artifact that cannot be served: unreadable, no card, or card and graph disagree."""


class InputError(ModelError):
    """The inputs given for one prediction do not satisfy the model card."""


class MissingInputsError(InputError):
    """Inputs the model needs were not available."""

    def __init__(self, model_id: str, names: tuple[str, ...]) -> None:
        self.model_id = model_id
        self.names = names
        super().__init__(f"{model_id} needs {', '.join(names)}; not available")


@dataclass(frozen=True, slots=True)
class RangeViolation:
    """One input value the card does not accept."""

    name: str
    value: float
    unit: str
    min: float
    max: float
    kind: Literal["continuous", "binary"]

    def describe(self, model_id: str) -> str:
        """One clause naming the input, its value, unit and what the card accepts."""
        value = _number(self.value)
        if self.kind == "binary":
            return f"{self.name} = {value} is not 0 or 1 for {model_id}"
        unit = "" if self.unit in ("", "1") else f" {self.unit}"
        return (
            f"{self.name} = {value}{unit} is outside "
            f"{_number(self.min)}\u2013{_number(self.max)} for {model_id}"
        )


class OutOfRangeError(InputError):
    """Inputs outside the card's valid ranges; the message names each one."""

    def __init__(self, model_id: str, violations: tuple[RangeViolation, ...]) -> None:
        self.model_id = model_id
        self.violations = violations
        super().__init__("; ".join(v.describe(model_id) for v in violations))


def _number(value: float) -> str:
    # "35" rather than "35.0": the message is read by clinicians, who typed 35.
    if math.isfinite(value) and value == int(value):
        return str(int(value))
    return f"{value:g}"

"""A small helper for writing published equations as deterministic ONNX graphs.

Every model module (pce, later prevent, kfre) builds its graph through `GraphBuilder`, so
node names, opset and metadata are the same kind of thing everywhere and a rebuild gives
the same bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx_models.card import CARD_KEY, ID_KEY, VERSION_KEY, ModelCard

# Opset 17 / IR 8: supported by every onnxruntime >= 1.14, well below pyproject's floor (1.18).
OPSET = 17
IR_VERSION = 8
# Fixed producer fields, no timestamps: two builds must give identical bytes.
PRODUCER_NAME = "twin-cds onnx_models"
PRODUCER_VERSION = "1"


class GraphBuilder:
    """Accumulates nodes and constants with names that depend only on the call order."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._nodes: list[onnx.NodeProto] = []
        self._initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _fresh(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, stem: str, value: np.ndarray | float | list[int]) -> str:
        """A float64 constant (or int64, for indices and axes)."""
        array = np.asarray(value)
        if array.dtype.kind == "f":
            array = array.astype(np.float64)
        elif array.dtype.kind in "iu":
            array = array.astype(np.int64)
        else:
            raise TypeError(f"constant {stem} must be numeric, not {array.dtype}")
        name = self._fresh(stem)
        self._initializers.append(numpy_helper.from_array(array, name=name))
        return name

    def op(self, op_type: str, *inputs: str, stem: str | None = None, **attrs: Any) -> str:
        """One node with one output; returns the output's name."""
        out = self._fresh(stem or op_type.lower())
        self._nodes.append(helper.make_node(op_type, list(inputs), [out], name=f"n_{out}", **attrs))
        return out

    def column(self, x: str, index: int, stem: str) -> str:
        """Column `index` of a [N, F] tensor as [N, 1]."""
        return self.op(
            "Slice",
            x,
            self.const(f"{stem}_start", [index]),
            self.const(f"{stem}_end", [index + 1]),
            self.const(f"{stem}_axis", [1]),
            stem=stem,
        )

    def rename(self, value: str, name: str) -> str:
        """Give a value its public name (graph outputs are named by the card)."""
        self._nodes.append(helper.make_node("Identity", [value], [name], name=f"n_{name}"))
        return name

    def graph(self, input_name: str, n_features: int, outputs: tuple[str, ...]) -> onnx.GraphProto:
        """The finished graph: one float64 input [N, n_features], float64 outputs [N, 1]."""
        return helper.make_graph(
            self._nodes,
            self._name,
            [helper.make_tensor_value_info(input_name, TensorProto.DOUBLE, ["N", n_features])],
            [helper.make_tensor_value_info(o, TensorProto.DOUBLE, ["N", 1]) for o in outputs],
            initializer=self._initializers,
        )


def make_model(graph: onnx.GraphProto, card: ModelCard) -> onnx.ModelProto:
    """Wrap a graph with its card in metadata; checked, and free of build-time variation."""
    card.validate()
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER_NAME,
        producer_version=PRODUCER_VERSION,
        doc_string=f"{card.name} ({card.id} {card.version}); model card in metadata '{CARD_KEY}'",
    )
    model.ir_version = IR_VERSION
    model.model_version = 1
    helper.set_model_props(
        model, {CARD_KEY: card.to_json(), ID_KEY: card.id, VERSION_KEY: card.version}
    )
    onnx.checker.check_model(model, full_check=True)
    return model

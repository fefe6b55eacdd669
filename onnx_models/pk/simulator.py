"""The ONNX-backed `PkSimulator`: one onnxruntime session over a vancomycin artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from onnx_models.artifact import open_artifact, read_artifact
from onnx_models.card import PkModelCard
from onnx_models.errors import ModelFileError
from onnx_models.pk.models import DEFAULT_MODEL, MODELS, PopulationPkModel

FloatArray = NDArray[np.float64]

# A folder of their own: the risk-model registry loads every .onnx in artifacts/ itself.
ARTIFACTS_DIR = Path(__file__).resolve().parents[1] / "artifacts" / "pk"

# The graph's signature (onnx_models.build.pk.graph writes it), all float64.
PARAMS = "params"  # [N, 4] individual CL (L/h), V1 (L), Q (L/h), V2 (L)
DOSES = "doses"  # [N, D, 3] infusion start (h), duration (h, > 0), amount (mg)
TIMES = "times"  # [N, T] times (h)
CONC = "conc_mg_l"  # [N, T] central concentration (mg/L)
AUC = "auc_mg_h_l"  # [N, T] cumulative AUC from time 0 (mg.h/L)
N_PARAMS = 4


class OnnxPkSimulator:
    """simulate(params [N,4], doses [N,D,3], times [N,T]) -> (conc [N,T], auc [N,T])."""

    def __init__(self, data: bytes, where: str = "vancomycin PK artifact") -> None:
        opened = open_artifact(data, where)
        signature = (
            tuple(i.name for i in opened.session.get_inputs()),
            tuple(o.name for o in opened.session.get_outputs()),
        )
        if signature != ((PARAMS, DOSES, TIMES), (CONC, AUC)):
            raise ModelFileError(f"{where}: graph {signature} is not a PK simulator's")
        self._session = opened.session
        self.card = PkModelCard.from_json(opened.card_json)
        self.sha256 = opened.sha256

    @classmethod
    def load(
        cls, model: PopulationPkModel = DEFAULT_MODEL, path: Path | None = None
    ) -> OnnxPkSimulator:
        """From the built artifact (`python -m onnx_models.build.pk` writes it)."""
        file = path or ARTIFACTS_DIR / f"{model.id}.onnx"
        return cls(read_artifact(file), str(file))

    def simulate(
        self, params: FloatArray, doses: FloatArray, times: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        feed = {
            PARAMS: np.ascontiguousarray(params, dtype=np.float64),
            DOSES: np.ascontiguousarray(doses, dtype=np.float64),
            TIMES: np.ascontiguousarray(times, dtype=np.float64),
        }
        conc, auc = self._session.run([CONC, AUC], feed)
        return np.asarray(conc, dtype=np.float64), np.asarray(auc, dtype=np.float64)


def load_simulator(model_id: str = DEFAULT_MODEL.id) -> OnnxPkSimulator:
    """The simulator for a model id of `onnx_models.pk.models.MODELS`."""
    if model_id not in MODELS:
        raise ModelFileError(f"no vancomycin PK model {model_id!r}; known: {', '.join(MODELS)}")
    return OnnxPkSimulator.load(MODELS[model_id])

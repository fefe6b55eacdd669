"""The ONNX-backed `PkSimulator`: one onnxruntime session over a vancomycin artifact."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from onnx_models.card import CARD_KEY
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

    def __init__(self, data: bytes) -> None:
        options = ort.SessionOptions()
        # One intra-op thread: the calls are small and many; thread wake-ups cost more.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            data, sess_options=options, providers=["CPUExecutionProvider"]
        )
        meta = self._session.get_modelmeta().custom_metadata_map
        if CARD_KEY not in meta:
            raise ModelFileError("vancomycin PK artifact has no model card")
        self.card: dict[str, Any] = json.loads(meta[CARD_KEY])
        self.sha256 = hashlib.sha256(data).hexdigest()

    @classmethod
    def load(
        cls, model: PopulationPkModel = DEFAULT_MODEL, path: Path | None = None
    ) -> OnnxPkSimulator:
        """From the built artifact (`python -m onnx_models.build.pk` writes it)."""
        file = path or ARTIFACTS_DIR / f"{model.id}.onnx"
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise ModelFileError(f"{file}: cannot read the PK model: {exc.strerror}") from exc
        return cls(data)

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

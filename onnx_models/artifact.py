"""Opening an `.onnx` artifact: the one load path of every model, risk or PK.

The bytes are hashed (the sha256 is the model's identity in audit records), one
single-threaded onnxruntime session is opened on them, and the card text is taken from the
metadata; `registry.load_model` reads it as a `ModelCard`, `pk.simulator` as a `PkModelCard`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from onnx_models.card import CARD_KEY
from onnx_models.errors import ModelFileError


@dataclass(frozen=True, slots=True)
class OpenedArtifact:
    """An artifact's identity, session and card text, before the card is read."""

    sha256: str
    session: ort.InferenceSession
    card_json: str


def read_artifact(path: Path) -> bytes:
    """The file's bytes, or ModelFileError naming the file."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read: {exc}") from exc


def open_artifact(data: bytes, where: str) -> OpenedArtifact:
    """Hash the bytes, open a session on them and take the card; `where` names them in errors."""
    options = ort.SessionOptions()
    # Small graphs and many concurrent requests: one thread per run avoids oversubscription
    # (and thread wake-ups cost more than the PK simulator's small calls).
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped Fail/InvalidGraph errors
        raise ModelFileError(f"{where}: onnxruntime cannot load it: {exc}") from exc
    metadata = session.get_modelmeta().custom_metadata_map
    if CARD_KEY not in metadata:
        raise ModelFileError(f"{where}: no '{CARD_KEY}' in ONNX metadata")
    return OpenedArtifact(hashlib.sha256(data).hexdigest(), session, metadata[CARD_KEY])

"""The service runs on onnxruntime alone: building models (onnx) is not part of serving."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# A fresh interpreter: this test process has imported onnx for the build tests already.
_PROBE = """
import json, sys
from twin_cds.app import create_app
create_app()
print(json.dumps(sorted(
    name for name in sys.modules
    if name == "onnx" or name.startswith(("onnx.", "onnx_models.build"))
)))
"""


def test_starting_the_service_imports_neither_onnx_nor_the_build_code(tmp_path: Path) -> None:
    """Importing the app factory and building the app loads no onnx and no onnx_models.build."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_CDS_")}
    env["TWIN_CDS_DATA_DIR"] = str(tmp_path)
    result = subprocess.run(  # noqa: S603 - our own interpreter and probe
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert json.loads(result.stdout.splitlines()[-1]) == []

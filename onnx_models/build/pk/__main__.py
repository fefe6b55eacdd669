"""Build the vancomycin PK artifacts: `python -m onnx_models.build.pk [--out DIR]`.

Prints a JSON list (id, version, path, sha256). The builder is `onnx_models.build.pk.artifact`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from onnx_models.build.pk.artifact import build_pk_artifacts
from onnx_models.pk.simulator import ARTIFACTS_DIR

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m onnx_models.build.pk", description=__doc__)
    parser.add_argument("--out", type=Path, default=ARTIFACTS_DIR, help="output directory")
    args = parser.parse_args(argv)
    json.dump(build_pk_artifacts(args.out), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

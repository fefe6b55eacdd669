"""Build the vancomycin PK artifacts: `python -m onnx_models.pk.build [--out DIR]`.

Prints a JSON list (id, version, path, sha256). The builder lives in `onnx_models.pk.artifact`
so that importing the package does not import this module (which `python -m` would then run a
second time).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from onnx_models.pk.artifact import ARTIFACTS_DIR, build_pk_artifacts

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m onnx_models.pk.build", description=__doc__)
    parser.add_argument("--out", type=Path, default=ARTIFACTS_DIR, help="output directory")
    args = parser.parse_args(argv)
    json.dump(build_pk_artifacts(args.out), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

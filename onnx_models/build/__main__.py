"""Build every risk model's .onnx file reproducibly: `python -m onnx_models.build [--out DIR]`.

Prints a JSON list with one object per built model (id, version, path, sha256) on stdout.
The vancomycin PK artifacts: `python -m onnx_models.build.pk`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from onnx_models.build.builder import ARTIFACTS_DIR, build_all

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m onnx_models.build", description=__doc__)
    parser.add_argument("--out", type=Path, default=ARTIFACTS_DIR, help="output directory")
    args = parser.parse_args(argv)
    built = build_all(args.out)
    json.dump([b.to_dict() for b in built], sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

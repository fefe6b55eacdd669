"""Per model: latency of predict and of predict+explain against a bare onnxruntime run.

"bare" is `session.run` on one float64 row of the same graph (no input checks, no dicts);
"predict" is LoadedModel.predict (card checks, one run, named outputs); "explain" is
LoadedModel.predict_and_explain (checks, the 2^M-row coalition batch in one run, exact
Shapley values for every output). Ratios are measured in the same run on the same machine.
Writes bench/results/models.json.

    python bench/models.py [--iterations 2000]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

from onnx_models import LoadedModel, load_model  # noqa: E402

ARTIFACTS = REPO / "onnx_models" / "artifacts"
RESULTS = REPO / "bench" / "results" / "models.json"


def _patient(model: LoadedModel, rng: random.Random) -> dict[str, float]:
    return {
        s.name: float(rng.random() < 0.5) if s.kind == "binary" else rng.uniform(s.min, s.max)
        for s in model.card.inputs
    }


def _times_us(fn: Callable[[], object], n: int) -> list[float]:
    for _ in range(min(50, n)):  # warm-up
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(1e6 * (time.perf_counter() - t))
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(path: Path, n: int) -> dict[str, Any]:
    model = load_model(path)
    values = _patient(model, random.Random(1))  # noqa: S311  # benchmark input, not a secret
    row = np.array([[values[name] for name in model.card.input_names]], dtype=np.float64)
    # The same bytes in a plain session with the same threading, as a caller without us would.
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    bare_session = ort.InferenceSession(
        path.read_bytes(), options, providers=["CPUExecutionProvider"]
    )
    bare = _times_us(lambda: bare_session.run(None, {"x": row}), n)
    predict = _times_us(lambda: model.predict(values), n)
    explain = _times_us(lambda: model.predict_and_explain(values), max(100, n // 4))
    b50 = statistics.median(bare)
    return {
        "model": model.model_id,
        "inputs": len(model.card.inputs),
        "outputs": len(model.card.outputs),
        "coalition_rows": 2 ** len(model.card.explained_inputs),
        "bare_p50_us": round(b50, 1),
        "predict_p50_us": round(statistics.median(predict), 1),
        "predict_p99_us": round(_pct(predict, 0.99), 1),
        "explain_p50_us": round(statistics.median(explain), 1),
        "explain_p99_us": round(_pct(explain, 0.99), 1),
        "predict_vs_bare": round(statistics.median(predict) / b50, 2),
        "explain_vs_bare": round(statistics.median(explain) / b50, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=2000)
    args = parser.parse_args()
    rows = [measure(path, args.iterations) for path in sorted(ARTIFACTS.glob("*.onnx"))]
    header = (
        f"{'model':<20}{'rows':>6}{'bare µs':>10}{'predict µs':>12}{'explain µs':>12}"
        f"{'pred/bare':>11}{'expl/bare':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['model']:<20}{r['coalition_rows']:>6}{r['bare_p50_us']:>10}"
            f"{r['predict_p50_us']:>12}{r['explain_p50_us']:>12}"
            f"{r['predict_vs_bare']:>11}{r['explain_vs_bare']:>11}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "python": platform.python_version(),
                "onnxruntime": ort.__version__,
                "iterations": args.iterations,
                "models": rows,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()

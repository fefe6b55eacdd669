"""Where a new patient's hook call spends its server time: a pyinstrument profile.

The cold path: distinct patients the service has never seen, the parse memo cleared
before every call, through the real app in this thread (ASGI transport, so the profile
sees the server's work; SQLite stores, audit trail). Prints pyinstrument's call tree and
the server time (Server-Timing) beside ``json.loads`` of the same bodies.

    python bench/profile_cold.py [--patients 60] [--corpus] [--html out.html]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# The per-call log line (one JSON object a call) would drown the bench's own output.
logging.getLogger("twin_cds.hooks").setLevel(logging.WARNING)
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from pyinstrument import Profiler  # noqa: E402

from cds_service.settings import Settings  # noqa: E402
from ehr_sim.patients import generate_patients  # noqa: E402
from tests.conftest import hook_request, prefetch_from_bundle, synthea_bundles  # noqa: E402
from twin_cds.app import create_app  # noqa: E402
from twin_engine.fhir.memo import clear_parse_memo  # noqa: E402


def bodies(patients: int, corpus: bool) -> list[bytes]:
    out = []
    bundles: list[dict[str, Any]] = list(generate_patients(patients, seed=11))
    if corpus:
        bundles += [json.loads(p.read_text()) for p in synthea_bundles()]
    for bundle in bundles:
        pf = prefetch_from_bundle(bundle)
        out.append(json.dumps(hook_request(pf["patient"]["id"], pf)).encode())
    return out


async def run(raws: list[bytes]) -> tuple[list[float], list[float], Profiler]:
    """The app in this thread (ASGI transport), so the profile sees the server's work."""
    headers = {"Content-Type": "application/json"}
    server_ms: list[float] = []
    loads_ms: list[float] = []
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(data_dir=Path(tmp), auth_required=False))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client,
        ):
            # Warm-up on another patient: imports, first statements, ONNX sessions.
            await client.post("/cds-services/ascvd-risk", content=raws[0], headers=headers)
            profiler.start()
            for raw in raws[1:]:
                clear_parse_memo()
                r = await client.post("/cds-services/ascvd-risk", content=raw, headers=headers)
                server_ms.append(float(r.headers["Server-Timing"].split("dur=")[1]))
            profiler.stop()
    for raw in raws[1:]:
        t = time.perf_counter()
        json.loads(raw)
        loads_ms.append(1000 * (time.perf_counter() - t))
    return server_ms, loads_ms, profiler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=60)
    parser.add_argument("--corpus", action="store_true", help="add the shared Synthea corpus")
    parser.add_argument("--html", type=Path, default=None)
    args = parser.parse_args()
    raws = bodies(args.patients, args.corpus)
    server_ms, loads_ms, profiler = asyncio.run(run(raws))
    ratios = [s / j for s, j in zip(server_ms, loads_ms, strict=True)]
    print(
        f"{len(server_ms)} new patients: server p50 {statistics.median(server_ms):.2f} ms, "
        f"json.loads p50 {statistics.median(loads_ms):.3f} ms, "
        f"per-patient ratio p50 {statistics.median(ratios):.1f}x"
    )
    print(profiler.output_text(unicode=False, color=False, show_all=False, timeline=False))
    if args.html:
        args.html.write_text(profiler.output_html())


if __name__ == "__main__":
    main()

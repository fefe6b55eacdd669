"""The clinician app's API through the real service, each call beside what it wraps.

Starts the whole product on 127.0.0.1 (sekmet FHIR server, the service under uvicorn,
the EHR launch simulator), signs in through a real EHR launch, then times, in one run:

- the risk panel (``GET /app/api/risk``) vs the ``cardio-renal-risk`` hook call on the
  same patient (same models, same twin; the hook reads FHIR and runs the models each
  time, the app reuses the session's fetch, twin and model runs for 60 s);
- the what-if redraw (``POST /app/api/whatif``) vs the same risk panel;
- the dose simulator redraw (``POST /app/api/vancomycin/simulate``) vs the dosing
  card's own computation (``recommend`` in-process, no HTTP);
- the first load of the twin in a new session (FHIR fetch through the EHR's proxy).

    python bench/app.py [--iterations 40]

Prints a table and writes bench/results/app.json. Ratios, not absolute times, are the
result: these machines are shared.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cds_service.services.vancomycin import simulator_for  # noqa: E402
from ehr_sim.demo import example_request, running_product  # noqa: E402
from ehr_sim.servers import free_port  # noqa: E402
from onnx_models.pk.models import MODELS  # noqa: E402
from twin_engine.pk.recommend import recommend  # noqa: E402
from twin_engine.pk.types import Regimen  # noqa: E402


def _ms(fn: Callable[[], Any], n: int) -> tuple[float, float]:
    fn()  # warm
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t))
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))]


def _sign_in(client: httpx.Client, ehr: str, patient: str) -> None:
    """The EHR launch as a browser makes it, redirects followed with the cookie jar."""
    response = client.post(f"{ehr}/ehr/launch", data={"patient": patient}, follow_redirects=True)
    response.raise_for_status()
    assert urlsplit(str(response.url)).path == "/app/", response.url


def _resources(fhir: str, patient: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with httpx.Client(timeout=30) as c:
        out.append(c.get(f"{fhir}/Patient/{patient}").json())
        for kind in ("Observation", "Condition", "MedicationRequest", "MedicationAdministration"):
            bundle = c.get(f"{fhir}/{kind}", params={"patient": patient, "_count": 1000}).json()
            out += [e["resource"] for e in bundle.get("entry", [])]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=40)
    args = parser.parse_args()
    n = args.iterations
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_product(Path(tmp), patients=6, seed=11, port=free_port()) as product,
    ):
        service, ehr, fhir = product.service.base_url, product.ehr.base_url, product.fhir.base_url
        patient = product.patients[0]
        with httpx.Client(timeout=60) as app, httpx.Client(timeout=60) as hooks:
            # First load in a new session: fetch through the EHR's proxy, build, store.
            _sign_in(app, ehr, patient)
            t = time.perf_counter()
            app.get(f"{service}/app/api/twin").raise_for_status()
            first_load = 1000 * (time.perf_counter() - t)

            body = example_request(fhir, patient)
            hook = _ms(
                lambda: hooks.post(
                    f"{service}/cds-services/cardio-renal-risk", json=body
                ).raise_for_status(),
                n,
            )
            risk = _ms(lambda: app.get(f"{service}/app/api/risk").raise_for_status(), n)
            choice = {"statin": "moderate", "sbp_target_mm_hg": 130}
            whatif = _ms(
                lambda: app.post(f"{service}/app/api/whatif", json=choice).raise_for_status(), n
            )
            rows += [
                {
                    "call": "cardio-renal-risk hook (fetches FHIR)",
                    "p50_ms": hook[0],
                    "p90_ms": hook[1],
                },
                {
                    "call": "app risk panel",
                    "p50_ms": risk[0],
                    "p90_ms": risk[1],
                    "ratio": risk[0] / hook[0],
                    "vs": "hook",
                },
                {
                    "call": "app what-if",
                    "p50_ms": whatif[0],
                    "p90_ms": whatif[1],
                    "ratio": whatif[0] / risk[0],
                    "vs": "risk panel",
                },
            ]

            vanco = product.vancomycin_patient
            app.cookies.clear()
            _sign_in(app, ehr, vanco)
            regimen = {"dose_mg": 1250, "interval_h": 12, "infusion_h": 1.5}
            simulate = _ms(
                lambda: app.post(
                    f"{service}/app/api/vancomycin/simulate", json=regimen
                ).raise_for_status(),
                n,
            )
            resources = _resources(fhir, vanco)
            model = MODELS["vancomycin_goti2018"]
            sim = simulator_for(model.id)
            now = datetime.now(UTC)
            card = _ms(
                lambda: recommend(
                    resources,
                    as_of=now,
                    model=model,
                    simulator=sim,
                    draft_regimen=Regimen(dose_mg=1250, interval_h=12, infusion_h=1.5),
                ),
                n,
            )
            rows += [
                {
                    "call": "dosing card computation (in-process)",
                    "p50_ms": card[0],
                    "p90_ms": card[1],
                },
                {
                    "call": "app dose simulator (HTTP, + curve)",
                    "p50_ms": simulate[0],
                    "p90_ms": simulate[1],
                    "ratio": simulate[0] / card[0],
                    "vs": "card computation",
                },
            ]
    rows.append({"call": "app first twin load in a new session", "p50_ms": first_load})
    print(f"{'call':44} {'p50 ms':>8} {'p90 ms':>8}  ratio")
    for r in rows:
        ratio = f"{r['ratio']:.2f}x {r['vs']}" if "ratio" in r else ""
        p90 = f"{r['p90_ms']:8.1f}" if "p90_ms" in r else " " * 8
        print(f"{r['call']:44} {r['p50_ms']:8.1f} {p90}  {ratio}")
    out = REPO / "bench" / "results" / "app.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"iterations": n, "rows": rows}, indent=2))
    print(f"\nwritten {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()

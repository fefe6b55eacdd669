"""A FHIR server on 127.0.0.1 that misbehaves on purpose, for fault-injection tests.

It serves a real Patient; its Observation/Condition/MedicationRequest searches fail in
the way the ``mode`` says: slow, hanging, 5xx, malformed bundles, endless next links.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "gender": "male",
    "birthDate": "1961-04-02",
}


def _bundle(base: str, next_url: str | None) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "next", "url": next_url}] if next_url else [],
        "entry": [],
    }


def build_app(state: dict[str, str]) -> FastAPI:
    app = FastAPI()

    @app.get("/fhir/Patient/{pid}")
    async def patient(pid: str) -> JSONResponse:
        if state["mode"] == "patient-500":
            return JSONResponse({"resourceType": "OperationOutcome"}, status_code=500)
        if state["mode"] == "patient-hang":
            await asyncio.sleep(30)
        return JSONResponse({**PATIENT, "id": pid})

    @app.get("/fhir/{rtype}")
    async def search(rtype: str, request: Request) -> Response:
        mode = state["mode"]
        base = str(request.base_url).rstrip("/") + "/fhir"
        if mode == "slow":
            await asyncio.sleep(2.0)
        elif mode == "hang":
            await asyncio.sleep(30)
        elif mode == "500":
            return JSONResponse({"resourceType": "OperationOutcome"}, status_code=503)
        elif mode == "malformed":
            return Response(b'{"resourceType": "Bundle", "entry": [', media_type="application/json")
        elif mode == "wrong-shape":
            return JSONResponse({"resourceType": "Bundle", "entry": "not-a-list", "link": 7})
        elif mode == "endless-next":
            page = int(request.query_params.get("page", "0"))
            await asyncio.sleep(0.01)
            return JSONResponse(_bundle(base, f"{base}/{rtype}?page={page + 1}"))
        return JSONResponse(_bundle(base, None))

    return app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def faulty_fhir_server() -> Iterator[tuple[str, dict[str, str]]]:
    """Yield (base_url, state); set state["mode"] to choose the fault."""
    state = {"mode": "ok"}
    port = _free_port()
    config = uvicorn.Config(build_app(state), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("faulty FHIR server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/fhir", state
    finally:
        server.should_exit = True
        thread.join(timeout=5)

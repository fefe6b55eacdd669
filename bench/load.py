"""A bounded load run on 127.0.0.1: our patient-view service beside the healthchain peer.

Two regimes, both by default, each with its ratio ours/peer:
  warm  (memo on)   a few patients' bodies cycled: the service has seen them (parse memo
                    and twin store hit), the peer parses them anew each time
  cold  (memo off)  ``--distinct`` patients never seen, each sent once, with our parse
                    memo off (TWIN_CDS_PARSE_MEMO=false): every call validates, builds and
                    stores a new twin. In an EHR most chart opens are the day's first for
                    that patient, so this is the headline.

Scenarios, one after the other (the machine is shared; never two services at once):
  ours / prefetch   twin-cds under uvicorn (workers = cores), hook bodies carrying the
                    ascvd-risk prefetch of generated patients (tests.conftest helpers)
  ours / fetch      the same service, bodies carrying fhirServer + fhirAuthorization only,
                    so every call fetches from a real FHIR server (sekmet, SQLite)
  ours / distinct   the cold regime, on a service started with the memo off
  peer / prefetch   healthchain's CDSHooksService (bench/peers/healthchain_service.py) in
                    its own virtual environment, same workers, the same prefetch bodies
  peer / distinct   the peer on the cold regime's bodies

Authentication of CDS clients is OFF in our service for this run
(TWIN_CDS_AUTH_REQUIRED=false); the peer has none either. Load: a bounded async httpx
client in this process (fixed request count, fixed concurrency, a hard time cap per
scenario) after a warm-up; latency is client-side, from send to the last byte. Prints a
table and writes bench/results/load.json with the ratios ours/peer for the prefetch
scenario of each regime (goal: throughput ≥ 3x, p99 ≤ 1/2). With Debian's wrk installed
(``apt-get install wrk``) it drives the load instead (for a fixed time; in the cold regime
until each distinct patient was sent once): a C client leaves the two cores to the
servers, where a Python client competes with them, and costs a fast server as much CPU
as a slow one per request.

    python bench/load.py [--client wrk|httpx] [--seconds 20] [--requests 2000]
                         [--concurrency 32] [--workers N] [--no-peer] [--distinct 1000]

The peer's virtual environment is bench/.venvs/healthchain; when absent it is created
with ``python3 -m venv`` and ``pip install healthchain`` (from the package registry).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
# The per-call log line (one JSON object a call) would drown the bench's own output.
logging.getLogger("twin_cds.hooks").setLevel(logging.WARNING)
sys.path.insert(0, str(REPO))

from ehr_sim.demo import example_request  # noqa: E402
from ehr_sim.patients import generate_patients  # noqa: E402
from ehr_sim.servers import free_port, load_patients, start_fhir_server  # noqa: E402
from tests.conftest import hook_request, prefetch_from_bundle  # noqa: E402

PEER_VENV = REPO / "bench" / ".venvs" / "healthchain"
PEER_DIR = REPO / "bench" / "peers"
OUR_PATH = "/cds-services/ascvd-risk"
PEER_PATH = "/cds/cds-services/lipids-summary"


@dataclass(slots=True)
class Result:
    service: str
    scenario: str
    workers: int
    concurrency: int
    requested: int
    completed: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    throughput_rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    server_p50_ms: float | None = None
    capped: bool = False
    error_samples: list[str] = field(default_factory=list)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path


@contextlib.contextmanager
def running(
    name: str,
    cmd: list[str],
    env: dict[str, str],
    cwd: Path,
    port: int,
    ready_path: str,
    log_dir: Path,
) -> Iterator[Server]:
    """Start a uvicorn server in its own process group; stop the whole group after."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreters and modules
            cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited at start; see {log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + ready_path, timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start in 120 s; see {log_path}")
            time.sleep(0.3)
        yield Server(name, base, process, log_path)
    finally:
        # uvicorn's supervisor stops its workers on SIGTERM; the group kill is the backstop.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


from cds_service.http.edge import SERVER_MAX_HEAD_BYTES  # noqa: E402 - beside its one use


def our_server(
    port: int,
    workers: int,
    data_dir: Path,
    fhir_base: str,
    log_dir: Path,
    extra_env: dict[str, str] | None = None,
) -> Any:
    env = {
        **os.environ,
        **(extra_env or {}),
        "TWIN_CDS_DATA_DIR": str(data_dir),
        "TWIN_CDS_AUTH_REQUIRED": "false",
        "TWIN_CDS_FHIR_SERVER_ALLOWLIST": json.dumps([fhir_base]),
        "TWIN_CDS_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
    }
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "twin_cds.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        # As the README runs it in production: h11 with a bounded request head.
        "--http",
        "h11",
        "--h11-max-incomplete-event-size",
        str(SERVER_MAX_HEAD_BYTES),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    return running("twin-cds", cmd, env, REPO, port, "/readyz", log_dir)


def peer_server(python: Path, port: int, workers: int, log_dir: Path) -> Any:
    cmd = [
        str(python),
        "-m",
        "uvicorn",
        "healthchain_service:app",
        "--app-dir",
        str(PEER_DIR),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        # As the README runs it in production: h11 with a bounded request head.
        "--http",
        "h11",
        "--h11-max-incomplete-event-size",
        str(SERVER_MAX_HEAD_BYTES),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return running("healthchain", cmd, env, PEER_DIR, port, "/health", log_dir)


def ensure_peer_venv() -> Path:
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {PEER_VENV} and installing healthchain from the registry", flush=True)
        subprocess.run(["python3", "-m", "venv", str(PEER_VENV)], check=True)  # noqa: S603,S607
        subprocess.run(  # noqa: S603
            [str(python), "-m", "pip", "install", "-q", "healthchain"], check=True
        )
    return python


def peer_version(python: Path) -> str:
    out = subprocess.run(  # noqa: S603
        [str(python), "-c", "import importlib.metadata as m; print(m.version('healthchain'))"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


async def _load(
    url: str,
    bodies: list[bytes],
    cards: list[int] | None,
    total: int,
    concurrency: int,
    cap_s: float,
    result: Result,
) -> None:
    """``cards[i]``: how many cards body i got in the warm-up; any other answer is an error
    (healthchain answers a failed handler with 200 and no cards). ``cards`` None (bodies
    never sent before): any 200 with a card list is an answer."""
    latencies: list[float] = []
    server_ms: list[float] = []
    next_index = 0
    deadline = time.monotonic() + cap_s
    headers = {"Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_index
        while next_index < total:
            if time.monotonic() > deadline:
                result.capped = True
                return
            i = next_index
            next_index += 1
            started = time.perf_counter()
            try:
                r = await client.post(url, content=bodies[i % len(bodies)], headers=headers)
                got = r.json()["cards"] if r.status_code == 200 else None
                expected = None if cards is None else cards[i % len(bodies)]
                ok = isinstance(got, list) and (expected is None or len(got) == expected)
                sample = f"{r.status_code}: {r.text[:200]}"
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                ok, r, sample = False, None, f"{type(exc).__name__}: {exc}"
            latencies.append(1000 * (time.perf_counter() - started))
            if not ok:
                result.errors += 1
                if len(result.error_samples) < 5:
                    result.error_samples.append(sample)
            elif r is not None and "server-timing" in r.headers:
                server_ms.append(float(r.headers["server-timing"].split("dur=")[1]))

    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        result.elapsed_s = time.perf_counter() - t0
    result.completed = len(latencies)
    result.throughput_rps = (result.completed - result.errors) / result.elapsed_s
    result.p50_ms = _pct(latencies, 0.50)
    result.p99_ms = _pct(latencies, 0.99)
    result.max_ms = max(latencies, default=float("nan"))
    result.server_p50_ms = statistics.median(server_ms) if server_ms else None


_WRK_SCRIPT = """
local paths = {%s}
local bodies = {}
for i, path in ipairs(paths) do
  local f = assert(io.open(path, "rb")); bodies[i] = f:read("*all"); f:close()
end
local n = 0
request = function()
  n = n + 1
  local headers = {["Content-Type"] = "application/json"}
  return wrk.format("POST", nil, headers, bodies[(n %% #bodies) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK %%d %%d %%d %%d %%d %%d %%d\\n", summary.requests, e.status,
    e.connect + e.read + e.write + e.timeout, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


# The cold regime under wrk: each body once, in order. wrk runs for a fixed time, so
# the script says when it starts and when the count-th response came back (flushed
# lines on stdout, timed by the caller, who then ends wrk with SIGINT; wrk then prints
# its summary); the requests still in flight at that moment carry the spare bodies
# after the first ``count`` (patients never counted), so no patient is sent twice.
_WRK_ONCE = """
local count = %d
local seen = 0
init = function(args)
  io.write("ONCE-START\\n"); io.flush()
end
response = function(status, headers, body)
  seen = seen + 1
  if seen == count then io.write("ONCE-DONE\\n"); io.flush(); wrk.thread:stop() end
end
"""


def _wrk_script(tmp: str, bodies: list[bytes], once: int | None) -> Path:
    paths = []
    for i, body in enumerate(bodies):
        path = Path(tmp) / f"body{i}.json"
        path.write_bytes(body)
        paths.append(f'"{path}"')
    text = _WRK_SCRIPT % ", ".join(paths)
    if once is not None:
        # The n-th request carries the n-th body (not cycled).
        text = text.replace("(n % #bodies) + 1", "n") + _WRK_ONCE % once
    script = Path(tmp) / "post.lua"
    script.write_text(text)
    return script


def _wrk_summary(out: str, result: Result) -> None:
    line = next(x for x in out.splitlines() if x.startswith("WRK "))
    requests, status_errors, socket_errors, duration_us, p50_us, p99_us, max_us = map(
        int, line.split()[1:]
    )
    result.completed = requests
    result.errors = status_errors + socket_errors
    result.elapsed_s = duration_us / 1e6
    result.throughput_rps = (requests - result.errors) / result.elapsed_s
    result.p50_ms, result.p99_ms, result.max_ms = p50_us / 1e3, p99_us / 1e3, max_us / 1e3


def _wrk_args(script: Path, concurrency: int, seconds: float, url: str) -> list[str]:
    return [
        shutil.which("wrk") or "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{seconds:.0f}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]


def _load_wrk(
    url: str, bodies: list[bytes], seconds: float, concurrency: int, result: Result
) -> None:
    """wrk (C, one thread) drives the load, so the client does not eat the servers' CPU
    the way a Python client does on a 2-core machine. Latency is wrk's, send to last byte."""
    with tempfile.TemporaryDirectory() as tmp:
        script = _wrk_script(tmp, bodies, None)
        out = subprocess.run(  # noqa: S603 - wrk from Debian, our own arguments
            _wrk_args(script, concurrency, seconds, url),
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        ).stdout
    _wrk_summary(out, result)


def _load_wrk_once(
    url: str, bodies: list[bytes], count: int, concurrency: int, cap_s: float, result: Result
) -> None:
    """wrk sends the first ``count`` bodies once each (``bodies`` holds ``concurrency``
    spares beyond them). Throughput is ``count`` over the time from wrk's start to the
    count-th response, timed here from the script's own lines; latency is wrk's."""
    if len(bodies) < count + concurrency:
        raise ValueError(f"{count} bodies sent once need {concurrency} spares")
    with tempfile.TemporaryDirectory() as tmp:
        script = _wrk_script(tmp, bodies, count)
        proc = subprocess.Popen(  # noqa: S603 - wrk from Debian, our own arguments
            _wrk_args(script, concurrency, cap_s, url), stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        started = done = None
        for line in proc.stdout:
            if line.startswith("ONCE-START"):
                started = time.perf_counter()
            elif line.startswith("ONCE-DONE"):
                done = time.perf_counter()
                proc.send_signal(signal.SIGINT)
                break
        out = proc.communicate(timeout=60)[0]
    _wrk_summary(out, result)
    if started is None or done is None:
        result.capped = True
        return
    # wrk's own duration runs to the signal; the count-th response is the end.
    # Responses that came back in the same turn of wrk's loop as the count-th are not
    # counted: the rate is the count's.
    result.completed = min(result.completed, count)
    result.elapsed_s = done - started
    result.throughput_rps = (result.completed - result.errors) / result.elapsed_s


def run_scenario(
    service: str, scenario: str, url: str, bodies: list[bytes], args: argparse.Namespace
) -> Result:
    # Warm-up: every body once in sequence (first twin versions, imports, caches), then a
    # short concurrent burst so every worker process has served.
    # Every body was chosen because our service answers it with a card; so does the peer.
    cards = []
    with httpx.Client(timeout=30) as client:
        for body in bodies:
            r = client.post(url, content=body, headers={"Content-Type": "application/json"})
            if r.status_code != 200 or len(r.json()["cards"]) != 1:
                raise RuntimeError(f"{service}/{scenario} warm-up: {r.status_code} {r.text[:300]}")
            cards.append(1)
    warm = Result(service, scenario, args.workers, args.concurrency, args.warmup)
    asyncio.run(_load(url, bodies, cards, args.warmup, args.concurrency, args.time_cap, warm))
    result = Result(service, scenario, args.workers, args.concurrency, args.requests)
    if args.client == "wrk":
        print(f"  {service} / {scenario}: wrk for {args.seconds:.0f} s...", flush=True)
        _load_wrk(url, bodies, args.seconds, args.concurrency, result)
        # wrk counts only non-2xx as errors; a 200 without the expected card is checked
        # here on every body after the run (the peer answers a failed handler with 200).
        with httpx.Client(timeout=30) as client:
            for body, expected in zip(bodies, cards, strict=True):
                r = client.post(url, content=body, headers={"Content-Type": "application/json"})
                if r.status_code != 200 or len(r.json()["cards"]) != expected:
                    result.errors += 1
                    result.error_samples.append(f"after the run: {r.status_code} {r.text[:200]}")
        return result
    print(f"  {service} / {scenario}: {args.requests} requests...", flush=True)
    asyncio.run(_load(url, bodies, cards, args.requests, args.concurrency, args.time_cap, result))
    return result


def run_distinct(
    service: str, url: str, warm: list[bytes], bodies: list[bytes], args: argparse.Namespace
) -> Result:
    """The cold regime: warm the process on other patients, then each body exactly once."""
    with httpx.Client(timeout=30) as client:
        for body in warm:
            r = client.post(url, content=body, headers={"Content-Type": "application/json"})
            if r.status_code != 200:
                raise RuntimeError(f"{service}/distinct warm-up: {r.status_code} {r.text[:300]}")
    burst = Result(service, "distinct", args.workers, args.concurrency, len(warm))
    asyncio.run(_load(url, warm, None, 4 * len(warm), args.concurrency, args.time_cap, burst))
    count = len(bodies) - args.concurrency  # the rest are wrk's spares
    result = Result(service, "distinct", args.workers, args.concurrency, count)
    print(f"  {service} / distinct: {count} new patients, once each...", flush=True)
    if args.client == "wrk":
        _load_wrk_once(url, bodies, count, args.concurrency, args.time_cap, result)
        return result
    asyncio.run(_load(url, bodies[:count], None, count, args.concurrency, args.time_cap, result))
    return result


def distinct_bodies(count: int, seed: int) -> list[bytes]:
    """Prefetch bodies of ``count`` generated patients (any answer counts: card or not)."""
    out = []
    for bundle in generate_patients(count, seed=seed):
        pf = prefetch_from_bundle(bundle)
        out.append(json.dumps(hook_request(pf["patient"]["id"], pf)).encode())
    return out


def _ratios(ours: Result, peer: Result | None) -> dict[str, Any]:
    if peer is None or peer.throughput_rps <= 0:
        return {}
    ratios: dict[str, Any] = {
        "throughput_ours_over_peer": round(ours.throughput_rps / peer.throughput_rps, 2),
        "p50_ours_over_peer": round(ours.p50_ms / peer.p50_ms, 2),
        "p99_ours_over_peer": round(ours.p99_ms / peer.p99_ms, 2),
    }
    ratios["goal_throughput_3x_met"] = ratios["throughput_ours_over_peer"] >= 3
    ratios["goal_p99_half_met"] = ratios["p99_ours_over_peer"] <= 0.5
    return ratios


def carded_patients(count: int, seed: int) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Generated patients whose prefetch our service answers with a card, so every call
    takes the whole path (twin, model, explanation, card, audit), not the early exit of a
    patient outside the model's population."""
    from fastapi.testclient import TestClient

    from cds_service.settings import Settings
    from twin_cds.app import create_app

    bundles, bodies = [], []
    candidates = generate_patients(4 * count, seed=seed)
    with (
        tempfile.TemporaryDirectory() as tmp,
        TestClient(create_app(Settings(data_dir=Path(tmp), auth_required=False))) as client,
    ):
        for bundle in candidates:
            pf = prefetch_from_bundle(bundle)
            body = json.dumps(hook_request(pf["patient"]["id"], pf)).encode()
            r = client.post(OUR_PATH, content=body, headers={"Content-Type": "application/json"})
            if r.status_code == 200 and r.json()["cards"]:
                bundles.append(bundle)
                bodies.append(body)
            if len(bodies) == count:
                return bundles, bodies
    raise RuntimeError(f"only {len(bodies)} of {len(candidates)} generated patients get a card")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per scenario")
    parser.add_argument("--warmup", type=int, default=200, help="per scenario, not measured")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--patients", type=int, default=8, help="distinct bodies, cycled")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--time-cap", type=float, default=180.0, help="seconds per scenario")
    parser.add_argument("--no-peer", action="store_true", help="skip the healthchain peer")
    parser.add_argument(
        "--client",
        choices=["wrk", "httpx"],
        default="wrk" if shutil.which("wrk") else "httpx",
        help="load generator: wrk (Debian package; default when installed) or Python httpx",
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="wrk: seconds per scenario")
    parser.add_argument("--no-fetch", action="store_true", help="skip the FHIR fetch scenario")
    parser.add_argument(
        "--distinct",
        type=int,
        default=1000,
        help="cold regime: patients never seen, each sent once, memo off (0: skip)",
    )
    args = parser.parse_args()

    bundles, prefetch_bodies = carded_patients(args.patients, args.seed)
    mean_bytes = statistics.mean(len(b) for b in prefetch_bodies)
    cold_warmup = distinct_bodies(16, seed=args.seed + 1000) if args.distinct else []
    # Spares beyond the count: wrk's requests in flight when the count is reached.
    cold = (
        distinct_bodies(args.distinct + args.concurrency, seed=args.seed + 2000)
        if args.distinct
        else []
    )
    if cold:
        print(
            f"cold regime: {args.distinct} distinct patients (mean "
            f"{statistics.mean(len(b) for b in cold) / 1024:.0f} KiB), each sent once",
            flush=True,
        )
    print(
        f"{args.workers} uvicorn workers each, {os.cpu_count()} cores, concurrency "
        f"{args.concurrency}, "
        + (
            f"{args.seconds:.0f} s per scenario"
            if args.client == "wrk"
            else f"{args.requests} requests per scenario"
        )
        + f" after {args.warmup} warm-up, "
        f"{len(prefetch_bodies)} patients' prefetch bodies (mean {mean_bytes / 1024:.0f} KiB), "
        f"load from {args.client}. "
        "Authentication of CDS clients is OFF in our service for this run.",
        flush=True,
    )
    results: list[Result] = []
    peer_hc: str | None = None
    with tempfile.TemporaryDirectory(prefix="twin-cds-load-") as tmp_name:
        tmp = Path(tmp_name)
        fhir = start_fhir_server(tmp / "fhir")
        try:
            ids = load_patients(fhir.base_url, bundles)
            fetch_bodies = [json.dumps(example_request(fhir.base_url, i)).encode() for i in ids]
            port = free_port()
            with our_server(port, args.workers, tmp / "service-data", fhir.base_url, tmp) as srv:
                url = srv.base_url + OUR_PATH
                results.append(run_scenario("twin-cds", "prefetch", url, prefetch_bodies, args))
                if not args.no_fetch:
                    results.append(run_scenario("twin-cds", "fetch", url, fetch_bodies, args))
        finally:
            fhir.stop()
        if cold:
            port = free_port()
            memo_off = {"TWIN_CDS_PARSE_MEMO": "false"}
            with our_server(
                port, args.workers, tmp / "service-cold", "http://127.0.0.1:9", tmp, memo_off
            ) as srv:
                url = srv.base_url + OUR_PATH
                results.append(run_distinct("twin-cds", url, cold_warmup, cold, args))
        if not args.no_peer:
            python = ensure_peer_venv()
            peer_hc = peer_version(python)
            port = free_port()
            with peer_server(python, port, args.workers, tmp) as srv:
                url = srv.base_url + PEER_PATH
                results.append(
                    run_scenario(f"healthchain {peer_hc}", "prefetch", url, prefetch_bodies, args)
                )
                if cold:
                    results.append(
                        run_distinct(f"healthchain {peer_hc}", url, cold_warmup, cold, args)
                    )

    print(
        f"\n{'service':<20} {'scenario':<9} {'ok':>6} {'err':>4} {'req/s':>8} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'srv p50':>8}"
    )
    for r in results:
        srv50 = f"{r.server_p50_ms:8.2f}" if r.server_p50_ms is not None else f"{'-':>8}"
        print(
            f"{r.service:<20} {r.scenario:<9} {r.completed - r.errors:>6} {r.errors:>4} "
            f"{r.throughput_rps:>8.1f} {r.p50_ms:>8.1f} {r.p99_ms:>8.1f} {r.max_ms:>8.1f} {srv50}"
            + ("  (time cap hit)" if r.capped else "")
        )
        for sample in r.error_samples:
            print(f"    error: {sample}")

    def pick(service: str, scenario: str) -> Result | None:
        return next(
            (r for r in results if r.service.startswith(service) and r.scenario == scenario), None
        )

    regimes: dict[str, dict[str, Any]] = {}
    for regime, scenario in (("warm (memo on)", "prefetch"), ("cold (memo off)", "distinct")):
        ours = pick("twin-cds", scenario)
        if ours is None:
            continue
        regimes[regime] = ratios = _ratios(ours, pick("healthchain", scenario))
        if ratios:
            print(
                f"ours/peer, {regime}: throughput x{ratios['throughput_ours_over_peer']} "
                f"(goal >= 3), p50 x{ratios['p50_ours_over_peer']}, "
                f"p99 x{ratios['p99_ours_over_peer']} (goal <= 0.5)"
            )
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "workers": args.workers,
        "concurrency": args.concurrency,
        "requests_per_scenario": args.requests,
        "warmup_per_scenario": args.warmup,
        "prefetch_bodies": len(prefetch_bodies),
        "prefetch_mean_bytes": round(mean_bytes),
        "auth_required": False,
        "client": args.client,
        "peer": {"package": "healthchain", "version": peer_hc} if peer_hc else None,
        "results": [
            {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(r).items()}
            for r in results
        ],
        "distinct_patients": args.distinct if cold else 0,
        "distinct_mean_bytes": round(statistics.mean(len(b) for b in cold)) if cold else None,
        "ratios": regimes,
    }
    (out / "load.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {out / 'load.json'}")


if __name__ == "__main__":
    main()

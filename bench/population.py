"""Population build cost: per patient and per worker, from 1k to 100k patients.

Generates seeded synthetic populations as NDJSON (one resource type per file, as
``$export`` writes them; our own generator: carebundle writes ~60 KB of FHIR per
patient at ~30 ms each, too slow to make 100k patients here), then runs
``twin-cds population build`` on a fresh local Dask cluster for each size, and prints,
measured in this one run:

- cost per patient (cold: a new output directory; warm: the rerun that finds every
  partition done): wall time, the workers' task seconds, and the tasks' own CPU seconds
  (the measure other load on a shared machine does not inflate), beside the same twins
  and models built in one plain loop in this process (the bare work, no Dask, no I/O);
- peak memory (max RSS) per worker process;
- the speed-up of the same build from 1 to 2 workers (at the size given by
  ``--speedup-size``), beside two figures that tell the build from the machine: the
  speed-up the tasks' own CPU seconds allow (one worker's total over the busier worker's
  total with two: the scheduling, balance and per-worker start-up costs), and the
  machine's own 1 -> 2 process speed-up on a fixed CPU loop, measured just before and
  after (on a shared machine, other load caps what any two workers can get).

Usage: python bench/population.py [--sizes 1000,10000,100000] [--speedup-size 10000]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

AS_OF = date(2026, 1, 1)
LOINC = "http://loinc.org"


def _obs(oid: str, pid: str, code: str, value: float, unit: str, when: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


def generate(directory: Path, count: int, seed: int = 7) -> int:
    """``count`` adults aged 30-79 with lipids, BP, kidney labs, conditions and drugs."""
    rng = random.Random(seed)  # noqa: S311 - synthetic benchmark data
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        t: (directory / f"{t}.ndjson").open("w")
        for t in ("Patient", "Observation", "Condition", "MedicationRequest")
    }
    for i in range(count):
        pid = f"b{seed}-{i:07d}"
        year = rng.randint(1947, 1996)
        files["Patient"].write(
            json.dumps(
                {
                    "resourceType": "Patient",
                    "id": pid,
                    "gender": rng.choice(("male", "female")),
                    "birthDate": f"{year}-{rng.randint(1, 12):02d}-15",
                }
            )
            + "\n"
        )
        # Some labs are old (stale), some missing: the care gaps have work to do.
        when = f"{rng.choice((2019, 2024, 2025, 2025))}-{rng.randint(1, 12):02d}-10T09:00:00Z"
        recent = f"2025-{rng.randint(1, 12):02d}-10T09:00:00Z"
        obs = [
            _obs(f"{pid}-tc", pid, "2093-3", rng.gauss(200, 35), "mg/dL", when),
            _obs(f"{pid}-hdl", pid, "2085-9", max(20, rng.gauss(52, 14)), "mg/dL", when),
            _obs(f"{pid}-ldl", pid, "13457-7", max(40, rng.gauss(120, 35)), "mg/dL", when),
            _obs(f"{pid}-sbp", pid, "8480-6", rng.gauss(132, 17), "mm[Hg]", recent),
            _obs(
                f"{pid}-egfr", pid, "98979-8", max(8, rng.gauss(82, 22)), "mL/min/{1.73_m2}", recent
            ),
            _obs(f"{pid}-bmi", pid, "39156-5", max(16, rng.gauss(28, 5)), "kg/m2", recent),
        ]
        if rng.random() < 0.4:
            obs.append(_obs(f"{pid}-acr", pid, "9318-7", abs(rng.gauss(25, 60)), "mg/g", when))
        smoking = rng.choices(("449868002", "8517006", "266919005"), (15, 30, 55))[0]
        obs.append(
            {
                "resourceType": "Observation",
                "id": f"{pid}-smk",
                "status": "final",
                "code": {"coding": [{"system": LOINC, "code": "72166-2"}]},
                "subject": {"reference": f"Patient/{pid}"},
                "effectiveDateTime": recent,
                "valueCodeableConcept": {
                    "coding": [{"system": "http://snomed.info/sct", "code": smoking}]
                },
            }
        )
        diabetic = rng.random() < 0.15
        if diabetic:
            obs.append(_obs(f"{pid}-a1c", pid, "4548-4", rng.gauss(7.4, 1.1), "%", when))
            files["Condition"].write(
                json.dumps(
                    {
                        "resourceType": "Condition",
                        "id": f"{pid}-dm",
                        "clinicalStatus": {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                    "code": "active",
                                }
                            ]
                        },
                        "code": {
                            "coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]
                        },
                        "subject": {"reference": f"Patient/{pid}"},
                        "onsetDateTime": "2018-01-01",
                    }
                )
                + "\n"
            )
        for o in obs:
            files["Observation"].write(json.dumps(o) + "\n")
        if rng.random() < 0.25:
            files["MedicationRequest"].write(
                json.dumps(
                    {
                        "resourceType": "MedicationRequest",
                        "id": f"{pid}-statin",
                        "status": "active",
                        "intent": "order",
                        "medicationCodeableConcept": {
                            "coding": [
                                {
                                    "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                    "code": "83367",
                                    "display": "atorvastatin",
                                }
                            ]
                        },
                        "subject": {"reference": f"Patient/{pid}"},
                        "authoredOn": "2024-01-01",
                    }
                )
                + "\n"
            )
    for f in files.values():
        f.close()
    return sum(p.stat().st_size for p in directory.iterdir())


def _bare_per_patient_s(directory: Path, sample: int) -> float:
    """The same work in one plain loop: read, twin, features, the service's models."""
    from cds_service.pipeline.patient_view import patient_view
    from cds_service.population.rows import worker_registry
    from cds_service.population.split import patient_id_of
    from twin_engine import build_twin_from_fhir, derive_features

    registry = worker_registry(None)
    by_patient: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(directory.glob("*.ndjson")):
        with path.open() as f:
            for line in f:
                r = json.loads(line)
                pid = patient_id_of(r)
                if pid is not None and (pid in by_patient or len(by_patient) < sample):
                    by_patient.setdefault(pid, []).append(r)
    started = time.perf_counter()
    for pid, resources in by_patient.items():
        twin = build_twin_from_fhir(resources, patient_id=pid)
        features = derive_features(twin, AS_OF)
        patient_view(registry, twin, features)
    return (time.perf_counter() - started) / len(by_patient)


def _build(src: Path, out: Path, workers: int) -> tuple[dict[str, Any], float, float]:
    """A cold build on a fresh cluster, then the warm rerun; (record, cold s, warm s)."""
    from distributed import Client, LocalCluster

    from cds_service.population.job import BuildConfig, run_build

    config = BuildConfig(inputs=(src,), out=out, as_of=AS_OF, progress=False)
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as client,
    ):
        t0 = time.perf_counter()
        cold = run_build(config, client=client)
        t1 = time.perf_counter()
        run_build(config, client=client)
        t2 = time.perf_counter()
    assert cold.status == "complete", cold.record["errors"]
    return cold.record, t1 - t0, t2 - t1


def _task_cpu_s(out: Path) -> tuple[float, float]:
    """(all tasks' CPU seconds, the busiest worker's)."""
    by_worker: dict[int, float] = {}
    for p in (out / "work" / "done").glob("*.json"):
        sidecar = json.loads(p.read_text())
        pid = sidecar["workerPid"]
        by_worker[pid] = by_worker.get(pid, 0.0) + sidecar["cpuSeconds"]
    return sum(by_worker.values()), max(by_worker.values())


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def _machine_speedup(n: int = 8_000_000) -> float:
    """The same CPU loop in one process, then in two at once: 2 x t1 / t2."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        pool.map(_spin, [1000, 1000])  # both processes started
        t0 = time.perf_counter()
        pool.map(_spin, [n], chunksize=1)
        t1 = time.perf_counter() - t0
        t0 = time.perf_counter()
        pool.map(_spin, [n, n], chunksize=1)
        t2 = time.perf_counter() - t0
    return 2 * t1 / t2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--speedup-size", type=int, default=None, help="default: the largest size")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the generated NDJSON")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    speedup_size = args.speedup_size or max(sizes)
    root = Path(tempfile.mkdtemp(prefix="population-bench-"))
    print(f"population build, {args.workers} workers (LocalCluster, 1 thread each); as of {AS_OF}")
    print(
        f"{'patients':>9} {'MB in':>7} {'cold ms/pt':>10} {'task ms/pt':>10} {'cpu ms/pt':>9} "
        f"{'warm ms/pt':>10} "
        f"{'bare ms/pt':>10} {'cold/bare':>9} {'peak MB/worker':>14}"
    )
    results: dict[int, dict[str, float]] = {}
    try:
        for n in sizes:
            src = root / f"in-{n}"
            size = generate(src, n)
            record, cold_s, warm_s = _build(src, root / f"out-{n}-{args.workers}", args.workers)
            patients = record["counts"]["rows"]
            sidecars = [
                json.loads(p.read_text())
                for p in (root / f"out-{n}-{args.workers}" / "work" / "done").glob("*.json")
            ]
            task_s = sum(s["seconds"] for s in sidecars)
            cpu_s = sum(s["cpuSeconds"] for s in sidecars)
            bare = _bare_per_patient_s(src, min(n, 2000))
            cold_pp = cold_s / patients
            results[n] = {
                "cold": cold_pp,
                "cpu": cpu_s / patients,
                "peak": record["workerPeakRssMb"],
            }
            print(
                f"{patients:>9} {size / 1e6:>7.1f} {1e3 * cold_pp:>10.2f} "
                f"{1e3 * task_s / patients:>10.2f} {1e3 * cpu_s / patients:>9.2f} "
                f"{1e3 * warm_s / patients:>10.3f} "
                f"{1e3 * bare:>10.2f} {cold_pp / bare:>9.2f} {record['workerPeakRssMb']:>14.0f}",
                flush=True,
            )
        if len(sizes) > 1:
            lo, hi = min(sizes), max(sizes)
            wall = results[hi]["cold"] / results[lo]["cold"]
            cpu_ratio = results[hi]["cpu"] / results[lo]["cpu"]
            peak = results[hi]["peak"] / results[lo]["peak"]
            print(
                f"cost per patient {hi} vs {lo}: wall {wall:.2f}x, task CPU {cpu_ratio:.2f}x "
                f"(goal: within 1.2x); peak memory per worker {peak:.2f}x"
            )
        src = root / f"in-{speedup_size}"
        if not src.is_dir():
            generate(src, speedup_size)
        machine_before = _machine_speedup()
        _, one, _ = _build(src, root / f"out-{speedup_size}-1w", 1)
        _, two, _ = _build(src, root / f"out-{speedup_size}-2w", 2)
        machine_after = _machine_speedup()
        cpu1, _ = _task_cpu_s(root / f"out-{speedup_size}-1w")
        cpu2, busiest = _task_cpu_s(root / f"out-{speedup_size}-2w")
        print(
            f"speed-up 1 -> 2 workers at {speedup_size} patients: {one:.1f} s -> {two:.1f} s = "
            f"{one / two:.2f}x wall (goal: >= 1.7x); the tasks' CPU {cpu1:.1f} s on 1 worker, "
            f"{cpu2:.1f} s on 2 (busiest worker {busiest:.1f} s): {cpu1 / busiest:.2f}x by the "
            f"tasks' own work; 2 workers got {cpu2 / two:.2f} cores, 1 got {cpu1 / one:.2f}; "
            f"this machine's own 1 -> 2 process speed-up {machine_before:.2f}x before, "
            f"{machine_after:.2f}x after"
        )
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

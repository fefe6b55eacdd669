"""``twin-cds population build``: the whole panel's twins on Dask, to Parquet.

Two stages, both as Dask tasks (``dask.distributed``: a ``LocalCluster`` sized to this
machine by default, or an existing cluster's scheduler):

1. split: every input NDJSON file is cut into byte ranges; each task routes its lines
   to the partition of their patient (``split``). Memory per task is bounded by the
   range, never by the population.
2. build: each partition's patients become twins and rows by the hooks' own code
   (``rows``); the task writes ``table/part-NNNNN.parquet`` itself (atomically;
   ``table/`` holds only Parquet, one dataset for any Parquet tool) and a sidecar in
   ``work/done/`` with its counts and an input digest.

A rerun finishes only what is missing: the split is reused when the inputs (names,
sizes, modification times) are unchanged, and a partition whose sidecar names the
same input digest (its files, the as-of date, the KFRE calibration and the models'
sha256) is not rebuilt. A cluster that disappears mid-run, or a partition that fails,
leaves the finished partitions in place; the run is recorded as ``interrupted`` or
``incomplete`` with what was done, and the same command finishes the rest.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import resource
import shutil
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final

import pyarrow.parquet as pq

from cds_service.errors import PopulationError
from cds_service.population.rows import build_partition_rows, worker_registry
from cds_service.population.split import (
    CHUNK_BYTES,
    SplitStats,
    chunks,
    input_files,
    split_chunk,
)

#: Target input bytes per partition: a build task holds one partition's resources, parsed
#: (~5x their NDJSON bytes), so this bounds a worker's memory whatever the population's
#: size. 4 MB (~1,300 patients of bench/population.py) keeps the peak within ~10% from
#: 1k patients up; 16 MB cost a worker ~60 MB more at 10k patients than at 1k.
PARTITION_BYTES: Final = 4 * 1024 * 1024
SPLIT_FORMAT: Final = 2


class PopulationInputError(PopulationError):
    """Bad input for a build (no NDJSON, an --out of another as-of date), named."""


@dataclass(frozen=True, slots=True)
class BuildConfig:
    inputs: tuple[Path, ...]
    out: Path
    as_of: date
    scheduler: str | None = None
    workers: int | None = None
    kfre_model: str = "kfre"
    model_dir: str | None = None
    partition_bytes: int = PARTITION_BYTES
    chunk_bytes: int = CHUNK_BYTES
    progress: bool = True
    source: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class BuildResult:
    status: str
    record: dict[str, Any]
    audit_seq: int | None = None


def _file_fingerprint(files: list[Path]) -> list[dict[str, Any]]:
    out = []
    for p in files:
        st = p.stat()
        out.append({"path": str(p), "bytes": st.st_size, "mtimeNs": st.st_mtime_ns})
    return out


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))
    os.replace(tmp, path)


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux (bytes on macOS; this is a Linux service).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def split_task(chunk: Any, parts_dir: str, partitions: int) -> SplitStats:
    """Dask task: one byte range to partition files."""
    return split_chunk(chunk, parts_dir, partitions)


def build_task(
    partition: int,
    part_dir: str,
    shared_dir: str,
    table_dir: str,
    done_dir: str,
    as_of_iso: str,
    kfre_model: str,
    model_dir: str | None,
    digest: str,
) -> dict[str, Any]:
    """Dask task: one partition to its Parquet file and sidecar; returns the sidecar."""
    started, cpu_started = time.perf_counter(), time.process_time()
    table, stats = build_partition_rows(
        Path(part_dir), Path(shared_dir), date.fromisoformat(as_of_iso), kfre_model, model_dir
    )
    target = Path(table_dir) / f"part-{partition:05d}.parquet"
    tmp = target.with_name(f".{target.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, target)
    sidecar = {
        "partition": partition,
        "digest": digest,
        "stats": stats.to_json(),
        "seconds": time.perf_counter() - started,
        # CPU time of this task alone: the cost measure a shared machine does not inflate.
        "cpuSeconds": time.process_time() - cpu_started,
        "workerPid": os.getpid(),
        "workerPeakRssMb": _peak_rss_mb(),
    }
    _write_json(Path(done_dir) / f"part-{partition:05d}.json", sidecar)
    return sidecar


@contextmanager
def dask_client(scheduler: str | None, workers: int | None) -> Iterator[Any]:
    """A client on the given scheduler, or on a LocalCluster of this machine's cores."""
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler, timeout="30s") as client:  # type: ignore[no-untyped-call]
            yield client
        return
    n = workers or os.cpu_count() or 1
    # One thread per worker process: twins and models are Python and hold the GIL.
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            # The scheduler's HTTP server binds 8787 even without a dashboard; a second
            # run on the machine would find it taken. Any free port on the loopback.
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        yield client


def _cluster_lost_errors() -> tuple[type[BaseException], ...]:
    from distributed.client import FutureCancelledError
    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    return (CommClosedError, KilledWorker, FutureCancelledError, OSError, TimeoutError)


class Progress:
    """patients done / total, rate and ETA on one stderr line."""

    def __init__(self, total: int, enabled: bool, stream: Any = None) -> None:
        self.total = total
        self.done = 0
        self.enabled = enabled
        self.started = time.perf_counter()
        self.stream = stream or sys.stderr

    def advance(self, patients: int) -> None:
        self.done += patients
        if not self.enabled:
            return
        elapsed = max(1e-9, time.perf_counter() - self.started)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else math.inf
        eta = f"{left:.0f} s" if math.isfinite(left) else "?"
        pct = 100.0 * self.done / self.total if self.total else 100.0
        bar = "#" * int(pct / 5)
        self.stream.write(
            f"\rpatients {self.done}/{self.total} [{bar:<20}] {pct:5.1f}% "
            f"{rate:,.0f}/s ETA {eta}   "
        )
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def _models_json(model_dir: str | None, kfre_model: str) -> list[dict[str, str]]:
    registry = worker_registry(model_dir)
    ids = ("prevent", "prevent_30y", "pce", kfre_model)
    return [
        {"id": m.card.id, "version": m.card.version, "sha256": m.sha256}
        for m in (registry.get(i) for i in ids)
    ]


def _split(client: Any, cfg: BuildConfig, work: Path, files: list[Path]) -> dict[str, Any]:
    """Stage 1, or its earlier result when the inputs are unchanged."""
    fingerprint = _file_fingerprint(files)
    total_bytes = sum(f["bytes"] for f in fingerprint)
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    partitions = max(2 * n_workers, math.ceil(total_bytes / cfg.partition_bytes))
    key = {"format": SPLIT_FORMAT, "inputs": fingerprint, "chunkBytes": cfg.chunk_bytes}
    marker = work / "split.json"
    if marker.is_file():
        done = json.loads(marker.read_text())
        if done.get("key") == key:
            done["reused"] = True
            return dict(done)
    parts = work / "parts"
    shutil.rmtree(parts, ignore_errors=True)
    parts.mkdir(parents=True)
    started = time.perf_counter()
    futures = client.map(
        split_task,
        chunks(files, cfg.chunk_bytes),
        parts_dir=str(parts),
        partitions=partitions,
        pure=False,
    )
    stats = SplitStats()
    for s in client.gather(futures):
        stats.add(s)
    result = {
        "key": key,
        "partitions": partitions,
        "bytes": total_bytes,
        "stats": stats.to_json(),
        "patientsByPartition": {str(k): v for k, v in sorted(stats.patients_by_partition.items())},
        "written": dict(sorted(stats.written.items())),
        "seconds": time.perf_counter() - started,
    }
    _write_json(marker, result)
    result["reused"] = False
    return result


def _partition_digest(
    partition: int, written: dict[str, str], cfg: BuildConfig, models: list[dict[str, str]]
) -> str:
    """What a partition's rows depend on: its files' content, the date, the models."""
    prefix = f"p{partition:05d}/"
    files = sorted((k, v) for k, v in written.items() if k.startswith(prefix))
    shared_files = sorted((k, v) for k, v in written.items() if k.startswith("shared/"))
    return _digest(
        {
            "files": files,
            "shared": shared_files,
            "asOf": cfg.as_of.isoformat(),
            "kfre": cfg.kfre_model,
            "models": models,
        }
    )


def _sum_stats(sidecars: list[dict[str, Any]]) -> dict[str, Any]:
    counters: dict[str, Counter[str]] = {
        k: Counter() for k in ("unknownPatientResources", "careGaps", "modelStatus")
    }
    totals: Counter[str] = Counter()
    named: dict[str, list[str]] = {"unknownPatientsNamed": [], "ingestFailuresNamed": []}
    for s in sidecars:
        st = s["stats"]
        for k in ("patients", "rows", "unknownPatients", "ingestFailures", "duplicatesReplaced"):
            totals[k] += int(st.get(k, 0))
        for k, c in counters.items():
            c.update(st.get(k, {}))
        for k, lst in named.items():
            lst.extend(st.get(k, [])[: max(0, 20 - len(lst))])
    return {
        **dict(totals),
        **{k: dict(sorted(c.items())) for k, c in counters.items()},
        **named,
    }


def run_build(
    cfg: BuildConfig,
    *,
    record: Callable[[dict[str, Any]], int | None] | None = None,
    client: Any = None,
) -> BuildResult:
    """Split, build every partition not already built, and record the run."""
    started = time.perf_counter()
    files = [f for d in cfg.inputs for f in input_files(d)]
    if not files:
        raise PopulationInputError(
            "no NDJSON files (*.ndjson) in " + ", ".join(str(d) for d in cfg.inputs)
        )
    cfg.out.mkdir(parents=True, exist_ok=True)
    work, table_dir = cfg.out / "work", cfg.out / "table"
    (work / "done").mkdir(parents=True, exist_ok=True)
    table_dir.mkdir(exist_ok=True)
    run_file = cfg.out / "run.json"
    if run_file.is_file():
        previous = json.loads(run_file.read_text())
        if previous.get("asOf") not in (None, cfg.as_of.isoformat()):
            raise PopulationInputError(
                f"{cfg.out} holds a population as of {previous['asOf']}; "
                f"use another --out for {cfg.as_of.isoformat()}"
            )
    models = _models_json(cfg.model_dir, cfg.kfre_model)
    body: dict[str, Any] = {
        "status": "running",
        "asOf": cfg.as_of.isoformat(),
        "source": cfg.source,
        "inputs": _file_fingerprint(files),
        "models": models,
        "kfreCalibration": cfg.kfre_model,
        "out": str(cfg.out),
        "errors": [],
    }
    with _maybe_client(client, cfg) as dc:
        info = dc.scheduler_info()
        body["cluster"] = {
            "scheduler": cfg.scheduler or "local",
            "workers": len(info.get("workers", {})),
        }
        split = _split(dc, cfg, work, files)
        body["split"] = {
            k: v for k, v in split.items() if k not in ("key", "patientsByPartition", "written")
        }
        partitions = int(split["partitions"])
        parts = work / "parts"
        todo: list[tuple[int, str]] = []
        sidecars: list[dict[str, Any]] = []
        reused = 0
        for k in range(partitions):
            digest = _partition_digest(k, split["written"], cfg, models)
            sidecar_path = work / "done" / f"part-{k:05d}.json"
            if sidecar_path.is_file() and (table_dir / f"part-{k:05d}.parquet").is_file():
                sidecar = json.loads(sidecar_path.read_text())
                if sidecar.get("digest") == digest:
                    sidecars.append(sidecar)
                    reused += 1
                    continue
            todo.append((k, digest))
        # A partition whose patients are gone (a smaller re-split) must not linger.
        for stale in table_dir.glob("part-*.parquet"):
            if int(stale.stem.split("-")[1]) >= partitions:
                stale.unlink()
                (work / "done" / f"{stale.stem}.json").unlink(missing_ok=True)
        by_partition = {int(k): int(v) for k, v in split["patientsByPartition"].items()}
        progress = Progress(sum(by_partition.get(k, 0) for k, _ in todo), cfg.progress)
        build_started = time.perf_counter()
        status = _build(dc, cfg, todo, parts, table_dir, by_partition, progress, sidecars, body)
        progress.finish()
    if status != "complete":
        # A task can finish (its table file and sidecar written) after the client lost
        # the cluster and before its result came back: count it as built, as the rerun will.
        received = {int(s["partition"]) for s in sidecars}
        for k, digest in todo:
            sidecar_path = work / "done" / f"part-{k:05d}.json"
            if k in received or not (table_dir / f"part-{k:05d}.parquet").is_file():
                continue
            if sidecar_path.is_file():
                sidecar = json.loads(sidecar_path.read_text())
                if sidecar.get("digest") == digest:
                    sidecars.append(sidecar)
    totals = _sum_stats(sidecars)
    body.update(
        status=status,
        partitions={
            "total": partitions,
            "reused": reused,
            "built": len(sidecars) - reused,
            "missing": partitions - len(sidecars),
        },
        counts=totals,
        timing={
            "splitSeconds": split.get("seconds", 0.0) if not split["reused"] else 0.0,
            "buildSeconds": time.perf_counter() - build_started,
            "totalSeconds": time.perf_counter() - started,
        },
        workerPeakRssMb=max((s.get("workerPeakRssMb", 0.0) for s in sidecars), default=0.0),
    )
    seq = record(body) if record is not None else None
    _write_json(run_file, {**body, "auditSeq": seq})
    return BuildResult(status, body, seq)


@contextmanager
def _maybe_client(client: Any, cfg: BuildConfig) -> Iterator[Any]:
    if client is not None:
        yield client
        return
    with dask_client(cfg.scheduler, cfg.workers) as c:
        yield c


def _build(
    client: Any,
    cfg: BuildConfig,
    todo: list[tuple[int, str]],
    parts: Path,
    table_dir: Path,
    by_partition: dict[int, int],
    progress: Progress,
    sidecars: list[dict[str, Any]],
    body: dict[str, Any],
) -> str:
    """Run the build tasks; 'complete', 'incomplete' (a partition failed) or 'interrupted'."""
    from distributed import as_completed

    lost = _cluster_lost_errors()
    run_id = uuid.uuid4().hex[:12]
    futures = {
        client.submit(
            build_task,
            k,
            str(parts / f"p{k:05d}"),
            str(parts / "shared"),
            str(table_dir),
            str(parts.parent / "done"),
            cfg.as_of.isoformat(),
            cfg.kfre_model,
            cfg.model_dir,
            digest,
            pure=False,
            # A fresh key per run: the scheduler may still hold an earlier run's failure.
            key=f"population-build-{k:05d}-{run_id}",
        ): k
        for k, digest in todo
    }
    failed = 0
    try:
        for future in as_completed(futures):  # type: ignore[no-untyped-call]
            k = futures[future]
            if future.status == "error":
                exc = future.exception()
                if isinstance(exc, lost):
                    raise exc
                failed += 1
                body["errors"].append(f"partition {k}: {type(exc).__name__}: {exc}"[:500])
                continue
            sidecars.append(future.result())
            progress.advance(by_partition.get(k, 0))
    except lost as exc:
        body["errors"].append(
            f"cluster lost: {type(exc).__name__}: {exc}"[:500]
            + "; finished partitions are kept, rerun the same command to finish the rest"
        )
        return "interrupted"
    return "incomplete" if failed else "complete"

"""NDJSON to patient partitions: streamed, one byte range of one file per task.

A population does not fit in one process's memory, so it is never held in one. Each
input file (one resource type per file, as ``$export`` writes them) is cut into byte
ranges; a task reads its range line by line and appends each resource to the
partition of the patient it is about (``crc32(patient id) % partitions``, stable across
processes, unlike Python's salted ``hash``). Every resource of one patient thus lands
in one partition, which a later task turns into twins. Nothing is dropped silently:
a line that is not a FHIR resource is counted and named by file and byte offset;
a resource about no patient is counted by type (``Medication`` is kept aside for the
prescriptions that reference it).
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

#: Byte range one split task reads (bounded memory: a task holds its range's lines until
#: it writes them, ~2x the range). 8 MB: a worker's peak stays below its build task's,
#: and a large file is several tasks, so the split runs on every worker.
CHUNK_BYTES: Final = 8 * 1024 * 1024
#: Resource types without a patient that ingest needs: prescriptions reference them.
SHARED_TYPES: Final = frozenset({"Medication"})
#: At most this many malformed lines are named (all are counted).
MAX_NAMED: Final = 20
#: Where a resource names its patient (FHIR R4 compartment definitions, Patient).
_PATIENT_FIELDS: Final = ("subject", "patient", "beneficiary")


@dataclass(frozen=True, slots=True)
class Chunk:
    source_index: int
    path: str
    start: int
    end: int
    chunk_index: int


@dataclass(slots=True)
class SplitStats:
    """What one split task saw (summed over tasks for the run record)."""

    lines: int = 0
    resources: Counter[str] = field(default_factory=Counter)
    patients_by_partition: Counter[int] = field(default_factory=Counter)
    malformed: int = 0
    malformed_named: list[str] = field(default_factory=list)
    no_patient: Counter[str] = field(default_factory=Counter)
    #: "pNNNNN/file.ndjson" (or "shared/...") -> sha256 of the file written.
    written: dict[str, str] = field(default_factory=dict)

    def add(self, other: SplitStats) -> None:
        self.lines += other.lines
        self.resources.update(other.resources)
        self.patients_by_partition.update(other.patients_by_partition)
        self.malformed += other.malformed
        room = MAX_NAMED - len(self.malformed_named)
        self.malformed_named.extend(other.malformed_named[: max(0, room)])
        self.no_patient.update(other.no_patient)
        self.written.update(other.written)

    def to_json(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "resources": dict(sorted(self.resources.items())),
            "patients": sum(self.patients_by_partition.values()),
            "malformedLines": self.malformed,
            "malformedNamed": list(self.malformed_named),
            "notAboutAPatient": dict(sorted(self.no_patient.items())),
        }


def partition_of(patient_id: str, partitions: int) -> int:
    return zlib.crc32(patient_id.encode()) % partitions


def input_files(directory: Path) -> list[Path]:
    """The NDJSON files of an export directory, in a stable order."""
    files = sorted(
        p for p in directory.rglob("*") if p.is_file() and p.suffix in (".ndjson", ".jsonl")
    )
    return files


def chunks(files: list[Path], chunk_bytes: int = CHUNK_BYTES) -> list[Chunk]:
    """Byte ranges covering every file; a line belongs to the range it starts in."""
    out: list[Chunk] = []
    for source_index, path in enumerate(files):
        size = path.stat().st_size
        start, index = 0, 0
        while start < size or (size == 0 and index == 0):
            end = min(size, start + chunk_bytes)
            out.append(Chunk(source_index, str(path), start, end, index))
            start, index = end, index + 1
            if size == 0:
                break
    return out


def patient_id_of(resource: dict[str, Any]) -> str | None:
    """The id of the Patient a resource is about (itself for a Patient), or None."""
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) and rid else None
    for name in _PATIENT_FIELDS:
        ref = resource.get(name)
        if isinstance(ref, dict):
            text = ref.get("reference")
            if isinstance(text, str) and "Patient/" in text:
                tail = text.rsplit("Patient/", 1)[1].split("/")[0]
                return tail or None
    return None


def _lines(path: str, start: int, end: int) -> Any:
    """(offset, line) for every line starting in [start, end)."""
    with open(path, "rb") as f:
        if start > 0:
            f.seek(start - 1)
            if f.read(1) != b"\n":
                f.readline()  # the line in progress belongs to the previous range
        pos = f.tell()
        while pos < end:
            line = f.readline()
            if not line:
                break
            yield pos, line
            pos += len(line)


def split_chunk(chunk: Chunk, parts_dir: str, partitions: int) -> SplitStats:
    """Route every line of one byte range to its patient's partition file."""
    stats = SplitStats()
    buffers: defaultdict[str, list[bytes]] = defaultdict(list)
    name = Path(chunk.path).name
    for offset, raw in _lines(chunk.path, chunk.start, chunk.end):
        line = raw.strip()
        if not line:
            continue
        stats.lines += 1
        try:
            resource = orjson.loads(line)
        except orjson.JSONDecodeError:
            resource = None
        rtype = resource.get("resourceType") if isinstance(resource, dict) else None
        if not isinstance(rtype, str) or not rtype:
            stats.malformed += 1
            if len(stats.malformed_named) < MAX_NAMED:
                why = "not JSON" if resource is None else "not a FHIR resource (no resourceType)"
                stats.malformed_named.append(f"{name} at byte {offset}: {why}")
            continue
        assert isinstance(resource, dict)  # noqa: S101 - rtype was read from it
        stats.resources[rtype] += 1
        pid = patient_id_of(resource)
        if pid is None:
            if rtype in SHARED_TYPES:
                buffers["shared"].append(line)
            else:
                stats.no_patient[rtype] += 1
            continue
        k = partition_of(pid, partitions)
        if rtype == "Patient":
            stats.patients_by_partition[k] += 1
        buffers[f"p{k:05d}"].append(line)
    out_name = f"{chunk.source_index:05d}-{chunk.chunk_index:05d}.ndjson"
    for part, lines in buffers.items():
        target = Path(parts_dir) / part
        target.mkdir(parents=True, exist_ok=True)
        tmp = target / f".{out_name}.tmp"
        data = b"\n".join(lines) + b"\n"
        with tmp.open("wb") as f:
            f.write(data)
        os.replace(tmp, target / out_name)
        stats.written[f"{part}/{out_name}"] = hashlib.sha256(data).hexdigest()
    return stats

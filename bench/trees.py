"""The same benchmarks on two checkouts of the project, in one run: is the new tree slower?

A layout change (modules moved, storage rewritten, one FHIR reader) must not cost speed.
This runs ``bench/hook_latency.py`` and ``bench/load.py`` (twin-cds only, no peer) in the
tree given as ``--before`` and in this tree, each with its own virtual environment, one
after the other and then again in the opposite order, and prints after/before for each
figure (the mean of the two rounds, so a machine that slows down during the run does not
favour the tree measured first).

    python bench/trees.py --before ../old-checkout [--rounds 2] [--quick]

Each tree needs ``.venv`` (``scripts/test.sh`` makes it). Results: bench/results/trees.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _run(tree: Path, script: str, args: list[str]) -> dict[str, Any]:
    python = tree / ".venv" / "bin" / "python"
    if not python.exists():
        sys.exit(f"{tree}: no .venv (run scripts/test.sh there once)")
    print(f"  {tree.name}: {script} {' '.join(args)}", flush=True)
    subprocess.run(  # noqa: S603 - the two trees the caller named, their own interpreters
        [str(python), str(tree / "bench" / script), *args],
        cwd=tree,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    name = Path(script).stem + ".json"
    result: dict[str, Any] = json.loads((tree / "bench" / "results" / name).read_text())
    return result


def _figures(latency: dict[str, Any], load: dict[str, Any]) -> dict[str, float]:
    """The figures compared: server time per call (lower is better) and throughput."""
    out: dict[str, float] = {}
    for group in latency["new_patients"]:
        out[f"new patient p50 ms, {group['group']}"] = group["server_p50_ms"]
    for row in latency["repeated_bodies"]:
        out[f"seen body p50 ms, {row['body']}"] = row["server_p50_ms"]
        out[f"cold body p50 ms, {row['body']}"] = row["cold_p50_ms"]
    for r in load["results"]:
        if r["service"].startswith("twin-cds"):
            out[f"load {r['scenario']} req/s"] = r["throughput_rps"]
            out[f"load {r['scenario']} p99 ms"] = r["p99_ms"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="the older checkout")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    parser.add_argument(
        "--client",
        choices=["wrk", "httpx"],
        default="httpx",
        help="load.py's load generator in both trees (the older load.py drives the cold "
        "regime with httpx only, so httpx is the like-for-like default)",
    )
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": REPO}
    latency_args = ["--iterations", "40", "--new-patients", "20"] if args.quick else []
    load_args = ["--no-peer", "--no-fetch", "--client", args.client] + (
        ["--requests", "300", "--warmup", "50"] if args.quick else []
    )
    seen: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for round_no in range(args.rounds):
        order = ["before", "after"] if round_no % 2 == 0 else ["after", "before"]
        print(f"round {round_no + 1}: {' then '.join(order)}", flush=True)
        for label in order:
            latency = _run(trees[label], "hook_latency.py", latency_args)
            load = _run(trees[label], "load.py", load_args)
            seen[label].append(_figures(latency, load))
    keys = [k for k in seen["after"][0] if all(k in r for r in seen["before"] + seen["after"])]
    rows = []
    print(f"\n{'figure':<58} {'before':>9} {'after':>9} {'after/before':>12}")
    for key in keys:
        before = statistics.mean(r[key] for r in seen["before"])
        after = statistics.mean(r[key] for r in seen["after"])
        ratio = after / before if before else float("nan")
        rows.append({"figure": key, "before": before, "after": after, "ratio": ratio})
        print(f"{key:<58} {before:>9.2f} {after:>9.2f} {ratio:>12.2f}")
    print("(times: lower is better, ratio < 1 means the new tree is faster; req/s: higher)")
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "trees.json").write_text(
        json.dumps({"before": str(trees["before"]), "rounds": args.rounds, "rows": rows}, indent=2)
    )


if __name__ == "__main__":
    main()

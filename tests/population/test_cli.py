"""``twin-cds population build|report|trial`` as a user runs them: a local Dask cluster of
worker processes, the run record on the audit trail, a static report and a trial."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.population.test_build import PIDS, _write
from tests.support.cli import twin_cds

pytestmark = pytest.mark.integration


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return twin_cds("population", *args, env=env, timeout=300)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], str, str]:
    """One build on a one-worker local cluster (worker processes), as a user runs it."""
    tmp = tmp_path_factory.mktemp("population-cli")
    env = {**os.environ, "TWIN_CDS_DATA_DIR": str(tmp / "data")}
    src = _write(tmp / "in")
    out = tmp / "pop"
    built = _run(
        [
            "build",
            "--ndjson",
            str(src),
            "--out",
            str(out),
            "--workers",
            "1",
            "--as-of",
            "2026-06-01",
        ],
        env,
    )
    assert built.returncode == 0, built.stderr
    return out, env, built.stdout, built.stderr


def test_build_prints_the_run_and_a_progress_line(
    built: tuple[Path, dict[str, str], str, str],
) -> None:
    """The run record goes to stdout; patients done / total, rate and ETA to stderr."""
    _, _, stdout, stderr = built
    record = json.loads(stdout)
    assert record["counts"]["rows"] == len(PIDS) and record["cluster"]["workers"] == 1
    assert f"patients {len(PIDS)}/{len(PIDS)}" in stderr and "ETA" in stderr


def test_the_run_record_is_exported_from_the_audit_trail(
    built: tuple[Path, dict[str, str], str, str],
) -> None:
    """`twin-cds audit export --kind population-run` finds the build's record."""
    _, env, _, _ = built
    audit = subprocess.run(
        [
            sys.executable,
            "-m",
            "twin_cds.cli",
            "audit",
            "export",
            "--kind",
            "population-run",
            "--format",
            "records",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    (line,) = [ln for ln in audit.stdout.splitlines() if ln.strip()]
    assert json.loads(line)["body"]["counts"]["rows"] == len(PIDS)


def test_report_is_a_static_page(
    built: tuple[Path, dict[str, str], str, str], tmp_path: Path
) -> None:
    """The report names the risk distribution and care gaps, with no script."""
    out, env, _, _ = built
    report = _run(["report", "--in", str(out), "--out", str(tmp_path / "r.html")], env)
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "r.html").read_text()
    assert "Risk distribution" in page and "Care gaps by kind" in page and "<script" not in page


def test_trial_on_the_table(built: tuple[Path, dict[str, str], str, str]) -> None:
    """Every patient has SBP 150 and a risk on the card: all treated, RR 0.8^2 = 0.64."""
    out, env, _, _ = built
    trial = _run(
        [
            "trial",
            "--in",
            str(out),
            "--intervention",
            "sbp-130",
            "--format",
            "json",
            "--draws",
            "200",
        ],
        env,
    )
    assert trial.returncode == 0, trial.stderr
    result = json.loads(trial.stdout)
    assert result["treated"] == len(PIDS)
    assert result["eventsWith"] == pytest.approx(0.64 * result["eventsWithout"])


def test_trial_refuses_an_unsafe_eligibility_expression(
    built: tuple[Path, dict[str, str], str, str],
) -> None:
    """--eligible with a function call is bad input (exit 2), never evaluated."""
    out, env, _, _ = built
    result = _run(
        [
            "trial",
            "--in",
            str(out),
            "--intervention",
            "statin-high",
            "--eligible",
            "__import__('os')",
        ],
        env,
    )
    assert result.returncode == 2 and "Call not allowed" in result.stderr

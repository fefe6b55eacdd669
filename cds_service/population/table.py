"""Reading the population table back: for the report and the in-silico trial."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cds_service.errors import PopulationError
from twin_engine.population import TrialPatient, TrialResult, evaluate, run_trial
from twin_engine.population.trial import Intervention

#: The trial's baseline risk: PREVENT 10-year ASCVD, the number the card's treatment
#: response starts from (cds_service.services.cardio_renal.what_ifs).
RISK_COLUMN = "prevent_risk_10y_ascvd"


class TableError(PopulationError):
    """No table where one was expected, or a build that did not finish."""


def read_table(directory: Path) -> pa.Table:
    """Every partition of a finished build; refuses an unfinished one (it would mislead)."""
    run_file = directory / "run.json"
    if not run_file.is_file():
        raise TableError(f"{directory} holds no population build (no run.json)")
    run = json.loads(run_file.read_text())
    if run.get("status") != "complete":
        raise TableError(
            f"the build in {directory} is {run.get('status')}: "
            f"{run.get('partitions', {}).get('missing', '?')} partitions missing; rerun "
            "`twin-cds population build` with the same arguments to finish it"
        )
    files = sorted((directory / "table").glob("part-*.parquet"))
    if not files:
        raise TableError(f"{directory}/table holds no Parquet files")
    return pa.concat_tables([pq.read_table(f) for f in files])


def run_record(directory: Path) -> dict[str, Any]:
    return dict(json.loads((directory / "run.json").read_text()))


def _columns(table: pa.Table) -> dict[str, np.ndarray]:
    """Numeric and boolean columns as numpy (nulls: NaN for numbers, False for flags)."""
    out: dict[str, np.ndarray] = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_floating(col.type) or pa.types.is_integer(col.type):
            out[name] = col.to_numpy(zero_copy_only=False).astype(np.float64)
        elif pa.types.is_boolean(col.type):
            out[name] = np.asarray(col.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    return out


def trial_on_table(
    table: pa.Table,
    intervention: Intervention,
    *,
    eligible: str | None,
    draws: int,
    seed: int,
) -> tuple[TrialResult, str]:
    """The trial on the patients the expression selects among those whose card shows a risk."""
    n = table.num_rows
    cols = _columns(table)
    # Only patients whose card shows the number (computed, labs current): a risk the
    # card would not show (it orders the missing lab instead) is not a basis for a policy.
    mask = cols["prevent_shown"] & ~np.isnan(cols[RISK_COLUMN])
    described = "PREVENT 10-year ASCVD risk shown on the patient's card"
    if eligible:
        mask &= evaluate(eligible, cols, n)
        described += f" and ({eligible})"
    idx = np.flatnonzero(mask)
    risk, ldl, sbp, statin = (
        cols[RISK_COLUMN],
        cols["ldl_mg_dl"],
        cols["sbp_mm_hg"],
        cols["on_statin"],
    )
    patients = [
        TrialPatient(
            risk_10y=float(risk[i]),
            ldl_mg_dl=None if np.isnan(ldl[i]) else float(ldl[i]),
            sbp_mm_hg=None if np.isnan(sbp[i]) else float(sbp[i]),
            on_statin=bool(statin[i]),
        )
        for i in idx
    ]
    return run_trial(patients, intervention, draws=draws, seed=seed), described


def trial_table_text(data: dict[str, Any]) -> str:
    """The trial's result as a plain-text table (the JSON has the same numbers)."""

    def iv(key: str, fmt: str) -> str:
        pair = data["interval95"][key]
        return "" if pair is None else f"  (95% {fmt.format(pair[0])} to {fmt.format(pair[1])})"

    nnt = data["numberNeededToTreat"]
    rows = [
        ("intervention", data["intervention"]),
        ("effect", data["effectSource"]),
        ("population", str(data["population"])),
        ("eligible", f"{data['eligible']}  ({data['eligibleBy']})"),
        ("treated", str(data["treated"])),
        *((f"  not treated: {k}", str(v)) for k, v in data["excluded"].items()),
        ("10-y events without", f"{data['eventsWithout']:.1f}"),
        ("10-y events with", f"{data['eventsWith']:.1f}"),
        ("events averted", f"{data['eventsAverted']:.1f}" + iv("eventsAverted", "{:.1f}")),
        (
            "absolute risk reduction",
            f"{100 * data['absoluteRiskReduction']:.2f} points"
            + iv("absoluteRiskReduction", "{:.2%}"),
        ),
        (
            "number needed to treat (10 y)",
            ("n/a" if nnt is None else f"{nnt:.1f}") + iv("numberNeededToTreat", "{:.1f}"),
        ),
        ("uncertainty", f"{data['draws']} draws of the published effect (seed {data['seed']})"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows) + "\n" + "\n".join(data["notes"])

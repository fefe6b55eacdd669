"""``twin-cds population report``: one static HTML page (no script, inline SVG plots).

Risk distribution (PREVENT 10-year CVD, patients whose card shows the number, in the
risk categories of the 2018 AHA/ACC guideline: < 5% low, 5-7.5% borderline, 7.5-20%
intermediate, >= 20% high; Grundy 2019 section 4.4.1), care gaps by kind, and data
quality (model status, stale inputs, problems, and the run's own counts of bad input).
"""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa

from cds_service.population.table import run_record
from twin_engine.population import GAP_KINDS

#: 2018 AHA/ACC risk categories for 10-year ASCVD risk (Grundy 2019, section 4.4.1).
RISK_BANDS: Final = (
    (0.0, 0.05, "low < 5%"),
    (0.05, 0.075, "borderline 5-7.5%"),
    (0.075, 0.20, "intermediate 7.5-20%"),
    (0.20, 1.01, "high >= 20%"),
)
BAR_WIDTH_PX: Final = 420

CSS: Final = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#1a1a1a}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse}
td,th{padding:.2rem .6rem;text-align:left;border-bottom:1px solid #ddd}
td.n{text-align:right;font-variant-numeric:tabular-nums}.note{color:#555;font-size:.9rem}
"""


def _bars(items: list[tuple[str, int]], total: int, colour: str = "#2b6cb0") -> str:
    """A horizontal bar chart as inline SVG with a text label per bar."""
    height = 24 * len(items) + 4
    top = max([c for _, c in items] + [1])
    parts = [
        f'<svg role="img" width="{BAR_WIDTH_PX + 260}" height="{height}" aria-label="bar chart">'
    ]
    for i, (label, count) in enumerate(items):
        y = 4 + 24 * i
        w = int(BAR_WIDTH_PX * count / top)
        pct = f" ({100 * count / total:.1f}%)" if total else ""
        parts.append(
            f'<text x="0" y="{y + 15}" font-size="13">{html.escape(label)}</text>'
            f'<rect x="200" y="{y}" width="{w}" height="18" fill="{colour}"/>'
            f'<text x="{205 + w}" y="{y + 15}" font-size="13">{count}{pct}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(
        f'<tr><td>{html.escape(str(k))}</td><td class="n">{html.escape(str(v))}</td></tr>'
        for k, v in rows
    )
    return f"<table>{body}</table>"


def write_report(table: pa.Table, directory: Path, out: Path) -> None:
    run = run_record(directory)
    n = table.num_rows
    shown = np.asarray(
        table.column("prevent_shown").fill_null(False).to_numpy(zero_copy_only=False)
    )
    risk = table.column("prevent_risk_10y_cvd").to_numpy(zero_copy_only=False).astype(float)
    risk = risk[shown & ~np.isnan(risk)]
    bands = [(label, int(((risk >= lo) & (risk < hi)).sum())) for lo, hi, label in RISK_BANDS]
    gaps = Counter(g for lst in table.column("care_gaps").to_pylist() for g in lst or [])
    stale = Counter(s for lst in table.column("stale_inputs").to_pylist() for s in lst or [])
    problems = sum(1 for lst in table.column("data_problems").to_pylist() if lst)
    status = {
        slot: Counter(table.column(f"{slot}_status").to_pylist())
        for slot in ("prevent", "pce", "kfre")
    }
    counts = run.get("counts", {})
    split = run.get("split", {}).get("stats", {})
    median = f"{100 * float(np.median(risk)):.1f}%" if risk.size else "n/a"
    sections = [
        f"<h1>Population twins as of {html.escape(str(run.get('asOf')))}</h1>",
        f"<p>{n} patients; {risk.size} with a PREVENT 10-year CVD risk on their card "
        f"(median {median}). Models: "
        + ", ".join(
            html.escape(f"{m['id']} {m['version']} ({m['sha256'][:12]})") for m in run["models"]
        )
        + ".</p>",
        "<h2>Risk distribution (PREVENT 10-year CVD)</h2>",
        _bars(bands, int(risk.size)),
        '<p class="note">Risk categories of the 2018 AHA/ACC cholesterol guideline '
        "(Grundy et al., Circulation 2019, section 4.4.1).</p>",
        "<h2>Care gaps by kind</h2>",
        _bars([(k, gaps.get(k, 0)) for k in GAP_KINDS], n, "#c05621"),
        '<p class="note">Flags for outreach, not orders: the record may not carry a '
        "documented reason (intolerance, shared decision).</p>",
        "<h2>Data quality</h2>",
        _table(
            [
                *((f"PREVENT {k}", v) for k, v in sorted(status["prevent"].items())),
                *((f"PCE {k}", v) for k, v in sorted(status["pce"].items())),
                *((f"KFRE {k}", v) for k, v in sorted(status["kfre"].items())),
                ("patients with a data problem", problems),
                *((f"stale input: {k}", v) for k, v in sorted(stale.items())),
            ]
        ),
        "<h2>Input</h2>",
        _table(
            [
                ("NDJSON lines read", split.get("lines", 0)),
                ("malformed lines (skipped, counted)", split.get("malformedLines", 0)),
                *(
                    (f"not about a patient: {k}", v)
                    for k, v in (split.get("notAboutAPatient") or {}).items()
                ),
                ("patients without a Patient resource", counts.get("unknownPatients", 0)),
                (
                    "their resources (skipped)",
                    sum((counts.get("unknownPatientResources") or {}).values()),
                ),
                ("patients whose data could not be read", counts.get("ingestFailures", 0)),
                ("resources replaced by a newer export", counts.get("duplicatesReplaced", 0)),
            ]
        ),
    ]
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>Population twins report</title>"
        f"<style>{CSS}</style></head><body>" + "\n".join(sections) + "</body></html>\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")

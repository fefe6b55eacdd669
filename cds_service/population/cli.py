"""``twin-cds population build|report|trial``: registered on the ``twin-cds`` parser.

Exit codes as the rest of the command: 2 for bad input (named), 1 for a failure (an
export the server refused or lost, a run that did not finish: rerun to finish it).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NoReturn

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


def _fail(code: int, message: str) -> NoReturn:
    print(f"twin-cds population: {message}", file=sys.stderr)
    raise SystemExit(code)


def _as_of(text: str | None) -> date:
    if text is None:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(text)
    except ValueError:
        _fail(EXIT_BAD_INPUT, f"--as-of {text!r} is not a date (YYYY-MM-DD)")


def _record_run(body: dict[str, Any]) -> int | None:
    """Append the run record to the audit trail the settings name."""
    from cds_service.audit.sql import open_audit_log
    from cds_service.settings import Settings

    audit = open_audit_log(Settings())
    try:
        return audit.record_population_run(body).seq
    finally:
        audit.close()


def _export(args: argparse.Namespace, out: Path) -> tuple[Path, dict[str, Any]]:
    """Run the Bulk Data export into OUT/export/<time>; return the directory and source."""
    from cds_service.errors import FhirServerNotAllowed
    from cds_service.pipeline.fhir_client import check_fhir_server
    from cds_service.population.bulk import (
        DEFAULT_SCOPE,
        BackendServicesAuth,
        BulkExportClient,
        BulkExportError,
    )
    from cds_service.settings import Settings

    settings = Settings()
    base = args.bulk_export.rstrip("/")
    try:
        check_fhir_server(
            base,
            settings.fhir_server_allowlist,
            allow_insecure_loopback=settings.allow_insecure_loopback_fhir,
        )
    except FhirServerNotAllowed as exc:
        _fail(EXIT_BAD_INPUT, f"{exc} (TWIN_CDS_FHIR_SERVER_ALLOWLIST)")
    auth = None
    if args.client_id or args.private_key:
        if not (args.client_id and args.private_key):
            _fail(EXIT_BAD_INPUT, "SMART Backend Services needs both --client-id and --private-key")
        try:
            auth = BackendServicesAuth.from_file(
                args.client_id,
                Path(args.private_key),
                args.alg,
                args.kid,
                args.scope or DEFAULT_SCOPE,
            )
        except (OSError, ValueError) as exc:
            _fail(EXIT_BAD_INPUT, f"--private-key {args.private_key}: {exc}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    directory = out / "export" / stamp
    client = BulkExportClient(base, auth=auth)
    try:
        result = client.export(
            directory, group=args.group, since=args.since, timeout_s=args.export_timeout
        )
    except BulkExportError as exc:
        _fail(EXIT_FAILURE, str(exc))
    finally:
        client.close()
    source = {"bulkExport": base, "group": args.group, "since": args.since, **result.to_json()}
    print(
        f"exported {sum(f.lines for f in result.files)} resources in {len(result.files)} files "
        f"({result.polls} status polls); transactionTime {result.transaction_time}",
        file=sys.stderr,
    )
    return directory, source


def cmd_build(args: argparse.Namespace) -> None:
    from cds_service.population.job import (
        PARTITION_BYTES,
        BuildConfig,
        PopulationInputError,
        run_build,
    )

    out = Path(args.out)
    inputs: list[Path]
    if args.ndjson:
        for flag, value in (("--group", args.group), ("--since", args.since)):
            if value:
                _fail(EXIT_BAD_INPUT, f"{flag} applies to --bulk-export, not --ndjson")
        directory = Path(args.ndjson)
        if not directory.is_dir():
            _fail(EXIT_BAD_INPUT, f"--ndjson {directory} is not a directory")
        inputs = [directory]
        source: dict[str, Any] = {"ndjson": str(directory)}
    else:
        out.mkdir(parents=True, exist_ok=True)
        directory, source = _export(args, out)
        # Earlier exports (an incremental --since run adds to them) are read first:
        # a resource's newer version, from a later export, replaces its older one.
        inputs = sorted(p for p in (out / "export").iterdir() if p.is_dir())
    config = BuildConfig(
        inputs=tuple(inputs),
        out=out,
        as_of=_as_of(args.as_of),
        scheduler=args.scheduler,
        workers=args.workers,
        kfre_model=args.kfre_model,
        progress=not args.quiet,
        source=source,
        partition_bytes=(
            max(1, int(args.partition_mb * 1024 * 1024)) if args.partition_mb else PARTITION_BYTES
        ),
    )
    try:
        result = run_build(config, record=None if args.no_audit else _record_run)
    except PopulationInputError as exc:
        _fail(EXIT_BAD_INPUT, str(exc))
    print(json.dumps(result.record, indent=2, default=str))
    if result.status != "complete":
        _fail(
            EXIT_FAILURE,
            f"run {result.status}: {result.record['partitions']['missing']} partitions missing; "
            "rerun the same command to finish them",
        )


def cmd_report(args: argparse.Namespace) -> None:
    from cds_service.population.report import write_report
    from cds_service.population.table import TableError, read_table

    try:
        table = read_table(Path(args.input))
    except TableError as exc:
        _fail(EXIT_BAD_INPUT, str(exc))
    write_report(table, Path(args.input), Path(args.out))
    print(json.dumps({"report": args.out, "patients": table.num_rows}))


def cmd_trial(args: argparse.Namespace) -> None:
    from cds_service.population.table import TableError, read_table, trial_on_table
    from twin_engine.population import EligibilityError, TrialError

    try:
        table = read_table(Path(args.input))
        result, eligible_by = trial_on_table(
            table, args.intervention, eligible=args.eligible, draws=args.draws, seed=args.seed
        )
    except (TableError, EligibilityError, TrialError) as exc:
        _fail(EXIT_BAD_INPUT, str(exc))
    data = {**result.to_json(), "eligibleBy": eligible_by, "population": table.num_rows}
    if args.format == "json":
        print(json.dumps(data, indent=2))
    else:
        from cds_service.population.table import trial_table_text

        print(trial_table_text(data))


def add_population_parser(sub: Any) -> None:
    """Register ``population`` on the ``twin-cds`` sub-parsers."""
    from twin_engine.population import INTERVENTIONS

    pop = sub.add_parser("population", help="population twins: build, report, in-silico trial")
    pop_sub = pop.add_subparsers(dest="population_command", required=True)

    build = pop_sub.add_parser(
        "build", help="every patient's twin, models and care gaps to a Parquet table (Dask)"
    )
    src = build.add_mutually_exclusive_group(required=True)
    src.add_argument("--ndjson", metavar="DIR", help="NDJSON files, one resource type per file")
    src.add_argument("--bulk-export", metavar="FHIR_BASE", help="run $export on this FHIR server")
    build.add_argument("--group", help="Group/{id}/$export instead of Patient/$export")
    build.add_argument(
        "--since", help="_since: only what changed since (an earlier transactionTime)"
    )
    build.add_argument("--client-id", help="SMART Backend Services client id")
    build.add_argument("--private-key", help="PEM private key signing the client assertion")
    build.add_argument("--alg", choices=("ES384", "RS384"), default="ES384")
    build.add_argument("--kid", help="key id in the assertion's header")
    build.add_argument(
        "--scope", default=None, help="default: system/<type>.rs for the twin's types"
    )
    build.add_argument("--export-timeout", type=float, default=3600.0, help="seconds")
    build.add_argument("--out", required=True, metavar="DIR")
    build.add_argument(
        "--scheduler", metavar="ADDR", help="an existing Dask cluster, tcp://host:8786"
    )
    build.add_argument(
        "--workers", type=int, default=None, help="local cluster size (default: cores)"
    )
    build.add_argument("--as-of", help="date the twins are evaluated on (default: today, UTC)")
    build.add_argument(
        "--kfre-model", default="kfre", choices=("kfre", "kfre_non_na"), help="KFRE calibration"
    )
    build.add_argument(
        "--partition-mb",
        type=float,
        default=None,
        help="input MB per build task; a worker holds one partition, parsed (default: 4)",
    )
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.add_argument("--no-audit", action="store_true", help="do not append the run record")
    build.set_defaults(func=cmd_build)

    report = pop_sub.add_parser("report", help="a static HTML page: risk, care gaps, data quality")
    report.add_argument("--in", dest="input", required=True, metavar="DIR")
    report.add_argument("--out", required=True, metavar="FILE")
    report.set_defaults(func=cmd_report)

    trial = pop_sub.add_parser("trial", help="an in-silico trial of a policy on the twins")
    trial.add_argument("--in", dest="input", required=True, metavar="DIR")
    trial.add_argument("--intervention", required=True, choices=INTERVENTIONS)
    trial.add_argument("--eligible", metavar="EXPR", help="e.g. 'prevent_risk_10y_ascvd >= 0.075'")
    trial.add_argument("--draws", type=int, default=2000)
    trial.add_argument("--seed", type=int, default=2018)
    trial.add_argument("--format", choices=("table", "json"), default="table")
    trial.set_defaults(func=cmd_trial)

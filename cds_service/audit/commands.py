"""``twin-cds audit replay|stats|selfcheck``: what the recommendations did, from the shell.

``replay SEQ`` exits 0 when the replay is byte-identical (or the record holds nothing to
replay, which it says), 1 when it differs (the first difference of each part on
stdout), 2 when it cannot run (a model file not archived or changed, a twin version
gone, no such record).
"""

from __future__ import annotations

import argparse
from typing import Any

from cds_service.audit.shell import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_TAMPERED,
    BadInput,
    open_log,
    parse_when,
    print_json,
    run,
    settings_from,
)

#: Exit code of a replay that differs from its record.
EXIT_DIFFERENT = EXIT_TAMPERED


def cmd_replay(args: argparse.Namespace) -> int:
    from cds_service.audit.replay import ModelArchive, installed_shas, replay_record
    from cds_service.stores import open_twin_store
    from onnx_models.registry import ModelRegistry

    settings = settings_from(args)
    log = open_log(settings)
    try:
        rec = log.get(args.seq)
    finally:
        log.close()
    if rec is None:
        raise BadInput(f"no audit record {args.seq}")
    twins = open_twin_store(settings)
    try:
        report = replay_record(
            rec,
            twins=twins,
            archive=ModelArchive(settings.model_archive_dir),
            installed=installed_shas(ModelRegistry.load(settings.model_dir)),
        )
    finally:
        twins.close()
    print_json(report.to_json())
    return {
        "identical": EXIT_OK,
        "nothing-to-replay": EXIT_OK,
        "different": EXIT_DIFFERENT,
        "not-replayable": EXIT_BAD_INPUT,
    }[report.outcome]


def cmd_stats(args: argparse.Namespace) -> int:
    from cds_service.audit.stats import follow_through, stats_table

    settings = settings_from(args)
    log = open_log(settings)
    try:
        stats = follow_through(log, since=parse_when(args.since, "--since"), tenant=args.tenant)
    finally:
        log.close()
    if args.format == "json":
        print_json(stats.to_json())
    else:
        print(stats_table(stats, by=args.by))
    return EXIT_OK


def cmd_selfcheck(args: argparse.Namespace) -> int:
    from cds_service.audit.replay import ModelArchive
    from cds_service.audit.selfcheck import self_check_of_log

    settings = settings_from(args)
    log = open_log(settings)
    try:
        report = self_check_of_log(
            log, ModelArchive(settings.model_archive_dir), settings, tenant=args.tenant
        )
    finally:
        log.close()
    if not args.pairs:
        report.pop("pairs")
    print_json(report)
    return EXIT_OK


def add_follow_through_parsers(audit_sub: Any, common: argparse.ArgumentParser) -> None:
    replay = audit_sub.add_parser(
        "replay",
        parents=[common],
        help="rebuild a recorded call from its twin and archived models; compare byte for byte",
    )
    replay.add_argument("seq", type=int, help="the record's seq")
    replay.set_defaults(func=run, audit_func=cmd_replay)

    stats = audit_sub.add_parser(
        "stats",
        parents=[common],
        help="acceptance, override (by reason) and no-response rates of the cards",
    )
    stats.add_argument("--since", help="ISO 8601, inclusive (cards sent from then on)")
    stats.add_argument("--tenant", help="only this tenant's calls")
    stats.add_argument("--format", choices=["json", "table"], default="table")
    stats.add_argument(
        "--by",
        choices=["service", "model", "card", "tenant", "month"],
        default="service",
        help="the table's grouping (json has them all)",
    )
    stats.set_defaults(func=run, audit_func=cmd_stats)

    selfcheck = audit_sub.add_parser(
        "selfcheck",
        parents=[common],
        help="vancomycin forecasts against the levels measured later (MDPE, MDAPE, drift)",
    )
    selfcheck.add_argument("--tenant", help="only this tenant's calls")
    selfcheck.add_argument("--pairs", action="store_true", help="list every forecast pair")
    selfcheck.set_defaults(func=run, audit_func=cmd_selfcheck)

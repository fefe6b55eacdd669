"""The ``twin-cds`` command line: the contract others script against.

All JSON goes to stdout; errors go to stderr with exit code 2 (bad input) or
1 (failure).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NoReturn

from cds_service.audit.shell import print_json as _print_json
from cds_service.pipeline.fhir_client import entry_resources
from cds_service.pipeline.predict import assess
from onnx_models.errors import ModelError, UnknownModelError
from onnx_models.registry import ModelRegistry
from twin_engine import build_twin_from_fhir, derive_features
from twin_engine.errors import TwinEngineError

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


class CliInputError(Exception):
    """Bad input from the command line's user: exit 2 with the message."""


def _fail(code: int, message: str) -> NoReturn:
    print(f"twin-cds: {message}", file=sys.stderr)
    raise SystemExit(code)


def _as_of(text: str | None) -> date:
    if text is None:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise CliInputError(f"--as-of {text!r} is not a date (YYYY-MM-DD)") from exc


def _read_bundle(path: str) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliInputError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliInputError(f"{path} is not JSON: {exc}") from exc


def _feature_json(features: Any) -> dict[str, Any]:
    return {
        name: {
            "value": f.value,
            "unit": f.unit,
            "time": f.time.isoformat() if f.time else None,
            "sources": list(f.sources),
            "quality": f.quality,
            "note": f.note,
        }
        for name, f in sorted(features.features.items())
    }


def cmd_twin_build(args: argparse.Namespace) -> None:
    twin = build_twin_from_fhir(_read_bundle(args.bundle))
    as_of = _as_of(args.as_of)
    summary = twin.to_json()
    summary["contentHash"] = twin.content_hash()
    summary["asOf"] = as_of.isoformat()
    summary["features"] = _feature_json(derive_features(twin, as_of))
    _print_json(summary)


def _applicability(registry: ModelRegistry, model_id: str, view: Any) -> str | None:
    """Why the guideline rules say this model does not apply to this patient today."""
    from cds_service.services.card_text import outside_ages, too_old_words
    from twin_engine.clinical.guidelines import kfre_applies

    model = registry.get(model_id)
    if model_id == "pce" and view.pce_excluded:
        return str(view.pce_excluded)
    if model_id.startswith("prevent") and view.prevent_excluded:
        return str(view.prevent_excluded)
    if model_id.startswith("kfre") and not kfre_applies(view.state):
        return "KFRE is for chronic kidney disease G3-G5 (eGFR under 60 for over 3 months)"
    if model_id == "pce" and view.pce_basis == "none":
        return "on a statin with no lipids from before it: the PCE is for untreated lipids"
    probe = assess(model, view.features)
    if outside_ages(view, probe):
        spec = next(i for i in model.card.inputs if i.name == "age_years")
        return (
            f"age {view.state.age_years:g} is outside the {spec.min:g}-{spec.max:g} of {model_id}"
        )
    blocked = too_old_words(view, probe)
    # Missing inputs are not a judgement: the model run below names them.
    return blocked[0] if blocked and "too old" in blocked[0] else None


def cmd_predict(args: argparse.Namespace) -> None:
    from cds_service.pipeline.patient_view import patient_view, untreated_features
    from cds_service.services.card_text import range_words

    registry = ModelRegistry.load(args.model_dir)
    model = registry.get(args.model)
    twin = build_twin_from_fhir(_read_bundle(args.bundle))
    features = derive_features(twin, _as_of(args.as_of))
    view = patient_view(registry, twin, features)
    declined = _applicability(registry, args.model, view)
    applicability: dict[str, Any] = {"applies": declined is None}
    if declined is not None and not args.ignore_applicability:
        raise CliInputError(
            f"{args.model} does not apply to this patient: {declined}. "
            "--ignore-applicability computes it anyway, for research use only"
        )
    if declined is not None:
        applicability |= {
            "ignored": True,
            "note": f"RESEARCH USE: the applicability rules were ignored ({declined})",
        }
    used = features
    if args.model == "pce" and view.pce_basis == "before-statin" and view.state.pretreatment_lipids:
        # The untreated risk, as the ascvd-risk card computes it (lipids before the statin).
        used = untreated_features(features, view.state.pretreatment_lipids)
        applicability["lipids"] = "before the first statin: " + (
            view.state.pretreatment_lipids.time.date().isoformat()
        )
    a = assess(model, used, deceased=twin.demographics.deceased and not args.ignore_applicability)
    if a.status == "out-of-range" or (a.status == "not-applicable" and a.violations):
        name = model.card.name.split(" (")[0]
        equations = "PREVENT" if args.model.startswith("prevent") else name
        raise CliInputError("; ".join(range_words(v, equations) for v in a.violations))
    if a.status != "computed":
        raise CliInputError("; ".join(a.problems))
    _print_json(
        {
            "model": model.card.id,
            "version": model.card.version,
            "sha256": model.sha256,
            "applicability": applicability,
            "outputs": a.outputs,
            "inputs": a.inputs_json(),
            "explanation": [
                {"feature": f.name, "value": f.value, "contribution": f.contribution}
                for f in a.factors
            ],
            "baseline": {"outputs": a.baseline_outputs, **model.card.baseline.values},
            "missing": [
                {"name": n.name, "quality": n.quality, "reason": n.reason} for n in a.not_used
            ],
        }
    )


def _target(text: str) -> tuple[float, float]:
    low, sep, high = text.partition("-")
    try:
        target = (float(low), float(high))
    except ValueError as exc:
        raise CliInputError(f"--target-auc {text!r} is not LOW-HIGH, e.g. 400-600") from exc
    if not sep or not 0 < target[0] < target[1]:
        raise CliInputError(f"--target-auc {text!r} is not LOW-HIGH with 0 < LOW < HIGH")
    return target


def _resources(payload: Any) -> list[dict[str, Any]]:
    if isinstance(payload, list):
        return [r for r in payload if isinstance(r, dict)]
    if isinstance(payload, dict) and payload.get("resourceType") == "Bundle":
        return entry_resources(payload)
    if isinstance(payload, dict) and "resourceType" in payload:
        return [payload]
    raise CliInputError("the bundle is not a FHIR Bundle, resource or list of resources")


def cmd_dose(args: argparse.Namespace) -> None:
    from cds_service.services.vancomycin import simulator_for
    from onnx_models.pk.models import MODELS
    from twin_engine.pk.errors import DosingError
    from twin_engine.pk.recommend import recommend

    model_id = args.model if args.model.startswith("vancomycin_") else f"vancomycin_{args.model}"
    if model_id not in MODELS:
        known = ", ".join(m.removeprefix("vancomycin_") for m in MODELS)
        raise CliInputError(f"no vancomycin model {args.model!r}; known: {known}")
    as_of = (
        datetime.combine(_as_of(args.as_of), datetime.max.time(), tzinfo=UTC)
        if args.as_of and "T" not in args.as_of
        else _as_of_instant(args.as_of)
    )
    dialysis = {"yes": True, "no": False, None: None}[args.dialysis]
    try:
        result = recommend(
            _resources(_read_bundle(args.bundle)),
            as_of=as_of,
            model=MODELS[model_id],
            simulator=simulator_for(model_id),
            target_auc=_target(args.target_auc),
            dialysis=dialysis,
        )
    except DosingError as exc:
        raise CliInputError(str(exc)) from exc
    _print_json(result.to_dict())


def _as_of_instant(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise CliInputError(f"--as-of {text!r} is not a date or date-time") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def cmd_models(args: argparse.Namespace) -> None:
    from onnx_models.catalog import describe, find, list_models, pk_models
    from onnx_models.registry import ARTIFACTS_DIR

    if args.models_command == "build":
        try:
            from onnx_models.build import build_all, build_pk_artifacts
        except ModuleNotFoundError as exc:  # onnx comes with the build extra only
            raise CliInputError(
                f"models build needs the build extra (pip install 'twin-cds[build]'): {exc}"
            ) from exc

        out = Path(args.out) if args.out else ARTIFACTS_DIR
        built = [
            {"id": b.model_id, "path": str(b.path), "sha256": b.sha256} for b in build_all(out)
        ]
        # The vancomycin PK graphs live in their own folder (they are not risk models).
        built += [
            {"id": p["id"], "path": p["path"], "sha256": p["sha256"]}
            for p in build_pk_artifacts(out / "pk")
        ]
        _print_json(built)
        return
    registry = ModelRegistry.load(args.model_dir)
    # The PK graphs sit in pk/ below the risk models (as `models build` writes them).
    pk = pk_models((args.model_dir or ARTIFACTS_DIR) / "pk")
    if args.models_command == "list":
        _print_json(list_models(registry, pk))
    else:
        _print_json(describe(find(registry, pk, args.model)))


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from cds_service.http.edge import SERVER_MAX_HEAD_BYTES
    from twin_cds.app import create_app

    # h11 with a bounded head (http_edge.SERVER_MAX_HEAD_BYTES): an oversized header is
    # refused while it arrives, never parsed whole on the event loop. log_config=None: the
    # app's own logging (JSON lines, redacted) covers uvicorn's too.
    from twin_engine.store.migrate import SchemaNotCurrent

    try:
        app = create_app()
    except SchemaNotCurrent as exc:
        # One line naming the command that fixes it, not a traceback.
        _fail(EXIT_FAILURE, str(exc))
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        http="h11",
        h11_max_incomplete_event_size=SERVER_MAX_HEAD_BYTES,
    )


def cmd_db(args: argparse.Namespace) -> None:
    from cds_service.settings import Settings
    from twin_cds import db
    from twin_engine.storage import StorageUnavailable
    from twin_engine.store.migrate import SchemaNotCurrent

    settings = Settings()
    try:
        if args.db_command == "upgrade":
            _print_json(db.upgrade_all(settings))
        else:
            _print_json(db.current(settings))
    except SchemaNotCurrent as exc:
        raise CliInputError(str(exc)) from exc
    except StorageUnavailable as exc:
        _fail(EXIT_FAILURE, str(exc))


def cmd_config_check(args: argparse.Namespace) -> None:
    from pydantic import ValidationError

    from cds_service.ops.config_check import production_problems
    from cds_service.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        raise CliInputError(f"the TWIN_CDS_* settings do not parse: {exc}") from exc
    problems = production_problems(settings, workers=args.workers)
    if problems:
        for problem in problems:
            print(f"twin-cds: config: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)
    _print_json({"ok": True, "workers": args.workers})


#: What the ``demo`` extra installs (pyproject.toml): the FHIR server and the patient generator.
DEMO_EXTRA = ("sekmet", "carebundle")


def demo_extra_missing() -> list[str]:
    """The ``demo`` extra's packages this environment lacks (the product needs none of them)."""
    return [name for name in DEMO_EXTRA if importlib.util.find_spec(name) is None]


def cmd_demo(args: argparse.Namespace) -> None:
    missing = demo_extra_missing()
    if missing:
        _fail(
            EXIT_FAILURE,
            f"the demo needs the 'demo' extra ({', '.join(missing)} missing): "
            "pip install 'twin-cds[demo]', or run scripts/demo.sh",
        )
    from ehr_sim.demo import run_demo
    from ehr_sim.servers import PortInUse

    try:
        run_demo(
            patients=args.patients,
            seed=args.seed,
            port=args.port,
            fhir_port=args.fhir_port,
            ehr_port=args.ehr_port,
            data_dir=Path(args.data_dir),
        )
    except PortInUse as exc:
        _fail(EXIT_FAILURE, str(exc))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="twin-cds", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the CDS service (settings from TWIN_CDS_*)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser(
        "demo", help="FHIR server with generated patients, the service and app, the EHR simulator"
    )
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--fhir-port", type=int, default=0, help="0: a free port")
    demo.add_argument("--ehr-port", type=int, default=0, help="the EHR simulator; 0: a free port")
    demo.add_argument("--patients", type=int, default=12)
    demo.add_argument("--seed", type=int, default=2024)
    demo.add_argument("--data-dir", default=".twin-cds/demo")
    demo.set_defaults(func=cmd_demo)

    twin = sub.add_parser("twin", help="the patient twin")
    twin_sub = twin.add_subparsers(dest="twin_command", required=True)
    build = twin_sub.add_parser("build", help="build a twin from a FHIR bundle; print it")
    build.add_argument("--bundle", required=True)
    build.add_argument("--as-of")
    build.set_defaults(func=cmd_twin_build)

    predict = sub.add_parser("predict", help="run one model on one patient")
    predict.add_argument("model")
    predict.add_argument("--bundle", required=True)
    predict.add_argument("--as-of")
    predict.add_argument("--model-dir", type=Path, default=None)
    predict.add_argument(
        "--ignore-applicability",
        action="store_true",
        help="compute even where the guideline rules say the model does not apply "
        "(research use; the output says so)",
    )
    predict.set_defaults(func=cmd_predict)

    dose = sub.add_parser("dose", help="model-informed precision dosing")
    dose_sub = dose.add_subparsers(dest="drug", required=True)
    vanco = dose_sub.add_parser("vancomycin", help="AUC-guided vancomycin dosing (Bayesian)")
    vanco.add_argument("--bundle", required=True)
    vanco.add_argument("--as-of", help="date (end of that day, UTC) or ISO date-time")
    vanco.add_argument("--model", default="goti2018", help="goti2018 | buelga2005 | thomson2009")
    vanco.add_argument("--target-auc", default="400-600", help="mg·h/L, LOW-HIGH")
    vanco.add_argument(
        "--dialysis",
        choices=("yes", "no"),
        default=None,
        help="state dialysis status (overrides the record; without a record: not on dialysis)",
    )
    vanco.set_defaults(func=cmd_dose)

    models = sub.add_parser("models", help="the model registry")
    models.add_argument("--model-dir", type=Path, default=None)
    models_sub = models.add_subparsers(dest="models_command", required=True)
    models_sub.add_parser("list", help="the models and their versions").set_defaults(
        func=cmd_models
    )
    describe = models_sub.add_parser("describe", help="a model's card")
    describe.add_argument("model")
    describe.set_defaults(func=cmd_models)
    mbuild = models_sub.add_parser("build", help="rebuild the .onnx files reproducibly")
    mbuild.add_argument("--out", default=None, help="directory (default: the package's)")
    mbuild.set_defaults(func=cmd_models)

    config = sub.add_parser("config", help="the service's settings (TWIN_CDS_*)")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser(
        "check", help="name every setting unfit for production; exit 2 if there is one"
    )
    check.add_argument(
        "--workers",
        type=int,
        # uvicorn reads its worker count from WEB_CONCURRENCY too.
        default=int(os.environ.get("WEB_CONCURRENCY", "1")),
        help="worker processes the service will run (default: $WEB_CONCURRENCY or 1)",
    )
    check.set_defaults(func=cmd_config_check)

    dbp = sub.add_parser("db", help="the stores' schemas (Alembic revisions)")
    db_sub = dbp.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser(
        "upgrade",
        help="bring every store to this release's schema (adopting an earlier release's)",
    ).set_defaults(func=cmd_db)
    db_sub.add_parser("current", help="each store's schema revision").set_defaults(func=cmd_db)

    from cds_service.audit.cli import add_audit_parser

    add_audit_parser(sub)
    from cds_service.population.cli import add_population_parser

    add_population_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (CliInputError, TwinEngineError, UnknownModelError) as exc:
        _fail(EXIT_BAD_INPUT, str(exc))
    except ModelError as exc:
        _fail(EXIT_FAILURE, str(exc))


if __name__ == "__main__":
    main()

"""The vancomycin PK artifacts: graph + PK model card, serialized reproducibly.

One file per population model, `vancomycin_<model>.onnx`: the same structural graph with that
model's card (population, covariate equations, typical values, IIV, residual error, source) in
metadata `model_card`: an `onnx_models.card.PkModelCard`, the PK sibling of the risk models'
`ModelCard`, under the same key.

They live in `onnx_models/artifacts/pk/`, apart from the risk models that
`onnx_models.registry.ModelRegistry` loads from `onnx_models/artifacts/`.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import onnx
from onnx import helper

from onnx_models.build._graph import IR_VERSION, OPSET, PRODUCER_NAME, PRODUCER_VERSION
from onnx_models.build.pk.graph import structural_graph
from onnx_models.card import (
    CARD_KEY,
    ID_KEY,
    VERSION_KEY,
    CreatinineClearance,
    Iiv,
    PkModelCard,
    ResidualError,
)
from onnx_models.pk.models import (
    BUELGA_2005,
    GOTI_2018,
    GOTI_2018_V2_WEIGHT,
    MODELS,
    THOMSON_2009,
    PopulationPkModel,
)
from onnx_models.pk.simulator import ARTIFACTS_DIR, AUC, CONC, DOSES, PARAMS, TIMES

INTENDED_USE = (
    "Model-informed precision dosing of intravenous vancomycin in adults: Bayesian (MAP) "
    "estimation of individual PK parameters from measured levels and AUC24-guided regimen "
    "selection (target 400-600 mg.h/L, MIC 1 mg/L; Rybak et al., Am J Health Syst Pharm "
    "2020;77:835-864). Decision support for a pharmacist or physician, not autonomous dosing."
)

_STRUCTURAL_CHECK = (
    "Structural model (one graph shared by every vancomycin model) checked against scipy "
    "solve_ivp of the ODEs (rel. error <= 1e-6) over random two- and one-compartment regimens "
    "(tests/pk/test_structural.py)."
)
_NO_PATIENT_DATA = " Not validated by this project against measured patient levels."
# Each model's own validation: what was checked, and what was not.
VALIDATION: dict[str, str] = {
    GOTI_2018.id: _STRUCTURAL_CHECK
    + " MAP estimates and dose recommendations reproduce R posologyr's worked examples for "
    "mod_vancomycin_Goti2018 within 2 % (tests/pk/test_posologyr.py)." + _NO_PATIENT_DATA,
    GOTI_2018_V2_WEIGHT.id: _STRUCTURAL_CHECK
    + " Covariate and residual model transcribed from nlmixr2lib Goti_2018_vancomycin.R; no "
    "independent worked example was reproduced for this reading (the posologyr examples test "
    "the posologyr reading only)." + _NO_PATIENT_DATA,
    BUELGA_2005.id: _STRUCTURAL_CHECK
    + " Parameters transcribed from nlmixr2lib Buelga_2005_vancomycin.R (Buelga 2005 Table 4); "
    "no independent worked example was reproduced." + _NO_PATIENT_DATA,
    THOMSON_2009.id: _STRUCTURAL_CHECK
    + " Parameters transcribed from InsightRX PKPDsim pk_vanco_thomson / PKPDposterior; no "
    "independent worked example was reproduced. The linear CrCl model gives CL <= 0 near "
    "CrCl 1 mL/min; the dosing core refuses such patients." + _NO_PATIENT_DATA,
}


def pk_card(model: PopulationPkModel) -> PkModelCard:
    """The PK model card stored in the artifact's metadata."""
    return PkModelCard(
        id=model.id,
        name=model.name,
        version=model.version,
        kind="population_pk",
        intended_use=INTENDED_USE,
        population=model.population,
        source=model.source,
        structural_model=(
            "two-compartment (one when Q = 0) linear PK with zero-order IV infusions, closed-form "
            "superposition; float64"
        ),
        inputs={
            PARAMS: "[N, 4] individual CL (L/h), V1 (L), Q (L/h), V2 (L)",
            DOSES: "[N, D, 3] infusion start (h), duration (h, > 0), amount (mg); zero rows pad",
            TIMES: "[N, T] times (h)",
        },
        outputs={
            CONC: "[N, T] central concentration (mg/L)",
            AUC: "[N, T] cumulative AUC from time 0 (mg.h/L)",
        },
        covariate_equations=model.equations,
        typical_values=dict(model.thetas),
        iiv=Iiv(
            eta=model.eta_names,
            omega=model.omega,
            # CV of a log-normal eta: sqrt(exp(omega^2) - 1).
            cv_percent=tuple(
                round(100.0 * math.sqrt(math.exp(model.omega[i][i]) - 1.0), 1)
                for i in range(len(model.omega))
            ),
        ),
        residual_error=ResidualError(
            additive_mg_l=model.residual_additive_mg_l,
            proportional=model.residual_proportional,
            form=model.residual_form,
        ),
        creatinine_clearance=CreatinineClearance(
            equation="Cockcroft-Gault, total body weight",
            cap_ml_min=model.crcl_cap_ml_min,
            elderly_creatinine_floor=model.elderly_creatinine_floor,
        ),
        supports_dialysis=model.supports_dialysis,
        notes=model.notes,
        validation=VALIDATION[model.id],
        license="Apache-2.0 (code); model parameters from the cited publications",
    )


def pk_model_proto(model: PopulationPkModel) -> onnx.ModelProto:
    card = pk_card(model)
    proto = helper.make_model(
        structural_graph(model.id),
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER_NAME,
        producer_version=PRODUCER_VERSION,
        doc_string=f"{model.name} ({model.id} {model.version}); model card in '{CARD_KEY}'",
    )
    proto.ir_version = IR_VERSION
    proto.model_version = 1
    props = {CARD_KEY: card.to_json(), ID_KEY: model.id, VERSION_KEY: model.version}
    helper.set_model_props(proto, props)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def pk_model_bytes(model: PopulationPkModel = GOTI_2018) -> bytes:
    """Serialized artifact; the same model always gives the same bytes."""
    return bytes(pk_model_proto(model).SerializeToString(deterministic=True))


def build_pk_artifacts(out_dir: Path = ARTIFACTS_DIR) -> list[dict[str, str]]:
    """Write `<model id>.onnx` for every vancomycin model; returns id, version, path, sha256."""
    out_dir.mkdir(parents=True, exist_ok=True)
    built = []
    for model in MODELS.values():
        data = pk_model_bytes(model)
        path = out_dir / f"{model.id}.onnx"
        path.write_bytes(data)
        built.append(
            {
                "id": model.id,
                "version": model.version,
                "path": str(path),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    return built

"""What the patient-view cards suggest beyond words: orders and treatment what-ifs.

- When a laboratory input is missing or too old, no number: a suggestion to order it
  (a ``create`` action carrying a draft ServiceRequest).
- Treatment response on the same twin: the risk under a statin and an SBP target
  (twin_engine.therapy, from CTT 2010 and Ettehad 2016), for the card's what-if line and
  the clinician app's what-if panel.
- `CardioRenalAssessments`: the model runs the app's risk panel shows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from cds_service.http.cards import Action, Suggestion
from cds_service.pipeline.predict import Assessment
from cds_service.services.catalog import LOINC
from twin_engine.derive import FeatureSet
from twin_engine.therapy import TherapyEffect, apply_therapy

#: What to order when a laboratory input is missing or stale: (LOINC, display).
ORDERABLE: dict[str, tuple[str, str]] = {
    "total_cholesterol_mg_dl": ("57698-3", "Lipid panel with direct LDL - Serum or Plasma"),
    "hdl_cholesterol_mg_dl": ("57698-3", "Lipid panel with direct LDL - Serum or Plasma"),
    "egfr_ml_min_1_73m2": ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma"),
    "uacr_mg_g": ("14959-1", "Microalbumin/Creatinine [Mass ratio] in Urine"),
}

#: Blood-pressure target for the what-if: SBP < 130 mm Hg (2017 ACC/AHA high blood
#: pressure guideline, Whelton et al., Hypertension 2018;71:e13, section 8.1.5).
SBP_TARGET_MM_HG = 130.0


def order_suggestion(patient_id: str, inputs: tuple[str, ...], why: str) -> Suggestion:
    actions: list[Action] = []
    seen: set[str] = set()
    for name in inputs:
        code, display = ORDERABLE[name]
        if code in seen:
            continue
        seen.add(code)
        actions.append(
            Action(
                type="create",
                description=f"Order {display}",
                resource={
                    "resourceType": "ServiceRequest",
                    "status": "draft",
                    "intent": "proposal",
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "http://snomed.info/sct",
                                    "code": "108252007",
                                    "display": "Laboratory procedure",
                                }
                            ]
                        }
                    ],
                    "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
                    "subject": {"reference": f"Patient/{patient_id}"},
                    "reasonCode": [{"text": why}],
                },
            )
        )
    labels = " and ".join(a.description.removeprefix("Order ") for a in actions)
    return Suggestion(
        label=f"Order {labels}"[:200], uuid=str(uuid.uuid4()), isRecommended=True, actions=actions
    )


def what_ifs(features: FeatureSet, risk: float) -> list[TherapyEffect]:
    effects: list[TherapyEffect] = []
    ldl = features.get("ldl_cholesterol_mg_dl")
    sbp = features.get("systolic_bp_mm_hg")
    on_statin = features.get("statin").value == 1.0
    if not on_statin and ldl.usable and ldl.value is not None:
        for intensity in ("moderate", "high"):
            effects.append(apply_therapy(risk, ldl_mg_dl=ldl.value, statin=intensity))
    if sbp.usable and sbp.value is not None and sbp.value > SBP_TARGET_MM_HG:
        effects.append(apply_therapy(risk, sbp_mm_hg=sbp.value, sbp_target_mm_hg=SBP_TARGET_MM_HG))
    return effects


@dataclass(frozen=True, slots=True)
class CardioRenalAssessments:
    """The model runs behind the cardio-renal cards (and the app's risk panel)."""

    prevent: Assessment
    prevent_30y: Assessment
    pce: Assessment
    #: Run only where KFRE's population is reached (CKD by eGFR or albuminuria).
    kfre: Assessment | None

    def all(self) -> tuple[Assessment, ...]:
        runs = (self.prevent, self.prevent_30y, self.pce)
        return runs + ((self.kfre,) if self.kfre is not None else ())

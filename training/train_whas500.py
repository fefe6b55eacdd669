"""Fit the WHAS500 1-year post-MI mortality Cox model and write what the ONNX build needs.

    pip install -e '.[build]'
    python training/train_whas500.py

Data: the Worcester Heart Attack Study subset of 500 patients (Hosmer, Lemeshow & May,
Applied Survival Analysis, 2nd ed., Wiley 2008), as shipped inside scikit-survival
(`sksurv.datasets.load_whas500`; no download). Outcome: death from any cause (fstat),
follow-up in days (lenfol).

Model: scikit-survival CoxPHSurvivalAnalysis (Breslow ties, no penalty) on the admission
vitals and in-hospital conditions below. Length of stay (los) is left out on purpose: it
is only known at discharge and leaks outcome information into an admission-time score.
Complete heart block (av3, 11 patients) and MI type are left out as unstable or not
represented in the twin.

Writes
- onnx_models/build/whas500_fit.py: the coefficients, centring means, centred baseline survival
  at 365 days, input ranges seen in the cohort, and the cross-validated metrics. The ONNX
  graph is built from these numbers by onnx_models/build/whas500.py (no converter, no sksurv at
  run time).
- tests/onnx_models/data/whas500_parity.json: 60 cohort patients with the fitted model's
  own 1-year risk, 1 - predict_survival_function(x)(365), so CI can check parity without
  scikit-survival.

Validation: 10 x repeated 5-fold cross-validation (seeded); out-of-fold Harrell's C, Uno's
time-dependent AUC at 365 days, and calibration-in-the-large and by risk quintile (mean
predicted 1-year risk vs Kaplan-Meier observed 1-year mortality).
"""

from __future__ import annotations

import json
import math
import pprint
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.model_selection import RepeatedKFold
from sksurv.datasets import load_whas500
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.metrics import concordance_index_censored, cumulative_dynamic_auc
from sksurv.nonparametric import kaplan_meier_estimator

REPO = Path(__file__).resolve().parents[1]
FIT_MODULE = REPO / "onnx_models" / "build" / "whas500_fit.py"
PARITY_FILE = REPO / "tests" / "onnx_models" / "data" / "whas500_parity.json"

HORIZON_DAYS = 365.0
SEED = 20240601
N_SPLITS = 5
N_REPEATS = 10

# Twin feature name -> WHAS500 column (Hosmer, Lemeshow & May 2008, Table 1.x codebook).
FEATURES: dict[str, str] = {
    "age_years": "age",  # age at hospital admission, years
    "female": "gender",  # 0 = male, 1 = female
    "heart_rate_per_min": "hr",  # initial heart rate, beats per minute
    "systolic_bp_mm_hg": "sysbp",  # initial systolic blood pressure, mm Hg
    "diastolic_bp_mm_hg": "diasbp",  # initial diastolic blood pressure, mm Hg
    "bmi_kg_m2": "bmi",  # body mass index, kg/m2
    "heart_failure": "chf",  # congestive heart complications, 0/1
    "atrial_fibrillation": "afb",  # atrial fibrillation, 0/1
    "cardiogenic_shock": "sho",  # cardiogenic shock, 0/1
    "cardiovascular_disease_history": "cvd",  # history of cardiovascular disease, 0/1
    "prior_myocardial_infarction": "miord",  # MI order: 0 = first, 1 = recurrent
}

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Cohort:
    x: FloatArray
    event: npt.NDArray[np.bool_]
    time: FloatArray
    structured: npt.NDArray[np.void]


def load() -> Cohort:
    frame, y = load_whas500()
    x = np.column_stack([frame[col].astype(np.float64).to_numpy() for col in FEATURES.values()])
    return Cohort(x=x, event=y["fstat"], time=y["lenfol"].astype(np.float64), structured=y)


def fit(x: FloatArray, y: npt.NDArray[np.void]) -> CoxPHSurvivalAnalysis:
    return CoxPHSurvivalAnalysis(alpha=0.0, ties="breslow").fit(x, y)


def risk_at_horizon(model: CoxPHSurvivalAnalysis, x: FloatArray) -> FloatArray:
    """The fitted model's own 1-year risk: 1 - S(365 | x) from predict_survival_function."""
    return np.array([1.0 - fn(HORIZON_DAYS) for fn in model.predict_survival_function(x)])


def km_mortality(time: FloatArray, event: npt.NDArray[np.bool_]) -> float:
    t, s = kaplan_meier_estimator(event, time)
    return float(1.0 - s[np.searchsorted(t, HORIZON_DAYS, side="right") - 1])


def cross_validate(c: Cohort) -> dict[str, object]:
    harrell, uno_auc, citl = [], [], []
    oof_sum = np.zeros(len(c.time))
    oof_n = np.zeros(len(c.time))
    folds = RepeatedKFold(n_splits=N_SPLITS, n_repeats=N_REPEATS, random_state=SEED)
    for train, test in folds.split(c.x):
        model = fit(c.x[train], c.structured[train])
        lp = model.predict(c.x[test])
        risk = risk_at_horizon(model, c.x[test])
        harrell.append(concordance_index_censored(c.event[test], c.time[test], lp)[0])
        # Uno's AUC weights by the training censoring distribution, which ends at the
        # last training time: drop the (rare) test patients followed beyond it.
        inside = c.time[test] < c.time[train].max()
        auc, _ = cumulative_dynamic_auc(
            c.structured[train], c.structured[test][inside], lp[inside], [HORIZON_DAYS]
        )
        uno_auc.append(float(auc[0]))
        citl.append(float(risk.mean()) - km_mortality(c.time[test], c.event[test]))
        oof_sum[test] += risk
        oof_n[test] += 1
    oof = oof_sum / oof_n
    quintile = pd.qcut(oof, 5, labels=False)
    by_quintile = [
        {
            "quintile": int(q) + 1,
            "n": int((quintile == q).sum()),
            "predicted": round(float(oof[quintile == q].mean()), 3),
            "observed_km": round(km_mortality(c.time[quintile == q], c.event[quintile == q]), 3),
        }
        for q in range(5)
    ]

    def summary(values: list[float]) -> dict[str, float]:
        arr = np.array(values)
        return {
            "mean": round(float(arr.mean()), 3),
            "p2_5": round(float(np.percentile(arr, 2.5)), 3),
            "p97_5": round(float(np.percentile(arr, 97.5)), 3),
        }

    return {
        "scheme": f"{N_REPEATS} x repeated {N_SPLITS}-fold CV, seed {SEED}",
        "harrell_c": summary(harrell),
        "uno_auc_365d": summary(uno_auc),
        "predicted_minus_observed_365d": summary(citl),
        "oof_mean_predicted_365d": round(float(oof.mean()), 3),
        "km_observed_365d": round(km_mortality(c.time, c.event), 3),
        "by_quintile": by_quintile,
    }


def write_fit_module(c: Cohort, model: CoxPHSurvivalAnalysis, metrics: dict[str, object]) -> None:
    coef = [float(v) for v in model.coef_]
    means = [float(v) for v in c.x.mean(axis=0)]
    # sksurv's Breslow baseline is for lp = x @ coef (uncentred); centre it at the means:
    # S(t|x) = S0(t)^exp(x b) = [S0(t)^exp(mean b)]^exp((x - mean) b).
    s0 = float(model.baseline_survival_(HORIZON_DAYS))
    s0_centred = s0 ** math.exp(float(np.dot(means, coef)))
    ranges = {
        name: [float(np.floor(c.x[:, i].min())), float(np.ceil(c.x[:, i].max()))]
        for i, name in enumerate(FEATURES)
    }

    def summary(key: str) -> tuple[float, float, float]:
        part = metrics[key]
        assert isinstance(part, dict)  # noqa: S101  # built by cross_validate above
        return (part["mean"], part["p2_5"], part["p97_5"])

    quintiles = metrics["by_quintile"]
    assert isinstance(quintiles, list)  # noqa: S101  # built by cross_validate above
    constants: list[tuple[str, str, object]] = [
        ("FEATURES", "Feature order of the vectors below (twin feature names).", tuple(FEATURES)),
        ("COEFFICIENTS", "Cox log hazard ratios per unit of each feature.", tuple(coef)),
        ("MEANS", "Cohort means the linear predictor is centred at.", tuple(means)),
        (
            "BASELINE_SURVIVAL_365D",
            "Breslow baseline survival at 365 days for a patient at MEANS.",
            s0_centred,
        ),
        ("PATIENTS", "Cohort size.", len(c.time)),
        ("DEATHS", "Deaths during follow-up.", int(c.event.sum())),
        (
            "DEATHS_BY_365D",
            "Deaths within 365 days.",
            int(((c.time <= HORIZON_DAYS) & c.event).sum()),
        ),
        ("RANGES", "[min, max] of each feature in the cohort (floor/ceil).", ranges),
        ("CV_SCHEME", "Validation scheme of the figures below.", metrics["scheme"]),
        ("HARRELL_C", "Out-of-fold Harrell's C: mean, 2.5th and 97.5th fold percentile.",
         summary("harrell_c")),
        ("UNO_AUC_365D", "Out-of-fold Uno's AUC at 365 days: mean, 2.5th, 97.5th.",
         summary("uno_auc_365d")),
        ("PREDICTED_MINUS_OBSERVED_365D",
         "Calibration-in-the-large per fold (mean predicted - KM observed): mean, 2.5th, 97.5th.",
         summary("predicted_minus_observed_365d")),
        ("OOF_MEAN_PREDICTED_365D", "Mean out-of-fold 1-year risk.",
         metrics["oof_mean_predicted_365d"]),
        ("KM_OBSERVED_365D", "Kaplan-Meier 1-year mortality of the cohort.",
         metrics["km_observed_365d"]),
        ("BY_QUINTILE", "Per out-of-fold risk quintile: (n, mean predicted, KM observed).",
         tuple((q["n"], q["predicted"], q["observed_km"]) for q in quintiles)),
    ]  # fmt: skip
    lines = ['"""Numbers fitted by training/train_whas500.py; regenerate, do not edit by hand."""']
    for name, comment, value in constants:
        text = pprint.pformat(value, width=97 - len(name), compact=True)
        lines += ["", f"# {comment}", f"{name} = {text}"]
    lines.append("")
    FIT_MODULE.write_text("\n".join(lines))


def write_parity(c: Cohort, model: CoxPHSurvivalAnalysis) -> None:
    rng = np.random.default_rng(SEED)
    rows = np.sort(rng.choice(len(c.time), size=60, replace=False))
    PARITY_FILE.parent.mkdir(parents=True, exist_ok=True)
    PARITY_FILE.write_text(
        json.dumps(
            {
                "source": "training/train_whas500.py: 1 - predict_survival_function(x)(365)",
                "features": list(FEATURES),
                "rows": [
                    {"x": c.x[i].tolist(), "risk_1y_mortality": float(r)}
                    for i, r in zip(rows, risk_at_horizon(model, c.x[rows]), strict=True)
                ],
            },
            indent=1,
        )
        + "\n"
    )


def main() -> None:
    cohort = load()
    metrics = cross_validate(cohort)
    model = fit(cohort.x, cohort.structured)
    write_fit_module(cohort, model, metrics)
    write_parity(cohort, model)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()

"""Numbers fitted by training/train_whas500.py; regenerate, do not edit by hand."""

# Feature order of the vectors below (twin feature names).
FEATURES = (
    "age_years",
    "female",
    "heart_rate_per_min",
    "systolic_bp_mm_hg",
    "diastolic_bp_mm_hg",
    "bmi_kg_m2",
    "heart_failure",
    "atrial_fibrillation",
    "cardiogenic_shock",
    "cardiovascular_disease_history",
    "prior_myocardial_infarction",
)

# Cox log hazard ratios per unit of each feature.
COEFFICIENTS = (
    0.04878540824197458,
    -0.2917936237189099,
    0.012552569657453872,
    0.002205756935803942,
    -0.0139386821289665,
    -0.04714286562074353,
    0.716328079096911,
    0.02155002024710688,
    1.1893800565349777,
    -0.03076806546167349,
    0.1226685234315463,
)

# Cohort means the linear predictor is centred at.
MEANS = (69.846, 0.4, 87.018, 144.704, 78.266, 26.613779919999985, 0.31, 0.156, 0.044, 0.75, 0.342)

# Breslow baseline survival at 365 days for a patient at MEANS.
BASELINE_SURVIVAL_365D = 0.8072954335540868

# Cohort size.
PATIENTS = 500

# Deaths during follow-up.
DEATHS = 215

# Deaths within 365 days.
DEATHS_BY_365D = 138

# [min, max] of each feature in the cohort (floor/ceil).
RANGES = {
    "age_years": [30.0, 104.0],
    "atrial_fibrillation": [0.0, 1.0],
    "bmi_kg_m2": [13.0, 45.0],
    "cardiogenic_shock": [0.0, 1.0],
    "cardiovascular_disease_history": [0.0, 1.0],
    "diastolic_bp_mm_hg": [6.0, 198.0],
    "female": [0.0, 1.0],
    "heart_failure": [0.0, 1.0],
    "heart_rate_per_min": [35.0, 186.0],
    "prior_myocardial_infarction": [0.0, 1.0],
    "systolic_bp_mm_hg": [57.0, 244.0],
}

# Validation scheme of the figures below.
CV_SCHEME = "10 x repeated 5-fold CV, seed 20240601"

# Out-of-fold Harrell's C: mean, 2.5th and 97.5th fold percentile.
HARRELL_C = (0.774, 0.691, 0.862)

# Out-of-fold Uno's AUC at 365 days: mean, 2.5th, 97.5th.
UNO_AUC_365D = (0.815, 0.711, 0.917)

# Calibration-in-the-large per fold (mean predicted - KM observed): mean, 2.5th, 97.5th.
PREDICTED_MINUS_OBSERVED_365D = (-0.004, -0.094, 0.075)

# Mean out-of-fold 1-year risk.
OOF_MEAN_PREDICTED_365D = 0.272

# Kaplan-Meier 1-year mortality of the cohort.
KM_OBSERVED_365D = 0.276

# Per out-of-fold risk quintile: (n, mean predicted, KM observed).
BY_QUINTILE = (
    (100, 0.043, 0.03),
    (100, 0.104, 0.09),
    (100, 0.193, 0.24),
    (100, 0.344, 0.38),
    (100, 0.675, 0.64),
)

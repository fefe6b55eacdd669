"""Clinical state and guideline rules on the twin: one small named function per rule,
each citing its source (KDIGO 2012 AKI, KDIGO 2024 CKD, 2018 AHA/ACC cholesterol,
USPSTF 2022 statins). Every service reads the patient through these rules, so two cards
for one patient never disagree about what is acute, treated, stale or applicable.

Modules: `staleness` (one table of age limits), `kidney` (AKI, CKD), `statins`
(exposure, intensity, pre-treatment lipids), `history` (ASCVD, heart failure,
pregnancy, kidney failure), `state` (all of them on one date), `guidelines` (statin
benefit groups, USPSTF grade, KFRE applicability, referral).
"""

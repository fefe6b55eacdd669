"""Simulation-estimation study: 500 virtual Goti 2018 patients, two levels each."""

from __future__ import annotations

from bench.dosing import simulation_study


def test_two_levels_forecast_and_recommendation() -> None:
    """Forecasts are unbiased (|median PE| < 10 %); levels sharpen AUC and raise attainment;
    the consensus rules keep the attainment of the ranking before them."""
    study = simulation_study(500, seed=1, n_samples=500)
    assert study["patients"] == 500
    for key in ("third_level_vs_observed", "third_level_vs_true_concentration"):
        assert abs(study[key]["bias_median_pe_pct"]) < 10.0
    two, prior = study["auc24_ss_two_levels"], study["auc24_ss_a_priori"]
    assert abs(two["bias_median_pe_pct"]) < 10.0
    assert two["imprecision_median_ape_pct"] < prior["imprecision_median_ape_pct"]
    share = study["share_true_auc_in_400_600"]
    assert share["recommended_after_two_levels"] > share["standard_empiric_regimen"]
    assert share["recommended_after_two_levels"] >= share["recommended_a_priori"]
    # The consensus-ranked regimen beats a fixed 15 mg/kg every 12 h for everyone ...
    assert share["recommended_after_two_levels"] > share["fifteen_mg_kg_q12h"]
    # ... and its rules (interval by renal function, q48h only below CrCl 20 or on dialysis)
    # cost no attainment: within one point of the ranking before them, which chose q36h or
    # q48h for most patients.
    previous = share["previous_ranking_after_two_levels"]
    assert share["recommended_after_two_levels"] >= previous - 0.01

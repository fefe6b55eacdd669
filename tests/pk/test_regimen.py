"""Regimen search: practical grid, one batched simulation for all candidates x samples."""

from __future__ import annotations

import numpy as np

from onnx_models.pk import GOTI_2018, OnnxPkSimulator
from twin_engine.pk.first_doses import add_first_day
from twin_engine.pk.regimen import infusion_hours, rank_regimens, round_dose
from twin_engine.pk.types import FloatArray


class CountingSimulator:
    """Wraps a simulator and counts its calls and rows."""

    def __init__(self, inner: OnnxPkSimulator) -> None:
        self.inner = inner
        self.calls: list[int] = []

    def simulate(
        self, params: FloatArray, doses: FloatArray, times: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        self.calls.append(params.shape[0])
        return self.inner.simulate(params, doses, times)


def test_first_day_of_every_candidate_is_one_simulator_call(goti_sim: OnnxPkSimulator) -> None:
    """3 regimens x (no loading + loading options) x 1000 samples in a single run."""
    eta = np.random.default_rng(0).multivariate_normal(np.zeros(3), GOTI_2018.omega, 1000)
    params = GOTI_2018.individual_parameters(weight_kg=80, crcl_ml_min=90, dialysis=False, eta=eta)
    ranked = rank_regimens(params, weight_kg=80.0, crcl_ml_min=90.0, dialysis=False)
    counting = CountingSimulator(goti_sim)
    out = add_first_day(
        counting,
        params,
        np.zeros((0, 3)),
        0.0,
        ranked,
        (400.0, 600.0),
        weight_kg=80.0,
        offer_loading=True,
    )
    assert len(counting.calls) == 1 and counting.calls[0] >= 3 * 1000 * 2
    assert len(out) == len(ranked)
    assert any(r.regimen.loading_dose_mg for r in out)


def test_practical_rounding() -> None:
    """250 mg steps within 250-3000 mg; infusions at <= 1 g/h, at least 1 h, in 0.5 h steps."""
    assert [round_dose(x) for x in (80.0, 1130.0, 1130.1 + 20, 9000.0)] == [250, 1250, 1250, 3000]
    assert [infusion_hours(x) for x in (500.0, 1000.0, 1250.0, 2000.0, 3000.0)] == [
        1.0,
        1.0,
        1.5,
        2.0,
        3.0,
    ]


def test_ranking_targets_the_window() -> None:
    """With CL known exactly (all samples equal), the top regimen's AUC is inside 400-600."""
    params = np.tile([3.0, 30.0, 6.5, 38.4], (100, 1))
    best = rank_regimens(params, weight_kg=70.0, crcl_ml_min=60.0, dialysis=False)[0]
    assert best.probability_in_target == 1.0
    assert 400.0 <= best.auc24_ss_mg_h_l <= 600.0

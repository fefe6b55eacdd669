"""The Bayesian fit's uncertainty: the Laplace covariance, or the prior's when the
curvature at the MAP estimate cannot be used."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from onnx_models.pk import GOTI_2018, OnnxPkSimulator
from tests.support.vancomycin import T0, base_record
from twin_engine.pk import (
    Timeline,
    build_timeline,
    covariates_from_history,
    estimate,
    extract_history,
    recommend,
)
from twin_engine.pk.types import Covariates, FloatArray

AS_OF = T0 + timedelta(hours=48)
FALLBACK_NOTE = "the prior covariance is used"


class NoFiniteLevels:
    """A structural model that cannot predict the levels: NaN at the times they were
    drawn (the fit's times), the real simulator's answer anywhere else."""

    def __init__(self, simulator: OnnxPkSimulator, level_times_h: FloatArray) -> None:
        self._simulator = simulator
        self._level_times_h = level_times_h

    def simulate(
        self, params: FloatArray, doses: FloatArray, times: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        conc, auc = self._simulator.simulate(params, doses, times)
        if times.shape[1] == self._level_times_h.size and np.allclose(
            times[0], self._level_times_h
        ):
            return np.full_like(conc, np.nan), auc
        return conc, auc


@pytest.fixture(scope="module")
def patient_b() -> tuple[Covariates, Timeline]:
    """posologyr's patient B: covariates and the dose and level timeline."""
    history = extract_history(base_record(), as_of=AS_OF)
    covariates = covariates_from_history(history, GOTI_2018, as_of=AS_OF, dialysis=None)
    return covariates, build_timeline(history.doses, history.levels, AS_OF)


def test_two_levels_narrow_the_prior(
    goti_sim: OnnxPkSimulator, patient_b: tuple[Covariates, Timeline]
) -> None:
    """Two informative levels: the Laplace covariance, narrower than the prior on clearance."""
    covariates, timeline = patient_b
    posterior = estimate(GOTI_2018, covariates, timeline, goti_sim, dialysis=False)
    omega = np.array(GOTI_2018.omega)
    assert posterior.prior_covariance_fallback is False
    assert posterior.covariance[0, 0] < omega[0, 0]


def test_unusable_curvature_falls_back_to_the_prior_covariance(
    goti_sim: OnnxPkSimulator, patient_b: tuple[Covariates, Timeline]
) -> None:
    """No finite objective at the MAP: the posterior covariance is the prior's, and says so."""
    covariates, timeline = patient_b
    model = NoFiniteLevels(goti_sim, timeline.level_times_h)
    posterior = estimate(GOTI_2018, covariates, timeline, model, dialysis=False)
    assert posterior.prior_covariance_fallback is True
    np.testing.assert_allclose(posterior.covariance, np.array(GOTI_2018.omega))


def test_the_fallback_is_noted_on_the_recommendation(
    goti_sim: OnnxPkSimulator, patient_b: tuple[Covariates, Timeline]
) -> None:
    """The clinician reads that the intervals are the prior's, wider than the levels give."""
    _, timeline = patient_b
    model = NoFiniteLevels(goti_sim, timeline.level_times_h)
    result = recommend(base_record(), as_of=AS_OF, model=GOTI_2018, simulator=model)
    assert any(FALLBACK_NOTE in n for n in result.notes)
    plain = recommend(base_record(), as_of=AS_OF, model=GOTI_2018, simulator=goti_sim)
    assert not any(FALLBACK_NOTE in n for n in plain.notes)

"""Bayesian MAP estimation of the individual random effects, and their Laplace posterior.

Objective (as R posologyr's `objective_function`, itself after Kang et al., Korean J Physiol
Pharmacol 2012;16:97): minus twice the log posterior up to a constant,

    OFV(eta) = sum_j ((y_j - f_j) / g_j)^2 + log(g_j^2)  +  eta' Omega^-1 eta

with g the residual standard deviation at the prediction f (`sum`: a + b f, posologyr's
combined1; `root_sum_square`: sqrt(a^2 + b^2 f^2)). Every evaluation of the objective, its
finite-difference gradient and its Hessian is one batched call of the simulator.

Uncertainty: Laplace approximation, eta | y ~ N(eta_hat, 2 H^-1) with H the Hessian of OFV at
the MAP (OFV is -2 log p); samples of eta give predictive intervals. With no levels the
posterior is the prior N(0, Omega) (a priori dosing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from scipy.optimize import minimize

from twin_engine.pk.errors import (
    LevelBeforeFirstDoseError,
    LevelsWithoutDosesError,
)
from twin_engine.pk.types import (
    Covariates,
    DoseEvent,
    FloatArray,
    LevelObservation,
    PkModelSpec,
    PkSimulator,
)

# Central-difference steps in eta (log-parameter) space: eta's scale is ~0.1-1.
_GRAD_STEP = 1e-5
_HESS_STEP = 1e-3
# Etas are bounded at +-6 prior SDs: beyond that the data, not the prior, is wrong.
_ETA_BOUND_SD = 6.0
DEFAULT_SAMPLES = 1000
DEFAULT_SEED = 20200315  # fixed: the same inputs always give the same intervals


@dataclass(frozen=True, slots=True)
class Timeline:
    """Doses and levels in hours from a reference time (the first dose)."""

    origin: datetime
    doses: FloatArray  # [D, 3] start h, duration h, amount mg
    level_times_h: FloatArray  # [L]
    level_values: FloatArray  # [L]

    def hours(self, when: datetime) -> float:
        return (when - self.origin).total_seconds() / 3600.0


@dataclass(frozen=True, slots=True)
class Posterior:
    """MAP random effects, their Laplace covariance, and samples from it."""

    eta_names: tuple[str, ...]
    eta_map: FloatArray  # [K]
    covariance: FloatArray  # [K, K]
    params_map: FloatArray  # [4] CL, V1, Q, V2
    eta_samples: FloatArray  # [M, K]
    params_samples: FloatArray  # [M, 4]
    objective: float
    converged: bool
    n_levels: int
    evaluations: int
    # True when the Laplace precision was not positive definite and the prior's was used.
    prior_covariance_fallback: bool = False


def build_timeline(
    doses: Sequence[DoseEvent], levels: Sequence[LevelObservation], as_of: datetime
) -> Timeline:
    """Hours from the first dose; refuses levels without doses or drawn before the first."""
    if levels and not doses:
        first = min(levels, key=lambda lv: lv.time)
        raise LevelsWithoutDosesError(
            f"{first.source} is a vancomycin level but no vancomycin MedicationAdministration "
            "or MedicationRequest gives dose times; the level cannot be interpreted"
        )
    ordered = sorted(doses, key=lambda d: d.start)
    origin = ordered[0].start if ordered else as_of
    for level in levels:
        if level.time < origin:
            raise LevelBeforeFirstDoseError(
                f"{level.source} was drawn at {level.time.isoformat()}, before the first "
                f"recorded vancomycin dose ({ordered[0].source} at {origin.isoformat()}); "
                "the dose history is incomplete"
            )
    dose_rows = np.array(
        [[(d.start - origin).total_seconds() / 3600.0, d.duration_h, d.amount_mg] for d in ordered],
        dtype=np.float64,
    ).reshape(-1, 3)
    lv = sorted(levels, key=lambda x: x.time)
    return Timeline(
        origin=origin,
        doses=dose_rows,
        level_times_h=np.array(
            [(x.time - origin).total_seconds() / 3600.0 for x in lv], dtype=np.float64
        ),
        level_values=np.array([x.value_mg_l for x in lv], dtype=np.float64),
    )


def residual_sd(model: PkModelSpec, f: FloatArray) -> FloatArray:
    a, b = model.residual_additive_mg_l, model.residual_proportional
    if model.residual_form == "sum":
        return np.asarray(a + b * np.abs(f), dtype=np.float64)
    return np.asarray(np.sqrt(a * a + (b * f) ** 2), dtype=np.float64)


class _Objective:
    """OFV over a batch of etas, one simulator call per batch."""

    def __init__(
        self,
        model: PkModelSpec,
        covariates: Covariates,
        timeline: Timeline,
        simulator: PkSimulator,
        dialysis: bool,
    ) -> None:
        self.model = model
        self.cov = covariates
        self.tl = timeline
        self.sim = simulator
        self.dialysis = dialysis
        self.omega_inv = np.linalg.inv(np.array(model.omega, dtype=np.float64))
        self.calls = 0

    def params(self, etas: FloatArray) -> FloatArray:
        return self.model.individual_parameters(
            weight_kg=self.cov.weight_kg,
            crcl_ml_min=self.cov.crcl_ml_min,
            dialysis=self.dialysis,
            eta=etas,
        )

    def __call__(self, etas: FloatArray) -> FloatArray:
        n = etas.shape[0]
        params = self.params(etas)
        doses = np.broadcast_to(self.tl.doses, (n, *self.tl.doses.shape))
        times = np.broadcast_to(self.tl.level_times_h, (n, self.tl.level_times_h.shape[0]))
        conc, _ = self.sim.simulate(params, doses, times)
        self.calls += 1
        g = residual_sd(self.model, conc)
        g = np.where(g == 0.0, 1.0, g)  # posologyr: g = 0 (f = 0, no additive) -> 1
        resid = (self.tl.level_values[None, :] - conc) / g
        data = np.sum(resid**2 + np.log(g**2), axis=1)
        prior = np.einsum("nk,kl,nl->n", etas, self.omega_inv, etas)
        return np.asarray(data + prior, dtype=np.float64)

    def value_and_grad(self, eta: FloatArray) -> tuple[float, FloatArray]:
        k = eta.shape[0]
        steps = np.vstack([np.zeros(k), np.eye(k) * _GRAD_STEP, -np.eye(k) * _GRAD_STEP])
        values = self(eta[None, :] + steps)
        grad = (values[1 : k + 1] - values[k + 1 :]) / (2.0 * _GRAD_STEP)
        return float(values[0]), np.asarray(grad, dtype=np.float64)

    def hessian(self, eta: FloatArray) -> FloatArray:
        k = eta.shape[0]
        h = _HESS_STEP
        pairs = [(i, j) for i in range(k) for j in range(i, k)]
        offsets = []
        for i, j in pairs:
            for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                step = np.zeros(k)
                step[i] += si * h
                step[j] += sj * h
                offsets.append(step)
        values = self(eta[None, :] + np.array(offsets)).reshape(len(pairs), 4)
        hess = np.zeros((k, k))
        for (i, j), v in zip(pairs, values, strict=True):
            hess[i, j] = hess[j, i] = (v[0] - v[1] - v[2] + v[3]) / (4.0 * h * h)
        return hess


def _positive_definite(matrix: FloatArray, fallback: FloatArray) -> tuple[FloatArray, bool]:
    """The symmetrised matrix, or (fallback, True) when it is not finite positive definite.

    A flat or saddle direction (e.g. a level uninformative about V2) makes the Laplace
    precision unusable; the whole prior precision is then used, which over-states the
    uncertainty in the directions the levels did inform. The caller notes it on the result.
    """
    sym = 0.5 * (matrix + matrix.T)
    if not np.all(np.isfinite(sym)):
        return fallback, True
    values = np.linalg.eigvalsh(sym)
    if values.min() <= 0:
        return fallback, True
    return np.asarray(sym, dtype=np.float64), False


def estimate(
    model: PkModelSpec,
    covariates: Covariates,
    timeline: Timeline,
    simulator: PkSimulator,
    *,
    dialysis: bool,
    n_samples: int = DEFAULT_SAMPLES,
    seed: int = DEFAULT_SEED,
) -> Posterior:
    """MAP eta (none: the prior mean) and Laplace samples; a priori when there are no levels."""
    objective = _Objective(model, covariates, timeline, simulator, dialysis)
    omega = np.array(model.omega, dtype=np.float64)
    k = omega.shape[0]
    z = np.random.default_rng(seed).standard_normal((n_samples, k))
    if timeline.level_values.size == 0:
        eta_map = np.zeros(k)
        covariance = omega
        value, converged = 0.0, True
        fell_back = False
    else:
        bound = _ETA_BOUND_SD * np.sqrt(np.diag(omega))
        result = minimize(
            objective.value_and_grad,
            np.zeros(k),
            jac=True,
            method="L-BFGS-B",
            bounds=list(zip(-bound, bound, strict=True)),
            options={"ftol": 1e-12, "gtol": 1e-7, "maxiter": 200},
        )
        eta_map = np.asarray(result.x, dtype=np.float64)
        value, converged = float(result.fun), bool(result.success)
        hess = objective.hessian(eta_map)
        # OFV = -2 log p, so the posterior precision is H / 2.
        prior_precision = np.asarray(np.linalg.inv(omega), dtype=np.float64)
        precision, fell_back = _positive_definite(0.5 * hess, prior_precision)
        inverse = np.linalg.inv(precision)
        covariance = np.asarray(0.5 * (inverse + inverse.T), dtype=np.float64)
    chol = np.linalg.cholesky(covariance)
    eta_samples = eta_map[None, :] + z @ chol.T
    params = objective.params(np.vstack([eta_map[None, :], eta_samples]))
    return Posterior(
        eta_names=model.eta_names,
        eta_map=eta_map,
        covariance=np.asarray(covariance, dtype=np.float64),
        params_map=params[0],
        eta_samples=eta_samples,
        params_samples=params[1:],
        objective=value,
        converged=converged,
        n_levels=int(timeline.level_values.size),
        evaluations=objective.calls,
        prior_covariance_fallback=fell_back,
    )

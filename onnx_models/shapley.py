"""Exact Shapley values over all 2^M coalitions, evaluated in one batched model run.

Row `mask` of the coalition matrix takes the patient's value for every explained feature
whose bit is set in `mask` and the baseline's value otherwise; held-fixed features always
take the patient's value. Then, with w(s) = s! (M - s - 1)! / M!,

    phi_i = sum over masks without bit i of  w(|mask|) * (f(mask | bit i) - f(mask))

which is exact (no sampling), and sum(phi) = f(all) - f(none) = prediction - baseline.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# 2^12 rows is still one small batch; beyond that exact enumeration stops being cheap
# (clinical.md: "Exact Shapley values for M <= ~12 inputs").
MAX_EXPLAINED = 12

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class CoalitionPlan:
    """Precomputed masks, index pairs and weights for M explained features."""

    n_features: int
    # [2^M, M]: True where the coalition takes the patient's value.
    masks: BoolArray
    # [M, 2^(M-1)]: row index with feature i, the same coalition without it, and its weight.
    with_index: IntArray
    without_index: IntArray
    weights: FloatArray

    @property
    def full(self) -> int:
        """Row of the coalition of all features: the patient's own prediction."""
        return (1 << self.n_features) - 1

    @property
    def empty(self) -> int:
        """Row of the empty coalition: the baseline's prediction."""
        return 0


@functools.lru_cache(maxsize=MAX_EXPLAINED + 1)
def coalition_plan(n_features: int) -> CoalitionPlan:
    """The plan for `n_features` explained features (cached: it depends on M only)."""
    if not 1 <= n_features <= MAX_EXPLAINED:
        raise ValueError(f"exact Shapley needs 1..{MAX_EXPLAINED} features, not {n_features}")
    m = n_features
    rows = np.arange(1 << m, dtype=np.int64)
    bits = np.int64(1) << np.arange(m, dtype=np.int64)
    masks = (rows[:, None] & bits[None, :]) != 0
    sizes = masks.sum(axis=1)
    size_weight = np.array(
        [math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m) for s in range(m)],
        dtype=np.float64,
    )
    without = np.stack([rows[~masks[:, i]] for i in range(m)])
    with_ = without | bits[:, None]
    return CoalitionPlan(
        n_features=m,
        masks=masks,
        with_index=with_,
        without_index=without,
        weights=size_weight[sizes[without]],
    )


def coalition_mask(plan: CoalitionPlan, explained: tuple[int, ...], n_inputs: int) -> BoolArray:
    """[2^M, F]: True where the coalition row takes the patient's value, which for a
    held-fixed column (not in `explained`) is every row."""
    takes_patient = np.ones((plan.masks.shape[0], n_inputs), dtype=np.bool_)
    takes_patient[:, list(explained)] = plan.masks
    return takes_patient


def coalition_matrix(
    patient: FloatArray, baseline: FloatArray, takes_patient: BoolArray
) -> FloatArray:
    """[2^M, F] model input: patient values inside each coalition, baseline outside."""
    rows: FloatArray = np.where(takes_patient, patient, baseline)
    return rows


def shapley_values(values: FloatArray, plan: CoalitionPlan) -> FloatArray:
    """[M] Shapley values from the model's [2^M] outputs over the coalition matrix."""
    gains = values[plan.with_index] - values[plan.without_index]
    result: FloatArray = (plan.weights * gains).sum(axis=1)
    return result

"""The ONNX structural model against an independent ODE solution, and its artifact."""

from __future__ import annotations

import itertools
import json

import numpy as np
import onnx
import pytest
from scipy.integrate import solve_ivp

from onnx_models.build.pk import pk_model_bytes
from onnx_models.card import CARD_KEY
from onnx_models.pk import MODELS, OnnxPkSimulator


def _ode_solution(params: np.ndarray, doses: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Central concentration and AUC by integrating the 2-compartment ODEs (amounts, mg)."""
    cl, v1, q, v2 = params
    k10, k12 = cl / v1, q / v1
    k21 = q / v2 if v2 > 0 else 0.0

    def rate(t: float) -> float:
        on = (doses[:, 0] <= t) & (t < doses[:, 0] + doses[:, 1])
        return float(np.sum(np.where(on, doses[:, 2] / doses[:, 1], 0.0)))

    # Integrate piecewise between infusion switch points: the input is constant on each piece.
    edges = sorted({0.0, *doses[:, 0], *(doses[:, 0] + doses[:, 1]), float(times.max())})
    y = np.zeros(3)
    out = np.zeros((times.size, 2))
    for lo, hi in itertools.pairwise(edges):
        r = rate(0.5 * (lo + hi))

        def rhs(_t: float, y: np.ndarray, r: float = r) -> list[float]:
            a1, a2, _ = y
            return [r - (k10 + k12) * a1 + k21 * a2, k12 * a1 - k21 * a2, a1 / v1]

        inside = times[(times >= lo) & (times <= hi)]
        t_eval = np.union1d(inside, [hi])
        sol = solve_ivp(rhs, (lo, hi), y, t_eval=t_eval, method="DOP853", rtol=1e-13, atol=1e-12)
        for t, a1, auc in zip(sol.t, sol.y[0], sol.y[2], strict=True):
            out[times == t] = (a1 / v1, auc)
        y = sol.y[:, -1]
    return out


def _random_case(rng: np.random.Generator, one_compartment: bool) -> tuple[np.ndarray, ...]:
    params = np.array(
        [
            rng.uniform(0.3, 12.0),
            rng.uniform(15.0, 150.0),
            rng.uniform(1.0, 15.0),
            rng.uniform(10.0, 150.0),
        ]
    )
    if one_compartment:
        params[2:] = 0.0
    n = int(rng.integers(1, 7))
    tau = float(rng.choice([8.0, 12.0, 24.0, 36.0, 48.0]))
    doses = np.zeros((8, 3))  # padded with zero rows
    for k in range(n):
        doses[k] = (
            k * tau + rng.uniform(0.0, 1.0),
            rng.uniform(0.5, 3.0),
            250.0 * rng.integers(2, 13),
        )
    times = np.sort(rng.uniform(0.05, n * tau + 24.0, 6))
    return params, doses, times


@pytest.mark.parametrize("one_compartment", [False, True])
def test_closed_form_matches_the_ode_over_random_regimens(
    goti_sim: OnnxPkSimulator, one_compartment: bool
) -> None:
    """Concentration and cumulative AUC agree with solve_ivp to 1e-6 relative, 40 regimens."""
    rng = np.random.default_rng(7 + one_compartment)
    worst = 0.0
    for _ in range(40):
        params, doses, times = _random_case(rng, one_compartment)
        conc, auc = goti_sim.simulate(params[None], doses[None], times[None])
        ref = _ode_solution(params, doses[doses[:, 1] > 0], times)
        scale = np.maximum(np.abs(ref), 1e-3)
        worst = max(worst, float(np.max(np.abs(conc[0] - ref[:, 0]) / scale[:, 0])))
        worst = max(worst, float(np.max(np.abs(auc[0] - ref[:, 1]) / scale[:, 1])))
    assert worst <= 1e-6


def test_total_auc_is_dose_over_clearance(goti_sim: OnnxPkSimulator) -> None:
    """Long after the last infusion, AUC = total dose / CL (mass balance)."""
    params = np.array([[3.0, 60.0, 6.5, 40.0], [5.0, 70.0, 0.0, 0.0]])
    doses = np.zeros((2, 3, 3))
    doses[:, 0] = (0.0, 1.0, 1000.0)
    doses[:, 1] = (12.0, 2.0, 1500.0)
    times = np.full((2, 1), 5000.0)
    _, auc = goti_sim.simulate(params, doses, times)
    np.testing.assert_allclose(auc[:, 0], [2500.0 / 3.0, 2500.0 / 5.0], rtol=1e-10)


def test_artifact_is_reproducible_and_carries_the_card() -> None:
    """Two builds give identical bytes; the card names source, IIV and residual error."""
    for model in MODELS.values():
        data = pk_model_bytes(model)
        assert data == pk_model_bytes(model)
        proto = onnx.load_from_string(data)
        assert {i.name for i in proto.graph.input} == {"params", "doses", "times"}
        assert all(
            i.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE for i in proto.graph.input
        )
        card = json.loads({p.key: p.value for p in proto.metadata_props}[CARD_KEY])
        assert card["id"] == model.id
        assert card["iiv"]["omega"] == [list(r) for r in model.omega]
        assert card["residual_error"]["additive_mg_l"] == model.residual_additive_mg_l
    goti = json.loads(
        {
            p.key: p.value
            for p in onnx.load_from_string(
                pk_model_bytes(MODELS["vancomycin_goti2018"])
            ).metadata_props
        }[CARD_KEY]
    )
    assert "Ther Drug Monit. 2018;40(2):212-221" in goti["source"]
    assert goti["iiv"]["cv_percent"] == [39.8, 81.6, 57.1]


def test_simulator_reads_the_built_artifact_when_present(tmp_path: object) -> None:
    """OnnxPkSimulator.load falls back to an in-memory build with the same bytes."""
    sim = OnnxPkSimulator.load(MODELS["vancomycin_buelga2005"])
    assert sim.card.id == "vancomycin_buelga2005"


def test_steady_state_auc_equals_dose_over_clearance(goti_sim: OnnxPkSimulator) -> None:
    """After 40 doses the AUC of one interval is dose / CL, the regimen search's shortcut."""
    params = np.array([[4.0, 50.0, 6.5, 38.4]])
    tau = 12.0
    doses = np.zeros((1, 40, 3))
    doses[0, :, 0] = np.arange(40) * tau
    doses[0, :, 1] = 1.0
    doses[0, :, 2] = 1000.0
    _, auc = goti_sim.simulate(params, doses, np.array([[38 * tau, 39 * tau]]))
    assert auc[0, 1] - auc[0, 0] == pytest.approx(1000.0 / 4.0, rel=1e-6)

"""The two-compartment intravenous-infusion model as one batched float64 ONNX graph.

Inputs (all float64):
    params  [N, 4]     individual CL (L/h), V1 (L), Q (L/h), V2 (L); Q = 0 gives one compartment
    doses   [N, D, 3]  start (h), duration (h, > 0), amount (mg); padded rows are all zero
    times   [N, T]     times (h) at which to report
Outputs (float64):
    conc_mg_l   [N, T] central concentration
    auc_mg_h_l  [N, T] cumulative AUC of the central concentration from time 0

Closed form by superposition of linear infusions (Gibaldi & Perrier, Pharmacokinetics, 2nd ed.,
1982, ch. 2, two-compartment model with zero-order input). With macro-constants

    a + b = k10 + k12 + k21,   a * b = k10 * k21,
    C_a = (a - k21) / (V1 (a - b)),   C_b = (k21 - b) / (V1 (a - b))   (unit-bolus response)

one infusion of rate R = amount / duration from s to s + d contributes, with
tau = max(t - s, 0) and tau2 = max(t - s - d, 0),

    C(t)   = R * sum_i C_i / l_i * (exp(-l_i tau2) - exp(-l_i tau))
    AUC(t) = R * sum_i C_i / l_i * ((tau - tau2) - (exp(-l_i tau2) - exp(-l_i tau)) / l_i)

Both vanish before the infusion starts and AUC(inf) = amount / CL. b is taken as
k10 * k21 / a (no cancellation); with Q = 0, b = 0 and C_b = 0 exactly, and every division by
b is guarded so that the zero coefficient removes the term.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from onnx_models.build._graph import GraphBuilder
from onnx_models.pk.simulator import AUC, CONC, DOSES, N_PARAMS, PARAMS, TIMES


def structural_graph(name: str) -> onnx.GraphProto:
    """The graph above; the same nodes for every vancomycin model (only the card differs)."""
    g = GraphBuilder(name)
    zero = g.const("zero", 0.0)
    one = g.const("one", 1.0)
    half = g.const("half", 0.5)
    four = g.const("four", 4.0)

    def col(index: int, stem: str) -> str:
        # [N, 1] -> [N, 1, 1] so that it broadcasts against [N, T, D].
        return g.op("Unsqueeze", g.column(PARAMS, index, stem), g.const(f"{stem}_ax", [2]))

    cl, v1, q, v2 = col(0, "cl"), col(1, "v1"), col(2, "q"), col(3, "v2")
    # V2 = 0 (one compartment) would make k21 = 0/0; Q = 0 there, so k21 = 0 with V2 -> 1.
    v2_pos = g.op("Greater", v2, zero)
    v2_safe = g.op("Where", v2_pos, v2, one)
    k10 = g.op("Div", cl, v1)
    k12 = g.op("Div", q, v1)
    k21 = g.op("Div", q, v2_safe)
    s = g.op("Add", g.op("Add", k10, k12), k21)
    p = g.op("Mul", k10, k21)
    disc = g.op("Sub", g.op("Mul", s, s), g.op("Mul", four, p))
    disc = g.op("Max", disc, zero)
    alpha = g.op("Mul", half, g.op("Add", s, g.op("Sqrt", disc)))
    beta = g.op("Div", p, alpha)
    a_minus_b = g.op("Sub", alpha, beta)
    denom = g.op("Mul", v1, a_minus_b)
    coef_a = g.op("Div", g.op("Sub", alpha, k21), denom)
    coef_b = g.op("Div", g.op("Sub", k21, beta), denom)

    # Dose columns as [N, 1, D]; times as [N, T, 1].
    def dose_field(index: int, stem: str) -> str:
        sliced = g.op(
            "Slice",
            DOSES,
            g.const(f"{stem}_s", [index]),
            g.const(f"{stem}_e", [index + 1]),
            g.const(f"{stem}_a", [2]),
        )
        # [N, D, 1] -> [N, 1, D]
        return g.op("Transpose", sliced, perm=[0, 2, 1])

    start = dose_field(0, "start")
    duration = dose_field(1, "duration")
    amount = dose_field(2, "amount")
    # Padded rows have duration 0 and amount 0: rate 0 / 1 = 0.
    dur_pos = g.op("Greater", duration, zero)
    dur_safe = g.op("Where", dur_pos, duration, one)
    rate = g.op("Div", amount, dur_safe)
    t = g.op("Unsqueeze", TIMES, g.const("t_ax", [2]))
    since_start = g.op("Sub", t, start)
    tau = g.op("Max", since_start, zero)
    tau2 = g.op("Max", g.op("Sub", since_start, dur_safe), zero)
    infused = g.op("Sub", tau, tau2)

    conc_terms: list[str] = []
    auc_terms: list[str] = []
    for lam, coef, stem in ((alpha, coef_a, "a"), (beta, coef_b, "b")):
        lam_pos = g.op("Greater", lam, zero)
        lam_safe = g.op("Where", lam_pos, lam, one, stem=f"lam_{stem}")
        weight = g.op("Where", lam_pos, g.op("Div", coef, lam_safe), zero, stem=f"w_{stem}")
        neg = g.op("Neg", lam_safe)
        gap = g.op("Sub", g.op("Exp", g.op("Mul", neg, tau2)), g.op("Exp", g.op("Mul", neg, tau)))
        conc_terms.append(g.op("Mul", weight, gap))
        auc_terms.append(g.op("Mul", weight, g.op("Sub", infused, g.op("Div", gap, lam_safe))))

    axis = g.const("sum_ax", [2])
    conc = g.op("ReduceSum", g.op("Mul", rate, g.op("Add", *conc_terms)), axis, keepdims=0)
    auc = g.op("ReduceSum", g.op("Mul", rate, g.op("Add", *auc_terms)), axis, keepdims=0)
    g.rename(conc, CONC)
    g.rename(auc, AUC)
    # GraphBuilder.graph() declares one [N, F] input; this graph has three, so assemble here.
    return helper.make_graph(
        g._nodes,
        name,
        [
            helper.make_tensor_value_info(PARAMS, TensorProto.DOUBLE, ["N", N_PARAMS]),
            helper.make_tensor_value_info(DOSES, TensorProto.DOUBLE, ["N", "D", 3]),
            helper.make_tensor_value_info(TIMES, TensorProto.DOUBLE, ["N", "T"]),
        ],
        [
            helper.make_tensor_value_info(CONC, TensorProto.DOUBLE, ["N", "T"]),
            helper.make_tensor_value_info(AUC, TensorProto.DOUBLE, ["N", "T"]),
        ],
        initializer=g._initializers,
    )

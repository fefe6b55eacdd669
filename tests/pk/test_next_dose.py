"""When the next dose is due and how large it is, with drug still on board."""

from __future__ import annotations

from datetime import timedelta

from onnx_models.pk import GOTI_2018, OnnxPkSimulator
from tests.support.vancomycin import T0, administration, base_record, observation
from twin_engine.pk import recommend
from twin_engine.pk.regimen import maintenance_doses, round_next_dose

AS_OF = T0 + timedelta(hours=48)


def _without_doses_and_levels() -> list[dict[str, object]]:
    return [r for r in base_record() if not str(r["id"]).startswith(("ma", "lvl"))]


def test_round_next_dose_holds_below_half_a_step() -> None:
    """Below 125 mg the next dose is 0 (drug on board); from 125 mg the usual 250 mg steps."""
    assert [round_next_dose(x) for x in (0.0, 60.0, 124.9, 125.0, 1130.0)] == [
        0.0,
        0.0,
        0.0,
        250.0,
        1250.0,
    ]


def test_drug_on_board_delays_the_next_dose(goti_sim: OnnxPkSimulator) -> None:
    """After 3 g q6h x4, the next dose waits for the trough and is a maintenance dose."""
    # The doses end just before the as-of time; a catch-up dose "now" would be the error.
    record = _without_doses_and_levels()
    record += [administration(f"big{k}", 24 + 6 * k, 3000, duration_h=3.0) for k in range(4)]
    result = recommend(record, as_of=AS_OF, model=GOTI_2018, simulator=goti_sim)
    nd, best = result.next_dose, result.recommendations[0]
    assert nd is not None and best.trough_ss_mg_l is not None
    assert nd.start > result.as_of + timedelta(hours=6)
    assert nd.rounded_mg <= maintenance_doses(70.0)[-1]  # 1500 mg: the step above 20 mg/kg
    assert nd.level_at_start_mg_l is not None
    assert nd.level_at_start_mg_l <= 1.5 * best.trough_ss_mg_l


def test_next_dose_respects_the_maintenance_ceiling_after_a_recent_level(
    goti_sim: OnnxPkSimulator,
) -> None:
    """A recent level of 9 mg/L gives a next dose within the maintenance ceiling."""
    # It once gave a 2-2.75 g dose "now" (36-40 mg/kg).
    record = _without_doses_and_levels()
    record += [administration(f"d{k}", 12 * k, 1000, duration_h=1.0) for k in range(4)]
    record.append(observation("lv", "4092-3", 9.0, "mg/L", 46.0))
    result = recommend(record, as_of=AS_OF, model=GOTI_2018, simulator=goti_sim)
    nd = result.next_dose
    assert nd is not None
    assert 0 < nd.rounded_mg <= maintenance_doses(70.0)[-1]
    assert nd.rounded_mg <= 35.0 * 70.0
    assert nd.start >= result.as_of

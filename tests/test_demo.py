"""make demo's decisions after the search (search/demo.py): plan a missed target again with what the device said."""
from search.demo import met, replan


def _row(target, predicted, measured, meets, ci=0.0, **more):
    return {"target_ms": target, "predicted_ms": predicted, "measured_ms": measured, "measured_ci95_ms": ci,
            "meets_target_measured": meets, **more}


def test_replan_tightens_each_missed_target_by_its_network_measured_over_predicted():
    res = [_row(7.5, 7.4, 8.0, False, ci=0.1), _row(15.0, 14.0, 14.5, True), _row(23.0, 14.0, 14.5, True)]
    assert replan(res, lowest=5.0) == {7.5: round(7.5 * 7.4 / 8.1, 3)}  # the CI's upper end
    assert replan(res, lowest=7.0) == {}  # 6.85 ms is below the fastest network: nothing reachable to plan
    # a network measured faster than predicted gives no tighter target
    assert replan([_row(7.5, 7.6, 7.55, False)], lowest=5.0) == {}
    assert replan([], lowest=5.0) == {}


def test_a_target_is_met_by_its_first_network_or_its_replanned_one():
    res = [_row(7.5, 7.4, 8.0, False), _row(15.0, 14.0, 14.5, True), _row(7.5, 6.8, 7.2, True, searched_ms=6.85)]
    assert met(res, 7.5) and met(res, 15.0)
    assert not met(res[:2], 7.5) and not met(res, 23.0)

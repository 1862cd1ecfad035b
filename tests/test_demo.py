"""make demo's decisions after the search (search/demo.py): plan again for a device that got slower than its LUT."""
from profiler.validate import STALE
from search.demo import met, replan


def _row(target, meets, r=None, **more):
    row = {"target_ms": target, "meets_target_measured": meets, **more}
    if r is not None:
        row["device_vs_lut"] = r
    return row


def test_replan_only_misses_the_device_explains_and_only_reachable_targets():
    slow = 1 + 2 * STALE
    res = [_row(7.5, False, slow), _row(15.0, True, slow), _row(23.0, False, slow)]
    assert replan(res, lowest=5.0) == {7.5: round(7.5 / slow, 3), 23.0: round(23.0 / slow, 3)}
    assert replan(res, lowest=7.0) == {23.0: round(23.0 / slow, 3)}  # 7.5 / r is below the fastest network
    assert replan([_row(7.5, False, 1 + STALE / 2)], lowest=5.0) == {}  # within STALE: the prediction's miss
    assert replan([_row(7.5, False, 0.9)], lowest=5.0) == {}  # the device got faster: planning again cannot help
    assert replan([_row(7.5, False)], lowest=5.0) == {}  # no anchors measured (an NB201 LUT)
    assert replan([_row(7.5, True, slow)], lowest=5.0) == {} and replan([], lowest=5.0) == {}


def test_a_target_is_met_by_its_first_network_or_its_replanned_one():
    res = [_row(7.5, False), _row(15.0, True), _row(7.5, True, searched_ms=6.8)]
    assert met(res, 7.5) and met(res, 15.0)
    assert not met(res[:2], 7.5) and not met(res, 23.0)

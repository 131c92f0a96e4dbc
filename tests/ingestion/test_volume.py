"""The volume verdict on its own: when a day's row count is judged, and against what."""

import pytest

from dagster_project.defs.ingestion.volume import (
    ACCEPT_LOW_VOLUME_TAG,
    MIN_HISTORY_DAYS,
    VolumeVerdict,
    accepts_low_volume,
)


def _verdict(rows: int, trailing: tuple[int, ...], overridden: bool = False) -> VolumeVerdict:
    return VolumeVerdict(rows=rows, trailing_rows=trailing, min_share=0.5, overridden=overridden)


def test_too_little_history_is_not_judged() -> None:
    verdict = _verdict(0, (1_000,) * (MIN_HISTORY_DAYS - 1))
    assert verdict.passed and verdict.floor is None
    assert "not judged" in verdict.explanation


@pytest.mark.parametrize(("rows", "passed"), [(0, False), (499, False), (500, True), (5_000, True)])
def test_the_floor_is_a_share_of_the_trailing_median(rows: int, passed: bool) -> None:
    # The median, not the mean: one outage day in the window does not lower the bar.
    verdict = _verdict(rows, (1_000, 0, 900, 1_100, 1_000))
    assert verdict.floor == 500
    assert verdict.passed is passed


def test_an_accepted_empty_day_passes_and_says_so() -> None:
    verdict = _verdict(0, (1_000,) * 5, overridden=True)
    assert verdict.passed
    assert ACCEPT_LOW_VOLUME_TAG in verdict.explanation


@pytest.mark.parametrize(
    ("value", "accepted"),
    [("activity_events", True), ("customers, activity_events", True), ("*", True), ("customers", False), ("", False)],
)
def test_the_override_names_the_table(value: str, accepted: bool) -> None:
    assert accepts_low_volume({ACCEPT_LOW_VOLUME_TAG: value}, "activity_events") is accepted
    assert accepts_low_volume({}, "activity_events") is False
